//! The stages' commit cache: an update of a resource a process handled before is committed
//! on what the process remembers, guarded by revision. When another process wrote in
//! between, the remembered snapshot is stale: the guard fails, the stage decides again on
//! what is there, and the records still end right.

use std::time::Duration;

use heat_pipeline::stages::StageName;

use crate::helpers::*;

fn modify(id: &str, version: u64) -> Vec<u8> {
    heat_result("modify", id, version, "UPDATE_COMPLETE", "")
}

/// The version in a heat_stacks record's outputs (`heat_result` outputs its version).
fn heat_stack_version(record: &[u8]) -> serde_json::Value {
    let record: serde_json::Value = serde_json::from_slice(record).unwrap();
    record["output"][0]["output_value"].clone()
}

/// Waits until every queue of `pipeline` is empty and nothing is in flight for a while.
async fn settle(pipeline: &TestPipeline) {
    for _ in 0..3 {
        for stage in StageName::ALL {
            pipeline
                .wait_ready(&pipeline.topology.queue(stage), 0)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_stale_cache_still_yields_the_right_records() {
    // Two pipelines, each with its own queues and its own in-process stages, writing the
    // same keys: "another process" for each other.
    let a = TestPipeline::spawn("cache-a", 8).await;
    let mut b = TestPipeline::new("cache-b").await;
    b.keys = a.keys.clone();
    b.prefix = a.prefix.clone();
    b.start_stages(8).await;
    let id = "cached-1";
    let stack_key = a.keys.heat_stack("ports", id);

    // a handles versions 1 and 2: its stages now remember the records at their revisions.
    a.publish(&heat_result("create", id, 1, "CREATE_COMPLETE", ""))
        .await;
    a.wait_for_state(id, 1).await;
    a.publish(&modify(id, 2)).await;
    a.wait_for_state(id, 2).await;

    // b writes version 3 behind a's back; a's memory of the keys is now stale.
    b.publish(&modify(id, 3)).await;
    b.wait_for_state(id, 3).await;

    // a's next update commits on its stale memory, is refused, decides again on what is
    // there, and writes version 4 right.
    a.publish(&modify(id, 4)).await;
    let state = a.wait_for_state(id, 4).await;
    assert_eq!(state["state"]["worker_state"], "MODIFY_COMPLETED");
    assert_eq!(heat_stack_version(&a.get(&stack_key).await.unwrap()), 4);

    // b writes version 6; a, remembering version 4, gets version 5: older than what is
    // stored, so nothing changes.
    b.publish(&modify(id, 6)).await;
    b.wait_for_state(id, 6).await;
    a.publish(&modify(id, 5)).await;
    settle(&a).await;
    assert_eq!(a.wait_for_state(id, 6).await["version"], 6);
    assert_eq!(heat_stack_version(&a.get(&stack_key).await.unwrap()), 6);
    let job_state = a.get(&a.keys.job_state("ports", id)).await;
    assert_eq!(job_state, None, "no job_state left behind");

    b.stop().await;
    a.stop().await;
}
