//! The dead letters of the resources being reconciled, replayed in one pass over each
//! stage's dead-letter queue, however many resources (as `audit` reads them once).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::amqp::{AmqpConfig, Topology};
use crate::ops::dlq::{self, DlqError, Replayed};
use crate::stages::StageName;

/// Dead letters looked at per stage.
const DEAD_LETTER_LIMIT: usize = 10_000;

/// A resource, as `(path, id)`.
pub(super) type ResourceId = (String, String);

/// The letters replayed for each resource: by stage (in stage order, then queue order),
/// with why each was dead-lettered.
pub(super) type ReplayedLetters = HashMap<ResourceId, Vec<(StageName, String)>>;

/// Replays (in a dry run, looks at) the dead letters of `resources`: one pass over each
/// stage's dead-letter queue, the others' letters put back untouched, in order. A stage
/// without a dead-letter queue has none.
pub(super) async fn replay(
    url: &AmqpConfig,
    topology: &Topology,
    resources: &HashSet<ResourceId>,
    dry_run: bool,
) -> Result<ReplayedLetters, DlqError> {
    let mut replayed = ReplayedLetters::new();
    if resources.is_empty() {
        return Ok(replayed);
    }
    for stage in StageName::ALL {
        // The resource of each letter looked at, by position in the queue (`wanted` is
        // asked once per letter fetched, in order; a `Replayed` names its position).
        let seen = Mutex::new(Vec::new());
        let wanted = |body: &[u8]| {
            let resource = dlq::resource_of(body).filter(|r| resources.contains(r));
            let ours = resource.is_some();
            seen.lock().expect("not poisoned").push(resource);
            ours
        };
        let queue = dlq::DeadLetterQueue::of(url, topology, stage);
        let letters = match queue.replay_where(DEAD_LETTER_LIMIT, dry_run, wanted).await {
            Ok(letters) => letters,
            Err(DlqError::NoQueue { .. }) => continue,
            Err(e) => return Err(e),
        };
        let seen = seen.into_inner().expect("not poisoned");
        for letter in letters {
            let resource = letter
                .info
                .position
                .checked_sub(1)
                .and_then(|i| seen.get(i).cloned().flatten());
            if let Some(resource) = resource {
                replayed
                    .entry(resource)
                    .or_default()
                    .push((stage, why(&letter)));
            }
        }
    }
    Ok(replayed)
}

/// Why a letter was dead-lettered: its class (or kind) and reason.
fn why(letter: &Replayed) -> String {
    let info = &letter.info;
    let why = format!(
        "{} {}",
        info.class.as_deref().unwrap_or(&info.kind),
        info.reason.as_deref().unwrap_or("")
    );
    why.trim().to_string()
}
