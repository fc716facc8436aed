//! `heat-pipeline audit`: finds the resources whose records break the pipeline's
//! invariants (a job left half done), and says why from the dead letters.
//!
//! The scan ([`state::scan`](crate::ops::state::scan())) reads the five key families of one
//! prefix and API version (heat_stacks, its order key, job_state, its order key, `/state`)
//! side by side, each in key order, a page at a time, all at the revision of the first
//! page: every family's keys end in `<path>/<id>`, so a merge of the five sorted streams
//! meets each resource's keys together. Memory holds five pages and one resource, never the
//! keyspace. Each resource's findings are the rules of
//! [`ResourceState`](crate::ops::state::ResourceState) put in words.
//!
//! A resource's age is read from the lineage its order keys carry (`written_at`, see
//! [`OrderKey`](crate::records::OrderKey)): etcd keeps no wall-clock time. An order key written before lineage
//! existed has no age; such a resource counts as old (it predates the upgrade), with
//! `since` unknown.
//!
//! - [`problem`]: what a finding is (`Problem`, `Finding`, the `DeadLetterRef` that explains it).
//! - [`findings`]: pure: a resource's keys in, its findings out (`classify`).
//! - [`dead_letters`](mod@dead_letters): the stages' dead letters, indexed by resource, to explain a
//!   finding, and the resources known only from them (`dead_letter_only`).
//! - [`checks`]: warnings for a scan of the wrong keys (a prefix without its `/`, no key
//!   where the pipeline's queues exist).

pub mod checks;
pub mod dead_letters;
pub mod findings;
pub mod problem;

pub use checks::{pipeline_queues_exist, prefix_warning};
pub use dead_letters::{dead_letters, DeadLetters};
pub use findings::classify;
pub use problem::{DeadLetterRef, Finding, Problem, PROBLEMS};
// The scan and the keys it yields, as `audit` (and `run --audit-every`) use them.
pub use crate::ops::state::{job_state_age, scan, Resource, ScanStats, DEFAULT_PAGE_SIZE};
