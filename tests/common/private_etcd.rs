//! The one launcher of a private etcd (free ports, a data directory of its own), shared by
//! the tests that stop, start and freeze their etcd (`tests/integration/helpers/faults.rs`)
//! and by the benchmark's fresh store (`benches/pipeline`), which both include this file
//! with `#[path]`. The native services' etcd is `scripts/etcd.sh`'s.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a start may take before it fails.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// An etcd server of its own, so that stopping it disturbs nothing else. Restarts reuse the
/// ports and the data directory, as a real restart does; dropped, it is killed and its data
/// removed (its log, `<data dir>.log`, is kept when a panic drops it).
pub struct PrivateEtcd {
    pub endpoint: String,
    peer: String,
    data_dir: PathBuf,
    child: Option<Child>,
}

/// A client of the etcd just started at `endpoint`, once it answers a read; one that does
/// not within `patience` fails the test, naming its `log`.
pub async fn connect_when_up(
    endpoint: &str,
    options: Option<etcd_client::ConnectOptions>,
    patience: Duration,
    log: &Path,
) -> etcd_client::Client {
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(mut client) = etcd_client::Client::connect([endpoint], options.clone()).await {
            if client.get("/", None).await.is_ok() {
                return client;
            }
        }
        assert!(
            Instant::now() < deadline,
            "etcd at {endpoint} did not come up (log: {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl PrivateEtcd {
    /// Starts one with its data in the temporary directory and waits until it answers.
    pub async fn start() -> PrivateEtcd {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "heat-pipeline-etcd-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        PrivateEtcd::start_in(std::env::temp_dir().join(name)).await
    }

    /// Starts one with its data in `data_dir` and waits until it answers.
    pub async fn start_in(data_dir: PathBuf) -> PrivateEtcd {
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut etcd = PrivateEtcd {
            endpoint: format!("http://127.0.0.1:{}", free_port()),
            peer: format!("http://127.0.0.1:{}", free_port()),
            data_dir,
            child: None,
        };
        etcd.resume_service().await;
        etcd
    }

    /// Starts the server on the same ports and data directory and waits until it answers.
    pub async fn resume_service(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let binary = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let log = std::fs::File::create(self.data_dir.with_extension("log")).unwrap();
        let child = Command::new(&binary)
            .args(["--name", "private", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.endpoint])
            .args(["--advertise-client-urls", &self.endpoint])
            .args(["--listen-peer-urls", &self.peer])
            .args(["--initial-advertise-peer-urls", &self.peer])
            .args(["--initial-cluster", &format!("private={}", self.peer)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {binary}: {e}; a private etcd needs its binary: run scripts/setup.sh \
                     (Debian package etcd-server) or set ETCD_BIN"
                )
            });
        self.child = Some(child);
        let log = self.data_dir.with_extension("log");
        connect_when_up(&self.endpoint, None, START_PATIENCE, &log).await;
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("etcd running").id()
    }

    /// Stops the server (SIGTERM, as a service manager would) and waits for it to exit.
    pub fn stop(&mut self) {
        self.signal("TERM");
        self.child.take().unwrap().wait().unwrap();
    }

    /// Freezes the server: connections stay open but nothing is answered, like a badly
    /// overloaded or partitioned etcd.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} etcd");
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL works on a frozen process too.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
        }
    }
}
