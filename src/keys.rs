//! Where each record lives in etcd.

use std::borrow::Cow;

use crate::message::Job;

/// Builds every key the pipeline reads or writes, so that the prefix (test and tenant
/// isolation) and the API segment are applied in one place.
#[derive(Debug, Clone)]
pub struct Keyspace {
    /// Prepended to every key; empty in production.
    prefix: String,
    /// The API segment, `v2.0` unless configured otherwise.
    api_version: String,
}

impl Keyspace {
    pub fn new(prefix: impl Into<String>, api_version: impl Into<String>) -> Self {
        let prefix = prefix.into().trim_end_matches('/').to_string();
        Keyspace {
            prefix,
            api_version: api_version.into(),
        }
    }

    /// `<prefix><family base>/<api>/<path>/<id>`, pushed piece by piece: every message
    /// builds six keys, and through `format!` they were a tenth of its instructions.
    pub fn key(&self, family: Family, path: &str, id: &str) -> String {
        let base = family.base();
        let parts = [
            self.prefix.as_str(),
            base,
            "/",
            &self.api_version,
            "/",
            path,
            "/",
            id,
        ];
        let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|part| key.push_str(part));
        key
    }

    pub fn heat_stack(&self, path: &str, id: &str) -> String {
        self.key(Family::HeatStacks, path, id)
    }

    pub fn job_state(&self, path: &str, id: &str) -> String {
        self.key(Family::JobState, path, id)
    }

    pub fn state(&self, path: &str, id: &str) -> String {
        self.key(Family::State, path, id)
    }

    /// The order key kept beside a heat_stacks record. It lives outside `/esi-worker/` so
    /// that readers listing that prefix never see it.
    pub fn heat_stack_order(&self, path: &str, id: &str) -> String {
        self.key(Family::HeatStacksOrder, path, id)
    }

    /// The order key kept beside a job_state record; it outlives the record (wrap deletes
    /// the record), so a late or repeated normalize cannot bring an old record back.
    pub fn job_state_order(&self, path: &str, id: &str) -> String {
        self.key(Family::JobStateOrder, path, id)
    }

    /// The lineage of `/state` (which message wrote it, when), written by wrap beside it in
    /// the same transaction; `/state`'s own bytes are a contract and have no room for it.
    pub fn state_lineage(&self, path: &str, id: &str) -> String {
        self.key(Family::StateLineage, path, id)
    }

    /// Whether `key` is one of `family`'s keys in this keyspace. No allocation: a stage's
    /// cache asks it of every key it learns.
    pub fn is_of(&self, family: Family, key: &str) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(family.base()))
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The prefix under which every record of one family lives, for scans (`audit`):
    /// `family` is one of [`Family::ALL`]. Keys under it end in `<path>/<id>`.
    pub fn family_prefix(&self, family: Family) -> String {
        format!("{}{}/{}/", self.prefix, family.base(), self.api_version)
    }

    /// The three record keys of a job, for `show`.
    pub fn records_of(&self, job_path: &str, id: &str) -> [(&'static str, String); 3] {
        [
            ("heat_stacks", self.heat_stack(job_path, id)),
            ("job_state", self.job_state(job_path, id)),
            ("state", self.state(job_path, id)),
        ]
    }

    /// The keys of `job`'s resource, each built when it is asked for.
    pub fn for_job<'a>(&'a self, job: &'a Job) -> JobKeys<'a> {
        JobKeys {
            keyspace: self,
            path: job.path(),
            id: &job.resource_id,
        }
    }
}

/// The kinds of keys heat-pipeline keeps per resource, each under its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    HeatStacks,
    HeatStacksOrder,
    JobState,
    JobStateOrder,
    State,
    StateLineage,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::HeatStacks,
        Family::HeatStacksOrder,
        Family::JobState,
        Family::JobStateOrder,
        Family::State,
        Family::StateLineage,
    ];

    fn base(self) -> &'static str {
        match self {
            Family::HeatStacks => "/esi-worker/heat_stacks",
            Family::HeatStacksOrder => "/heat-pipeline/order/heat_stacks",
            Family::JobState => "/esi-worker/job_state",
            Family::JobStateOrder => "/heat-pipeline/order/job_state",
            Family::State => "/state",
            Family::StateLineage => "/heat-pipeline/lineage/state",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::HeatStacks => "heat_stacks",
            Family::HeatStacksOrder => "heat_stacks_order",
            Family::JobState => "job_state",
            Family::JobStateOrder => "job_state_order",
            Family::State => "state",
            Family::StateLineage => "state_lineage",
        }
    }
}

/// The keys of one job's resource, each built when asked for. A stage's step asks for two
/// to four of the six, at two to four places; built all at once at each, they were 2.7 %
/// of `run all`'s instructions (callgrind).
#[derive(Debug, Clone)]
pub struct JobKeys<'a> {
    keyspace: &'a Keyspace,
    path: Cow<'a, str>,
    id: &'a str,
}

impl JobKeys<'_> {
    /// The resource's key in `family`.
    pub fn key(&self, family: Family) -> String {
        self.keyspace.key(family, &self.path, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_of_its_own_family_only() {
        let keys = Keyspace::new("/site", "v2.0");
        for family in Family::ALL {
            let key = keys.key(family, "ports", "a");
            for other in Family::ALL {
                assert_eq!(
                    keys.is_of(other, &key),
                    other == family,
                    "{key} of {other:?}"
                );
            }
        }
        assert!(!keys.is_of(Family::State, "/site/stateful/v2.0/ports/a"));
        assert!(
            !keys.is_of(Family::State, "/state/v2.0/ports/a"),
            "another prefix"
        );
    }

    #[test]
    fn keys_match_the_seed() {
        let keys = Keyspace::new("", "v2.0");
        let id = "23464cbc-d910-430a-93f7-3776ea07f992";
        assert_eq!(
            keys.heat_stack("ports", id),
            format!("/esi-worker/heat_stacks/v2.0/ports/{id}")
        );
        assert_eq!(
            keys.job_state("ports", id),
            format!("/esi-worker/job_state/v2.0/ports/{id}")
        );
        assert_eq!(keys.state("ports", id), format!("/state/v2.0/ports/{id}"));
    }

    #[test]
    fn prefix_is_prepended_once() {
        let keys = Keyspace::new("/t1/", "v2.0");
        assert_eq!(keys.state("ports", "a"), "/t1/state/v2.0/ports/a");
    }
}
