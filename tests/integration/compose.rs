//! The compose stacks from the outside (`scripts/compose-test.sh`, which names the running
//! project in `HEAT_PIPELINE_COMPOSE_PROJECT`; without it these tests pass at once): the
//! seed's records byte for byte, then faults while results flow, each counted as a row:
//! - `docker-compose.yml`: the broker killed, etcd restarted, a wrap container killed;
//! - `docker-compose.cluster.yml`: a broker node, the etcd leader and a stage container each
//!   cut off the network for 30 s, a stage container that hears nothing for 30 s, and 5 %
//!   then 20 % of the packets to and from every stage dropped for 30 s.
//!
//! Nothing may be lost, wrong or dead-lettered, and no `/state` may ever go back to an older
//! version (every write is watched). Every fault is taken back when the test ends, also
//! when it fails ([`faults::Undo`]).

mod faults;
mod history;
mod run;
mod stack;

use std::time::Duration;

use etcd_client::GetOptions;

use crate::helpers::faults::SERIAL;
use crate::helpers::{SEED_HEAT_STACKS, SEED_ID, SEED_INPUT, SEED_JOB_STATE, SEED_STATE};
use faults::Fault;
use run::{observer, print_table, run_fault};
use stack::Stack;

const CUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_records_are_the_originals_byte_for_byte() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let (leader, _) = stack.etcd_roles().await;
    let pipeline = observer(stack.services(&leader).await).await;
    pipeline.publish(SEED_INPUT).await;
    let state_key = pipeline.keys.state("ports", SEED_ID);
    pipeline.wait_for(&state_key, |_| true).await;
    let state = pipeline
        .etcd
        .kv_client()
        .get(state_key, None)
        .await
        .unwrap();
    let state = &state.kvs()[0];
    assert_eq!(state.value(), SEED_STATE, "/state");
    let stack_key = pipeline.keys.heat_stack("ports", SEED_ID);
    assert_eq!(
        pipeline.get(&stack_key).await.as_deref(),
        Some(SEED_HEAT_STACKS)
    );
    // wrap removed job_state in the transaction that wrote /state: its last value is the
    // one just before.
    let job_key = pipeline.keys.job_state("ports", SEED_ID);
    let before = GetOptions::new().with_revision(state.mod_revision() - 1);
    let job = pipeline
        .etcd
        .kv_client()
        .get(job_key, Some(before))
        .await
        .unwrap();
    assert_eq!(job.kvs()[0].value(), SEED_JOB_STATE, "job_state");
    println!("seed: /state, heat_stacks and job_state identical to tests/fixtures/seed/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_under_faults_lose_nothing() {
    let Some(mut stack) = Stack::from_env() else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let faults = if stack.is_cluster() {
        vec![
            Fault::Nothing(CUT),
            Fault::CutBroker(CUT),
            Fault::CutEtcdLeader(CUT),
            Fault::CutStage("wrap", CUT),
            Fault::Deaf("wrap", CUT),
            Fault::Loss(0.05, CUT),
            Fault::Loss(0.20, CUT),
        ]
    } else {
        vec![
            Fault::Kill("rabbitmq", Duration::from_secs(2)),
            Fault::Restart("etcd"),
            Fault::Kill("wrap", Duration::from_secs(3)),
        ]
    };
    let only = std::env::var("COMPOSE_FAULTS").unwrap_or_default();
    let mut rows = Vec::new();
    for fault in faults {
        if !only.is_empty() && !fault.name().contains(&only) {
            continue;
        }
        let row = run_fault(&mut stack, fault).await;
        eprintln!("compose: {row:?}");
        rows.push(row);
    }
    print_table(&rows);
    for row in &rows {
        assert!(row.passed(), "{}: {row:?}", row.fault);
    }
}
