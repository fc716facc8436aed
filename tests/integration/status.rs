//! `heat-pipeline status`: counts read from the broker by passive declares, missing queues
//! reported (exit 1) rather than failing the command, and never the password.

use crate::helpers::process::{run, Ran};
use crate::helpers::*;
use heat_pipeline::amqp;
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::ops::status::{PipelineStatus, QueueCounts, StageStatus};
use heat_pipeline::stages::StageName;
use lapin::options::QueueDeleteOptions;
use lapin::types::FieldTable;

fn status(pipeline: &TestPipeline, args: &[&str], env: &[(&str, &str)]) -> Ran {
    run(pipeline
        .command(&["status"])
        .args(args)
        .envs(env.iter().copied())
        // The default log filter, as a user has it.
        .env_remove("RUST_LOG"))
}

fn json(output: &Ran) -> serde_json::Value {
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", output.stdout))
}

/// The row of `stage` in the text table, split into its cells.
fn row(text: &str, stage: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().map(String::as_str) == Some(stage))
        .unwrap_or_else(|| panic!("no row for {stage}:\n{text}"))
}

#[tokio::test]
async fn status_counts_ready_messages_dead_letters_and_consumers() {
    let mut pipeline = TestPipeline::new("status").await;
    // Two results, left waiting in capture's queue (no stage runs).
    for id in ["s-1", "s-2"] {
        pipeline
            .publish(&heat_result("create", id, 1, "CREATE_COMPLETE", ""))
            .await;
    }
    // Dead-lettered as the runner does it: to the dead exchange, routing key = stage name.
    amqp::publish_confirmed(
        &pipeline.channel,
        &pipeline.topology.dead_exchange(),
        StageName::Capture.as_str(),
        b"not json",
        input_properties().with_headers(FieldTable::default()),
    )
    .await
    .unwrap();
    pipeline
        .wait_ready(&pipeline.topology.queue(StageName::Capture), 2)
        .await;
    pipeline
        .wait_ready(&pipeline.topology.dead_queue(StageName::Capture), 1)
        .await;

    let output = status(&pipeline, &["--format", "json"], &[]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["pipeline"], pipeline.name.as_str(), "{report}");
    let stages = report["stages"].as_array().unwrap();
    let names: Vec<_> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["capture", "normalize", "wrap"]);
    assert_eq!(
        stages[0],
        serde_json::json!({"stage": "capture", "ready": 2, "consumers": 0, "dead": 1})
    );
    for stage in &stages[1..] {
        assert_eq!(stage["ready"], 0, "{stage}");
        assert_eq!(stage["consumers"], 0, "{stage}");
        assert_eq!(stage["dead"], 0, "{stage}");
    }

    pipeline.start_stages(4).await;
    for id in ["s-1", "s-2"] {
        pipeline.wait_for_state(id, 1).await;
    }
    let output = status(&pipeline, &[], &[]);
    assert!(output.status.success(), "{output:?}");
    let text = output.stdout;
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert_eq!(
        header,
        format!(
            "pipeline {} on {}",
            pipeline.name,
            amqp::redact_url(&pipeline.services.amqp_url)
        )
    );
    assert!(header.contains(":****@"), "{header}");
    assert!(!text.contains(":guest@"), "no password: {text}");
    assert_eq!(
        row(&text, "stage"),
        ["stage", "ready", "consumers", "dead"],
        "{text}"
    );
    for stage in StageName::ALL {
        let cells = row(&text, stage.as_str());
        assert_eq!(cells.len(), 4, "{text}");
        let consumers: u32 = cells[2].parse().unwrap();
        assert!(consumers >= 1, "{stage} has no consumer:\n{text}");
        let dead = if stage == StageName::Capture {
            "1"
        } else {
            "0"
        };
        assert_eq!(cells[3], dead, "{text}");
    }
    pipeline.stop().await;
}

#[tokio::test]
async fn an_unknown_pipeline_reports_missing_queues_and_exits_1() {
    let pipeline = TestPipeline::new("status-missing").await;
    let unknown = unique_name("status-no-such-pipeline");
    let env = [("PIPELINE_NAME", unknown.as_str())];

    let output = status(&pipeline, &[], &env);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = output.stdout;
    assert!(
        text.starts_with(&format!("pipeline {unknown} on ")),
        "{text}"
    );
    for stage in StageName::ALL {
        assert_eq!(
            row(&text, stage.as_str())[1..],
            ["missing", "missing", "missing"],
            "{text}"
        );
    }
    let err = output.stderr;
    assert!(
        err.contains(&format!("{unknown}.capture, {unknown}.capture.dead")),
        "{err}"
    );
    // Our one line, without lapin's log of each channel the broker closed.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains(":guest@") && !text.contains(":guest@"));

    let output = status(&pipeline, &["--format", "json"], &env);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = json(&output);
    assert_eq!(
        report["stages"][2],
        serde_json::json!({"stage": "wrap", "ready": null, "consumers": null, "dead": null})
    );

    // One missing queue among existing ones: the rest are still counted.
    let dead = pipeline.topology.dead_queue(StageName::Wrap);
    pipeline
        .channel
        .queue_delete(dead.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let output = status(&pipeline, &["--format", "json"], &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = json(&output);
    assert_eq!(report["stages"][0]["dead"], 0, "{report}");
    assert_eq!(
        report["stages"][2],
        serde_json::json!({"stage": "wrap", "ready": 0, "consumers": 0, "dead": null})
    );
    let err = output.stderr;
    assert!(err.contains(&format!("missing queue(s): {dead} ")), "{err}");
    pipeline.stop().await;
}

#[test]
fn the_table_is_aligned_and_marks_missing_queues() {
    let stage = |stage: StageName, counts: Option<(u32, u32)>, dead| StageStatus {
        stage,
        queue: format!("hp.{stage}"),
        counts: counts.map(|(ready, consumers)| QueueCounts { ready, consumers }),
        dead_queue: format!("hp.{stage}.dead"),
        dead,
    };
    let status = PipelineStatus {
        pipeline: "hp".into(),
        broker: "amqp://guest:****@127.0.0.1:5672/%2f".into(),
        stages: vec![
            stage(StageName::Capture, Some((0, 2)), Some(0)),
            stage(StageName::Normalize, Some((12, 1)), None),
            stage(StageName::Wrap, None, Some(1)),
        ],
    };
    assert_eq!(
        status.to_string(),
        "pipeline hp on amqp://guest:****@127.0.0.1:5672/%2f\n\
         stage        ready  consumers     dead\n\
         capture          0          2        0\n\
         normalize       12          1  missing\n\
         wrap       missing    missing        1\n"
    );
    assert_eq!(status.missing(), ["hp.normalize.dead", "hp.wrap"]);
    assert_eq!(
        status.to_json(),
        serde_json::json!({"pipeline": "hp", "stages": [
            {"stage": "capture", "ready": 0, "consumers": 2, "dead": 0},
            {"stage": "normalize", "ready": 12, "consumers": 1, "dead": null},
            {"stage": "wrap", "ready": null, "consumers": null, "dead": 1},
        ]})
    );
}
