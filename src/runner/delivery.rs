//! One delivery, from decode to ack.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::BasicProperties;
use tracing::Instrument;

use super::acks::BatcherStopped;
use super::budget::Reserved;
use super::cache::lock;
use super::headers;
use super::link::SessionLink;
use super::sequencer::Turn;
use super::worker::{store_backoff, Worker};
use crate::amqp::{header_str, PublishError};
use crate::error::Rejection;
use crate::guess::{self, Next};
use crate::plan::{Decision, Lineage, Outcome};
use crate::stages::{Stage, StageName};
use crate::store::{Commit, StepError};
use crate::telemetry::events::{
    EndToEnd, InFlight, MessageHandled, MessageRejected, RetryCause, Step, StepTook, StoreRetried,
};
use crate::telemetry::trace::TraceParent;

/// Why a delivery could not be finished; the session is then treated as broken.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error("publish failed: {0}")]
    Publish(#[from] PublishError),
    #[error("ack failed: {0}")]
    Ack(#[from] BatcherStopped),
}

/// A delivery as the consumer loop hands it over.
pub(super) enum Work<S: Stage> {
    /// Decoded, with its place in its resource's line.
    Step(S::Input, Turn),
    /// Not decodable: dead-letter it.
    Reject(Rejection),
}

/// Handles one delivery. Never panics the runner, never drops a delivery silently: it ends
/// acked (done or dead-lettered), or unacked for the broker to redeliver. It holds its share
/// of the stage's byte budget (`_reserved`) until it ends.
pub(super) async fn handle<S: Stage>(
    worker: Arc<Worker<S>>,
    session: Arc<SessionLink>,
    delivery: Delivery,
    work: Work<S>,
    _reserved: Reserved,
) {
    let _in_flight = InFlight::enter(worker.stage.name());
    let trace = incoming_trace(&delivery);
    let span = tracing::info_span!(
        "message",
        stage = %worker.stage.name(),
        trace_id = %trace.trace_id(),
        message_id = ?delivery.properties.message_id().as_ref().map(|id| id.as_str()),
        tag = delivery.delivery_tag,
        redelivered = delivery.redelivered,
        path = tracing::field::Empty,
        id = tracing::field::Empty,
        version = tracing::field::Empty,
    );
    let work = process(&worker, &session, &delivery, work, &trace).instrument(span.clone());
    let result = tokio::select! {
        // Abandoned (session lost or drain deadline): leave it unacked.
        _ = session.abandoned() => return,
        result = work => result,
    };
    if let Err(fault) = result {
        span.in_scope(|| tracing::warn!(%fault, "message left for redelivery"));
        session.mark_broken();
    }
}

async fn process<S: Stage>(
    worker: &Worker<S>,
    session: &SessionLink,
    delivery: &Delivery,
    work: Work<S>,
    trace: &TraceParent,
) -> Result<(), Fault> {
    let started = Instant::now();
    let stage = &worker.stage;
    let (input, mut turn) = match work {
        Work::Step(input, turn) => (input, turn),
        Work::Reject(rejection) => {
            return dead_letter(worker, session, delivery, &rejection, trace, started).await
        }
    };
    let job = stage.job(&input);
    let span = tracing::Span::current();
    span.record("path", &*job.path());
    span.record("id", job.resource_id.as_str());
    span.record("version", job.version);

    let mut step = StepClock::start(stage.name());
    turn.wait().await;
    step.lap(Step::Turn);
    let lineage = Lineage {
        written_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        trace_id: trace.trace_id().to_string(),
    };
    // Boxed: its retries and commits are most of this future's size.
    let decision = match Box::pin(apply(worker, &input, &lineage)).await {
        Ok(decision) => decision,
        Err(rejection) => {
            return dead_letter(worker, session, delivery, &rejection, trace, started).await
        }
    };
    step.lap(Step::Store);
    // The store has the result: the next message of this resource may go.
    drop(turn);
    if let (Some(body), Some(next)) = (&decision.handoff, stage.name().next()) {
        let properties = forwarded_properties(delivery, trace);
        let (exchange, routing_key) = worker.pipeline.topology.route(next);
        session
            .publish(&exchange, routing_key, body, properties)
            .await?;
        step.lap(Step::Handoff);
    }
    session.ack(delivery).await?;
    step.lap(Step::Ack);
    if stage.name() == StageName::Wrap && decision.outcome == Outcome::Written {
        if let Some(age) = age_since_publish(delivery) {
            EndToEnd { age }.emit();
        }
    }
    MessageHandled {
        stage: stage.name(),
        outcome: decision.outcome,
        took: started.elapsed(),
    }
    .emit();
    Ok(())
}

/// Decides and commits until a decision stands. It starts from a guess of what is stored
/// ([`guess::snapshot`]), so that the usual message, first version or update, costs one
/// etcd request; a wrong guess, like a conflict with another process, returns the keys as
/// they stand and the stage decides again on those ([`crate::guess`] says why that is
/// safe). Transient store errors are retried forever (see [`store_backoff`]); only a
/// rejection returns.
///
/// The decision comes back without its writes: they went to the stage's cache.
async fn apply<S: Stage>(
    worker: &Worker<S>,
    input: &S::Input,
    lineage: &Lineage,
) -> Result<Decision, Rejection> {
    let (stage, store) = (&worker.stage, &worker.store);
    let max_request_bytes = worker.pipeline.options.max_request_bytes;
    let reads = stage.reads(input);
    let cache = || lock(&worker.cache);
    let read = || async {
        let snapshot = store.read(reads.clone()).await.map_err(|e| match e {
            StepError::Rejected(_) => backoff::Error::permanent(e),
            StepError::Transient(_) => backoff::Error::transient(e),
        })?;
        guess::learn_read(stage, &snapshot, cache);
        Ok::<_, backoff::Error<StepError>>(snapshot)
    };
    let attempt = || async {
        let mut snapshot = match guess::snapshot(stage, input, &reads, cache) {
            Some(guess) => guess,
            None => read().await?,
        };
        loop {
            let next = guess::decide(stage, input, &snapshot, lineage, max_request_bytes)
                .map_err(|r| backoff::Error::permanent(r.into()))?;
            let mut decision = match next {
                Next::Done(decision) => return Ok(decision),
                Next::Read => {
                    snapshot = read().await?;
                    continue;
                }
                Next::Commit(decision) => decision,
            };
            let guessed = snapshot.is_guess();
            match store
                .commit(snapshot, std::mem::take(&mut decision.writes))
                .await
            {
                Ok((Commit::Applied { revision }, writes)) => {
                    guess::learn_commit(stage, input, writes, revision, cache);
                    return Ok(decision);
                }
                Ok((Commit::Changed(found), _)) => {
                    guess::learn_read(stage, &found, cache);
                    StoreRetried {
                        stage: stage.name(),
                        cause: if guessed {
                            RetryCause::Guess
                        } else {
                            RetryCause::Conflict
                        },
                        error: None,
                        wait: Duration::ZERO,
                    }
                    .emit();
                    snapshot = found;
                }
                Err(error @ StepError::Rejected(_)) => {
                    return Err(backoff::Error::permanent(error))
                }
                Err(error @ StepError::Transient(_)) => {
                    return Err(backoff::Error::transient(error))
                }
            }
        }
    };
    let notify = |error: StepError, wait| {
        StoreRetried {
            stage: stage.name(),
            cause: RetryCause::Store,
            error: Some(&error.to_string()),
            wait,
        }
        .emit()
    };
    match backoff::future::retry_notify(store_backoff(), attempt, notify).await {
        Ok(decision) => Ok(decision),
        Err(StepError::Rejected(rejection)) => Err(rejection),
        Err(StepError::Transient(_)) => unreachable!("transient errors are retried without limit"),
    }
}

/// Publishes the original message to the stage's dead-letter queue with the reason, then
/// acks it: the dead letter is the broker's responsibility before the original goes.
async fn dead_letter<S: Stage>(
    worker: &Worker<S>,
    session: &SessionLink,
    delivery: &Delivery,
    rejection: &Rejection,
    trace: &TraceParent,
    started: Instant,
) -> Result<(), Fault> {
    let topology = &worker.pipeline.topology;
    let failure = headers::Failure {
        stage: worker.stage.name(),
        rejection,
        trusted: delivery.exchange.as_str() == topology.handoff_exchange(),
    };
    let headers = headers::dead_letter(delivery, trace, failure);
    let properties = copy_identity(delivery, BasicProperties::default()).with_headers(headers);
    session
        .publish(
            &topology.dead_exchange(),
            worker.stage.name().as_str(),
            &delivery.data,
            properties,
        )
        .await?;
    session.ack(delivery).await?;
    MessageRejected {
        stage: worker.stage.name(),
        rejection,
        took: started.elapsed(),
    }
    .emit();
    Ok(())
}

/// A hand-off keeps the input's identity, with the trace context of this hop and the
/// publish time, so one Heat result can be followed across the stages. Only those
/// headers: see [`headers`].
fn forwarded_properties(delivery: &Delivery, trace: &TraceParent) -> BasicProperties {
    copy_identity(delivery, BasicProperties::default())
        .with_content_type("application/json".into())
        .with_headers(headers::handoff(delivery, trace))
}

/// The trace this delivery belongs to; a new one if upstream sent none (or a bad one).
fn incoming_trace(delivery: &Delivery) -> TraceParent {
    header_str(delivery.properties.headers().as_ref(), "traceparent")
        .and_then(|h| TraceParent::parse(&h))
        .unwrap_or_else(TraceParent::start)
}

/// Times the steps of one delivery one after another, each lap emitted as [`StepTook`].
struct StepClock {
    stage: StageName,
    since: Instant,
}

impl StepClock {
    fn start(stage: StageName) -> StepClock {
        StepClock {
            stage,
            since: Instant::now(),
        }
    }

    fn lap(&mut self, step: Step) {
        let now = Instant::now();
        StepTook {
            stage: self.stage,
            step,
            took: now - self.since,
        }
        .emit();
        self.since = now;
    }
}

/// Time since the input was published, from the `x-published-at-ms` header that
/// `heat-pipeline publish` (and a well-behaved upstream) sets.
fn age_since_publish(delivery: &Delivery) -> Option<Duration> {
    let published = u64::try_from(headers::published_at(delivery)?).ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Duration::from_millis(now.saturating_sub(published)))
}

fn copy_identity(delivery: &Delivery, mut properties: BasicProperties) -> BasicProperties {
    if let Some(id) = delivery.properties.message_id() {
        properties = properties.with_message_id(id.clone());
    }
    if let Some(content_type) = delivery.properties.content_type() {
        properties = properties.with_content_type(content_type.clone());
    }
    properties
}
