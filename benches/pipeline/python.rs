//! `--python`: the sequential Python worker (`benches/python/sequential_worker.py`), the
//! yardstick the pipeline's speed is quoted against ("×N the Python worker"). It drains the
//! capture queue of a round's pipeline one message at a time and writes the same three
//! records, so its round is timed exactly like the pipeline's: preloaded creates, the clock
//! stopped by the last /state the watcher sees.
//!
//! It runs fewer messages than the pipeline (`--python-messages`): at a hundred or two a
//! second, the pipeline's 20,000 would take minutes per round for a rate that does not
//! change with the count.

use std::process::{Command, Stdio};

use super::processes::Process;

/// The worker, beside this benchmark's sources.
const WORKER: &str = "benches/python/sequential_worker.py";

/// The Python that has pika: `PYTHON` (scripts/bench.sh sets it to a venv of its own), or
/// `python3`.
fn interpreter() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Starts the worker on the capture queue of the round's pipeline (`PIPELINE_NAME`), with
/// the round's key prefix; it exits once the queue has been empty for a while.
pub fn spawn(env: &[(&str, &str)]) -> Process {
    let var = |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
            .unwrap_or_else(|| panic!("{name} not in the round's environment"))
    };
    let endpoint = var("ETCD_ENDPOINTS");
    let endpoint = endpoint.split(',').next().expect("an endpoint");
    let child = Command::new(interpreter())
        .arg(WORKER)
        .args(["--amqp-url", &var("AMQP_URL")])
        .args(["--queue", &format!("{}.capture", var("PIPELINE_NAME"))])
        .args(["--etcd", endpoint])
        .args(["--prefix", &var("ETCD_KEY_PREFIX")])
        .args(["--idle", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {WORKER} with {}: {e}", interpreter()));
    Process {
        label: "python".into(),
        http: String::new(),
        child,
    }
}
