//! The trust boundary (docs/SECURITY.md): upstream may publish Heat results to the input
//! exchange and nothing else, and the broker, not the pipeline's manners, enforces it.

use std::time::Duration;

use heat_pipeline::amqp::{self, PublishError};
use heat_pipeline::stages::StageName;
use lapin::options::{BasicGetOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;

use crate::helpers::rabbit::PrivateRabbit;
use crate::helpers::{services, Services, TestPipeline, SEED_INPUT, SEED_STATE};

/// What a hostile upstream would publish as wrap's hand-off: an existing resource's
/// `/state` at version 99 with an error of its choosing (the body never reaches a stage).
const FORGED_WRAP: &[u8] = br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "23464cbc-d910-430a-93f7-3776ea07f992", "version": 99, "tenant_id": "t"}, "job_state": {"heat_outputs": [], "orchestration_state": "CREATE_FAILED"}, "status_reason": "forged"}"#;

/// Publishes as upstream would: persistent, mandatory, confirmed.
async fn publish(channel: &lapin::Channel, exchange: &str, key: &str) -> Result<(), PublishError> {
    let body = if key == StageName::Capture.routing_key() {
        SEED_INPUT
    } else {
        FORGED_WRAP
    };
    amqp::publish_confirmed(channel, exchange, key, body, BasicProperties::default()).await
}

fn refused(result: Result<(), PublishError>) -> bool {
    matches!(&result, Err(PublishError::Broker(e)) if e.to_string().contains("ACCESS_REFUSED"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_may_publish_heat_results_and_nothing_else() {
    let rabbit = PrivateRabbit::start().await;
    let shared = services().await;
    let services = Services {
        amqp_url: rabbit.url.clone(),
        etcd_endpoints: shared.etcd_endpoints.clone(),
    };
    let mut pipeline = TestPipeline::with_services("trust", services).await;
    let name = pipeline.name.clone();
    // The two users of docs/SECURITY.md, with its permission patterns.
    let own = format!("^{}(\\..+)?$", name.replace('.', "\\."));
    let input = format!("^{}$", name.replace('.', "\\."));
    rabbit.ctl(&["add_user", "upstream", "up-secret"]).await;
    rabbit
        .ctl(&["set_permissions", "-p", "/", "upstream", "^$", &input, "^$"])
        .await;
    rabbit.ctl(&["add_user", "pipeline", "hp-secret"]).await;
    rabbit
        .ctl(&["set_permissions", "-p", "/", "pipeline", &own, &own, &own])
        .await;
    let port = rabbit
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    pipeline.services.amqp_url = format!("amqp://pipeline:hp-secret@127.0.0.1:{port}/%2f");
    pipeline.start_stages(4).await;

    let upstream_url = format!("amqp://upstream:up-secret@127.0.0.1:{port}/%2f");
    let (upstream, _) = amqp::connect(&upstream_url.as_str().into(), "upstream")
        .await
        .expect("upstream connects");
    let channel = || async { amqp::confirm_channel(&upstream).await.unwrap() };

    // A Heat result goes in and becomes the seed's records.
    let heat = channel().await;
    let (capture_key, wrap_key) = (
        StageName::Capture.routing_key(),
        StageName::Wrap.routing_key(),
    );
    publish(&heat, &name, capture_key)
        .await
        .expect("a Heat result is taken");
    pipeline.assert_seed_records().await;

    // A forged hand-off through the input exchange reaches no queue.
    let forged = publish(&heat, &name, wrap_key).await;
    assert!(
        matches!(forged, Err(PublishError::Unroutable { .. })),
        "{forged:?}"
    );
    // Through the pipeline's own exchanges, or straight to a queue: refused by the broker.
    let handoff = pipeline.topology.handoff_exchange();
    let dead = pipeline.topology.dead_exchange();
    let wrap_queue = pipeline.topology.queue(StageName::Wrap);
    for (exchange, key) in [
        (handoff.as_str(), wrap_key),
        (dead.as_str(), "wrap"),
        ("", wrap_queue.as_str()),
    ] {
        let result = publish(&channel().await, exchange, key).await;
        assert!(refused(result), "{exchange:?} {key:?} must be refused");
    }
    // Nor may upstream read the pipeline's queues or bind its own way in.
    let reader = channel().await;
    let got = reader
        .basic_get(wrap_queue.as_str().into(), BasicGetOptions::default())
        .await;
    assert!(got.is_err(), "upstream may not read {wrap_queue}");
    let binder = channel().await;
    let bound = binder
        .queue_bind(
            wrap_queue.as_str().into(),
            name.as_str().into(),
            "forged".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(bound.is_err(), "upstream may not bind {wrap_queue}");

    // And the resource's /state is still the seed's.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = pipeline.keys.state("ports", crate::helpers::SEED_ID);
    assert_eq!(pipeline.get(&state).await.as_deref(), Some(SEED_STATE));
    let _ = upstream.close(200, "done".into()).await;
    pipeline.stop().await;
    drop(rabbit);
}

/// An installation from before 0.2 bound the normalize and wrap queues to the input
/// exchange; `seal` (run once no old process is left) removes that way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_closes_the_legacy_way_to_the_stage_queues() {
    let pipeline = TestPipeline::new("trust-seal").await;
    let topology = &pipeline.topology;
    let (input, wrap_key) = (topology.input_exchange(), StageName::Wrap.routing_key());
    let wrap_queue = topology.queue(StageName::Wrap);
    // What an older process declares.
    for stage in [StageName::Normalize, StageName::Wrap] {
        pipeline
            .channel
            .queue_bind(
                topology.queue(stage).into(),
                input.into(),
                stage.routing_key().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    publish(&pipeline.channel, input, wrap_key)
        .await
        .expect("the legacy binding routes a forged hand-off");
    pipeline.wait_ready(&wrap_queue, 1).await;

    topology.seal(&pipeline.channel).await.expect("seal");
    topology
        .seal(&pipeline.channel)
        .await
        .expect("seal is idempotent");
    let forged = publish(&pipeline.channel, input, wrap_key).await;
    assert!(
        matches!(forged, Err(PublishError::Unroutable { .. })),
        "{forged:?}"
    );
    // Hand-offs still arrive, through the hand-off exchange.
    let (exchange, key) = topology.route(StageName::Wrap);
    publish(&pipeline.channel, &exchange, key).await.unwrap();
    pipeline.wait_ready(&wrap_queue, 2).await;
    pipeline.stop().await;
}
