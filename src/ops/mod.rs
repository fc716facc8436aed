//! The operator commands' library side: what `status`, `dlq`, `show` and `publish` read
//! and write. Each asks the broker or the store once and returns data; the binary's
//! `commands/` prints it. None of them runs a stage.

pub mod audit;
pub mod dlq;
pub mod publish;
pub mod reconcile;
pub mod show;
pub mod status;
