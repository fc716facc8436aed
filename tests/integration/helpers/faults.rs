//! Fault injection for the fault tests: a private etcd that can be stopped, started and
//! frozen, and the tally of what a run ended with. (The private broker is `rabbit.rs`.)

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use heat_pipeline::amqp::{self, AmqpConfig};
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::stages::StageName;

use super::{heat_result, Services, TestPipeline, PATIENCE};

#[path = "../../common/private_etcd.rs"]
mod private_etcd;
pub use private_etcd::{connect_when_up, PrivateEtcd};

impl PrivateEtcd {
    /// Services with this etcd in place of the shared one.
    pub fn services(&self, base: &Services) -> Services {
        Services {
            amqp_url: base.amqp_url.clone(),
            etcd_endpoints: vec![self.endpoint.clone()],
        }
    }
}

/// The end state of a fault test.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Resources with a /state of any version (progress).
    pub present: usize,
    /// Resources whose /state holds the highest version published, with the right content.
    pub correct: usize,
    /// Resources without a /state, or with an older version than the highest.
    pub lost: usize,
    /// Messages in the dead-letter queues.
    pub dead_lettered: usize,
    /// /state records written more often than there were versions to write.
    pub duplicated: usize,
    /// job_state records left behind although their job finished.
    pub leftover_job_state: usize,
}

/// One heavy test at a time (the fault and cluster tests): each loads the machine's two
/// cores with thousands of messages, and one's load would blur another's timing.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Published results: resource id → every version sent for it.
pub type Sent = BTreeMap<String, Vec<u64>>;

/// `resources` resources, each created at versions 1 to `versions`, published version by
/// version (as upstream would over time).
pub fn workload(prefix: &str, resources: usize, versions: u64) -> (Sent, Vec<Vec<u8>>) {
    let mut sent = Sent::new();
    let mut bodies = Vec::new();
    for version in 1..=versions {
        for n in 0..resources {
            let id = format!("{prefix}-{n}");
            bodies.push(heat_result("create", &id, version, "CREATE_COMPLETE", ""));
            sent.entry(id).or_default().push(version);
        }
    }
    (sent, bodies)
}

/// Publishes every body in order to `exchange`, at most `per_second`, each until the broker
/// confirms it: a failed publish (its node died) reconnects, to any node of `broker`, and
/// publishes the same body again. Counts each confirmed body in `confirmed`; returns how
/// many were confirmed (all of them).
pub async fn publish_paced(
    broker: AmqpConfig,
    exchange: String,
    bodies: Vec<Vec<u8>>,
    per_second: u64,
    confirmed: Arc<AtomicUsize>,
) -> usize {
    let interval = Duration::from_micros(1_000_000 / per_second);
    let mut session = None;
    for body in &bodies {
        let started = Instant::now();
        loop {
            if session.is_none() {
                if let Ok((connection, _)) = amqp::connect(&broker, "test publisher").await {
                    let channel = amqp::confirm_channel(&connection).await.ok();
                    session = channel.map(|channel| (connection, channel));
                }
            }
            let Some((_, channel)) = &session else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let key = StageName::Capture.routing_key();
            match amqp::publish_confirmed(channel, &exchange, key, body, input_properties()).await {
                Ok(()) => break,
                Err(_) => session = None,
            }
        }
        confirmed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
    bodies.len()
}

impl TestPipeline {
    /// Reads the end state of every resource in `sent`, dead letters included.
    pub async fn tally(&self, sent: &Sent) -> Tally {
        let mut tally = self.tally_records(sent).await;
        tally.dead_lettered = self.dead_letters().await;
        tally
    }

    /// Messages in the stages' dead-letter queues.
    pub async fn dead_letters(&self) -> usize {
        let mut dead = 0;
        for stage in StageName::ALL {
            dead += self.ready_count(&self.topology.dead_queue(stage)).await as usize;
        }
        dead
    }

    /// [`TestPipeline::tally`] from etcd alone (works while the broker is down).
    pub async fn tally_records(&self, sent: &Sent) -> Tally {
        let state_prefix = self.keys.state("ports", "");
        let response = self
            .get_retrying(&state_prefix, GetOptions::new().with_prefix())
            .await;
        let mut tally = Tally::default();
        let mut found = BTreeMap::new();
        for item in response.kvs() {
            let id = item
                .key_str()
                .unwrap()
                .trim_start_matches(&state_prefix)
                .to_string();
            found.insert(id, (item.value().to_vec(), item.version()));
        }
        for (id, versions) in sent {
            let highest = *versions.iter().max().unwrap();
            match found.get(id) {
                Some((value, writes)) => {
                    tally.present += 1;
                    let state: serde_json::Value = serde_json::from_slice(value).unwrap();
                    let outputs = state["state"]["heat_outputs"].as_str().unwrap();
                    let right = state["version"] == highest
                        && state["state"]["worker_state"] == "CREATE_COMPLETED"
                        && outputs.contains(&format!("\"output_value\": {highest},"));
                    if right {
                        tally.correct += 1;
                    } else {
                        tally.lost += 1;
                    }
                    let mut distinct = versions.clone();
                    distinct.sort_unstable();
                    distinct.dedup();
                    if *writes as usize > distinct.len() {
                        tally.duplicated += 1;
                    }
                }
                None => tally.lost += 1,
            }
        }
        let job_state_prefix = self.keys.job_state("ports", "");
        let response = self
            .get_retrying(
                &job_state_prefix,
                GetOptions::new().with_prefix().with_count_only(),
            )
            .await;
        tally.leftover_job_state = response.count() as usize;
        tally
    }

    /// A read that an etcd member's death or an election does not fail: tried again (on
    /// another member, as the client balances) until [`PATIENCE`] runs out.
    async fn get_retrying(&self, key: &str, options: GetOptions) -> etcd_client::GetResponse {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.etcd.kv_client().get(key, Some(options.clone())).await {
                Ok(response) => return response,
                Err(error) => {
                    assert!(Instant::now() < deadline, "etcd read of {key}: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Waits until every resource in `sent` is correct (or the patience runs out), then
    /// returns the tally either way, so the test can report before it asserts.
    pub async fn settle(&self, sent: &Sent, patience: Duration) -> Tally {
        let deadline = Instant::now() + patience;
        loop {
            let tally = self.tally_records(sent).await;
            if tally.correct == sent.len() && tally.leftover_job_state == 0
                || Instant::now() > deadline
            {
                return self.tally(sent).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Appends a row to the chaos report (`CHAOS_REPORT`, one JSON object per line) when set.
pub fn report(fault: &str, sent_messages: usize, resources: usize, tally: &Tally) {
    let Ok(path) = std::env::var("CHAOS_REPORT") else {
        return;
    };
    let row = serde_json::json!({
        "fault": fault,
        "sent": sent_messages,
        "resources": resources,
        "correct": tally.correct,
        "lost": tally.lost,
        "dead_lettered": tally.dead_lettered,
        "duplicated": tally.duplicated,
        "leftover_job_state": tally.leftover_job_state,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{row}").unwrap();
}
