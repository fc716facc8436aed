//! The operator commands' library side: what `status`, `dlq`, `show`, `publish`, `audit`,
//! `reconcile` and `seal` read and write. Each returns data (or, for `audit` and
//! `reconcile`, hands each result to a callback as it goes); the binary's `commands/` prints
//! it. None of them runs a stage. `state` is what `audit`, `reconcile` and `show` share: a
//! resource's keys read at one revision, and the rules on them.

pub mod audit;
pub mod dlq;
pub mod publish;
pub mod reconcile;
pub mod seal;
pub mod show;
pub mod state;
pub mod status;
