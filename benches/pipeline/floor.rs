//! The I/O floor (`--floor`): a process that does per message exactly the broker and etcd
//! work of a three-stage `run all` on a first-version create, and nothing else. Per stage:
//! consume from the stage's quorum queue (prefetch = concurrency, one task per delivery),
//! one guarded etcd transaction of the pipeline's shape and bytes, batched as
//! `store/batch.rs` batches (what waits goes as one transaction, at most 120 compares or
//! operations, four in flight), a persistent, mandatory, confirmed hand-off on a channel of
//! its own (capture and normalize), and an ack batched as `runner/acks.rs` does (one
//! `multiple` ack per run of finished tags, a lone ack after `HOLD`). One connection for the
//! three stages, like `run all`.
//!
//! No JSON, no decisions: the bytes are templates made once, at start, by the pipeline's
//! own pure stages on the seed (keys, record values, compares, hand-off bodies), cut around
//! the resource id; per message the floor finds the id in the body and pastes it in. What it
//! leaves out on purpose: hand-off headers and properties (trace context, publish time,
//! message id, content type), the per-resource sequencer, the stage cache, metrics and
//! logs. So the floor is what a stage costs when it does only the I/O it must.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, KvClient, Txn, TxnOp};
use futures_util::StreamExt;
use heat_pipeline::amqp::{self, Topology};
use heat_pipeline::keys::Keyspace;
use heat_pipeline::plan::{Guard, Lineage, Snapshot, Write};
use heat_pipeline::stages::{Capture, Normalize, Stage, StageName, Wrap};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties, Channel, Connection};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// What the templates hold where the resource id goes.
const PLACEHOLDER: &str = "floorplaceholderid";
/// The seed's resource id (`examples/heat_result.port.json`).
const SEED_ID: &str = "23464cbc-d910-430a-93f7-3776ea07f992";
/// `store/batch.rs`: at most this many compares or operations per transaction, and this
/// many transactions in flight per stage.
const MAX_TXN_OPS: usize = 120;
const MAX_IN_FLIGHT: usize = 4;
/// `runner/acks.rs`: how long a finished delivery waits for a run before it is acked alone.
/// The same 20 ms as the pipeline's, so both settle their deliveries the same way (the
/// floor figures in docs/SCALING.md before 2026-12-02 12:00 UTC were measured at 5 ms).
const HOLD: Duration = Duration::from_millis(20);

/// Transactions whose compares failed (none expected: every message is a new resource).
static FAILED_TXNS: AtomicU64 = AtomicU64::new(0);

/// Runs the floor on the pipeline named by PIPELINE_NAME (queues declared by the bench),
/// with keys under ETCD_KEY_PREFIX, until SIGTERM.
pub async fn run(concurrency: u16) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let topology = Topology::new(var("PIPELINE_NAME"), 20);
    let keys = Keyspace::new(var("ETCD_KEY_PREFIX"), "v2.0");
    let seed = std::fs::read_to_string("examples/heat_result.port.json").unwrap();
    let plans = StagePlan::from_seed(&seed, keys);

    // The pipeline's client options (`store::StoreConfig::options`), defaults otherwise.
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_require_leader(true);
    let endpoints = var("ETCD_ENDPOINTS");
    let etcd = Client::connect(endpoints.split(',').collect::<Vec<_>>(), Some(options))
        .await
        .expect("etcd");
    let url = var("AMQP_URL");
    let (connection, _) = amqp::connect(&url.as_str().into(), "floor")
        .await
        .expect("broker");
    let connection = Arc::new(connection);
    for (stage, plan) in StageName::ALL.into_iter().zip(plans) {
        let stage = StageLoop {
            stage,
            plan: Arc::new(plan),
            topology: topology.clone(),
            kv: etcd.kv_client(),
            concurrency,
        };
        tokio::spawn(stage.run(connection.clone()));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    term.recv().await;
    let _ = connection.close(200, "floor done".into()).await;
    let failed = FAILED_TXNS.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("floor: {failed} transactions failed their compares");
    }
}

/// Bytes cut around the resource id: `parts` joined by the id.
#[derive(Debug, Clone)]
struct Template(Vec<Vec<u8>>);

impl Template {
    fn new(bytes: &[u8]) -> Template {
        let text = String::from_utf8_lossy(bytes);
        Template(
            text.split(PLACEHOLDER)
                .map(|part| part.as_bytes().to_vec())
                .collect(),
        )
    }

    fn fill(&self, id: &[u8]) -> Vec<u8> {
        let len = self.0.iter().map(Vec::len).sum::<usize>() + id.len() * (self.0.len() - 1);
        let mut out = Vec::with_capacity(len);
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(id);
            }
            out.extend_from_slice(part);
        }
        out
    }
}

/// One stage's etcd transaction and hand-off for a first-version create, as templates.
struct StagePlan {
    /// Compares: a key and its value, or `None` for "mod_revision is 0" (absent).
    compares: Vec<(Template, Option<Template>)>,
    writes: Vec<(Template, Option<Template>)>,
    /// What the transaction reads back when a compare fails (the snapshot's keys).
    reads: Vec<Template>,
    handoff: Option<Template>,
}

impl StagePlan {
    /// The three stages' plans, from the pipeline's own pure stages on the seed.
    fn from_seed(seed: &str, keys: Keyspace) -> [StagePlan; 3] {
        let body = seed.replace(SEED_ID, PLACEHOLDER).into_bytes();
        let capture = StagePlan::of(&Capture { keys: keys.clone() }, &body);
        let to_normalize = capture.1.expect("capture hands off");
        let normalize = StagePlan::of(&Normalize { keys: keys.clone() }, &to_normalize);
        let to_wrap = normalize.1.expect("normalize hands off");
        let wrap = StagePlan::of(&Wrap { keys }, &to_wrap);
        [capture.0, normalize.0, wrap.0]
    }

    /// What `stage` does with `body` on its first-version guess, and its hand-off's bytes.
    fn of<S: Stage>(stage: &S, body: &[u8]) -> (StagePlan, Option<Vec<u8>>) {
        let input = stage.decode(body).expect("the seed decodes");
        let reads = stage.reads(&input);
        let snapshot: Snapshot = stage
            .expected(&input, &reads, stage.inferred(&input))
            .expect("a first version is guessed");
        // The pipeline's lineage has these lengths: RFC 3339 with ms, a 32-digit trace id.
        let lineage = Lineage {
            written_at: "2026-12-02T04:00:00.000Z".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        };
        let decision = stage
            .decide(&input, &snapshot, &lineage)
            .expect("the seed decides");
        let compares = snapshot
            .guards()
            .map(|(key, guard)| {
                let value = match guard {
                    Guard::Revision(0) => None,
                    Guard::Revision(_) => panic!("a first version guards no revision"),
                    Guard::Value(value) => Some(Template::new(value)),
                };
                (Template::new(key.as_bytes()), value)
            })
            .collect();
        let writes = decision
            .writes
            .iter()
            .map(|write| match write {
                Write::Put { key, value } => {
                    (Template::new(key.as_bytes()), Some(Template::new(value)))
                }
                Write::Delete { key } => (Template::new(key.as_bytes()), None),
            })
            .collect();
        let reads = snapshot
            .keys()
            .map(|k| Template::new(k.as_bytes()))
            .collect();
        let plan = StagePlan {
            compares,
            writes,
            reads,
            handoff: decision.handoff.as_deref().map(Template::new),
        };
        (plan, decision.handoff)
    }

    fn request(&self, id: &[u8]) -> TxnRequest {
        let compares = self
            .compares
            .iter()
            .map(|(key, value)| match value {
                None => Compare::mod_revision(key.fill(id), CompareOp::Equal, 0),
                Some(value) => Compare::value(key.fill(id), CompareOp::Equal, value.fill(id)),
            })
            .collect();
        let ops = self
            .writes
            .iter()
            .map(|(key, value)| match value {
                Some(value) => TxnOp::put(key.fill(id), value.fill(id), None),
                None => TxnOp::delete(key.fill(id), None),
            })
            .collect();
        let reads = self
            .reads
            .iter()
            .map(|key| TxnOp::get(key.fill(id), None))
            .collect();
        TxnRequest {
            weight: self.compares.len().max(self.writes.len()),
            compares,
            ops,
            reads,
            reply: None,
        }
    }
}

/// The resource id in a body (input or hand-off): the string after `"resource_id":`.
fn resource_id(body: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"resource_id\":";
    let at = memchr::memmem::find(body, KEY).expect("a resource_id") + KEY.len();
    let start = at + memchr::memchr(b'"', &body[at..]).expect("a string") + 1;
    let end = start + memchr::memchr(b'"', &body[start..]).expect("closed");
    &body[start..end]
}

struct StageLoop {
    stage: StageName,
    plan: Arc<StagePlan>,
    topology: Topology,
    kv: KvClient,
    concurrency: u16,
}

impl StageLoop {
    async fn run(self, connection: Arc<Connection>) {
        let consume = connection.create_channel().await.expect("channel");
        let publish = Arc::new(amqp::confirm_channel(&connection).await.expect("channel"));
        consume
            .basic_qos(self.concurrency, BasicQosOptions::default())
            .await
            .expect("qos");
        let commits = Commits::start(self.kv.clone(), usize::from(self.concurrency));
        let (acks, ack_rx) = mpsc::channel(2 * usize::from(self.concurrency));
        tokio::spawn(ack_loop(ack_rx));
        let mut consumer = consume
            .basic_consume(
                self.topology.queue(self.stage).into(),
                format!("floor-{}", self.stage).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let route = self.stage.next().map(|next| self.topology.route(next));
        while let Some(Ok(delivery)) = consumer.next().await {
            let (plan, commits, acks) = (self.plan.clone(), commits.clone(), acks.clone());
            let (publish, route) = (publish.clone(), route.clone());
            tokio::spawn(async move {
                let id = resource_id(&delivery.data);
                commits.commit(plan.request(id)).await;
                if let (Some(handoff), Some((exchange, key))) = (&plan.handoff, route) {
                    publish_handoff(&publish, &exchange, key, &handoff.fill(id)).await;
                }
                let _ = acks.send((delivery.delivery_tag, delivery.acker)).await;
            });
        }
    }
}

/// Persistent, mandatory, confirmed; no headers or properties.
async fn publish_handoff(channel: &Channel, exchange: &str, key: &str, body: &[u8]) {
    amqp::publish_confirmed(channel, exchange, key, body, BasicProperties::default())
        .await
        .expect("hand-off confirmed");
}

struct TxnRequest {
    weight: usize,
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    reads: Vec<TxnOp>,
    reply: Option<oneshot::Sender<()>>,
}

/// A stage's commit batcher: whatever waits goes as one transaction.
#[derive(Clone)]
struct Commits(mpsc::Sender<TxnRequest>);

impl Commits {
    fn start(kv: KvClient, capacity: usize) -> Commits {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(commit_loop(kv, rx));
        Commits(tx)
    }

    async fn commit(&self, mut request: TxnRequest) {
        let (reply, done) = oneshot::channel();
        request.reply = Some(reply);
        self.0.send(request).await.expect("batcher running");
        done.await.expect("committed");
    }
}

async fn commit_loop(kv: KvClient, mut rx: mpsc::Receiver<TxnRequest>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<TxnRequest> = None;
    loop {
        let permit = in_flight.clone().acquire_owned().await.expect("open");
        let first = match carried.take() {
            Some(request) => request,
            None => match rx.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let mut weight = first.weight;
        let mut batch = vec![first];
        while let Ok(request) = rx.try_recv() {
            if weight + request.weight > MAX_TXN_OPS {
                carried = Some(request);
                break;
            }
            weight += request.weight;
            batch.push(request);
        }
        let mut kv = kv.clone();
        tokio::spawn(async move {
            let (mut compares, mut ops, mut reads, mut replies) = (vec![], vec![], vec![], vec![]);
            for request in batch {
                compares.extend(request.compares);
                ops.extend(request.ops);
                reads.extend(request.reads);
                replies.extend(request.reply);
            }
            let txn = Txn::new().when(compares).and_then(ops).or_else(reads);
            let response = kv.txn(txn).await.expect("etcd transaction");
            if !response.succeeded() {
                FAILED_TXNS.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
            for reply in replies {
                let _ = reply.send(());
            }
        });
    }
}

/// `runner/acks.rs`'s policy: the run of finished tags from the lowest unacked one goes as
/// one `multiple` ack; a finished tag that cannot join a run is acked alone after [`HOLD`].
async fn ack_loop(mut rx: mpsc::Receiver<(u64, Acker)>) {
    let mut next = 1;
    let mut finished: BTreeMap<u64, Acker> = BTreeMap::new();
    let mut acked_alone = BTreeSet::new();
    loop {
        tokio::select! {
            received = rx.recv() => {
                let Some((tag, acker)) = received else { return };
                finished.insert(tag, acker);
                while let Ok((tag, acker)) = rx.try_recv() {
                    finished.insert(tag, acker);
                }
            }
            _ = tokio::time::sleep(HOLD), if !finished.is_empty() => {
                for (tag, acker) in std::mem::take(&mut finished) {
                    let _ = acker.ack(BasicAckOptions { multiple: false }).await;
                    acked_alone.insert(tag);
                }
            }
        }
        let mut last = None;
        loop {
            if let Some(acker) = finished.remove(&next) {
                last = Some(acker);
            } else if !acked_alone.remove(&next) {
                break;
            }
            next += 1;
        }
        if let Some(acker) = last {
            let _ = acker.ack(BasicAckOptions { multiple: true }).await;
        }
    }
}
