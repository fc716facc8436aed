//! The stages' dead letters, read without consuming them and indexed by resource, so that
//! a finding can say why, and so that a resource known only from its dead letters (no key
//! in etcd) is found at all.

use std::collections::{HashMap, HashSet};

use crate::amqp::{AmqpConfig, Topology};
use crate::keys::Keyspace;
use crate::ops::dlq::{self, DeadLetterInfo, DlqError};
use crate::stages::StageName;

use super::problem::{stage_preference, DeadLetterRef, Finding, Problem};

/// The dead letters of the three stages, by resource: for each `(path, id)` the last
/// letter (the most recent) of each stage.
#[derive(Debug, Default)]
pub struct DeadLetters {
    by_resource: HashMap<(String, String), Vec<(StageName, DeadLetterInfo)>>,
    pub total: usize,
    /// The resources of `by_resource` whose keys the scan met.
    met: HashSet<(String, String)>,
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
        best(letters, finding.problem)
    }

    /// Notes that the scan met a key of `path`/`id`: its dead letters, if any, are not
    /// [`DeadLetters::dead_letter_only`]. Call it for every resource scanned.
    pub fn met(&mut self, path: &str, id: &str) {
        if self.by_resource.is_empty() {
            return;
        }
        let resource = (path.to_string(), id.to_string());
        if self.by_resource.contains_key(&resource) {
            self.met.insert(resource);
        }
    }

    /// One `dead_letter_only` finding for each resource with dead letters that the scan
    /// did not meet (see [`DeadLetters::met`]): etcd holds no key of it, so the scan alone
    /// would never report it. In `(path, id)` order; call it once the scan is over.
    pub fn dead_letter_only(&self, keys: &Keyspace) -> Vec<Finding> {
        let mut unmet: Vec<_> = self
            .by_resource
            .iter()
            .filter(|(resource, _)| !self.met.contains(*resource))
            .collect();
        unmet.sort_by(|a, b| a.0.cmp(b.0));
        unmet
            .into_iter()
            .map(|((path, id), letters)| {
                let stages: Vec<&str> = StageName::ALL
                    .iter()
                    .filter(|stage| letters.iter().any(|(s, _)| s == *stage))
                    .map(|stage| stage.as_str())
                    .collect();
                let letter = best(letters, Problem::DeadLetterOnly);
                Finding {
                    problem: Problem::DeadLetterOnly,
                    path: path.clone(),
                    id: id.clone(),
                    version: None,
                    phase: None,
                    since: letter.as_ref().and_then(|l| l.first_failed_at.clone()),
                    key: keys.heat_stack(path, id),
                    detail: format!(
                        "dead-lettered at {}, and etcd holds no key of this resource (is \
                         ETCD_KEY_PREFIX right?)",
                        stages.join(", ")
                    ),
                    dead_letter: letter,
                }
            })
            .collect()
    }
}

/// The letter, of those of one resource, that best explains `problem`.
fn best(letters: &[(StageName, DeadLetterInfo)], problem: Problem) -> Option<DeadLetterRef> {
    stage_preference(problem).into_iter().find_map(|stage| {
        letters
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(s, info)| DeadLetterRef::new(*s, info))
    })
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
        for (info, resource) in dlq::DeadLetterQueue::of(url, topology, stage)
            .letters_by_resource(limit)
            .await?
        {
            if let Some(resource) = resource {
                letters.insert(stage, resource, info);
            }
        }
    }
    Ok(letters)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ops::audit::{classify, Resource};
    use crate::plan::Stored;

    fn info(class: &str) -> DeadLetterInfo {
        DeadLetterInfo {
            position: 1,
            message_id: None,
            kind: "permanent".into(),
            class: Some(class.into()),
            reason: Some("why".into()),
            first_failed_at: Some("2026-11-27T08:00:00.000Z".into()),
            last_failed_at: None,
            attempts: Some(1),
            original_exchange: None,
            original_routing_key: None,
            body_size: 1,
            preview: String::new(),
        }
    }

    fn resource(id: &str) -> (String, String) {
        ("ports".to_string(), id.to_string())
    }

    #[test]
    fn a_dead_letter_of_the_stage_that_should_have_acted_explains_a_finding() {
        let mut letters = DeadLetters::default();
        letters.insert(StageName::Capture, resource("r1"), info("invalid_message"));
        letters.insert(StageName::Wrap, resource("r1"), info("record_too_large"));
        let stored = |value: &[u8]| {
            Some(Stored {
                value: value.to_vec(),
                mod_revision: 7,
            })
        };
        let stuck = Resource {
            path: "ports".into(),
            id: "r1".into(),
            job_state: stored(br#"{"heat_outputs": [], "orchestration_state": "CREATE_COMPLETE"}"#),
            job_state_order: stored(br#"{"version":1,"phase":"final"}"#),
            ..Resource::default()
        };
        let keys = Keyspace::new("", "v2.0");
        let finding = &classify(&stuck, &keys, SystemTime::now(), Duration::ZERO)[0];
        let letter = letters.explain(finding).unwrap();
        assert_eq!(letter.stage, "wrap");
        assert_eq!(letter.class.as_deref(), Some("record_too_large"));
    }

    #[test]
    fn letters_of_a_resource_the_scan_never_met_are_a_finding_of_their_own() {
        let mut letters = DeadLetters::default();
        letters.insert(StageName::Wrap, resource("known"), info("record_too_large"));
        letters.insert(StageName::Normalize, resource("b"), info("invalid_message"));
        letters.insert(StageName::Capture, resource("b"), info("status_mismatch"));
        letters.insert(StageName::Capture, resource("a"), info("status_mismatch"));
        letters.met("ports", "known");
        letters.met("ports", "never-dead-lettered");
        let keys = Keyspace::new("/t", "v2.0");
        let found = letters.dead_letter_only(&keys);
        let ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let b = &found[1];
        assert_eq!(b.problem, Problem::DeadLetterOnly);
        assert_eq!(b.key, "/t/esi-worker/heat_stacks/v2.0/ports/b");
        assert!(
            b.detail.starts_with("dead-lettered at capture, normalize"),
            "{}",
            b.detail
        );
        let letter = b.dead_letter.as_ref().unwrap();
        assert_eq!(
            (letter.stage.as_str(), letter.class.as_deref()),
            ("capture", Some("status_mismatch"))
        );
        assert_eq!(b.since.as_deref(), Some("2026-11-27T08:00:00.000Z"));
        assert_eq!(
            serde_json::to_value(b).unwrap()["problem"],
            "dead_letter_only"
        );
    }
}
