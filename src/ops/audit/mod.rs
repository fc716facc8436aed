//! `heat-pipeline audit`: finds the resources whose records break the pipeline's
//! invariants (a job left half done), and says why from the dead letters.
//!
//! The scan reads the five key families of one prefix and API version (heat_stacks, its
//! order key, job_state, its order key, `/state`) side by side, each in key order, a page
//! at a time, all at the revision of the first page: every family's keys end in
//! `<path>/<id>`, so a merge of the five sorted streams meets each resource's keys
//! together. Memory holds five pages and one resource, never the keyspace.
//!
//! A resource's age is read from the lineage its order keys carry (`written_at`, see
//! [`OrderKey`](crate::records::OrderKey)): etcd keeps no wall-clock time. An order key written before lineage
//! existed has no age; such a resource counts as old (it predates the upgrade), with
//! `since` unknown.
//!
//! - [`findings`]: pure: a resource's records in, its findings out (`classify`).
//! - [`scan`](mod@scan): the paged, one-revision read of the keyspace, one resource at a time.
//! - [`dead_letters`](mod@dead_letters): the stages' dead letters, indexed by resource, to explain a finding.

pub mod dead_letters;
pub mod findings;
pub mod scan;

pub use dead_letters::{dead_letters, DeadLetters};
pub use findings::{
    classify, job_state_age, order_of, DeadLetterRef, Finding, Parsed, Problem, Resource, PROBLEMS,
};
pub use scan::{scan, ScanStats, DEFAULT_PAGE_SIZE};
