//! Progress of the long commands (`audit`, `publish`, `reconcile --all-stuck`, `dlq
//! replay`) on a terminal, with indicatif. On stderr, like the logs, so stdout stays the
//! command's output; hidden when stderr is not a terminal, so a log file or a pipe gets no
//! escape codes and a script sees the same output as before.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often a spinner moves on its own while nothing is counted.
const TICK: Duration = Duration::from_millis(120);

fn on_a_terminal(bar: ProgressBar) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        bar
    } else {
        ProgressBar::hidden()
    }
}

/// A count without a known end: "⠋ scanning 12,345 resources (3s)", the message after the
/// count (`set_message`) for what else is counted.
pub(crate) fn counter(prefix: &'static str, unit: &'static str) -> ProgressBar {
    let bar = on_a_terminal(ProgressBar::new_spinner());
    let template = format!("{{spinner}} {{prefix}} {{human_pos}} {unit}{{msg}} ({{elapsed}})");
    bar.set_style(ProgressStyle::with_template(&template).expect("a valid template"));
    bar.set_prefix(prefix);
    bar.enable_steady_tick(TICK);
    bar
}

/// A count towards `len`: "publishing [=====>    ] 120/400 (eta 3s)".
pub(crate) fn bar(prefix: &'static str, len: u64) -> ProgressBar {
    let bar = on_a_terminal(ProgressBar::new(len));
    let style =
        ProgressStyle::with_template("{prefix} [{wide_bar}] {human_pos}/{human_len} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(prefix);
    bar
}
