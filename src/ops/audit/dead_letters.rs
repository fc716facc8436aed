//! The stages' dead letters, read without consuming them and indexed by resource, so that
//! a finding can say why.

use std::collections::HashMap;

use crate::amqp::{AmqpConfig, Topology};
use crate::ops::dlq::{self, DeadLetterInfo, DlqError};
use crate::stages::StageName;

use super::findings::{stage_preference, DeadLetterRef, Finding};

/// The dead letters of the three stages, by resource: for each `(path, id)` the last
/// letter (the most recent) of each stage.
#[derive(Debug, Default)]
pub struct DeadLetters {
    by_resource: HashMap<(String, String), Vec<(StageName, DeadLetterInfo)>>,
    pub total: usize,
}

impl DeadLetters {
    pub fn insert(&mut self, stage: StageName, resource: (String, String), info: DeadLetterInfo) {
        self.total += 1;
        let letters = self.by_resource.entry(resource).or_default();
        letters.retain(|(s, _)| *s != stage);
        letters.push((stage, info));
    }

    /// The letter that explains `finding`, if any.
    pub fn explain(&self, finding: &Finding) -> Option<DeadLetterRef> {
        let letters = self
            .by_resource
            .get(&(finding.path.clone(), finding.id.clone()))?;
        stage_preference(finding.problem)
            .into_iter()
            .find_map(|stage| {
                letters
                    .iter()
                    .find(|(s, _)| *s == stage)
                    .map(|(s, info)| DeadLetterRef::new(*s, info))
            })
    }
}

/// Reads up to `limit` dead letters of each stage, without consuming them (as `dlq list`),
/// and indexes them by the resource their body names. A stage without a dead-letter queue
/// has none.
pub async fn dead_letters(
    url: &AmqpConfig,
    topology: &Topology,
    limit: usize,
) -> Result<DeadLetters, DlqError> {
    let mut letters = DeadLetters::default();
    for stage in StageName::ALL {
        for (info, resource) in dlq::letters_by_resource(url, topology, stage, limit).await? {
            if let Some(resource) = resource {
                letters.insert(stage, resource, info);
            }
        }
    }
    Ok(letters)
}
