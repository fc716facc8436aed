//! One fault while a stream of results flows, counted: what was sent, what ended right,
//! lost or dead-lettered, whether a `/state` ever went back, how long the drain took.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use heat_pipeline::amqp::{AmqpConfig, Topology};
use heat_pipeline::keys::Keyspace;

use super::faults::{Fault, Undo};
use super::history::History;
use super::stack::Stack;
use crate::helpers::faults::{publish_paced, workload};
use crate::helpers::{unique_name, Services, TestPipeline};

/// Each stream: 200 resources, versions 1 to 5, version by version (1,000 results)...
const RESOURCES: usize = 200;
const VERSIONS: u64 = 5;
/// ...offered at this rate, so that it flows before, through and after a 30 s fault.
const RATE_PER_SECOND: u64 = 25;
/// The fault lands once this many results are confirmed.
const FAULT_AT: usize = 125;
/// How long the pipeline may take to drain once the fault is over.
const DRAIN_PATIENCE: Duration = Duration::from_secs(180);

/// A test pipeline that observes the stack's stages, which run with the default
/// `PIPELINE_NAME` and no key prefix. Never `stop()` it: that would delete their queues.
pub async fn observer(services: Services) -> TestPipeline {
    let mut pipeline = TestPipeline::with_services("compose", services).await;
    pipeline.topology = Topology::new("heat-pipeline", 20);
    pipeline.keys = Keyspace::new(String::new(), "v2.0");
    pipeline
}

/// One row of the fault table.
#[derive(Debug)]
pub struct Row {
    pub fault: String,
    pub sent: usize,
    pub resources: usize,
    pub correct: usize,
    pub lost: usize,
    pub dead_lettered: usize,
    /// `/state` writes that went back to an older version (or removed a record).
    pub went_back: Vec<String>,
    /// `/state` writes per second while the fault held.
    pub writes_per_second: f64,
    /// Packets the fault's iptables rules dropped.
    pub dropped: Option<u64>,
    /// From the network's return to every resource right and no job_state left.
    pub drain: Duration,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.correct == self.resources
            && self.lost == 0
            && self.dead_lettered == 0
            && self.went_back.is_empty()
    }
}

/// Streams results at [`RATE_PER_SECOND`], injects `fault` once [`FAULT_AT`] are confirmed,
/// and counts what the stack ends with.
pub async fn run_fault(stack: &mut Stack, fault: Fault) -> Row {
    // etcd is read through a member the fault leaves alone.
    let (_leader, follower) = stack.etcd_roles().await;
    let mut pipeline = observer(stack.services(&follower).await).await;
    let dead_before = pipeline.dead_letters().await;
    let id_prefix = unique_name("f");
    let (sent, bodies) = workload(&id_prefix, RESOURCES, VERSIONS);
    let state_prefix = pipeline.keys.state("ports", &format!("{id_prefix}-"));
    let (now, _) = revisions(&pipeline, &state_prefix).await;
    let history = History::watch(pipeline.etcd.clone(), state_prefix.clone(), now);

    let confirmed = Arc::new(AtomicUsize::new(0));
    let broker = AmqpConfig::from(pipeline.services.amqp_url.as_str());
    let exchange = pipeline.topology.input_exchange().to_string();
    let publisher = tokio::spawn(publish_paced(
        broker,
        exchange,
        bodies,
        RATE_PER_SECOND,
        confirmed.clone(),
    ));
    while confirmed.load(Ordering::Relaxed) < FAULT_AT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("compose: {}", fault.name());
    let (injected, writes_before) = (Instant::now(), history.writes());
    let mut undo = Undo::new(stack);
    let dropped = fault.inject(stack, &mut undo).await;
    let held = injected.elapsed().as_secs_f64();
    let writes_per_second = (history.writes() - writes_before) as f64 / held;
    let healed = Instant::now();
    stack.refresh();
    let published = publisher.await.expect("the publisher panicked");
    // The observer's own connection may have been on a node that was cut off.
    pipeline.reconnect().await;
    let tally = pipeline.settle(&sent, DRAIN_PATIENCE).await;
    let drain = healed.elapsed();
    let (_, upto) = revisions(&pipeline, &state_prefix).await;
    let went_back = history.finish(upto).await;
    Row {
        fault: fault.name(),
        sent: published,
        resources: sent.len(),
        correct: tally.correct,
        lost: tally.lost,
        dead_lettered: pipeline.dead_letters().await - dead_before,
        went_back,
        writes_per_second,
        dropped,
        drain,
    }
}

/// The store's revision now, and that of the last write under `prefix` (0: none).
async fn revisions(pipeline: &TestPipeline, prefix: &str) -> (i64, i64) {
    let options = GetOptions::new().with_prefix().with_keys_only();
    let mut kv = pipeline.etcd.kv_client();
    let response = kv.get(prefix, Some(options)).await.unwrap();
    let last = response.kvs().iter().map(|kv| kv.mod_revision()).max();
    (response.header().unwrap().revision(), last.unwrap_or(0))
}

/// The table, as `scripts/compose-test.sh` prints it.
pub fn print_table(rows: &[Row]) {
    println!(
        "\nfaults ({RESOURCES} resources x {VERSIONS} versions each, offered at \
         {RATE_PER_SECOND}/s; the fault lands after {FAULT_AT})"
    );
    println!("| fault | sent | correct | lost | dead-lettered | went back | /state writes/s in fault | packets dropped | s to drain* |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let dropped = row.dropped.map_or("-".to_string(), |n| n.to_string());
        println!(
            "| {} | {} | {}/{} | {} | {} | {} | {:.1} | {} | {:.1} |",
            row.fault,
            row.sent,
            row.correct,
            row.resources,
            row.lost,
            row.dead_lettered,
            row.went_back.len(),
            row.writes_per_second,
            dropped,
            row.drain.as_secs_f64()
        );
    }
    println!("* from the network's (or the service's) return to every resource's /state at its last version and no job_state left");
}
