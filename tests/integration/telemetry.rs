//! What operators see: /metrics, /healthz and /readyz (with its transitions when etcd goes
//! away and comes back), the healthcheck command, JSON logs and the trace context carried
//! across the three stage processes.

use std::time::{Duration, Instant};

use crate::helpers::faults::PrivateEtcd;
use crate::helpers::process::{command, free_addr, spawn, Process};
use crate::helpers::*;
use heat_pipeline::amqp;
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::stages::StageName;

/// GET `url`: the status (0 when nothing answers) and the body.
pub(crate) fn get(url: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    match agent.get(url).call() {
        Ok(mut response) => {
            let status = response.status().as_u16();
            (
                status,
                response.body_mut().read_to_string().unwrap_or_default(),
            )
        }
        Err(_) => (0, String::new()),
    }
}

fn wait_for_status(url: &str, want: u16) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = get(url);
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still answers {status} ({body}), want {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the sample whose line has all of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let pipeline = TestPipeline::new("metrics").await;
    let addr = free_addr();
    let mut env = pipeline.env();
    env.push(("HTTP_ADDR", addr.clone()));
    let process = spawn(&env, &["run", "all"]);

    wait_for_status(&format!("http://{addr}/healthz"), 200);
    wait_for_status(&format!("http://{addr}/readyz"), 200);
    pipeline.publish(SEED_INPUT).await;
    pipeline.publish(b"not json").await;
    pipeline
        .wait_for(&pipeline.keys.state("ports", SEED_ID), |_| true)
        .await;
    pipeline.take_dead_letters(StageName::Capture, 1).await;

    // A message is counted after its ack, which follows the record and the dead letter the
    // test has already seen: scrape until both are counted.
    let counted = |metrics: &str| {
        let done = |stage: &str, outcome: &str| {
            let labels = [
                format!("stage=\"{stage}\""),
                format!("outcome=\"{outcome}\""),
            ];
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            sample(metrics, "heat_pipeline_messages_total", &labels) == Some(1.0)
        };
        done("wrap", "written") && done("capture", "dead_lettered")
    };
    let deadline = Instant::now() + PATIENCE;
    let metrics = loop {
        let (status, metrics) = get(&format!("http://{addr}/metrics"));
        assert_eq!(status, 200);
        if counted(&metrics) || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for stage in ["capture", "normalize", "wrap"] {
        let stage_label = format!("stage=\"{stage}\"");
        assert_eq!(
            sample(
                &metrics,
                "heat_pipeline_messages_total",
                &[&stage_label, "outcome=\"written\""]
            ),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            sample(
                &metrics,
                "heat_pipeline_processing_seconds_count",
                &[&stage_label]
            )
            .map(|n| n >= 1.0),
            Some(true)
        );
        assert!(sample(
            &metrics,
            "heat_pipeline_etcd_request_seconds_count",
            &[&stage_label, "op=\"commit\""]
        )
        .is_some());
        assert_eq!(
            sample(&metrics, "heat_pipeline_ready", &[&stage_label]),
            Some(1.0)
        );
        assert_eq!(
            sample(&metrics, "heat_pipeline_in_flight", &[&stage_label]),
            Some(0.0)
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "heat_pipeline_messages_total",
            &["stage=\"capture\"", "outcome=\"dead_lettered\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "heat_pipeline_rejections_total",
            &["stage=\"capture\"", "class=\"malformed_json\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "heat_pipeline_end_to_end_seconds_count",
            &["stage=\"wrap\""]
        ),
        Some(1.0)
    );
    assert!(
        metrics.contains("# HELP heat_pipeline_messages_total"),
        "metrics are described"
    );

    let healthcheck = |url: String| {
        command(&[], &["healthcheck", "--url", &url])
            .status()
            .unwrap()
    };
    assert!(healthcheck(format!("http://{addr}/readyz")).success());
    assert!(
        !healthcheck(format!("http://{}/readyz", free_addr())).success(),
        "nothing listening: exit 1"
    );

    process.terminate().await;
    pipeline.stop().await;
}

#[tokio::test]
async fn readiness_follows_an_etcd_outage() {
    let mut etcd = PrivateEtcd::start().await;
    let pipeline = TestPipeline::with_services("readyz", etcd.services(&services().await)).await;
    let addr = free_addr();
    let mut env = pipeline.env();
    env.push(("HTTP_ADDR", addr.clone()));
    env.push(("ETCD_TIMEOUT", "1s".into()));
    let process = spawn(&env, &["run", "all"]);
    let readyz = format!("http://{addr}/readyz");

    wait_for_status(&readyz, 200);
    etcd.stop();
    let reason = wait_for_status(&readyz, 503);
    assert!(reason.contains("etcd"), "{reason}");
    assert_eq!(
        get(&format!("http://{addr}/healthz")).0,
        200,
        "alive while not ready"
    );
    etcd.resume_service().await;
    wait_for_status(&readyz, 200);

    process.terminate().await;
    pipeline.stop().await;
}

#[tokio::test]
async fn the_trace_context_follows_a_result_through_three_processes_in_json_logs() {
    let pipeline = TestPipeline::new("trace").await;
    let mut env = pipeline.env();
    env.push(("LOG_FORMAT", "json".into()));
    env.push(("RUST_LOG", "heat_pipeline=debug".into()));
    let stages: Vec<Process> = ["capture", "normalize", "wrap"]
        .iter()
        .map(|stage| spawn(&env, &["run", stage]))
        .collect();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut headers = input_properties().headers().clone().unwrap_or_default();
    headers.insert(
        "traceparent".into(),
        amqp::long_string(&format!("00-{trace_id}-00f067aa0ba902b7-01")),
    );
    amqp::publish_confirmed(
        &pipeline.channel,
        pipeline.topology.input_exchange(),
        StageName::Capture.routing_key(),
        SEED_INPUT,
        input_properties().with_headers(headers),
    )
    .await
    .unwrap();
    pipeline
        .wait_for(&pipeline.keys.state("ports", SEED_ID), |_| true)
        .await;

    for (stage, child) in ["capture", "normalize", "wrap"].iter().zip(stages) {
        let logs = child.terminate().await.stderr;
        let done: Vec<serde_json::Value> = logs
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|_| panic!("not JSON: {line}"))
            })
            .filter(|line| line["fields"]["message"] == "done")
            .collect();
        assert_eq!(done.len(), 1, "{stage}: {logs}");
        let span = &done[0]["span"];
        assert_eq!(span["trace_id"], trace_id, "{stage}: {logs}");
        assert_eq!(span["stage"], *stage);
        assert_eq!(span["id"], SEED_ID);
        assert_eq!(span["version"], 1);
    }
    pipeline.stop().await;
}
