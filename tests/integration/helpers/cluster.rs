//! The local clusters of `scripts/cluster.sh` (3 RabbitMQ nodes, 3 etcd members on
//! 127.0.0.1, from Debian's packages), for the cluster tests: brought up fresh for each
//! test, faults injected through the script, always taken down again, also when the test
//! fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::Services;

pub struct Cluster {
    services: Services,
}

/// `scripts/cluster.sh ARGS`, off the test's runtime; its stdout, or a panic with its
/// output.
async fn script(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
    let mut command = Command::new("bash");
    command.arg(script).args(args).stdin(Stdio::null());
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run scripts/cluster.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "scripts/cluster.sh {shown}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

impl Cluster {
    /// A cluster started from nothing (any earlier one is taken down first), healthy.
    pub async fn fresh() -> Cluster {
        script(&["down"]).await;
        let out = script(&["up"]).await;
        let env = out
            .lines()
            .last()
            .expect("cluster.sh up prints its env line");
        let value = |name: &str| {
            env.split_whitespace()
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {env:?}"))
                .to_string()
        };
        Cluster {
            services: Services {
                amqp_url: value("AMQP_URL"),
                etcd_endpoints: value("ETCD_ENDPOINTS")
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            },
        }
    }

    /// Every node's URL and every member's endpoint.
    pub fn services(&self) -> Services {
        self.services.clone()
    }

    /// `kill` (SIGKILL, stays down), `pause` (SIGSTOP), `resume` (SIGCONT) or `start` a
    /// node: `rabbit-1..3`, `etcd-1..3`.
    pub async fn act(&self, action: &str, node: &str) {
        eprintln!("cluster: {action} {node}");
        script(&[action, node]).await;
    }

    /// The etcd member that leads (`etcd-N`).
    pub async fn etcd_leader(&self) -> String {
        script(&["leader", "etcd"]).await.trim().to_string()
    }

    /// The RabbitMQ node that leads quorum queue `queue` (`rabbit-N`).
    pub async fn queue_leader(&self, queue: &str) -> String {
        script(&["leader", queue]).await.trim().to_string()
    }
}

/// The node name (`rabbit-N`) of an AMQP URL of this cluster (its port is 568N).
pub fn rabbit_node(url: &str) -> Option<String> {
    let port = url.rsplit_once(':')?.1.split('/').next()?;
    let n = port.strip_prefix("568")?;
    Some(format!("rabbit-{n}"))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("down")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
