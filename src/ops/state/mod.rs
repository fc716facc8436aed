//! A resource's state as its keys say it, and the rules on it, shared by `audit`,
//! `reconcile` and `show`.
//!
//! A resource's keys (heat_stacks, job_state, their two order keys, `/state` and its
//! lineage key) are read at one etcd revision, one resource at a time ([`read`](read())) or
//! the whole keyspace in key order ([`scan`](scan())), into a [`Resource`] (bytes and
//! revisions). [`ResourceState`] parses each key once; its rules (`stuck`, `behind`,
//! `orphans`, `stale`, `unreadable_keys`, `half_done`, `next`) are what `audit` reports and
//! what `reconcile` picks and re-drives, so the two can never disagree.
//!
//! - [`resource`]: the keys as stored (pure).
//! - [`model`]: the keys parsed once (pure).
//! - [`rules`]: the rules on them (pure, unit-tested).
//! - [`read`](mod@read): one resource at one revision (etcd).
//! - [`scan`](mod@scan): every resource of a prefix, paged, at one revision (etcd).

#[cfg(test)]
pub(crate) mod fixtures;
pub mod model;
pub mod read;
pub mod resource;
pub mod rules;
pub mod scan;

pub use model::{key_words, Parsed, ResourceState, StateVersion, Unreadable};
pub use read::read;
pub use resource::Resource;
pub use rules::{is_old, job_state_age, CannotRedrive, Consumed, Next, Orphan};
pub use scan::{scan, ScanStats, DEFAULT_PAGE_SIZE};
