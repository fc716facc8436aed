//! The `heat-pipeline` binary as users run it: one process per stage, or `run all`, and the
//! `publish` and `show` commands.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_heat-pipeline");

fn command(pipeline: &TestPipeline, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).envs(pipeline.env());
    command
}

fn spawn(pipeline: &TestPipeline, args: &[&str]) -> Child {
    command(pipeline, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start heat-pipeline")
}

/// Sends SIGTERM and checks the process drains and exits 0 in time.
fn terminate(mut child: Child) {
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "exit {status} after SIGTERM; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        assert!(Instant::now() < deadline, "no exit within 40 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(pipeline: &TestPipeline, args: &[&str]) -> Output {
    command(pipeline, args).output().expect("run heat-pipeline")
}

#[tokio::test]
async fn three_stage_processes_produce_the_seed_records() {
    let pipeline = TestPipeline::new("processes").await;
    let stages: Vec<Child> = ["capture", "normalize", "wrap"]
        .iter()
        .map(|stage| spawn(&pipeline, &["run", stage]))
        .collect();

    let published = run(&pipeline, &["publish", "examples/heat_result.port.json"]);
    assert!(published.status.success(), "{published:?}");
    assert!(String::from_utf8_lossy(&published.stdout).starts_with("1 of 1 message(s) confirmed"));

    pipeline.assert_seed_records().await;

    let shown = run(&pipeline, &["show", "ports", SEED_ID]);
    assert!(shown.status.success());
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(
        shown.contains(std::str::from_utf8(SEED_STATE).unwrap()),
        "{shown}"
    );
    // job_state was removed by wrap; show prints its last value from etcd's history.
    assert!(
        shown.contains("(absent: removed when the job finished"),
        "{shown}"
    );
    assert!(
        shown.contains(std::str::from_utf8(SEED_JOB_STATE).unwrap()),
        "{shown}"
    );

    for child in stages {
        terminate(child);
    }
    pipeline.stop().await;
}

#[tokio::test]
async fn run_all_processes_json_lines_from_stdin_and_exits_0_on_sigterm() {
    let pipeline = TestPipeline::new("run-all").await;
    let all = spawn(&pipeline, &["run", "all", "--concurrency", "8"]);

    let lines: Vec<String> = (1..=20)
        .map(|n| {
            String::from_utf8(heat_result(
                "create",
                &format!("r-{n}"),
                1,
                "CREATE_COMPLETE",
                "",
            ))
            .unwrap()
        })
        .collect();
    let mut publish = command(&pipeline, &["publish", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    publish
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let output = publish.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("20 of 20"));

    for n in 1..=20 {
        pipeline.wait_for_state(&format!("r-{n}"), 1).await;
    }
    terminate(all);
    pipeline.stop().await;
}

#[tokio::test]
async fn publish_names_the_file_and_line_of_invalid_input() {
    let pipeline = TestPipeline::new("publish-errors").await;
    let dir = std::env::temp_dir().join(unique_name("publish"));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jsonl");
    let good = String::from_utf8(heat_result("create", "a", 1, "CREATE_COMPLETE", "")).unwrap();
    std::fs::write(&bad, format!("{good}\n{{\"job\": \n")).unwrap();

    let output = run(&pipeline, &["publish", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.jsonl:3: invalid JSON"), "{stderr}");

    let invalid = dir.join("invalid.json");
    std::fs::write(&invalid, "{\"job\": {\"action\": \"create\"}}").unwrap();
    let output = run(&pipeline, &["publish", invalid.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid.json:1: not a Heat result"),
        "{stderr}"
    );

    // Nothing reached the queue: the command checks every document before publishing.
    assert_eq!(
        pipeline
            .ready_count(
                &pipeline
                    .topology
                    .queue(heat_pipeline::stages::StageName::Capture)
            )
            .await,
        0
    );
    std::fs::remove_dir_all(&dir).unwrap();
    pipeline.stop().await;
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["publish", "--help"],
        &["show", "--help"],
        &["status", "--help"],
        &["dlq", "--help"],
        &["dlq", "replay", "--help"],
        &["healthcheck", "--help"],
    ] {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Usage:"), "{help}");
        assert!(
            !help.contains("guest:guest"),
            "--help must not print a password"
        );
    }
}
