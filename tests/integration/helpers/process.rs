//! The `heat-pipeline` binary as a child process: a command with a pipeline's environment,
//! a run to completion with its output as text, and [`Process`], a started process that is
//! killed if the test ends (or fails) before it does, so no test leaves one behind.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::TestPipeline;

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_heat-pipeline");

/// How long a process may take to drain and exit after SIGTERM.
pub const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(40);

/// The security settings a process would otherwise inherit from the developer's shell.
const SECURITY_SETTINGS: [&str; 10] = [
    "ETCD_PASSWORD",
    "ETCD_PASSWORD_FILE",
    "ETCD_USERNAME",
    "ETCD_CA_FILE",
    "ETCD_CERT_FILE",
    "ETCD_KEY_FILE",
    "AMQP_PASSWORD_FILE",
    "AMQP_CA_FILE",
    "AMQP_CERT_FILE",
    "AMQP_KEY_FILE",
];

/// A `heat-pipeline` command with `args` and the environment `env`, and with a clean slate
/// of security settings (only those in `env`).
pub fn command(env: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for name in SECURITY_SETTINGS {
        command.env_remove(name);
    }
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Starts a `heat-pipeline` process with `args` and `env`, its stderr captured (see
/// [`Process`]).
pub fn spawn(env: &[(&'static str, String)], args: &[&str]) -> Process {
    Process::start(
        command(env, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

/// Runs `command` to its end (stdout and stderr captured unless it says otherwise).
pub fn run(command: &mut Command) -> Ran {
    Ran::from(command.output().expect("run heat-pipeline"))
}

/// How a process ended, and what it wrote (empty when not captured).
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(output: Output) -> Ran {
        Ran {
            status: output.status,
            stdout: text(output.stdout, "stdout"),
            stderr: text(output.stderr, "stderr"),
        }
    }
}

/// The process's output is text, always.
fn text(bytes: Vec<u8>, stream: &str) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| {
        panic!(
            "heat-pipeline wrote non-UTF-8 to {stream}: {}",
            String::from_utf8_lossy(e.as_bytes())
        )
    })
}

impl TestPipeline {
    /// A `heat-pipeline` command of this pipeline (see [`command`]).
    pub fn command(&self, args: &[&str]) -> Command {
        command(&self.env(), args)
    }

    /// Runs a `heat-pipeline` command of this pipeline to its end.
    pub fn run(&self, args: &[&str]) -> Ran {
        run(&mut self.command(args))
    }

    /// Starts a `heat-pipeline` process of this pipeline, its stderr captured.
    pub fn start_process(&self, args: &[&str]) -> Process {
        spawn(&self.env(), args)
    }
}

/// A started child process. Its piped output is read as it comes (so a chatty process never
/// blocks on a full pipe), and it is killed and reaped when dropped unless it exited: a
/// failing test leaves no process behind.
pub struct Process {
    child: Child,
    exited: Option<ExitStatus>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

impl Process {
    /// Starts `command` with the stdio it was given.
    pub fn start(command: &mut Command) -> Process {
        Process::adopt(command.spawn().expect("start heat-pipeline"))
    }

    /// Takes charge of a child the test started itself (having taken what it wanted of its
    /// pipes); the pipes left are drained.
    pub fn adopt(mut child: Child) -> Process {
        Process {
            stdout: child.stdout.take().map(drain),
            stderr: child.stderr.take().map(drain),
            child,
            exited: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`, `STOP`, ...) to the process, which must still run.
    pub fn signal(&self, name: &str) {
        assert!(self.exited.is_none(), "the process already exited");
        signal(self.id(), name);
    }

    /// Writes `input` to the process's standard input (it must be piped) and closes it.
    pub fn feed(&mut self, input: &[u8]) {
        let mut stdin = self.child.stdin.take().expect("stdin is piped");
        stdin.write_all(input).unwrap();
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("wait for heat-pipeline");
        }
        self.exited
    }

    /// Waits for the process to exit, at most `patience`: its exit status, or `None` if it
    /// still runs.
    pub async fn exit_within(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit (at most `patience`, or the test fails) and returns
    /// how it ended, with what it wrote.
    pub async fn finish(mut self, patience: Duration) -> Ran {
        let Some(status) = self.exit_within(patience).await else {
            panic!("heat-pipeline still runs after {patience:?}");
        };
        let collect = |pipe: Option<JoinHandle<Vec<u8>>>, stream| {
            let bytes = pipe.map(|reader| reader.join().unwrap());
            text(bytes.unwrap_or_default(), stream)
        };
        Ran {
            status,
            stdout: collect(self.stdout.take(), "stdout"),
            stderr: collect(self.stderr.take(), "stderr"),
        }
    }

    /// Sends SIGTERM and checks that the process drains and exits 0 in time (its stderr in
    /// the failure, when captured).
    pub async fn terminate(mut self) -> Ran {
        self.signal("TERM");
        let Some(status) = self.exit_within(SHUTDOWN_PATIENCE).await else {
            panic!("no exit within {SHUTDOWN_PATIENCE:?} of SIGTERM");
        };
        let ran = self.finish(Duration::ZERO).await;
        assert!(
            status.success(),
            "exit {status} after SIGTERM; stderr:\n{}",
            ran.stderr
        );
        ran
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends signal `name` (`TERM`, `KILL`, `STOP`, `CONT`, ...) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address (`127.0.0.1:port`) nothing listens on right now.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}
