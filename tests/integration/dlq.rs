//! `heat-pipeline dlq`: listing leaves dead letters in place, replay sends them back to the
//! stage with fresh attempt counters, purge asks first.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::process::{run, Process, Ran};
use crate::helpers::*;
use heat_pipeline::amqp::{self, header_str, long_string};
use heat_pipeline::ops::dlq;
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::stages::StageName;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};

/// Runs `heat-pipeline` for `pipeline` with `stdin` as its standard input.
async fn dlq(pipeline: &TestPipeline, args: &[&str], stdin: Option<&[u8]>) -> Ran {
    let mut process = Process::start(
        pipeline
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    process.feed(stdin.unwrap_or_default()); // then end of input
    process.finish(PATIENCE).await
}

/// Waits until `stage`'s dead-letter queue holds exactly `count` ready messages.
async fn wait_dead(pipeline: &TestPipeline, stage: StageName, count: u32) {
    let queue = pipeline.topology.dead_queue(stage);
    pipeline.wait_ready(&queue, count).await;
}

/// Takes (and acks) the next dead letter of `stage`, with all its headers.
async fn take_dead_letter(pipeline: &TestPipeline, stage: StageName) -> Delivery {
    let queue = pipeline.topology.dead_queue(stage);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = pipeline
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap();
        if let Some(message) = got {
            let delivery = message.delivery;
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
            return delivery;
        }
        assert!(Instant::now() < deadline, "no dead letter in {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header_int(delivery: &Delivery, name: &str) -> Option<i64> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some((*n).into()),
        other => panic!("{name}: unexpected {other:?}"),
    }
}

/// A Heat result capture rejects: a create cannot end in DELETE_COMPLETE.
fn mismatch(id: &str) -> Vec<u8> {
    heat_result("create", id, 1, "DELETE_COMPLETE", "")
}

#[tokio::test]
async fn list_shows_the_reason_and_leaves_the_dead_letters_in_place() {
    let pipeline = TestPipeline::spawn("dlq-list", 2).await;
    pipeline.publish(&mismatch("m-1")).await;
    pipeline.publish(b"not json\x1b[31m").await;
    wait_dead(&pipeline, StageName::Capture, 2).await;

    let listed = dlq(&pipeline, &["dlq", "list", "capture"], None).await;
    let text = &listed.stdout;
    assert!(listed.status.success(), "{listed:?}");
    assert!(text.contains("kind:         permanent"), "{text}");
    assert!(text.contains("class:        status_mismatch"), "{text}");
    assert!(text.contains("class:        malformed_json"), "{text}");
    assert!(
        text.contains("DELETE_COMPLETE"),
        "the reason is shown:\n{text}"
    );
    assert!(text.contains("routing key heat.result"), "{text}");
    assert!(text.contains("attempts:     1"), "{text}");
    assert!(
        text.contains("not json\\x1b[31m"),
        "the body is escaped:\n{text}"
    );
    let queue = pipeline.topology.dead_queue(StageName::Capture);
    let count_line = format!("2 of 2 dead letter(s) in {queue} listed; all left in the queue\n");
    assert!(text.ends_with(&count_line), "{text}");
    // Returned to the queue, not consumed.
    wait_dead(&pipeline, StageName::Capture, 2).await;

    let limited = dlq(&pipeline, &["dlq", "list", "capture", "--limit", "1"], None).await;
    assert!(limited.stdout.contains("1 of 2 dead letter(s)"));
    wait_dead(&pipeline, StageName::Capture, 2).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn an_unknown_pipeline_is_an_error_without_the_password() {
    let pipeline = TestPipeline::new("dlq-missing").await;
    let output = run(pipeline
        .command(&["dlq", "list", "wrap"])
        .env("PIPELINE_NAME", "hp-test-no-such-pipeline")
        // The default log filter, as a user has it.
        .env_remove("RUST_LOG"));
    assert_eq!(output.status.code(), Some(1));
    let err = output.stderr;
    assert!(
        err.contains("queue hp-test-no-such-pipeline.wrap.dead does not exist"),
        "{err}"
    );
    // Our one line, without lapin's log of the channel the broker closed.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains(":guest@"), "{err}");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_message_over_the_delivery_limit_shows_as_exhausted_retries() {
    let pipeline = TestPipeline::new("dlq-limit").await;
    pipeline.publish(SEED_INPUT).await;
    // Play a consumer that keeps failing: the broker dead-letters after 20 deliveries.
    let queue = pipeline.topology.queue(StageName::Capture);
    let deadline = Instant::now() + PATIENCE;
    while pipeline
        .ready_count(&pipeline.topology.dead_queue(StageName::Capture))
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "never dead-lettered");
        let got = pipeline
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap();
        if let Some(message) = got {
            let options = BasicRejectOptions { requeue: true };
            message.delivery.acker.reject(options).await.unwrap();
        }
    }

    let url = &pipeline.services.amqp_url.as_str().into();
    let listing = dlq::list(url, &pipeline.topology, StageName::Capture, 10)
        .await
        .unwrap();
    assert_eq!(listing.letters.len(), 1);
    let letter = &listing.letters[0];
    assert_eq!(letter.kind, "exhausted-retries", "{letter:?}");
    assert_eq!(letter.reason.as_deref(), Some("delivery limit reached"));
    assert_eq!(letter.original_routing_key.as_deref(), Some("heat.result"));
    assert_eq!(
        letter.original_exchange.as_deref(),
        Some(pipeline.topology.input_exchange())
    );
    assert!(letter.first_failed_at.is_some(), "{letter:?}");
    assert_eq!(letter.attempts, None, "not in the message");

    // `list` returned the letter to its quorum queue; the requeue is a Raft commit, so wait
    // until the letter is ready again before planning a replay of it.
    wait_dead(&pipeline, StageName::Capture, 1).await;
    // With no x-original-routing-key, a replay goes to the stage's routing key.
    let planned = dlq::replay(url, &pipeline.topology, StageName::Capture, 10, true)
        .await
        .unwrap();
    assert_eq!(planned[0].routing_key, "heat.result");
    wait_dead(&pipeline, StageName::Capture, 1).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn replay_sends_a_dead_letter_back_with_fresh_counters() {
    let pipeline = TestPipeline::spawn("dlq-replay", 2).await;
    pipeline.publish(&mismatch("m-2")).await;
    wait_dead(&pipeline, StageName::Capture, 1).await;
    let url = &pipeline.services.amqp_url.as_str().into();
    let before = dlq::list(url, &pipeline.topology, StageName::Capture, 10)
        .await
        .unwrap();
    let first_failed_at = before.letters[0].first_failed_at.clone().unwrap();

    let dry = dlq(&pipeline, &["dlq", "replay", "capture", "--dry-run"], None).await;
    assert!(dry.status.success(), "{dry:?}");
    let text = dry.stdout;
    assert!(text.contains("-> exchange"), "{text}");
    assert!(
        text.contains("dry run: 1 dead letter(s) would be replayed"),
        "{text}"
    );
    wait_dead(&pipeline, StageName::Capture, 1).await;
    // Give a wrongly replayed message time to come back; it must not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_dead(&pipeline, StageName::Capture, 1).await;

    // Listing and the dry run returned the dead letter twice: on RabbitMQ before 4.3 it now
    // carries an x-delivery-count, which the replay must not take along.
    let replayed = dlq(&pipeline, &["dlq", "replay", "capture"], None).await;
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(
        replayed.stdout.contains("1 dead letter(s) replayed"),
        "{}",
        replayed.stdout
    );

    // Still invalid: capture dead-letters it again, as a first attempt.
    let again = take_dead_letter(&pipeline, StageName::Capture).await;
    assert_eq!(again.data, mismatch("m-2"));
    let headers = again.properties.headers().as_ref();
    assert_eq!(header_int(&again, "x-attempts"), Some(1));
    assert_eq!(header_int(&again, "x-delivery-count").unwrap_or(0), 0);
    assert_eq!(
        header_str(headers, "x-error-class").as_deref(),
        Some("status_mismatch")
    );
    assert_eq!(
        header_str(headers, "x-first-failed-at").as_deref(),
        Some(first_failed_at.as_str()),
        "the first failure is remembered"
    );
    assert!(
        header_str(headers, "x-published-at-ms").is_some(),
        "other headers are kept"
    );
    assert_eq!(
        pipeline
            .get(&pipeline.keys.heat_stack("ports", "m-2"))
            .await,
        None
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_replayed_valid_message_is_processed() {
    let pipeline = TestPipeline::spawn("dlq-valid", 2).await;
    // Dead-lettered as the runner does it, e.g. by a stage version with a bug since fixed.
    let mut headers = input_properties().headers().clone().unwrap();
    for (name, value) in [
        ("x-stage", long_string("capture")),
        ("x-error-kind", long_string("permanent")),
        ("x-error-class", long_string("invalid_message")),
        ("x-error-reason", long_string("invalid_message: a bug")),
        (
            "x-original-exchange",
            long_string(pipeline.topology.input_exchange()),
        ),
        ("x-original-routing-key", long_string("heat.result")),
        ("x-attempts", AMQPValue::LongLongInt(20)),
        ("x-delivery-count", AMQPValue::LongLongInt(19)),
    ] {
        headers.insert(name.into(), value);
    }
    amqp::publish_confirmed(
        &pipeline.channel,
        &pipeline.topology.dead_exchange(),
        StageName::Capture.as_str(),
        SEED_INPUT,
        input_properties().with_headers(headers),
    )
    .await
    .unwrap();
    wait_dead(&pipeline, StageName::Capture, 1).await;

    let replayed = dlq(&pipeline, &["dlq", "replay", "capture"], None).await;
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(replayed.stdout.contains("1 dead letter(s) replayed"));
    let state = pipeline
        .wait_for(&pipeline.keys.state("ports", SEED_ID), |_| true)
        .await;
    assert_eq!(state, SEED_STATE);
    wait_dead(&pipeline, StageName::Capture, 0).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn purge_asks_first_and_only_yes_purges() {
    let pipeline = TestPipeline::new("dlq-purge").await;
    for body in [&b"one"[..], b"two"] {
        amqp::publish_confirmed(
            &pipeline.channel,
            &pipeline.topology.dead_exchange(),
            StageName::Wrap.as_str(),
            body,
            input_properties().with_headers(FieldTable::default()),
        )
        .await
        .unwrap();
    }
    wait_dead(&pipeline, StageName::Wrap, 2).await;
    let queue = pipeline.topology.dead_queue(StageName::Wrap);

    for answer in [Some(&b"n\n"[..]), Some(b"whatever\n"), None] {
        let output = dlq(&pipeline, &["dlq", "purge", "wrap"], answer).await;
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let prompt = format!("Purge 2 dead letters from {queue}? [y/N] ");
        assert!(output.stderr.contains(&prompt), "{}", output.stderr);
        assert!(output.stdout.contains("2 dead letter(s)"));
        wait_dead(&pipeline, StageName::Wrap, 2).await;
    }

    let output = dlq(&pipeline, &["dlq", "purge", "wrap", "--yes"], None).await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        output
            .stdout
            .contains(&format!("2 dead letter(s) purged from {queue}")),
        "{}",
        output.stdout
    );
    wait_dead(&pipeline, StageName::Wrap, 0).await;
    pipeline.stop().await;
}
