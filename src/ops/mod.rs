//! The operator commands' library side: what `status`, `dlq`, `show`, `publish`, `audit`,
//! `reconcile` and `seal` read and write. Each returns data (or, for `audit`, hands each resource
//! to a callback as the scan goes); the binary's `commands/` prints it. None of them runs a
//! stage.

pub mod audit;
pub mod dlq;
pub mod publish;
pub mod reconcile;
pub mod seal;
pub mod show;
pub mod status;
