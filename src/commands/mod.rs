//! One module per subcommand of the binary: its arguments, and the printing and prompting
//! around the library call that does the work. Not part of the library.

pub(crate) mod audit;
pub(crate) mod dlq;
pub(crate) mod healthcheck;
pub(crate) mod publish;
pub(crate) mod reconcile;
pub(crate) mod run;
pub(crate) mod seal;
pub(crate) mod show;
pub(crate) mod status;
