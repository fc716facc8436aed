//! What an operator meets first, through the binary: a mistake in the settings ends the
//! process at once with one line that names the setting, and the log stream can close
//! without taking the process with it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::process::{command, Process};
use crate::helpers::*;

/// How soon a refused start-up must end the process.
const PATIENCE: Duration = Duration::from_secs(15);

/// Runs `run all` with the pipeline's environment changed by `env` and returns its exit
/// code and stderr, failing if it still runs after [`PATIENCE`].
async fn refused_start(pipeline: &TestPipeline, env: &[(&'static str, String)]) -> (i32, String) {
    let mut settings = pipeline.env();
    settings.retain(|(name, _)| !env.iter().any(|(n, _)| n == name));
    settings.extend(env.iter().cloned());
    let started = Instant::now();
    let process = Process::start(
        command(&settings, &["run", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let ran = process.finish(PATIENCE).await;
    eprintln!("exited in {:?}", started.elapsed());
    (ran.status.code().unwrap_or(-1), ran.stderr)
}

/// The last line, which must be the one error line; and nothing from lapin before it.
fn error_line(stderr: &str) -> &str {
    assert!(
        !stderr.contains("lapin"),
        "lapin's own log is off:\n{stderr}"
    );
    stderr.lines().last().unwrap_or_default()
}

#[tokio::test]
async fn a_wrong_amqp_password_ends_the_process_naming_the_setting() {
    let pipeline = TestPipeline::new("op-password").await;
    let wrong = pipeline
        .services
        .amqp_url
        .replacen(":guest@", ":not-the-password@", 1);
    assert_ne!(
        wrong, pipeline.services.amqp_url,
        "the test broker uses guest"
    );
    let (code, stderr) = refused_start(&pipeline, &[("AMQP_URL", wrong)]).await;
    assert_eq!(code, 1, "{stderr}");
    let line = error_line(&stderr);
    assert!(line.starts_with("error: RabbitMQ at"), "{stderr}");
    assert!(
        line.contains("AMQP_URL") && line.contains("AMQP_PASSWORD_FILE"),
        "{line}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_missing_vhost_ends_the_process_naming_the_setting() {
    let pipeline = TestPipeline::new("op-vhost").await;
    let url = pipeline.services.amqp_url.clone();
    let base = url.rsplit_once('/').expect("a vhost path").0;
    let (code, stderr) =
        refused_start(&pipeline, &[("AMQP_URL", format!("{base}/no-such-vhost"))]).await;
    assert_eq!(code, 1, "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("virtual host") && line.contains("AMQP_URL"),
        "{line}"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_delivery_limit_unlike_the_queues_ends_the_process_with_how_to_migrate() {
    let pipeline = TestPipeline::new("op-limit").await;
    let (code, stderr) = refused_start(&pipeline, &[("DELIVERY_LIMIT", "7".into())]).await;
    assert_eq!(code, 1, "{stderr}");
    let line = error_line(&stderr);
    assert!(
        line.contains("DELIVERY_LIMIT") && line.contains("docs/OPERATIONS.md"),
        "{line}"
    );

    let zero = pipeline.run(&["status"]);
    assert!(zero.status.success(), "{zero:?}");
    let mut env = pipeline.env();
    env.push(("DELIVERY_LIMIT", "0".into()));
    let ran = crate::helpers::process::run(&mut command(&env, &["status"]));
    assert_eq!(ran.status.code(), Some(2), "{ran:?}");
    assert!(ran.stderr.contains("delivery-limit"), "{ran:?}");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_closed_log_stream_leaves_the_process_running_and_sigterm_still_stops_it() {
    let pipeline = TestPipeline::new("op-pipe").await;
    let mut child = command(&pipeline.env(), &["run", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start heat-pipeline");
    // Read the first line, then close the stream, as `| head -1` does.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    drop(stderr);
    let process = Process::adopt(child);
    // Every later log line now meets a closed pipe; the work goes on.
    pipeline.publish(SEED_INPUT).await;
    pipeline.assert_seed_records().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    process.terminate().await;
    pipeline.stop().await;
}

/// An etcd outage under traffic tells its story in three lines, not one per message per
/// retry: etcd stopped answering, (a summary every 30 s while it lasts), etcd answers again
/// with how long and how many messages waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_is_one_line_going_and_one_coming_back() {
    let mut etcd = crate::helpers::faults::PrivateEtcd::start().await;
    let pipeline = TestPipeline::with_services("op-outage", etcd.services(&services().await)).await;
    let process = pipeline.start_process(&["run", "all", "--concurrency", "8"]);
    pipeline.publish(SEED_INPUT).await;
    pipeline.assert_seed_records().await;

    etcd.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..20 {
        pipeline
            .publish(&heat_result(
                "create",
                &format!("outage-{n}"),
                1,
                "CREATE_COMPLETE",
                "",
            ))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    etcd.resume_service().await;
    for n in 0..20 {
        pipeline.wait_for_state(&format!("outage-{n}"), 1).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ran = process.terminate().await;

    let lines = |needle: &str| ran.stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("etcd stopped answering"), 1, "{}", ran.stderr);
    assert_eq!(lines("etcd answers again"), 1, "{}", ran.stderr);
    assert_eq!(
        lines("store unavailable"),
        0,
        "no line per retry:\n{}",
        ran.stderr
    );
    let back = ran
        .stderr
        .lines()
        .find(|l| l.contains("etcd answers again"))
        .unwrap();
    assert!(!back.contains("waited=0"), "messages waited: {back}");
    let etcd_lines = ran.stderr.lines().filter(|l| l.contains("etcd")).count();
    assert!(
        etcd_lines <= 4,
        "{etcd_lines} lines about etcd:\n{}",
        ran.stderr
    );
    pipeline.stop().await;
}
