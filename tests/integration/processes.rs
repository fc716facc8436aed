//! The `heat-pipeline` binary as users run it: one process per stage, or `run all`, and the
//! `publish` and `show` commands.

use std::process::Stdio;

use crate::helpers::process::{command, run, Process};
use crate::helpers::*;

#[tokio::test]
async fn three_stage_processes_produce_the_seed_records() {
    let pipeline = TestPipeline::new("processes").await;
    let stages: Vec<Process> = ["capture", "normalize", "wrap"]
        .iter()
        .map(|stage| pipeline.start_process(&["run", stage]))
        .collect();

    let published = pipeline.run(&["publish", "examples/heat_result.port.json"]);
    assert!(published.status.success(), "{published:?}");
    assert!(published.stdout.starts_with("1 of 1 message(s) confirmed"));

    pipeline.assert_seed_records().await;

    let shown = pipeline.run(&["show", &format!("ports/{SEED_ID}")]);
    assert!(shown.status.success());
    let shown = shown.stdout;
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
        child.terminate().await;
    }
    pipeline.stop().await;
}

#[tokio::test]
async fn run_all_processes_json_lines_from_stdin_and_exits_0_on_sigterm() {
    let pipeline = TestPipeline::new("run-all").await;
    let all = pipeline.start_process(&["run", "all", "--concurrency", "8"]);

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
    let mut publish = Process::start(
        pipeline
            .command(&["publish", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    publish.feed(lines.join("\n").as_bytes());
    let output = publish.finish(PATIENCE).await;
    assert!(output.status.success());
    assert!(output.stdout.starts_with("20 of 20"));

    for n in 1..=20 {
        pipeline.wait_for_state(&format!("r-{n}"), 1).await;
    }
    all.terminate().await;
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

    let output = pipeline.run(&["publish", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = output.stderr;
    assert!(stderr.contains("bad.jsonl:3: invalid JSON"), "{stderr}");

    let invalid = dir.join("invalid.json");
    std::fs::write(&invalid, "{\"job\": {\"action\": \"create\"}}").unwrap();
    let output = pipeline.run(&["publish", invalid.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = output.stderr;
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
        let output = run(&mut command(&[], args));
        assert!(output.status.success(), "{args:?}");
        let help = output.stdout;
        assert!(help.contains("Usage:"), "{help}");
        assert!(
            !help.contains("guest:guest"),
            "--help must not print a password"
        );
    }
}
