//! Clusters: a 3-node RabbitMQ cluster with quorum queues on every node and a 3-member etcd
//! cluster (`scripts/cluster.sh`), two processes per stage, and one node lost while a
//! stream of results flows. Counted as RabbitMQ's Jepsen tests count: every result whose
//! publish the broker confirmed ends in its records (lost = 0), no record is wrong, and
//! nothing is dead-lettered; the time from the fault to a drained pipeline is printed (and
//! reported to `scripts/chaos.sh --cluster`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::cluster::{rabbit_node, Cluster};
use crate::helpers::faults::*;
use crate::helpers::process::Process;
use crate::helpers::*;
use heat_pipeline::stages::StageName;

/// Results in each stream: 1,000 resources, versions 1 and 2.
const RESOURCES: usize = 1000;
const VERSIONS: u64 = 2;
/// Published at this rate, so the stream lasts long enough for the fault to land in it.
const RATE_PER_SECOND: u64 = 200;
/// The fault lands once this share of the stream is confirmed.
const FAULT_AT: f64 = 0.2;
/// How long the pipeline may take to drain after the fault.
const DRAIN_PATIENCE: Duration = Duration::from_secs(240);

/// One run: the cluster, a pipeline on it, two processes per stage logging to files.
struct Run {
    cluster: Cluster,
    pipeline: TestPipeline,
    processes: Vec<Process>,
    logs: PathBuf,
}

impl Run {
    async fn start(test: &str) -> Run {
        let cluster = Cluster::fresh().await;
        let pipeline = TestPipeline::with_services(test, cluster.services()).await;
        let logs = std::env::temp_dir().join(unique_name(test));
        std::fs::create_dir_all(&logs).unwrap();
        let mut processes = Vec::new();
        for stage in ["capture", "normalize", "wrap"] {
            for n in 1..=2 {
                let log = File::create(logs.join(format!("{stage}-{n}.log"))).unwrap();
                processes.push(Process::start(
                    pipeline
                        .command(&["run", stage])
                        .env("RUST_LOG", "info")
                        .stdout(log.try_clone().unwrap())
                        .stderr(log),
                ));
            }
        }
        Run {
            cluster,
            pipeline,
            processes,
            logs,
        }
    }

    /// The RabbitMQ node most stage processes are connected to now (their last
    /// "connected to the broker" log line).
    fn busiest_rabbit(&self) -> String {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.logs).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let node = text
                .lines()
                .rev()
                .filter(|l| l.contains("connected to the broker"))
                .filter_map(|l| l.split("node=").nth(1))
                .find_map(|url| rabbit_node(url.split_whitespace().next()?));
            if let Some(node) = node {
                *count.entry(node).or_default() += 1;
            }
        }
        eprintln!("stage processes per node: {count:?}");
        count
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(node, _)| node)
            .expect("the stage processes logged their broker node")
    }

    /// The node that leads most of the three stage queues.
    async fn stage_queue_leader(&self) -> String {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for stage in StageName::ALL {
            let leader = self
                .cluster
                .queue_leader(&self.pipeline.topology.queue(stage))
                .await;
            *count.entry(leader).or_default() += 1;
        }
        eprintln!("stage queue leaders: {count:?}");
        count.into_iter().max_by_key(|(_, n)| *n).unwrap().0
    }

    /// Publishes the stream at [`RATE_PER_SECOND`], injects `fault` once [`FAULT_AT`] of it
    /// is confirmed, and checks what the pipeline ends with.
    async fn stream_with_fault(mut self, name: &str, fault: Fault) {
        let (sent, bodies) = workload(name, RESOURCES, VERSIONS);
        let confirmed = Arc::new(AtomicUsize::new(0));
        let publisher = tokio::spawn(publish_paced(
            self.pipeline.services.amqp_url.as_str().into(),
            self.pipeline.topology.input_exchange().to_string(),
            bodies,
            RATE_PER_SECOND,
            confirmed.clone(),
        ));
        let at = (sent.values().map(Vec::len).sum::<usize>() as f64 * FAULT_AT) as usize;
        while confirmed.load(Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let injected = Instant::now();
        self.inject(&fault).await;
        let fault_took = injected.elapsed();
        let published = publisher.await.expect("the publisher panicked");
        let tally = self.drain(&sent).await;
        let drained = injected.elapsed();
        // The test's own connection may have been on the lost node.
        self.pipeline.reconnect().await;
        let tally = Tally {
            dead_lettered: self.pipeline.dead_letters().await,
            ..tally
        };
        eprintln!(
            "{name}: {published} results confirmed; fault took {fault_took:?}; drained \
             {drained:?} after the fault; {tally:?}"
        );
        report_recovery(name, published, sent.len(), &tally, drained);
        assert_eq!(tally.lost, 0, "{name}: a confirmed result was lost");
        assert_eq!(tally.correct, sent.len(), "{name}: every record right");
        assert_eq!(tally.dead_lettered, 0, "{name}: nothing dead-lettered");
        assert_eq!(tally.leftover_job_state, 0, "{name}: no job_state left");
        for process in std::mem::take(&mut self.processes) {
            process.terminate().await;
        }
        let _ = std::fs::remove_dir_all(&self.logs);
        self.pipeline.stop().await;
    }

    /// Waits until every resource is right (or [`DRAIN_PATIENCE`] runs out), reading etcd
    /// only: the test's own broker connection may be on the node that was lost.
    async fn drain(&self, sent: &Sent) -> Tally {
        let deadline = Instant::now() + DRAIN_PATIENCE;
        loop {
            let tally = self.pipeline.tally_records(sent).await;
            let done = tally.correct == sent.len() && tally.leftover_job_state == 0;
            if done || Instant::now() > deadline {
                return tally;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Appends a row with the recovery time to the chaos report (`CHAOS_REPORT`).
fn report_recovery(fault: &str, sent: usize, resources: usize, tally: &Tally, took: Duration) {
    report(fault, sent, resources, tally);
    let Ok(path) = std::env::var("CHAOS_REPORT") else {
        return;
    };
    let path = Path::new(&path).with_extension("recovery");
    let line = format!("{fault}\t{:.1}\n", took.as_secs_f64());
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

/// The faults of the cluster tests.
enum Fault {
    /// SIGKILL the RabbitMQ node most stage processes are connected to; it stays down.
    KillBusiestRabbit,
    /// SIGKILL the node that leads most stage queues; it stays down.
    KillQueueLeader,
    /// SIGKILL the etcd leader; it stays down.
    KillEtcdLeader,
    /// SIGSTOP the busiest RabbitMQ node for this long, then SIGCONT.
    PauseBusiestRabbit(Duration),
    /// SIGKILL the busiest RabbitMQ node, and start it again after this long.
    BounceBusiestRabbit(Duration),
}

impl Fault {
    /// The name of its test's pipeline (the prefix of its queues and keys).
    fn test_name(&self) -> &'static str {
        match self {
            Fault::KillBusiestRabbit => "cluster-kill-busiest",
            Fault::KillQueueLeader => "cluster-kill-leader",
            Fault::KillEtcdLeader => "cluster-kill-etcd",
            Fault::PauseBusiestRabbit(_) => "cluster-pause",
            Fault::BounceBusiestRabbit(_) => "cluster-bounce",
        }
    }
}

/// The fault in words, as its test's report names it.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillBusiestRabbit => f.write_str("cluster: kill -9 the busiest RabbitMQ node"),
            Fault::KillQueueLeader => f.write_str("cluster: kill -9 the stage queues' leader"),
            Fault::KillEtcdLeader => f.write_str("cluster: kill -9 the etcd leader"),
            Fault::PauseBusiestRabbit(pause) => {
                write!(f, "cluster: SIGSTOP a RabbitMQ node {} s", pause.as_secs())
            }
            Fault::BounceBusiestRabbit(_) => {
                f.write_str("cluster: kill a RabbitMQ node, start it again")
            }
        }
    }
}

impl Run {
    async fn inject(&self, fault: &Fault) {
        match fault {
            Fault::KillBusiestRabbit => self.cluster.act("kill", &self.busiest_rabbit()).await,
            Fault::KillQueueLeader => {
                let node = self.stage_queue_leader().await;
                self.cluster.act("kill", &node).await
            }
            Fault::KillEtcdLeader => {
                let leader = self.cluster.etcd_leader().await;
                self.cluster.act("kill", &leader).await
            }
            Fault::PauseBusiestRabbit(pause) => {
                let node = self.busiest_rabbit();
                self.cluster.act("pause", &node).await;
                tokio::time::sleep(*pause).await;
                self.cluster.act("resume", &node).await;
            }
            Fault::BounceBusiestRabbit(down) => {
                let node = self.busiest_rabbit();
                self.cluster.act("kill", &node).await;
                tokio::time::sleep(*down).await;
                self.cluster.act("start", &node).await;
            }
        }
    }
}

/// Streams results through a fresh cluster while `fault` strikes, and checks nothing is lost.
async fn cluster_test(fault: Fault) {
    let _serial = SERIAL.lock().await;
    let run = Run::start(fault.test_name()).await;
    run.stream_with_fault(&fault.to_string(), fault).await;
}

#[tokio::test]
async fn losing_the_busiest_rabbitmq_node_loses_nothing() {
    cluster_test(Fault::KillBusiestRabbit).await;
}

#[tokio::test]
async fn losing_the_node_that_leads_the_stage_queues_loses_nothing() {
    cluster_test(Fault::KillQueueLeader).await;
}

#[tokio::test]
async fn losing_the_etcd_leader_loses_nothing() {
    cluster_test(Fault::KillEtcdLeader).await;
}

#[tokio::test]
async fn a_rabbitmq_node_paused_for_20_s_loses_nothing() {
    cluster_test(Fault::PauseBusiestRabbit(Duration::from_secs(20))).await;
}

#[tokio::test]
async fn a_rabbitmq_node_killed_and_back_mid_stream_loses_nothing() {
    cluster_test(Fault::BounceBusiestRabbit(Duration::from_secs(5))).await;
}
