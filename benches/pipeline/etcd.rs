//! The benchmark's etcd: a fresh private one (or the shared one), its compaction, and the
//! raw put rate the pipeline's drain is compared with.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, CompactionOptions};

/// Puts as fast as `concurrency` tasks can for `length`.
pub async fn raw_put_rate(
    etcd: &Client,
    prefix: &str,
    concurrency: usize,
    length: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let value = vec![b'x'; 1536];
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut kv = etcd.kv_client();
        let (done, value, key) = (
            done.clone(),
            value.clone(),
            format!("{prefix}/raw/{worker}"),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                kv.put(key.as_str(), value.as_slice(), None)
                    .await
                    .expect("put");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / length.as_secs_f64()
}

/// Compacts the store's history up to now (what `--auto-compaction-*` does periodically).
pub async fn compact(etcd: &Client) {
    let mut kv = etcd.kv_client();
    let revision = kv
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
}

/// A fresh etcd of the benchmark's own, on free ports, with its data on the same disk as
/// the repository (not a tmpfs), removed at the end.
pub struct PrivateEtcd {
    pub endpoint: String,
    data_dir: std::path::PathBuf,
    pub child: Child,
}

impl PrivateEtcd {
    pub fn start() -> PrivateEtcd {
        let port = |_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (client, peer) = (port(0), port(1));
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data_dir = std::env::current_dir()
            .unwrap()
            .join(format!(".data/bench-etcd-{}", std::process::id()));
        let child = Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into()))
            .args(["--name", "bench", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/setup.sh installs it), or pass --shared-etcd");
        PrivateEtcd {
            endpoint,
            data_dir,
            child,
        }
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub async fn wait_for_etcd(endpoint: &str) {
    for _ in 0..100 {
        if let Ok(mut client) = Client::connect([endpoint], None).await {
            if client.get("/", None).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the benchmark's etcd on {endpoint} did not come up");
}
