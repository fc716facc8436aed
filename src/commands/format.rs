//! `--format`: one value for every command that prints records or findings.

use clap::ValueEnum;

/// How a command prints what it found: `text` for people, `json` for scripts (one JSON
/// document, or one per line for a command that prints as it goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Format {
    #[default]
    Text,
    Json,
}
