//! Every alert of deploy/prometheus/alerts.yaml, tested by promtool against the series a
//! real running process exposes (scraped from its /metrics), not series written by hand:
//! a rule that names a series the process does not export, or one that appears too late
//! for `rate()` to see it rise, fails here.
//!
//! Two processes run as production runs them, as child processes of this test (so that
//! nothing another test registered in this binary's process-wide recorder leaks into the
//! scrape): `run capture`, which also audits every second (a job_state wrap never removes:
//! the stuck-jobs alert) and gets one message it can never process (the dead-letter alert),
//! and `run normalize`. No process runs wrap: the stage-down alert. The rules' annotations
//! are the hand-written test's business (alerts.test.yaml); this one checks which alerts
//! fire with which labels.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::process::free_addr;
use crate::helpers::*;
use crate::telemetry::get;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yaml");

/// A scrape of every process: each sample's series (name and labels, with the process's
/// `instance` label first, as Prometheus would store it) and value.
type Scrape = BTreeMap<String, String>;

/// The processes scraped, each by its `instance` label and its HTTP address.
type Targets = [(&'static str, String)];

fn scrape(targets: &Targets) -> Scrape {
    let mut samples = Scrape::new();
    for (instance, addr) in targets {
        let (status, body) = get(&format!("http://{addr}/metrics"));
        assert_eq!(status, 200, "{body}");
        let lines = body
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty());
        for (series, value) in lines.filter_map(|line| line.rsplit_once(' ')) {
            let series = match series.split_once('{') {
                Some((metric, labels)) => format!(r#"{metric}{{instance="{instance}",{labels}"#),
                None => format!(r#"{series}{{instance="{instance}"}}"#),
            };
            samples.insert(series, value.to_string());
        }
    }
    samples
}

/// Scrapes until `ready` holds, at most a minute (the queue counts come every 15 s).
async fn scrape_until(targets: &Targets, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // A process that is still starting has no endpoint yet.
        let up = targets
            .iter()
            .all(|(_, addr)| std::net::TcpStream::connect(addr).is_ok());
        if up {
            let samples = scrape(targets);
            if ready(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after a minute: {samples:#?}"
            );
        } else {
            assert!(Instant::now() < deadline, "no endpoint after a minute");
        }
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
    let targets = [("capture", free_addr()), ("normalize", free_addr())];
    let capture = pipeline.start_process(&[
        "run",
        "capture",
        "--concurrency=4",
        "--audit-every=1s",
        "--audit-older-than=1s",
        &format!("--http-addr={}", targets[0].1),
    ]);
    let normalize = pipeline.start_process(&[
        "run",
        "normalize",
        "--concurrency=4",
        &format!("--http-addr={}", targets[1].1),
    ]);

    // Idle: every series a rule reads is there at 0 for each stage a process runs.
    let idle = scrape_until(&targets, "ready stages", |s| {
        ["capture", "normalize"].iter().all(|stage| {
            let ready = format!(r#"heat_pipeline_ready{{instance="{stage}",stage="{stage}"}}"#);
            value(s, &ready) == Some(1.0)
        })
    })
    .await;
    for stage in ["capture", "normalize"] {
        let labels = format!(r#"instance="{stage}",stage="{stage}""#);
        for series in [
            format!(r#"heat_pipeline_dead_letters{{{labels}}}"#),
            format!(r#"heat_pipeline_queue_ready{{{labels}}}"#),
            format!(r#"heat_pipeline_messages_total{{{labels},outcome="dead_lettered"}}"#),
            format!(r#"heat_pipeline_messages_total{{{labels},outcome="written"}}"#),
            format!(r#"heat_pipeline_retries_total{{{labels},cause="store"}}"#),
            format!(r#"heat_pipeline_reconnects_total{{{labels}}}"#),
        ] {
            assert_eq!(value(&idle, &series), Some(0.0), "{series} in {idle:#?}");
        }
    }

    // One message no stage can process, and one job that wrap never finishes.
    pipeline.publish(b"not json").await;
    pipeline.publish(SEED_INPUT).await;
    let busy = scrape_until(&targets, "dead letter and stuck job", |s| {
        let dead = r#"heat_pipeline_dead_letters{instance="capture",stage="capture"}"#;
        let stuck = r#"heat_pipeline_stuck_jobs{instance="capture"}"#;
        value(s, dead) == Some(1.0) && value(s, stuck).unwrap_or(0.0) >= 1.0
    })
    .await;
    for process in [capture, normalize] {
        process.terminate().await;
    }

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
/// for half an hour, as the targets' series; and which alerts must fire at the end.
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
        // Every scraped series has its instance label; the job's is the scrape config's.
        let labelled = name.replacen('{', r#"{job="heat-pipeline","#, 1);
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
