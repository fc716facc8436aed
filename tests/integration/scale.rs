//! Scale-out: several processes per stage on one queue each, results for the same resource
//! arriving shuffled. etcd transactions keep every record at its highest version.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::faults::*;
use crate::helpers::process::{Process, SHUTDOWN_PATIENCE};
use crate::helpers::*;
use heat_pipeline::lifecycle::Phase;
use heat_pipeline::records::OrderKey;

/// A deterministic shuffle (xorshift), so a failure can be replayed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[tokio::test]
async fn three_processes_per_stage_keep_every_resource_at_its_highest_version() {
    let pipeline = TestPipeline::new("scale").await;
    let mut processes: Vec<Process> = Vec::new();
    for stage in ["capture", "normalize", "wrap"] {
        for _ in 0..3 {
            processes.push(Process::start(
                pipeline
                    .command(&["run", stage, "--concurrency", "16"])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit()),
            ));
        }
    }

    // 1,000 resources, versions 1 to 5 each, all 5,000 results in one shuffled stream.
    let mut sent = Sent::new();
    let mut bodies = Vec::new();
    for n in 0..1000 {
        let id = format!("s-{n}");
        for version in 1..=5 {
            bodies.push(heat_result("create", &id, version, "CREATE_COMPLETE", ""));
            sent.entry(id.clone()).or_default().push(version);
        }
    }
    shuffle(&mut bodies, 0x5eed_cafe);
    for body in &bodies {
        pipeline.publish(body).await;
    }

    let tally = pipeline.settle(&sent, Duration::from_secs(240)).await;
    report(
        "3 processes per stage, 5 versions shuffled",
        bodies.len(),
        sent.len(),
        &tally,
    );
    eprintln!("scale-out: {tally:?}");
    // All drain at once.
    for child in &processes {
        child.signal("TERM");
    }
    for child in processes {
        let ran = child.finish(SHUTDOWN_PATIENCE).await;
        assert!(ran.status.success(), "exit 0 after SIGTERM");
    }
    // Every delivery was acked (in batches) before the processes closed their channels:
    // an unacked one would be back in its queue now.
    for stage in heat_pipeline::stages::StageName::ALL {
        let queue = pipeline.topology.queue(stage);
        assert_eq!(
            pipeline.ready_count(&queue).await,
            0,
            "{queue} has unacked leftovers"
        );
    }
    assert_eq!(tally.correct, 1000, "every /state at version 5");
    assert_eq!(tally.lost, 0);
    assert_eq!(tally.dead_lettered, 0);
    assert_eq!(tally.duplicated, 0);
    assert_eq!(tally.leftover_job_state, 0);

    // heat_stacks and job_state agree with /state: heat_stacks holds version 5's outputs,
    // and the order keys say version 5, final.
    let mut kv = pipeline.etcd.kv_client();
    for n in (0..1000).step_by(37) {
        let id = format!("s-{n}");
        let stack = pipeline.heat_stack(&id).await.unwrap();
        assert!(
            String::from_utf8(stack)
                .unwrap()
                .contains("\"output_value\": 5,"),
            "{id}"
        );
        let order = pipeline.keys.job_state_order("ports", &id);
        let stored = kv.get(order.as_str(), None).await.unwrap();
        let value = stored.kvs()[0].value();
        let written = OrderKey::from_bytes(value).expect("an order key");
        assert_eq!((written.version, written.phase), (5, Phase::Final), "{id}");
        assert_eq!(written.stage.as_deref(), Some("normalize"), "{id}");
    }
    pipeline.stop().await;
}
