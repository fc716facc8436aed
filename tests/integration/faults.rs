//! Faults a production site sees, injected for real: a broker restart, an etcd outage, a
//! frozen etcd, SIGKILL and SIGTERM of stage processes. Each test ends with a tally of the
//! final records (and a row for `scripts/chaos.sh` when `CHAOS_REPORT` is set).
//!
//! Each test disturbs only services it started itself: a private broker
//! ([`PrivateRabbit`]) for the broker restarts, a private etcd ([`PrivateEtcd`]) for the etcd
//! outages, its own child processes for the signals. They need the packages that
//! `scripts/setup.sh` installs (`rabbitmq-server`, `etcd-server`), and run one at a time:
//! each loads the machine's two cores with thousands of messages.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::faults::*;
use crate::helpers::process::{Process, SHUTDOWN_PATIENCE};
use crate::helpers::rabbit::PrivateRabbit;
use crate::helpers::*;
use heat_pipeline::stages::StageName;

/// The shared etcd, with `broker` instead of the shared RabbitMQ.
async fn private(broker: &PrivateRabbit) -> Services {
    Services {
        amqp_url: broker.url.clone(),
        ..services().await
    }
}

/// How long a stream may take to settle once a fault is over.
const SETTLE_PATIENCE: Duration = Duration::from_secs(180);

/// A pipeline on an etcd of its own, each etcd request bounded by `etcd_timeout`, with
/// `concurrency` deliveries at a time per stage.
async fn on_private_etcd(
    test: &str,
    etcd_timeout: Duration,
    concurrency: u16,
) -> (PrivateEtcd, TestPipeline) {
    let etcd = PrivateEtcd::start().await;
    let mut pipeline = TestPipeline::with_services(test, etcd.services(&services().await)).await;
    pipeline.etcd_timeout = etcd_timeout;
    pipeline.start_stages(concurrency).await;
    (etcd, pipeline)
}

/// The stream a fault strikes: a [`workload`], all published.
struct Load {
    sent: Sent,
    messages: usize,
}

impl Load {
    /// Publishes a [`workload`] and waits until at least `progress` of its resources have
    /// a /state: the stream is flowing.
    async fn flowing(
        pipeline: &TestPipeline,
        (sent, bodies): (Sent, Vec<Vec<u8>>),
        progress: usize,
    ) -> Load {
        for body in &bodies {
            pipeline.publish(body).await;
        }
        let deadline = Instant::now() + PATIENCE;
        while pipeline.tally_records(&sent).await.present < progress {
            assert!(Instant::now() < deadline, "the pipeline made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Load {
            sent,
            messages: bodies.len(),
        }
    }

    /// Waits up to `patience` for the stream to settle, checks that `fault` lost nothing
    /// of it, and stops the pipeline.
    async fn settled(&self, pipeline: TestPipeline, fault: &str, patience: Duration) {
        let tally = pipeline.settle(&self.sent, patience).await;
        self.assert_nothing_lost(fault, &tally);
        pipeline.stop().await;
    }

    fn assert_nothing_lost(&self, fault: &str, tally: &Tally) {
        let (sent, messages) = (&self.sent, self.messages);
        report(fault, messages, sent.len(), tally);
        eprintln!("{fault}: {messages} messages, {tally:?}");
        assert_eq!(
            tally.correct,
            sent.len(),
            "{fault}: every resource ends at its highest version"
        );
        assert_eq!(tally.lost, 0);
        assert_eq!(
            tally.dead_lettered, 0,
            "{fault}: a transient fault never dead-letters"
        );
        assert_eq!(
            tally.duplicated, 0,
            "{fault}: no /state was written twice for one version"
        );
        assert_eq!(
            tally.leftover_job_state, 0,
            "{fault}: every finished job's job_state is gone"
        );
    }
}

#[tokio::test]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let fault = "RabbitMQ restart mid-stream";
    // One message at a time per stage, so that the broker goes down mid-stream.
    let broker = PrivateRabbit::start().await;
    let mut pipeline = TestPipeline::with_services("broker-restart", private(&broker).await).await;
    pipeline.start_stages(1).await;
    let load = Load::flowing(&pipeline, workload("b", 2000, 1), 10).await;

    broker.stop_app().await;
    let done = pipeline.tally_records(&load.sent).await.present;
    eprintln!(
        "broker stopped with {done} of {} resources done",
        load.sent.len()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.start_app().await;
    pipeline.reconnect().await;

    load.settled(pipeline, fault, SETTLE_PATIENCE).await;
}

/// A broker restart while every stage is idle: no ack or publish fails to tell a stage
/// its connection is gone, so each must notice by itself and come back for the next
/// result.
#[tokio::test]
async fn idle_stages_come_back_after_a_broker_restart() {
    let _serial = SERIAL.lock().await;
    let broker = PrivateRabbit::start().await;
    let mut pipeline =
        TestPipeline::with_services("broker-restart-idle", private(&broker).await).await;
    pipeline.start_stages(4).await;
    pipeline
        .publish(&heat_result("create", "idle-1", 1, "CREATE_COMPLETE", ""))
        .await;
    pipeline.wait_for_state("idle-1", 1).await;

    broker.stop_app().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.start_app().await;
    pipeline.reconnect().await;

    pipeline
        .publish(&heat_result("create", "idle-2", 1, "CREATE_COMPLETE", ""))
        .await;
    pipeline.wait_for_state("idle-2", 1).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn an_etcd_outage_pauses_the_stages_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let fault = "etcd stopped for 10 s";
    let (mut etcd, pipeline) = on_private_etcd("etcd-outage", Duration::from_secs(1), 16).await;
    let load = Load::flowing(&pipeline, workload("e", 2000, 1), 50).await;

    etcd.stop();
    let capture_queue = pipeline.topology.queue(StageName::Capture);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ready_early = pipeline.ready_count(&capture_queue).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    let ready_late = pipeline.ready_count(&capture_queue).await;
    let mut dead_during_outage = 0;
    for stage in StageName::ALL {
        dead_during_outage += pipeline
            .ready_count(&pipeline.topology.dead_queue(stage))
            .await;
    }
    etcd.resume_service().await;

    // Back-pressure: with the store down, capture took no new work (its in-flight messages
    // waited in their retry loops) and nothing was dead-lettered.
    assert_eq!(
        ready_early, ready_late,
        "capture kept consuming while etcd was down"
    );
    assert_eq!(dead_during_outage, 0);

    load.settled(pipeline, fault, SETTLE_PATIENCE).await;
}

#[tokio::test]
async fn a_frozen_etcd_times_out_as_a_transient_error() {
    let _serial = SERIAL.lock().await;
    let fault = "etcd frozen for 4 s (timeouts)";
    let (etcd, pipeline) = on_private_etcd("etcd-slow", Duration::from_millis(500), 8).await;
    let load = Load::flowing(&pipeline, workload("slow", 500, 1), 20).await;

    etcd.freeze();
    tokio::time::sleep(Duration::from_secs(4)).await;
    etcd.thaw();

    load.settled(pipeline, fault, Duration::from_secs(120))
        .await;
}

fn spawn_stage(pipeline: &TestPipeline, stage: &str, extra: &[&str]) -> Process {
    Process::start(
        pipeline
            .command(&["run", stage, "--concurrency", "8"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
}

#[tokio::test]
async fn a_stage_killed_with_sigkill_is_finished_by_another() {
    let _serial = SERIAL.lock().await;
    let pipeline = TestPipeline::new("sigkill").await;
    let capture = spawn_stage(&pipeline, "capture", &[]);
    let normalize = spawn_stage(&pipeline, "normalize", &[]);
    let wrap_a = spawn_stage(&pipeline, "wrap", &[]);
    let wrap_b = spawn_stage(&pipeline, "wrap", &[]);

    let load = Load::flowing(&pipeline, workload("k", 500, 4), 50).await;

    // Kill a wrap (its twin carries on) and capture (restarted), mid-stream.
    wrap_a.kill();
    capture.kill();
    let capture = spawn_stage(&pipeline, "capture", &[]);

    let tally = pipeline.settle(&load.sent, SETTLE_PATIENCE).await;
    for child in [capture, normalize, wrap_b] {
        child.terminate().await; // exit 0
    }
    load.assert_nothing_lost("SIGKILL of capture and of one of two wraps", &tally);
    pipeline.stop().await;
}

#[tokio::test]
async fn sigterm_under_load_drains_in_time_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let pipeline = TestPipeline::new("sigterm").await;
    let drain = Duration::from_secs(5);
    let mut all = spawn_stage(&pipeline, "all", &["--drain-timeout", "5s"]);
    let load = Load::flowing(&pipeline, workload("t", 2000, 1), 100).await;

    let asked = Instant::now();
    all.signal("TERM");
    let status = all
        .exit_within(SHUTDOWN_PATIENCE)
        .await
        .expect("exit after SIGTERM");
    let took = asked.elapsed();
    eprintln!("SIGTERM: exit {status} after {took:?}");
    assert!(status.success(), "exit 0 after SIGTERM");
    assert!(
        took < drain + Duration::from_secs(5),
        "drained within the deadline ({took:?})"
    );

    // Whatever it did not finish went back to the queues: a new process finishes it.
    let again = spawn_stage(&pipeline, "all", &[]);
    let tally = pipeline.settle(&load.sent, SETTLE_PATIENCE).await;
    again.terminate().await; // exit 0
    load.assert_nothing_lost("SIGTERM under load, then restart", &tally);
    pipeline.stop().await;
}
