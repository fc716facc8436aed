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
