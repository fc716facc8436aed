//! One module per subcommand of the binary: its arguments, and the printing and prompting
//! around the library call that does the work. Not part of the library.
//!
//! Shared by the commands: [`format`] (`--format text|json`), [`resource`] (`PATH/ID`),
//! [`progress`] (bars on a terminal) and [`report`] (an error in one line).

pub(crate) mod audit;
pub(crate) mod dlq;
pub(crate) mod format;
pub(crate) mod healthcheck;
pub(crate) mod progress;
pub(crate) mod publish;
pub(crate) mod reconcile;
pub(crate) mod report;
pub(crate) mod resource;
pub(crate) mod run;
pub(crate) mod seal;
pub(crate) mod show;
pub(crate) mod status;
