//! Test helpers: each test spawns the real pipeline against real services, isolated by its
//! own `PIPELINE_NAME` and `ETCD_KEY_PREFIX`.
//!
//! # Sharing the services
//!
//! Every test of the binary runs at the same time as the others, against the same RabbitMQ
//! and etcd; isolation by name keeps their data apart. No test stops, restarts or changes a
//! service it did not start: a test that disturbs a broker or an etcd starts its own
//! ([`rabbit::PrivateRabbit`], [`faults::PrivateEtcd`]) and passes it in with
//! [`TestPipeline::with_services`]. So the tests need no lock on the shared services.

pub mod cluster;
pub mod faults;
pub mod pki;
pub mod process;
pub mod rabbit;
pub mod raw_amqp;
mod services;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::Client;
use heat_pipeline::amqp::{self, header_str, Topology};
use heat_pipeline::app::{App, AppConfig, AppError};
use heat_pipeline::keys::Keyspace;
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::runner::RunOptions;
use heat_pipeline::stages::StageName;
use heat_pipeline::store::StoreConfig;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use services::{services, Services};

pub const SEED_INPUT: &[u8] = include_bytes!("../../fixtures/seed/heat_result.port.json");
pub const SEED_HEAT_STACKS: &[u8] = include_bytes!("../../fixtures/seed/heat_stacks.port.bytes");
pub const SEED_JOB_STATE: &[u8] = include_bytes!("../../fixtures/seed/job_state.port.bytes");
pub const SEED_STATE: &[u8] = include_bytes!("../../fixtures/seed/state.port.bytes");
pub const SEED_ID: &str = "23464cbc-d910-430a-93f7-3776ea07f992";

/// How long a test waits for the pipeline before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Fails unless `text` holds `needle`, showing the whole text.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

/// A name no other test (or earlier run) uses.
pub fn unique_name(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("hp-test-{test}-{}-{nanos:x}-{n}", std::process::id())
}

/// With `TEST_LOG` set (an `EnvFilter`, e.g. `info,heat_pipeline=debug`), the in-process
/// stages log through the test harness's capture: shown for a failing test, or with
/// `--nocapture`. Without it they log nothing.
pub fn init_test_logging() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// One isolated pipeline: its own exchange and queues, its own key prefix.
pub struct TestPipeline {
    pub services: Services,
    pub name: String,
    pub prefix: String,
    pub keys: Keyspace,
    pub topology: Topology,
    pub etcd: Client,
    /// Per-request etcd timeout of the in-process stages.
    pub etcd_timeout: Duration,
    connection: Connection,
    pub channel: Channel,
    shutdown: CancellationToken,
    /// The in-process `App`s ([`TestPipeline::start_stages`]): the production wiring.
    apps: JoinSet<Result<(), AppError>>,
    /// Where the last started `App` serves `/metrics`, `/healthz` and `/readyz`.
    pub http_addr: Option<SocketAddr>,
}

impl TestPipeline {
    /// Declares the topology but runs no stage (for tests that start processes).
    pub async fn new(test: &str) -> TestPipeline {
        TestPipeline::with_services(test, services().await).await
    }

    /// Like [`TestPipeline::new`], with other services (a private etcd, say).
    pub async fn with_services(test: &str, services: Services) -> TestPipeline {
        TestPipeline::open(test, services).await
    }

    async fn open(test: &str, services: Services) -> TestPipeline {
        init_test_logging();
        let name = unique_name(test);
        let prefix = format!("/{name}");
        let topology = Topology::new(name.clone(), 20);
        let (connection, _node) = amqp::connect(&services.amqp_url.as_str().into(), "test")
            .await
            .expect("connect to RabbitMQ");
        let channel = amqp::confirm_channel(&connection).await.unwrap();
        topology.declare(&channel).await.unwrap();
        let etcd = Client::connect(&services.etcd_endpoints, None)
            .await
            .expect("connect to etcd");
        TestPipeline {
            keys: Keyspace::new(prefix.clone(), "v2.0"),
            services,
            name,
            prefix,
            topology,
            etcd,
            etcd_timeout: Duration::from_secs(5),
            connection,
            channel,
            shutdown: CancellationToken::new(),
            apps: JoinSet::new(),
            http_addr: None,
        }
    }

    /// Starts all three stages in this process, `concurrency` messages at once each.
    pub async fn spawn(test: &str, concurrency: u16) -> TestPipeline {
        let mut pipeline = TestPipeline::new(test).await;
        pipeline.start_stages(concurrency).await;
        pipeline
    }

    /// Runs all three stages in this process as production runs them: one [`App`], with
    /// its own HTTP endpoints on a free port (kept in [`TestPipeline::http_addr`]).
    pub async fn start_stages(&mut self, concurrency: u16) {
        let config = AppConfig {
            amqp: self.services.amqp_url.as_str().into(),
            store: StoreConfig::new(self.services.etcd_endpoints.clone(), self.etcd_timeout),
            topology: self.topology.clone(),
            keys: self.keys.clone(),
            stages: StageName::ALL.to_vec(),
            options: RunOptions {
                concurrency,
                ..RunOptions::default()
            },
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            audit: None,
        };
        let app = App::build(config).await.expect("build the app");
        self.http_addr = Some(app.http_addr());
        self.apps.spawn(app.run(self.shutdown.clone()));
    }

    /// Opens a new connection for the test's own use (after a broker restart killed it).
    pub async fn reconnect(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // A node just back may accept the connection and reset it a moment later, so
            // opening the channel is part of the attempt.
            let attempt = async {
                let (connection, _node) =
                    amqp::connect(&self.services.amqp_url.as_str().into(), "test").await?;
                let channel = amqp::confirm_channel(&connection).await?;
                Ok::<_, lapin::Error>((connection, channel))
            };
            match attempt.await {
                Ok((connection, channel)) => {
                    self.channel = channel;
                    self.connection = connection;
                    return;
                }
                Err(error) => {
                    assert!(Instant::now() < deadline, "broker still down: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Environment for a `heat-pipeline` child process of this pipeline.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AMQP_URL", self.services.amqp_url.clone()),
            ("ETCD_ENDPOINTS", self.services.etcd_endpoints.join(",")),
            ("PIPELINE_NAME", self.name.clone()),
            ("ETCD_KEY_PREFIX", self.prefix.clone()),
            ("RUST_LOG", "info".into()),
            // Many processes at once: each serves its endpoints on a free port.
            ("HTTP_ADDR", "127.0.0.1:0".into()),
        ]
    }

    /// Publishes a body as upstream does.
    pub async fn publish(&self, body: &[u8]) {
        amqp::publish_confirmed(
            &self.channel,
            self.topology.input_exchange(),
            StageName::Capture.routing_key(),
            body,
            input_properties(),
        )
        .await
        .expect("publish");
    }

    /// Publishes a body straight onto a stage's queue, as the pipeline would (to test its
    /// decoding).
    pub async fn publish_to(&self, stage: StageName, body: &[u8]) {
        let (exchange, routing_key) = self.topology.route(stage);
        amqp::publish_confirmed(
            &self.channel,
            &exchange,
            routing_key,
            body,
            input_properties(),
        )
        .await
        .expect("publish");
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let response = self.etcd.kv_client().get(key, None).await.unwrap();
        response.kvs().first().map(|kv| kv.value().to_vec())
    }

    /// The heat_stacks record of `id` in `ports`, the resource path of every test input.
    pub async fn heat_stack(&self, id: &str) -> Option<Vec<u8>> {
        self.get(&self.keys.heat_stack("ports", id)).await
    }

    /// The job_state record of `id` in `ports` (`None` once wrap has taken it).
    pub async fn job_state(&self, id: &str) -> Option<Vec<u8>> {
        self.get(&self.keys.job_state("ports", id)).await
    }

    pub async fn mod_revision(&self, key: &str) -> Option<i64> {
        let response = self.etcd.kv_client().get(key, None).await.unwrap();
        response.kvs().first().map(|kv| kv.mod_revision())
    }

    /// Waits until `key` holds a value that satisfies `ready`, and returns it.
    pub async fn wait_for(&self, key: &str, ready: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = self.get(key).await {
                if ready(&value) {
                    return value;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {key}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes the seed and waits until its /state is written.
    pub async fn publish_seed(&self) {
        self.publish(SEED_INPUT).await;
        self.wait_for_state(SEED_ID, 1).await;
    }

    /// Waits for the seed's /state and checks it and its heat_stacks record byte for byte.
    pub async fn assert_seed_records(&self) {
        let state = self
            .wait_for(&self.keys.state("ports", SEED_ID), |_| true)
            .await;
        assert_eq!(state, SEED_STATE);
        let stack = self.get(&self.keys.heat_stack("ports", SEED_ID)).await;
        assert_eq!(stack.as_deref(), Some(SEED_HEAT_STACKS));
    }

    /// Waits until `/state` of `id` in `ports` holds `version`, and returns it.
    pub async fn wait_for_state(&self, id: &str, version: u64) -> serde_json::Value {
        let key = self.keys.state("ports", id);
        let bytes = self
            .wait_for(&key, |v| {
                serde_json::from_slice::<serde_json::Value>(v).unwrap()["version"] == version
            })
            .await;
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Takes (and acks) the next message of `queue`, if it has one.
    pub async fn take(
        &self,
        queue: &str,
    ) -> Result<Option<lapin::message::Delivery>, lapin::Error> {
        let Some(message) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await?
        else {
            return Ok(None);
        };
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await?;
        Ok(Some(message.delivery))
    }

    /// Waits until `count` dead letters are in `stage`'s dead-letter queue, then takes them.
    pub async fn take_dead_letters(&self, stage: StageName, count: usize) -> Vec<DeadLetter> {
        let queue = self.topology.dead_queue(stage);
        let deadline = Instant::now() + PATIENCE;
        let mut letters = Vec::new();
        while letters.len() < count {
            match self.take(&queue).await.unwrap() {
                Some(delivery) => {
                    let headers = delivery.properties.headers().clone();
                    letters.push(DeadLetter {
                        body: delivery.data.clone(),
                        stage: header_str(headers.as_ref(), "x-stage").map(String::from),
                        reason: header_str(headers.as_ref(), "x-error-reason").map(String::from),
                        class: header_str(headers.as_ref(), "x-error-class").map(String::from),
                        routing_key: header_str(headers.as_ref(), "x-original-routing-key")
                            .map(String::from),
                    });
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "timed out: {} of {count} dead letters",
                        letters.len()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        letters
    }

    /// Waits until `queue` holds exactly `count` ready messages.
    pub async fn wait_ready(&self, queue: &str, count: u32) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = self.ready_count(queue).await;
            if ready == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{queue}: {ready} ready, expected {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `queue` holds at least one ready message; `what` says, on a timeout,
    /// what never arrived.
    pub async fn wait_any_ready(&self, queue: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.ready_count(queue).await == 0 {
            assert!(Instant::now() < deadline, "{queue}: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages ready in a queue (not counting unacked ones).
    pub async fn ready_count(&self, queue: &str) -> u32 {
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let channel = self.connection.create_channel().await.unwrap();
        let queue = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .unwrap();
        let _ = channel.close(200, "".into()).await;
        queue.message_count()
    }

    /// Stops the in-process stages (a clean drain) and removes the test's queues and keys.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(result) = self.apps.join_next().await {
            result
                .expect("an app panicked")
                .expect("an app stopped with an error");
        }
        self.topology.delete(&self.channel).await;
        let _ = self
            .etcd
            .kv_client()
            .delete(
                self.prefix.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await;
        let _ = self.connection.close(200, "".into()).await;
    }
}

/// A message found in a dead-letter queue, with the headers the stage gave it.
#[derive(Debug)]
pub struct DeadLetter {
    pub body: Vec<u8>,
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub class: Option<String>,
    pub routing_key: Option<String>,
}

/// The seed input with `replacements` applied to its text.
pub fn seed_with(replacements: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8(SEED_INPUT.to_vec()).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "the seed has no {from:?}");
        text = text.replace(from, to);
    }
    text.into_bytes()
}

/// A small valid Heat result for resource `id` of `ports`.
pub fn heat_result(action: &str, id: &str, version: u64, status: &str, reason: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "job": {"action": action, "resource_type": "port", "resource_path": "ports",
                "resource_id": id, "version": version, "tenant_id": "tenant-1"},
        "stack": {"stack_name": format!("port_{id}"), "stack_status": status,
                  "stack_status_reason": reason,
                  "outputs": [{"output_key": "v", "output_value": version, "description": "version"}]}
    }))
    .unwrap()
}
