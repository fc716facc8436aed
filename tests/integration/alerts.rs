//! Every alert of deploy/prometheus/alerts.yaml, tested by promtool against the series a
//! real running process exposes (scraped from its /metrics), not series written by hand:
//! a rule that names a series the process does not export, or one that appears too late
//! for `rate()` to see it rise, fails here.
//!
//! The process runs capture and normalize (no wrap: the stage-down alert), audits every
//! second (a job_state wrap never removes: the stuck-jobs alert) and gets one message it
//! can never process (the dead-letter alert). The rules' annotations are the hand-written
//! test's business (alerts.test.yaml); this one checks which alerts fire with which labels.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use heat_pipeline::app::{App, AppConfig, AuditEvery};
use heat_pipeline::runner::RunOptions;
use heat_pipeline::stages::StageName;
use heat_pipeline::store::StoreConfig;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::telemetry::get;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yaml");

/// A scrape: each sample's series (name and labels, as exposed) and value.
type Scrape = BTreeMap<String, String>;

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(&format!("http://{addr}/metrics"));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_string(), value.to_string()))
        .collect()
}

/// Scrapes until `ready` holds, at most a minute (the queue counts come every 15 s).
async fn scrape_until(addr: SocketAddr, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let samples = scrape(addr);
        if ready(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} after a minute: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn value(samples: &Scrape, series: &str) -> Option<f64> {
    samples.get(series).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_fires_on_what_a_running_process_exposes() {
    let promtool = Command::new("promtool").arg("--version").output();
    assert!(
        promtool.is_ok_and(|o| o.status.success()),
        "promtool is missing: scripts/install-check-tools.sh installs it"
    );
    let pipeline = TestPipeline::new("alerts").await;
    let config = AppConfig {
        amqp: pipeline.services.amqp_url.as_str().into(),
        store: StoreConfig::new(
            pipeline.services.etcd_endpoints.clone(),
            Duration::from_secs(5),
        ),
        topology: pipeline.topology.clone(),
        keys: pipeline.keys.clone(),
        stages: vec![StageName::Capture, StageName::Normalize],
        options: RunOptions {
            concurrency: 4,
            ..RunOptions::default()
        },
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        audit: Some(AuditEvery {
            every: Duration::from_secs(1),
            older_than: Duration::from_secs(1),
        }),
    };
    let app = App::build(config).await.expect("build the app");
    let addr = app.http_addr();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    // Idle: every series a rule reads is there at 0 for each stage the process runs.
    let idle = scrape_until(addr, "ready stages", |s| {
        value(s, r#"heat_pipeline_ready{stage="capture"}"#) == Some(1.0)
            && value(s, r#"heat_pipeline_ready{stage="normalize"}"#) == Some(1.0)
    })
    .await;
    for stage in ["capture", "normalize"] {
        for series in [
            format!(r#"heat_pipeline_dead_letters{{stage="{stage}"}}"#),
            format!(r#"heat_pipeline_queue_ready{{stage="{stage}"}}"#),
            format!(r#"heat_pipeline_messages_total{{stage="{stage}",outcome="dead_lettered"}}"#),
            format!(r#"heat_pipeline_messages_total{{stage="{stage}",outcome="written"}}"#),
            format!(r#"heat_pipeline_retries_total{{stage="{stage}",cause="store"}}"#),
            format!(r#"heat_pipeline_reconnects_total{{stage="{stage}"}}"#),
        ] {
            assert_eq!(value(&idle, &series), Some(0.0), "{series} in {idle:#?}");
        }
    }

    // One message no stage can process, and one job that wrap never finishes.
    pipeline.publish(b"not json").await;
    pipeline.publish(SEED_INPUT).await;
    let busy = scrape_until(addr, "dead letter and stuck job", |s| {
        value(s, r#"heat_pipeline_dead_letters{stage="capture"}"#) == Some(1.0)
            && value(s, "heat_pipeline_stuck_jobs").unwrap_or(0.0) >= 1.0
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().expect("the app stops cleanly");

    let dir = tempfile_dir("alerts");
    std::fs::write(dir.join("alerts.yaml"), without_annotations(RULES)).unwrap();
    std::fs::write(dir.join("test.yaml"), promtool_test(&idle, &busy)).unwrap();
    let tested = Command::new("promtool")
        .args(["test", "rules", "test.yaml"])
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    let said = String::from_utf8_lossy(&tested.stdout).into_owned()
        + &String::from_utf8_lossy(&tested.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(tested.status.success(), "promtool test rules:\n{said}");
    pipeline.stop().await;
}

/// A promtool unit test: the idle scrape's values for 3 minutes, then the busy scrape's
/// for half an hour, as one target's series; and which alerts must fire at the end.
fn promtool_test(idle: &Scrape, busy: &Scrape) -> String {
    let rules = std::fs::read_to_string(RULES).unwrap();
    let mut series = String::new();
    // The series the rules read (a metric's name as the rules write it).
    let used = busy.iter().filter(|(name, _)| {
        let metric = name.split('{').next().unwrap_or_default();
        let base = metric.trim_end_matches("_bucket");
        rules.contains(metric) || rules.contains(&format!("{base}_bucket"))
    });
    for (name, after) in used {
        let before = idle.get(name).unwrap_or(after);
        let labelled = match name.split_once('{') {
            Some((metric, labels)) => {
                format!(r#"{metric}{{instance="hp:9464", job="heat-pipeline", {labels}"#)
            }
            None => format!(r#"{name}{{instance="hp:9464", job="heat-pipeline"}}"#),
        };
        series.push_str(&format!(
            "      - series: '{labelled}'\n        values: '{before}+0x2 {after}+0x30'\n"
        ));
    }
    let firing = |alert: &str, labels: &[&str]| {
        let labels: String = labels
            .iter()
            .map(|l| format!("              {l}\n"))
            .collect();
        let expected = if labels.is_empty() {
            "        exp_alerts: []\n".to_string()
        } else {
            format!("        exp_alerts:\n          - exp_labels:\n{labels}")
        };
        format!("      - eval_time: 30m\n        alertname: {alert}\n{expected}")
    };
    let checks = [
        firing(
            "HeatPipelineDeadLetters",
            &["severity: warning", "stage: capture"],
        ),
        firing(
            "HeatPipelineStageDown",
            &["severity: critical", "stage: wrap"],
        ),
        firing("HeatPipelineStuckJobs", &["severity: warning"]),
        firing("HeatPipelineNotReady", &[]),
        firing("HeatPipelineStoreRetries", &[]),
        firing("HeatPipelineLagging", &[]),
    ]
    .concat();
    let named = rules.matches("- alert: ").count();
    assert_eq!(named, 6, "a new alert in {RULES} needs its check here");
    format!(
        "rule_files:\n  - alerts.yaml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    \
         input_series:\n{series}    alert_rule_test:\n{checks}"
    )
}

/// The rules file without its `annotations:` blocks (each the lines indented deeper than
/// the key that opens it).
fn without_annotations(path: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut kept = String::new();
    let mut skipping: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(depth) = skipping {
            if line.trim().is_empty() || indent > depth {
                continue;
            }
            skipping = None;
        }
        if line.trim_start().starts_with("annotations:") {
            skipping = Some(indent);
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

fn tempfile_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name(test));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(Path::new(&dir).is_dir());
    dir
}
