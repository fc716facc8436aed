//! Watches `/state/` under the benchmark's prefix: counts the `/state` writes (Put events)
//! of each (resource id, version), and for each the time from its input's publish to the
//! watch event (the /state commit plus a local watch delivery).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, WatchOptions};
use tokio::sync::{mpsc, oneshot};

/// When each finished job's input was published (ms since the epoch), by (id, version).
pub type Published = Arc<Mutex<HashMap<(String, u64), f64>>>;

/// The /state writes of one phase's resources (ids `<tag>-<n>`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Writes {
    /// Distinct (id, version) written.
    pub written: usize,
    /// Of those, how many record a failed job.
    pub failed: usize,
    /// Puts of an (id, version) already written.
    pub repeated: usize,
    /// When the last of them was seen.
    pub last: Option<Instant>,
    /// Whether `written` reached what the phase expected (otherwise the wait gave up after
    /// a stall: versions superseded before wrap wrote them, or lost).
    pub complete: bool,
}

pub struct StateWatcher {
    queries: mpsc::UnboundedSender<Query>,
    pub published: Published,
}

enum Query {
    Wait {
        tag: String,
        expected: usize,
        stall: Duration,
        reply: oneshot::Sender<Writes>,
    },
    Reset,
    Percentiles(oneshot::Sender<(f64, f64, f64, usize)>),
    Progress(oneshot::Sender<Progress>),
    Forget(String),
}

/// What the watcher saw since the last [`StateWatcher::progress`]: the per-second samples
/// of the plots and the soak's rows.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Distinct (id, version) written so far, over every tag (forgotten ones included).
    pub written: usize,
    /// The latencies (ms) of the writes since the last call.
    pub latencies: Vec<f64>,
}

struct Waiter {
    tag: String,
    expected: usize,
    stall: Duration,
    since: Instant,
    reply: oneshot::Sender<Writes>,
}

impl StateWatcher {
    pub async fn start(etcd: &Client, prefix: &str) -> StateWatcher {
        let key = format!("{prefix}/state/");
        let mut stream = etcd
            .watch_client()
            .watch(key.as_str(), Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watch");
        let published: Published = Arc::default();
        let times = published.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Query>();
        tokio::spawn(async move {
            let mut puts: HashMap<(String, u64), u32> = HashMap::new();
            let mut by_tag: HashMap<String, Writes> = HashMap::new();
            let mut latencies: Vec<f64> = Vec::new();
            let mut waiting: Vec<Waiter> = Vec::new();
            let mut total = 0;
            let mut window: Vec<f64> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    message = stream.message() => {
                        let Ok(Some(response)) = message else { break };
                        let now = super::now_ms();
                        for event in response.events() {
                            let Some(kv) = event.kv().filter(|_| event.event_type() == EventType::Put) else { continue };
                            let id = kv.key_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
                            let record: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
                            let Some(version) = record["version"].as_u64() else { continue };
                            let failed = record["state"]["worker_state"].as_str().is_some_and(|s| s.ends_with("_FAILED"));
                            let tag = id.rsplit_once('-').map_or("", |(tag, _)| tag).to_string();
                            let writes = by_tag.entry(tag).or_default();
                            writes.last = Some(Instant::now());
                            let count = puts.entry((id.clone(), version)).or_default();
                            *count += 1;
                            if *count > 1 {
                                writes.repeated += 1;
                                continue;
                            }
                            writes.written += 1;
                            writes.failed += usize::from(failed);
                            total += 1;
                            if let Some(at) = times.lock().unwrap().remove(&(id, version)) {
                                latencies.push(now - at);
                                window.push(now - at);
                            }
                        }
                    }
                    query = rx.recv() => match query {
                        None => break,
                        Some(Query::Wait { tag, expected, stall, reply }) => waiting.push(Waiter { tag, expected, stall, since: Instant::now(), reply }),
                        Some(Query::Reset) => latencies.clear(),
                        Some(Query::Percentiles(reply)) => {
                            latencies.sort_by(|a, b| a.total_cmp(b));
                            let at = |q: f64| {
                                let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
                                latencies.get(i).copied().unwrap_or(f64::NAN)
                            };
                            let _ = reply.send((at(0.5), at(0.99), at(1.0), latencies.len()));
                        }
                        Some(Query::Progress(reply)) => {
                            let _ = reply.send(Progress { written: total, latencies: std::mem::take(&mut window) });
                        }
                        // A million-message soak would otherwise keep every id it saw.
                        Some(Query::Forget(tag)) => {
                            let start = format!("{tag}-");
                            puts.retain(|(id, _), _| !id.starts_with(&start));
                            by_tag.remove(&tag);
                        }
                    },
                    _ = tick.tick() => {}
                }
                let mut pending = Vec::new();
                for waiter in waiting.drain(..) {
                    let mut writes = by_tag.get(&waiter.tag).copied().unwrap_or_default();
                    writes.complete = writes.written >= waiter.expected;
                    let quiet_since = writes
                        .last
                        .map_or(waiter.since, |last| last.max(waiter.since));
                    if writes.complete || quiet_since.elapsed() > waiter.stall {
                        let _ = waiter.reply.send(writes);
                    } else {
                        pending.push(waiter);
                    }
                }
                waiting = pending;
            }
        });
        StateWatcher {
            queries: tx,
            published,
        }
    }

    /// Waits until `expected` distinct (id, version) of the phase `tag` have a /state, or
    /// until none came for `stall`.
    pub async fn wait_for(&self, tag: &str, expected: usize, stall: Duration) -> Writes {
        let (reply, rx) = oneshot::channel();
        let query = Query::Wait {
            tag: tag.to_string(),
            expected,
            stall,
            reply,
        };
        self.queries.send(query).unwrap();
        rx.await.unwrap()
    }

    /// Writes so far and the latencies since the last call.
    pub async fn progress(&self) -> Progress {
        let (tx, rx) = oneshot::channel();
        self.queries.send(Query::Progress(tx)).unwrap();
        rx.await.unwrap()
    }

    /// Drops what the watcher keeps of the phase `tag` (its ids and counts; the total
    /// stays), once its writes are all in.
    pub fn forget(&self, tag: &str) {
        self.queries.send(Query::Forget(tag.to_string())).unwrap();
    }

    pub fn reset_latencies(&self) {
        self.queries.send(Query::Reset).unwrap();
    }

    /// p50, p99 and max of the latencies since the last reset, in ms, and how many.
    pub async fn latency_percentiles(&self) -> (f64, f64, f64, usize) {
        let (tx, rx) = oneshot::channel();
        self.queries.send(Query::Percentiles(tx)).unwrap();
        rx.await.unwrap()
    }
}
