//! A RabbitMQ node of the test's own, so that a test that restarts its broker disturbs
//! nothing it did not start: not the machine's broker, not the other tests.
//!
//! Built from the machine's `rabbitmq-server` package, like `scripts/cluster.sh`'s nodes:
//! its own node name, AMQP and distribution ports, Erlang port mapper (epmd) port, config,
//! data and log directories and Erlang cookie, all under one temporary directory, no
//! plugins. Starting takes a few seconds.
//!
//! [`PrivateRabbit::start_with_tls`] adds a TLS listener (AMQPS) beside the plain one, with
//! a certificate of a CA the test makes ([`Pki`]) in the node's directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::{Pki, CA, SERVER_CERT, SERVER_KEY};
use super::process::free_port;
use super::unique_name;

/// Where Debian's package puts the server and CLI scripts (the `/usr/sbin` wrappers switch
/// to the rabbitmq user, which cannot read a test's directory).
const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

/// How long the node may take to start.
const START_PATIENCE: Duration = Duration::from_secs(90);

/// Whether a node's TLS listener asks a client for a certificate only, or refuses a client
/// without one (`ssl_options.fail_if_no_peer_cert`). Either way a certificate a client
/// presents must be signed by the node's CA (`ssl_options.verify = verify_peer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    Optional,
    Required,
}

/// A node's TLS listener.
pub struct RabbitTls {
    /// `amqps://guest:guest@localhost:PORT/%2f` (the guest user may log in from the loopback
    /// interface only, and the server certificate names `localhost` and `127.0.0.1`).
    pub url: String,
    pub port: u16,
    /// The CA that signed the node's certificate, and a client certificate it accepts
    /// ([`super::pki::CLIENT_CERT`], [`super::pki::CLIENT_KEY`]).
    pub pki: Pki,
    pub client_certs: ClientCerts,
}

pub struct PrivateRabbit {
    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`: the plain listener, always there.
    pub url: String,
    /// The TLS listener, if the node was started with one.
    pub tls: Option<RabbitTls>,
    port: u16,
    node: String,
    epmd_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRabbit {
    /// Starts a node on free ports and waits until it takes AMQP connections.
    pub async fn start() -> PrivateRabbit {
        PrivateRabbit::launch(None).await
    }

    /// Like [`PrivateRabbit::start`], with a TLS listener as well, on a port of its own,
    /// with a certificate signed by a CA made for this node (under its directory).
    pub async fn start_with_tls(client_certs: ClientCerts) -> PrivateRabbit {
        PrivateRabbit::launch(Some(client_certs)).await
    }

    async fn launch(tls: Option<ClientCerts>) -> PrivateRabbit {
        assert!(
            Path::new(RABBIT_BIN).join("rabbitmq-server").exists(),
            "a private broker needs Debian's rabbitmq-server package (scripts/setup.sh)"
        );
        let dir = std::env::temp_dir().join(unique_name("rabbit"));
        let (port, dist_port, epmd_port) = (free_port(), free_port(), free_port());
        let node = format!("hpt{}{}@localhost", std::process::id(), dist_port);
        let tls = tls.map(|client_certs| {
            let port = free_port();
            RabbitTls {
                url: format!("amqps://guest:guest@localhost:{port}/%2f"),
                port,
                pki: Pki::generate(&dir.join("pki")),
                client_certs,
            }
        });
        let rabbit = PrivateRabbit {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            tls,
            port,
            node,
            epmd_port,
            dir,
            child: None,
        };
        let mut rabbit = rabbit;
        rabbit.write_config(dist_port);
        // A process group of its own: the server script, the Erlang VM and its helpers go
        // together when the test ends.
        let child = rabbit
            .command(&format!("{RABBIT_BIN}/rabbitmq-server"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a private rabbitmq-server");
        rabbit.child = Some(child);
        let started = Instant::now();
        // `wait` (unlike `await_startup`) waits for the node to appear at all.
        let patience = START_PATIENCE.as_secs().to_string();
        let pid_file = rabbit.dir.join("rabbit.pid").display().to_string();
        rabbit
            .ctl(&["wait", &pid_file, "--timeout", &patience])
            .await;
        eprintln!(
            "private broker {} up in {:?}",
            rabbit.node,
            started.elapsed()
        );
        rabbit
    }

    fn write_config(&self, dist_port: u16) {
        let dir = &self.dir;
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let cookie = dir.join("home/.erlang.cookie");
        std::fs::write(&cookie, unique_name("cookie").replace('-', "")).unwrap();
        set_mode(&cookie, 0o400);
        let mut config = format!("listeners.tcp.1 = 127.0.0.1:{}\n", self.port);
        if let Some(tls) = &self.tls {
            let fail_if_no_peer_cert = tls.client_certs == ClientCerts::Required;
            config.push_str(&format!(
                "listeners.ssl.1 = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {ca}\n\
                 ssl_options.certfile = {cert}\n\
                 ssl_options.keyfile = {key}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = {fail_if_no_peer_cert}\n",
                port = tls.port,
                ca = tls.pki.path_text(CA),
                cert = tls.pki.path_text(SERVER_CERT),
                key = tls.pki.path_text(SERVER_KEY),
            ));
        }
        std::fs::write(dir.join("rabbitmq.conf"), config).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("rabbitmq-env.conf"),
            format!(
                "NODENAME={node}\nNODE_IP_ADDRESS=127.0.0.1\nNODE_PORT={port}\n\
                 DIST_PORT={dist_port}\nCONFIG_FILE={d}/rabbitmq.conf\n\
                 ENABLED_PLUGINS_FILE={d}/enabled_plugins\nMNESIA_BASE={d}/mnesia\n\
                 LOG_BASE={d}/log\nPID_FILE={d}/rabbit.pid\nPLUGINS_EXPAND_DIR={d}/plugins\n\
                 FEATURE_FLAGS_FILE={d}/feature_flags\n\
                 SERVER_ADDITIONAL_ERL_ARGS=\"-kernel inet_dist_use_interface {{127,0,0,1}}\"\n\
                 CTL_ERL_ARGS=\"-kernel inet_dist_use_interface {{127,0,0,1}}\"\n",
                node = self.node,
                port = self.port,
            ),
        )
        .unwrap();
    }

    /// A command with the node's environment and nothing of the machine's broker's.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for (name, _) in std::env::vars() {
            if name.starts_with("RABBITMQ_") || name.starts_with("ERL_") {
                command.env_remove(name);
            }
        }
        command
            .env("HOME", self.dir.join("home"))
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null());
        command
    }

    /// Runs `rabbitmqctl ARGS` against this node (off the test's runtime, which keeps
    /// running the stages) and returns what it printed; panics with its output if it fails.
    /// E.g. `ctl(&["add_user", name, password])`, or `ctl(&["-q", "list_connections",
    /// "--no-table-headers", "ssl"])` for the bare table.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut command = self.command(&format!("{RABBIT_BIN}/rabbitmqctl"));
        command.arg("-n").arg(&self.node).args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("run rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} on {}: {}{}",
            self.node,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the RabbitMQ application (`rabbitmqctl stop_app`): every connection is closed;
    /// durable queues and persistent messages survive, as in a real restart.
    pub async fn stop_app(&self) {
        self.ctl(&["stop_app"]).await;
    }

    /// Starts it again and waits until it serves.
    pub async fn start_app(&self) {
        self.ctl(&["start_app"]).await;
        self.ctl(&["await_startup"]).await;
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the server script stops the node cleanly; then SIGKILL to the whole
            // group, so that no Erlang VM outlives a test that failed half-way.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
        }
        // The node started a port mapper of its own on its private port: stop it too.
        let _ = Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
