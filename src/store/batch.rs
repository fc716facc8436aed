//! Batching of a stage's store reads and commits across its in-flight messages.
//!
//! Under load a stage has up to `--concurrency` messages, each wanting one read and one
//! commit. etcd's cost is mostly per request (a gRPC call, a raft proposal, an fsync), so
//! whatever is waiting goes out as one transaction. The batching is natural: an idle stage
//! sends a batch of one at once; a busy one sends large batches while earlier ones are in
//! flight. The per-message guarantees stay: a combined commit is all-or-none; when a guard
//! fails, the decisions whose own guards failed get the keys as they stand, and the rest
//! are committed again together.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Commit, StepError, Store, Transient};
use crate::plan::{Snapshot, Write};
use crate::stages::StageName;
use crate::telemetry::events::EtcdRequest;

/// etcd's default `--max-txn-ops` is 128, for compares and operations alike.
const MAX_TXN_OPS: usize = 120;
/// Batches in flight at once per kind; while they are, the next one fills up.
const MAX_IN_FLIGHT: usize = 4;

/// A stage's handle on the store; cheap to clone. The batching tasks end when the last
/// handle is dropped.
#[derive(Clone)]
pub struct BatchedStore {
    reads: mpsc::Sender<ReadRequest>,
    commits: mpsc::Sender<CommitRequest>,
}

struct ReadRequest {
    keys: Vec<String>,
    reply: oneshot::Sender<Result<Snapshot, StepError>>,
}

struct CommitRequest {
    snapshot: Snapshot,
    writes: Vec<Write>,
    reply: oneshot::Sender<CommitAnswer>,
}

/// A batched commit's answer, with the writes handed back: the caller keeps what it
/// committed (for its cache) without copying every record before the commit.
pub type CommitAnswer = Result<(Commit<Snapshot>, Vec<Write>), StepError>;

impl CommitRequest {
    fn answer(self, result: Result<Commit<Snapshot>, StepError>) {
        let _ = self.reply.send(result.map(|commit| (commit, self.writes)));
    }
}

impl BatchedStore {
    /// Starts the batching tasks. `max_bytes` bounds a combined commit (etcd's request
    /// limit); `capacity` bounds the requests waiting (the stage's concurrency suffices).
    pub fn new(store: Store, stage: StageName, max_bytes: usize, capacity: usize) -> BatchedStore {
        let (reads, read_rx) = mpsc::channel(capacity.max(1));
        let (commits, commit_rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(read_loop(store.clone(), stage, read_rx));
        tokio::spawn(commit_loop(store, stage, commit_rx, max_bytes));
        BatchedStore { reads, commits }
    }

    pub async fn read(&self, keys: Vec<String>) -> Result<Snapshot, StepError> {
        let (reply, answer) = oneshot::channel();
        self.reads
            .send(ReadRequest { keys, reply })
            .await
            .map_err(|_| Transient::BatcherStopped)?;
        answer.await.map_err(|_| Transient::BatcherStopped)?
    }

    /// Applies `writes` if the keys still hold what `snapshot` says; otherwise returns
    /// them as they stand.
    pub async fn commit(&self, snapshot: Snapshot, writes: Vec<Write>) -> CommitAnswer {
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            snapshot,
            writes,
            reply,
        };
        self.commits
            .send(request)
            .await
            .map_err(|_| Transient::BatcherStopped)?;
        answer.await.map_err(|_| Transient::BatcherStopped)?
    }
}

/// Collects requests into batches of at most `limit` weight: waits for one, then takes
/// whatever else is already waiting. A request that does not fit is carried to the next.
async fn next_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    carried: &mut Option<T>,
    weight: impl Fn(&T) -> usize,
    limit: usize,
) -> Option<Vec<T>> {
    let first = match carried.take() {
        Some(request) => request,
        None => rx.recv().await?,
    };
    let mut total = weight(&first);
    let mut batch = vec![first];
    while let Ok(request) = rx.try_recv() {
        let w = weight(&request);
        if total + w > limit {
            *carried = Some(request);
            break;
        }
        total += w;
        batch.push(request);
    }
    Some(batch)
}

/// Sends batches of requests from `rx` to `execute`, at most [`MAX_IN_FLIGHT`] at once, each
/// of at most `limit` weight, and times each as one etcd request of kind `op`.
async fn batch_loop<T, Fut>(
    stage: StageName,
    op: &'static str,
    mut rx: mpsc::Receiver<T>,
    weight: impl Fn(&T) -> usize,
    limit: usize,
    execute: impl Fn(Vec<T>) -> Fut,
) where
    T: Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried = None;
    loop {
        // Waiting for a slot is what lets the next batch fill up.
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let Some(batch) = next_batch(&mut rx, &mut carried, &weight, limit).await else {
            return;
        };
        let work = execute(batch);
        tokio::spawn(async move {
            let started = Instant::now();
            work.await;
            drop(permit);
            EtcdRequest {
                stage,
                op,
                took: started.elapsed(),
            }
            .emit();
        });
    }
}

async fn read_loop(store: Store, stage: StageName, rx: mpsc::Receiver<ReadRequest>) {
    let weight = |r: &ReadRequest| r.keys.len();
    batch_loop(stage, "read", rx, weight, MAX_TXN_OPS, move |batch| {
        read_batch(store.clone(), batch)
    })
    .await;
}

async fn commit_loop(
    store: Store,
    stage: StageName,
    rx: mpsc::Receiver<CommitRequest>,
    max_bytes: usize,
) {
    // Weigh by whichever limit binds first: compares, operations and the reads a failed
    // guard brings back against etcd's --max-txn-ops, bytes against half its request limit.
    let weight = move |r: &CommitRequest| {
        let ops = r.snapshot.guards().count().max(r.writes.len());
        let bytes = r.writes.iter().map(Write::size).sum::<usize>() + r.snapshot.guard_size();
        ops.max(bytes * MAX_TXN_OPS / (max_bytes / 2).max(1))
    };
    batch_loop(stage, "commit", rx, weight, MAX_TXN_OPS, move |batch| {
        let store = store.clone();
        async move { commit_batch(&store, batch).await }
    })
    .await;
}

/// One transaction of range requests for the whole batch. A transient error goes to every
/// request (all of them wait for etcd alike); a refusal is one request's, so each is then
/// read alone to find whose it is, and a neighbour's read never fails with it.
async fn read_batch(store: Store, batch: Vec<ReadRequest>) {
    let key_lists: Vec<&[String]> = batch.iter().map(|r| r.keys.as_slice()).collect();
    match store.read_many(&key_lists).await {
        Ok(snapshots) => {
            for (request, snapshot) in batch.into_iter().zip(snapshots) {
                let _ = request.reply.send(Ok(snapshot));
            }
        }
        Err(StepError::Rejected(_)) if batch.len() > 1 => {
            let alone = batch.into_iter().map(|request| {
                let store = &store;
                async move {
                    let result = store.read_many(&[request.keys.as_slice()]).await;
                    let _ = request
                        .reply
                        .send(result.map(|mut one| one.pop().expect("one snapshot")));
                }
            });
            futures_util::future::join_all(alone).await;
        }
        Err(error) => {
            for request in batch {
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}

/// One transaction for the batch. When a guard fails, the transaction returns every
/// decision's keys as they stand: a decision whose own guards fail there gets them back (its
/// stage decides again), and the others go again together. Each round answers at least
/// one decision, so this ends. An error is the batch's if it has one decision; otherwise
/// each decision is committed alone to find whose it is (e.g. a record etcd refuses).
async fn commit_batch(store: &Store, batch: Vec<CommitRequest>) {
    let mut pending = batch;
    while !pending.is_empty() {
        let decisions: Vec<(&Snapshot, &[Write])> = pending
            .iter()
            .map(|r| (&r.snapshot, r.writes.as_slice()))
            .collect();
        match store.commit_all(&decisions).await {
            Ok(Commit::Applied { revision }) => {
                for request in pending {
                    request.answer(Ok(Commit::Applied { revision }));
                }
                return;
            }
            Ok(Commit::Changed(found)) => {
                let (mut held, mut changed): (Vec<_>, Vec<_>) = pending
                    .into_iter()
                    .zip(found)
                    .partition(|(request, found)| request.snapshot.holds_in(found));
                if changed.is_empty() {
                    // Every guard holds in what came back: etcd and `holds_in` disagree.
                    // Answer everyone rather than loop.
                    std::mem::swap(&mut held, &mut changed);
                }
                for (request, found) in changed {
                    request.answer(Ok(Commit::Changed(found)));
                }
                pending = held.into_iter().map(|(request, _)| request).collect();
            }
            Err(error) if pending.len() == 1 => {
                let request = pending.pop().expect("one request");
                request.answer(Err(error));
                return;
            }
            Err(_) => {
                let alone = pending.into_iter().map(|request| async move {
                    let result = store.commit(&request.snapshot, &request.writes).await;
                    request.answer(result);
                });
                futures_util::future::join_all(alone).await;
                return;
            }
        }
    }
}
