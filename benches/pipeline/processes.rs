//! The pipeline under test: the release binary, started as child processes.

use std::process::{Child, Command, Stdio};

use super::{concurrency, Args};

/// A pipeline process of the benchmark, with the address of its metrics endpoint.
pub struct Process {
    pub label: String,
    pub http: String,
    pub child: Child,
}

pub fn spawn_pipeline(args: &Args, env: &[(&str, &str)]) -> Vec<Process> {
    let spawn = |stage: &str| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = format!("127.0.0.1:{port}");
        let child = Command::new(&args.binary)
            .args([
                "run",
                stage,
                "--concurrency",
                &concurrency(args).to_string(),
            ])
            .args(["--http-addr", &http])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pipeline (cargo build --release first)");
        Process {
            label: stage.to_string(),
            http,
            child,
        }
    };
    if args.processes == 0 {
        vec![spawn("all")]
    } else {
        let mut all = Vec::new();
        for stage in ["capture", "normalize", "wrap"] {
            for _ in 0..args.processes {
                all.push(spawn(stage));
            }
        }
        all
    }
}

/// Stops `processes`: SIGTERM, as a service manager would, then SIGKILL for any still
/// running after 30 s (a soak stopped with a backlog must not hang the bench).
pub fn stop(processes: &mut [Process]) {
    for process in processes.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &process.child.id().to_string()])
            .status();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for process in processes.iter_mut() {
        loop {
            match process.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        println!("warning: {} exited with {status}", process.label);
                    }
                    break;
                }
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => {
                    println!("warning: {} did not stop in 30 s: killed", process.label);
                    let _ = process.child.kill();
                    let _ = process.child.wait();
                    break;
                }
            }
        }
    }
}

/// A process the bench started is never left behind: a panic or an early return drops it,
/// and it is killed (after a normal stop it has been waited for, and this does nothing).
impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
