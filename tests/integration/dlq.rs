//! `heat-pipeline dlq`: listing leaves dead letters in place and shows them escaped,
//! whatever they hold; a fetch the broker never answers ends with an error; replay sends
//! them back to the stage with fresh attempt counters, by the stage's route alone; purge
//! asks first and removes exactly the letters it counted.

use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::process::{self, run, Process, Ran};
use crate::helpers::*;
use heat_pipeline::amqp::{self, header_str, long_string};
use heat_pipeline::ops::dlq;
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::stages::StageName;
use lapin::message::Delivery;
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Runs `heat-pipeline` for `pipeline` with `stdin` as its standard input.
async fn dlq(pipeline: &TestPipeline, args: &[&str], stdin: Option<&[u8]>) -> Ran {
    dlq_via(pipeline, &pipeline.services.amqp_url, args, stdin).await
}

/// [`dlq`] talking to the broker at `amqp_url` (a [`Proxy`]).
async fn dlq_via(
    pipeline: &TestPipeline,
    amqp_url: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Ran {
    let mut process = Process::start(
        pipeline
            .command(args)
            .env("AMQP_URL", amqp_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    process.feed(stdin.unwrap_or_default()); // then end of input
    process.finish(PATIENCE).await
}

/// Puts a dead letter straight into `stage`'s dead-letter queue, as the runner (or a
/// hostile publisher whose message the runner passed on) would leave it.
async fn publish_dead(
    pipeline: &TestPipeline,
    stage: StageName,
    body: &[u8],
    properties: BasicProperties,
) {
    amqp::publish_confirmed(
        &pipeline.channel,
        &pipeline.topology.dead_exchange(),
        stage.as_str(),
        body,
        properties,
    )
    .await
    .unwrap();
}

/// `input_properties()` with `headers` added.
fn with_headers(headers: Vec<(&str, AMQPValue)>) -> BasicProperties {
    let mut table = input_properties().headers().clone().unwrap_or_default();
    for (name, value) in headers {
        table.insert(name.into(), value);
    }
    input_properties().with_headers(table)
}

/// Fails unless `text` is only printable ASCII and newlines: nothing a terminal acts on
/// (ESC, CR, bidi controls, line separators), so the lines shown are the lines printed.
fn assert_terminal_safe(text: &str) {
    let unsafe_chars: Vec<char> = text
        .chars()
        .filter(|c| *c != '\n' && !(' '..='~').contains(c))
        .collect();
    assert!(unsafe_chars.is_empty(), "{unsafe_chars:?} in:\n{text}");
}

/// Takes (and acks) every message of `queue`, bodies in order.
async fn drain_queue(pipeline: &TestPipeline, queue: &str) -> Vec<Delivery> {
    let mut taken = Vec::new();
    while let Some(delivery) = pipeline.take(queue).await.unwrap() {
        taken.push(delivery);
    }
    taken
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
        if let Some(delivery) = pipeline.take(&queue).await.unwrap() {
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

#[test]
fn each_dlq_command_documents_its_exit_codes() {
    let cases: &[(&str, &[&str])] = &[
        (
            "list",
            &[
                "0  the letters were listed",
                "1  the dead-letter queue does not exist",
                "[possible values: text, json]",
            ],
        ),
        (
            "replay",
            &[
                "0  every letter taken was replayed",
                "1  the dead-letter queue does not exist",
                "did not hand over a letter in time: no letter was replayed",
                "the ones before it were replayed",
            ],
        ),
        (
            "purge",
            &[
                "0  the letters counted were purged",
                "1  the purge was declined at the prompt",
                "the dead-letter queue does not exist",
            ],
        ),
    ];
    for (command, says) in cases {
        let ran = run(&mut process::command(&[], &["dlq", command, "--help"]));
        assert!(ran.status.success(), "{command}: {ran:?}");
        let text = ran.stdout;
        assert!(text.contains("\nExit codes:\n"), "{command}:\n{text}");
        assert!(text.contains("  2  the command line is wrong"), "{text}");
        for said in *says {
            assert!(text.contains(said), "{command} lacks {said:?}:\n{text}");
        }
    }
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
    let listing = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Capture)
        .list(10)
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
    let planned = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Capture)
        .replay(10, true)
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
    let before = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Capture)
        .list(10)
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
    assert_contains(&replayed.stdout, "1 dead letter(s) replayed");
    // Its progress bar is for a terminal: a pipe gets none.
    for bar in ["\x1b", "fetching", "replaying"] {
        assert!(!replayed.stderr.contains(bar), "{}", replayed.stderr);
    }

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
    assert_eq!(pipeline.heat_stack("m-2").await, None);
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
        assert_contains(&output.stderr, &prompt);
        assert!(output.stdout.contains("2 dead letter(s)"));
        wait_dead(&pipeline, StageName::Wrap, 2).await;
    }

    let output = dlq(&pipeline, &["dlq", "purge", "wrap", "--yes"], None).await;
    assert!(output.status.success(), "{output:?}");
    assert_contains(
        &output.stdout,
        &format!("2 dead letter(s) purged from {queue}"),
    );
    wait_dead(&pipeline, StageName::Wrap, 0).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn list_shows_what_a_letter_holds_escaped_never_raw() {
    let pipeline = TestPipeline::new("dlq-escape").await;
    let reason = "bad\n#9 message id: forged\r\x1b[2J\x1b]0;owned\x07\u{202e}txt.exe\u{2028}end";
    let hostile = with_headers(vec![
        // Not text: shown as what it is.
        ("x-error-kind", AMQPValue::LongLongInt(7)),
        (
            "x-error-class",
            AMQPValue::LongString(LongString::from(b"class\xff\xfe".to_vec())),
        ),
        ("x-error-reason", long_string(reason)),
        // Not an integer: no attempts shown, and no failure.
        ("x-attempts", long_string("3\n")),
        (
            "x-original-routing-key",
            AMQPValue::FieldArray(FieldArray::from(vec![long_string("a\tb")])),
        ),
    ])
    .with_message_id("id\x1b[1m\u{200f}".into());
    publish_dead(
        &pipeline,
        StageName::Capture,
        b"\xff\xfe{\"a\": \"\x1b[31m\"}",
        hostile,
    )
    .await;
    // A plain letter behind it is listed too.
    let plain = with_headers(vec![("x-error-kind", long_string("permanent"))])
        .with_message_id("m-2".into());
    publish_dead(&pipeline, StageName::Capture, b"plain", plain).await;
    wait_dead(&pipeline, StageName::Capture, 2).await;

    let listed = dlq(&pipeline, &["dlq", "list", "capture"], None).await;
    assert!(listed.status.success(), "{listed:?}");
    let text = &listed.stdout;
    assert_terminal_safe(text);
    for line in [
        r"#1 message id: id\x1b[1m\u{200f}",
        "  kind:         7",
        r"  class:        class\xff\xfe",
        r"  reason:       bad\n#9 message id: forged\r\x1b[2J\x1b]0;owned\x07\u{202e}txt.exe\u{2028}end",
        "  attempts:     -",
        r"  original:     exchange -, routing key [a\tb]",
        r#"  body:         16 bytes: \xff\xfe{"a": "\x1b[31m"}"#,
        "#2 message id: m-2",
        "  kind:         permanent",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    // Nine lines and a blank one per letter, and the count: no forged line.
    assert_eq!(text.lines().count(), 2 * 10 + 1, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with('#')).count(), 2);

    let json = dlq(
        &pipeline,
        &["dlq", "list", "capture", "--format", "json"],
        None,
    )
    .await;
    assert!(json.status.success(), "{json:?}");
    assert_terminal_safe(&json.stdout);
    assert_eq!(json.stdout.lines().count(), 1, "{}", json.stdout);
    let listing: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(listing["in_queue"], 2);
    let letter = &listing["letters"][0];
    assert_eq!(
        letter["reason"],
        r"bad\n#9 message id: forged\r\x1b[2J\x1b]0;owned\x07\u{202e}txt.exe\u{2028}end"
    );
    assert_eq!(letter["message_id"], r"id\x1b[1m\u{200f}");
    assert_eq!(letter["class"], r"class\xff\xfe");
    assert_eq!(letter["attempts"], serde_json::Value::Null);
    assert_eq!(listing["letters"][1]["message_id"], "m-2");

    // Both left in place.
    wait_dead(&pipeline, StageName::Capture, 2).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn a_short_string_that_is_not_utf8_is_shown_escaped() {
    let pipeline = TestPipeline::new("dlq-not-utf8").await;
    // lapin cannot send a short string that is not UTF-8; the proxy makes one of `\x7f\x7f`.
    let proxy = Proxy::start(&pipeline.services.amqp_url, Fault::NotUtf8).await;
    let (connection, _node) = amqp::connect(&proxy.url.as_str().into(), "test")
        .await
        .unwrap();
    let channel = amqp::confirm_channel(&connection).await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert("x-\x7f\x7f".into(), long_string("v"));
    headers.insert("x-error-reason".into(), long_string("why \x7f\x7f"));
    let properties = BasicProperties::default()
        .with_message_id("id-\x7f\x7f".into())
        .with_content_type("application/\x7f\x7f".into())
        .with_headers(headers);
    for (body, properties) in [
        (&b"first"[..], properties),
        (b"second", input_properties().with_message_id("m-2".into())),
    ] {
        amqp::publish_confirmed(
            &channel,
            &pipeline.topology.dead_exchange(),
            StageName::Normalize.as_str(),
            body,
            properties,
        )
        .await
        .unwrap();
    }
    let _ = connection.close(200, "".into()).await;
    drop(proxy);
    wait_dead(&pipeline, StageName::Normalize, 2).await;

    let url = &pipeline.services.amqp_url.as_str().into();
    let listing = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Normalize)
        .list(10)
        .await
        .unwrap();
    let ids: Vec<_> = listing
        .letters
        .iter()
        .map(|l| l.message_id.as_deref())
        .collect();
    assert_eq!(ids, [Some(r"id-\u{fffd}\u{fffd}"), Some("m-2")]);
    // A long string keeps its bytes: shown as bytes.
    assert_eq!(listing.letters[0].reason.as_deref(), Some(r"why \xff\xfe"));
    wait_dead(&pipeline, StageName::Normalize, 2).await;

    let listed = dlq(&pipeline, &["dlq", "list", "normalize"], None).await;
    assert!(listed.status.success(), "{listed:?}");
    assert_terminal_safe(&listed.stdout);
    assert_contains(&listed.stdout, r"#1 message id: id-\u{fffd}\u{fffd}");
    wait_dead(&pipeline, StageName::Normalize, 2).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn a_fetch_the_broker_never_answers_ends_with_an_error_naming_the_letter() {
    let pipeline = TestPipeline::new("dlq-hang").await;
    publish_dead(&pipeline, StageName::Wrap, b"stuck", input_properties()).await;
    wait_dead(&pipeline, StageName::Wrap, 1).await;
    // A broker that takes the basic.get and never answers it; all else flows, heartbeats
    // included, so only the fetch's own bound can end the wait.
    let proxy = Proxy::start(&pipeline.services.amqp_url, Fault::SwallowGet).await;

    for args in [&["dlq", "list", "wrap"][..], &["dlq", "replay", "wrap"]] {
        let started = Instant::now();
        let output = dlq_via(&pipeline, &proxy.url, args, None).await;
        let took = started.elapsed();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let err = &output.stderr;
        let queue = pipeline.topology.dead_queue(StageName::Wrap);
        let said = format!(
            "the broker did not hand over dead letter 1 of {queue} within {:?}; nothing was \
             changed: check the broker (heat-pipeline status) and run the command again",
            dlq::FETCH_TIMEOUT
        );
        assert!(err.contains(&said), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(took >= dlq::FETCH_TIMEOUT, "gave up after {took:?}");
        // Nothing was taken.
        wait_dead(&pipeline, StageName::Wrap, 1).await;
    }
    drop(proxy);
    pipeline.stop().await;
}

#[tokio::test]
async fn replay_routes_by_the_stage_whatever_the_letter_says() {
    let pipeline = TestPipeline::spawn("dlq-route", 2).await;
    // A bogus original routing key first, a valid letter behind it: both valid inputs,
    // left by a stage version with a bug since fixed.
    let bogus = with_headers(vec![
        ("x-error-kind", long_string("permanent")),
        ("x-original-exchange", long_string("nowhere")),
        ("x-original-routing-key", long_string("nowhere")),
    ]);
    let valid = with_headers(vec![
        ("x-error-kind", long_string("permanent")),
        (
            "x-original-exchange",
            long_string(pipeline.topology.input_exchange()),
        ),
        (
            "x-original-routing-key",
            long_string(StageName::Capture.routing_key()),
        ),
    ]);
    let ok = |id| heat_result("create", id, 1, "CREATE_COMPLETE", "");
    publish_dead(&pipeline, StageName::Capture, &ok("r-bogus"), bogus).await;
    publish_dead(&pipeline, StageName::Capture, &ok("r-valid"), valid).await;
    wait_dead(&pipeline, StageName::Capture, 2).await;

    let url = &pipeline.services.amqp_url.as_str().into();
    let mut steps = Vec::new();
    let replayed = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Capture)
        .replay_with_progress(10, false, |step| steps.push(step))
        .await
        .unwrap();
    let (exchange, routing_key) = pipeline.topology.route(StageName::Capture);
    assert_eq!(replayed.len(), 2);
    // What a progress bar is told: each letter fetched, then each replayed.
    use dlq::Progress::{Fetched, Replayed};
    assert_eq!(
        steps,
        [
            Fetched { done: 1, of: 2 },
            Fetched { done: 2, of: 2 },
            Replayed { done: 1, of: 2 },
            Replayed { done: 2, of: 2 },
        ]
    );
    for target in &replayed {
        assert_eq!(
            (target.exchange.as_str(), target.routing_key.as_str()),
            (exchange.as_str(), routing_key)
        );
    }
    assert_eq!(
        replayed[0].info.original_routing_key.as_deref(),
        Some("nowhere")
    );
    // Both reached capture, and went all the way.
    for id in ["r-bogus", "r-valid"] {
        pipeline
            .wait_for(&pipeline.keys.state("ports", id), |_| true)
            .await;
    }
    wait_dead(&pipeline, StageName::Capture, 0).await;
    pipeline.stop().await;
}

#[tokio::test]
async fn replay_takes_neither_the_letters_cc_nor_its_delivery_properties() {
    let pipeline = TestPipeline::new("dlq-cc").await;
    // CC would route a copy to wrap through the hand-off exchange (the broker keeps CC on
    // the message; it removes BCC); an expiration would drop the replay from the stage
    // queue; a user id not the replayer's would make the broker refuse it.
    let properties = with_headers(vec![(
        "CC",
        AMQPValue::FieldArray(FieldArray::from(vec![
            long_string(StageName::Wrap.routing_key()),
            long_string(StageName::Normalize.routing_key()),
        ])),
    )])
    .with_expiration("600000".into())
    .with_user_id("guest".into());
    publish_dead(&pipeline, StageName::Capture, b"letter", properties).await;
    wait_dead(&pipeline, StageName::Capture, 1).await;

    let url = &pipeline.services.amqp_url.as_str().into();
    let replayed = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Capture)
        .replay(10, false)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);
    wait_dead(&pipeline, StageName::Capture, 0).await;
    // Routed (and confirmed) before replay returned: a copy would be there now.
    for stage in [StageName::Normalize, StageName::Wrap] {
        let queue = pipeline.topology.queue(stage);
        assert_eq!(pipeline.ready_count(&queue).await, 0, "a copy in {queue}");
    }
    let queue = pipeline.topology.queue(StageName::Capture);
    pipeline.wait_ready(&queue, 1).await;
    let taken = drain_queue(&pipeline, &queue).await;
    assert_eq!(taken.len(), 1);
    let properties = &taken[0].properties;
    assert_eq!(taken[0].data, b"letter");
    assert!(
        !properties
            .headers()
            .as_ref()
            .is_some_and(|h| h.contains_key("CC")),
        "{properties:?}"
    );
    assert_eq!(properties.expiration(), &None);
    assert_eq!(properties.user_id(), &None);
    assert!(
        header_str(properties.headers().as_ref(), "x-published-at-ms").is_some(),
        "other headers are kept"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn purge_removes_exactly_the_letters_it_counted() {
    let pipeline = TestPipeline::new("dlq-purge-counted").await;
    let publish = |body: &'static str| {
        publish_dead(
            &pipeline,
            StageName::Wrap,
            body.as_bytes(),
            input_properties(),
        )
    };
    publish("early-1").await;
    publish("early-2").await;
    wait_dead(&pipeline, StageName::Wrap, 2).await;
    let url = &pipeline.services.amqp_url.as_str().into();
    let counted = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Wrap)
        .count()
        .await
        .unwrap();
    assert_eq!(counted, 2);

    // While the operator reads the prompt, more letters arrive.
    for body in ["late-1", "late-2", "late-3"] {
        publish(body).await;
    }
    wait_dead(&pipeline, StageName::Wrap, 5).await;
    let removed = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Wrap)
        .purge(counted)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    wait_dead(&pipeline, StageName::Wrap, 3).await;
    let queue = pipeline.topology.dead_queue(StageName::Wrap);
    let left: Vec<Vec<u8>> = drain_queue(&pipeline, &queue)
        .await
        .into_iter()
        .map(|d| d.data)
        .collect();
    assert_eq!(left, [&b"late-1"[..], b"late-2", b"late-3"]);

    // Fewer letters than counted (another purge came first): it removes those and says so.
    publish("one").await;
    wait_dead(&pipeline, StageName::Wrap, 1).await;
    let removed = dlq::DeadLetterQueue::of(url, &pipeline.topology, StageName::Wrap)
        .purge(10)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    wait_dead(&pipeline, StageName::Wrap, 0).await;
    pipeline.stop().await;
}

/// A TCP proxy in front of the test broker that plays one fault on what the client sends,
/// for the cases the real broker will not produce on demand. Stops (its connections too)
/// when dropped.
struct Proxy {
    /// The broker's URL with the proxy's address.
    url: String,
    accepting: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Swallows every `basic.get`: a broker that never answers it. Everything else
    /// (heartbeats included) flows, so the connection stays up.
    SwallowGet,
    /// Turns every `\x7f\x7f` the client sends into `\xff\xfe`: a short string that is not
    /// UTF-8, which lapin cannot send but another client can.
    NotUtf8,
}

impl Proxy {
    async fn start(broker_url: &str, fault: Fault) -> Proxy {
        // amqp://user:password@host:port/vhost (the first node of a list).
        let first = broker_url.split(',').next().unwrap();
        let (scheme_and_user, rest) = first.rsplit_once('@').expect("a URL with a user");
        let (mut broker, vhost) = rest.split_once('/').unwrap_or((rest, "%2f"));
        let with_port;
        if !broker.contains(':') {
            with_port = format!("{broker}:5672");
            broker = &with_port;
        }
        let broker = broker.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "{scheme_and_user}@{}/{vhost}",
            listener.local_addr().unwrap()
        );
        let accepting = tokio::spawn(async move {
            let mut relays = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                if let Ok(server) = TcpStream::connect(&broker).await {
                    relays.spawn(relay(client, server, fault));
                }
            }
        });
        Proxy { url, accepting }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Drops the relays' JoinSet too, which aborts them: their sockets close.
        self.accepting.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, fault: Fault) {
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, server_write) = server.into_split();
    tokio::select! {
        _ = client_frames(client_read, server_write, fault) => {}
        _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
    }
}

/// Passes the client's protocol header, then its frames one by one, with `fault` applied.
async fn client_frames(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    fault: Fault,
) -> io::Result<()> {
    const METHOD_FRAME: u8 = 1;
    const BASIC_GET: [u8; 4] = [0, 60, 0, 70];
    let mut protocol_header = [0u8; 8];
    from.read_exact(&mut protocol_header).await?;
    to.write_all(&protocol_header).await?;
    loop {
        // Type, channel, payload size; then the payload and the frame-end octet.
        let mut head = [0u8; 7];
        from.read_exact(&mut head).await?;
        let size = u32::from_be_bytes(head[3..7].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; size + 1];
        from.read_exact(&mut rest).await?;
        match fault {
            Fault::SwallowGet if head[0] == METHOD_FRAME && rest.starts_with(&BASIC_GET) => {
                continue
            }
            Fault::NotUtf8 => {
                for i in 1..size {
                    if rest[i - 1..=i] == [0x7f, 0x7f] {
                        rest[i - 1..=i].copy_from_slice(&[0xff, 0xfe]);
                    }
                }
            }
            Fault::SwallowGet => {}
        }
        to.write_all(&head).await?;
        to.write_all(&rest).await?;
    }
}
