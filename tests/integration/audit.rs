//! `heat-pipeline audit` and `reconcile`, run as the binary against problems made for real:
//! a wrap result too large for etcd (dead-lettered), a wrap process killed for good with
//! its message lost, a job_state written by hand, a record corrupted by hand, an order key
//! left alone.

use std::process::Command;
use std::time::{Duration, Instant};

use lapin::options::QueuePurgeOptions;
use serde_json::Value;

use crate::helpers::process::{run, Ran};
use crate::helpers::{assert_contains, heat_result, TestPipeline, PATIENCE, SEED_ID};
use heat_pipeline::stages::StageName;

/// Runs the binary off the runtime's threads (the in-process stages keep running).
async fn run_bin(mut command: Command) -> Ran {
    tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap()
}

/// `audit --format json --older-than 0s`: its exit code and its findings by id.
async fn audit(pipeline: &TestPipeline) -> (Option<i32>, Vec<Value>) {
    let ran = run_bin(pipeline.command(&[
        "audit",
        "--format",
        "json",
        "--older-than",
        "0s",
        "--page-size",
        "2",
    ]))
    .await;
    let findings = ran
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    (ran.status.code(), findings)
}

fn of<'a>(findings: &'a [Value], id: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["id"] == id).collect()
}

async fn put(pipeline: &TestPipeline, key: &str, value: &[u8]) {
    pipeline
        .etcd
        .kv_client()
        .put(key, value, None)
        .await
        .unwrap();
}

/// Writes a job_state of `ports/<id>` by hand, as normalize leaves one, with `order` as its
/// order key: a job that wrap never finished.
async fn put_job_state(pipeline: &TestPipeline, id: &str, order: &[u8]) {
    const JOB_STATE: &[u8] = br#"{"heat_outputs": [], "orchestration_state": "CREATE_COMPLETE"}"#;
    put(pipeline, &pipeline.keys.job_state("ports", id), JOB_STATE).await;
    put(pipeline, &pipeline.keys.job_state_order("ports", id), order).await;
}

async fn wait_gone(pipeline: &TestPipeline, key: &str) {
    let deadline = Instant::now() + PATIENCE;
    while pipeline.get(key).await.is_some() {
        assert!(Instant::now() < deadline, "{key} is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_explains_each_problem_and_reconcile_repairs_what_can_be_repaired() {
    let mut pipeline = TestPipeline::new("audit").await;
    pipeline.start_stages(4).await;
    let keys = pipeline.keys.clone();

    // Nothing stored yet: nothing found, exit 0.
    let (code, findings) = audit(&pipeline).await;
    assert_eq!((code, findings.len()), (Some(0), 0), "{findings:?}");

    // A healthy resource.
    pipeline.publish_seed().await;

    // A wrap result too large for etcd: /state carries the outputs as a JSON string, so
    // quotes cost four bytes there and two in job_state; job_state fits, /state does not.
    let quotes = "\"".repeat(400_000);
    let big = serde_json::to_vec(&serde_json::json!({
        "job": {"action": "create", "resource_type": "port", "resource_path": "ports",
                "resource_id": "big", "version": 1, "tenant_id": "t"},
        "stack": {"stack_name": "port_big", "stack_status": "CREATE_COMPLETE",
                  "stack_status_reason": "ok",
                  "outputs": [{"output_key": "q", "output_value": quotes}]}
    }))
    .unwrap();
    pipeline.publish(&big).await;
    let dead = pipeline.topology.dead_queue(StageName::Wrap);
    pipeline
        .wait_any_ready(&dead, "wrap never dead-lettered the big result")
        .await;

    // A job_state written by hand, with an order key in the format before lineage.
    put_job_state(&pipeline, "hand", br#"{"version":3,"phase":"final"}"#).await;

    // A finished resource whose heat_stacks is corrupted by hand.
    pipeline
        .publish(&heat_result(
            "create",
            "corrupt",
            1,
            "CREATE_COMPLETE",
            "ok",
        ))
        .await;
    pipeline.wait_for_state("corrupt", 1).await;
    put(
        &pipeline,
        &keys.heat_stack("ports", "corrupt"),
        b"{\"stack_id\": tru",
    )
    .await;

    // An order key left alone.
    put(
        &pipeline,
        &keys.heat_stack_order("ports", "lonely"),
        br#"{"version":1,"phase":"final"}"#,
    )
    .await;

    let (code, findings) = audit(&pipeline).await;
    assert_eq!(code, Some(1), "{findings:#?}");
    assert!(of(&findings, SEED_ID).is_empty(), "{findings:#?}");

    let big = of(&findings, "big");
    assert_eq!(big.len(), 1, "{big:#?}");
    assert_eq!(big[0]["problem"], "stuck");
    assert_eq!(big[0]["path"], "ports");
    assert_eq!(big[0]["version"], 1);
    assert!(big[0]["since"].as_str().unwrap().ends_with('Z'), "{big:#?}");
    let letter = &big[0]["dead_letter"];
    assert_eq!(letter["stage"], "wrap");
    assert_eq!(letter["kind"], "permanent");
    assert_eq!(letter["class"], "record_too_large");
    assert!(
        letter["reason"].as_str().unwrap().contains("request limit"),
        "{letter}"
    );

    let hand = of(&findings, "hand");
    assert_eq!(hand.len(), 1, "{hand:#?}");
    assert_eq!(hand[0]["problem"], "stuck");
    assert_eq!(hand[0]["version"], 3);
    assert_eq!(
        hand[0]["since"],
        Value::Null,
        "no lineage in a hand-written key"
    );
    assert_eq!(hand[0]["dead_letter"], Value::Null);

    let corrupt = of(&findings, "corrupt");
    assert_eq!(corrupt.len(), 1, "{corrupt:#?}");
    assert_eq!(corrupt[0]["problem"], "unreadable");
    assert_eq!(
        corrupt[0]["key"],
        keys.heat_stack("ports", "corrupt").as_str()
    );

    let lonely = of(&findings, "lonely");
    assert_eq!(lonely.len(), 1, "{lonely:#?}");
    assert_eq!(lonely[0]["problem"], "orphan");

    // The table for people says the same.
    let table = run_bin(pipeline.command(&["audit", "--older-than", "0s"])).await;
    assert_eq!(table.status.code(), Some(1));
    assert!(table.stdout.starts_with("PROBLEM"), "{}", table.stdout);
    assert_contains(&table.stdout, "record_too_large");

    // Reconcile: a dry run changes nothing.
    let dry = run_bin(pipeline.command(&["reconcile", "--dry-run", "ports/hand"])).await;
    assert_eq!(dry.status.code(), Some(0), "{dry:?}");
    assert_contains(&dry.stdout, "would re-drive version 3 to wrap");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pipeline.get(&keys.state("ports", "hand")).await, None);

    // The hand-written job_state goes through wrap: /state of version 3, job_state removed.
    let done = run_bin(pipeline.command(&["reconcile", "ports/hand"])).await;
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    let state = pipeline.wait_for_state("hand", 3).await;
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED");
    wait_gone(&pipeline, &keys.job_state("ports", "hand")).await;

    // The big one has a dead letter: reconcile replays it (and wrap refuses it again).
    let replayed = run_bin(pipeline.command(&["reconcile", "ports/big"])).await;
    assert_eq!(replayed.status.code(), Some(0), "{replayed:?}");
    assert_contains(&replayed.stdout, "replayed 1 dead letter");

    // Unreadable and orphan records cannot be re-driven: said, exit 1.
    let cannot = run_bin(pipeline.command(&["reconcile", "ports/corrupt", "ports/lonely"])).await;
    assert_eq!(cannot.status.code(), Some(1), "{cannot:?}");
    assert_contains(
        &cannot.stdout,
        "ports/corrupt: cannot re-drive: heat_stacks is unreadable",
    );
    assert_contains(&cannot.stdout, "ports/lonely: cannot re-drive");

    pipeline
        .wait_any_ready(&dead, "the replayed big result was not dead-lettered again")
        .await;
    let (code, findings) = audit(&pipeline).await;
    assert_eq!(code, Some(1));
    assert!(of(&findings, "hand").is_empty(), "repaired: {findings:#?}");
    assert_eq!(
        of(&findings, "big")[0]["dead_letter"]["class"],
        "record_too_large"
    );

    // show: each record's revision, stage, time, version and trace id.
    let shown = run_bin(pipeline.command(&["show", &format!("ports/{SEED_ID}")])).await;
    assert_eq!(shown.status.code(), Some(0), "{shown:?}");
    for stage in ["capture", "normalize", "wrap"] {
        assert_contains(&shown.stdout, &format!(" by {stage} at "));
    }
    assert_contains(&shown.stdout, "job version 1 (final), trace ");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_wrap_died_for_good_is_found_and_re_driven() {
    let pipeline = TestPipeline::new("audit-killed").await;
    let capture = pipeline.start_process(&["run", "capture"]);
    let normalize = pipeline.start_process(&["run", "normalize"]);
    let wrap = pipeline.start_process(&["run", "wrap"]);
    pipeline
        .publish(&heat_result("create", "k1", 1, "CREATE_COMPLETE", "ok"))
        .await;
    pipeline.wait_for_state("k1", 1).await;

    // wrap is killed for good, and the hand-off waiting for it is lost.
    wrap.kill();
    pipeline
        .publish(&heat_result("modify", "k1", 2, "UPDATE_COMPLETE", "ok"))
        .await;
    let job_state = pipeline.keys.job_state("ports", "k1");
    pipeline.wait_for(&job_state, |_| true).await;
    let wrap_queue = pipeline.topology.queue(StageName::Wrap);
    pipeline
        .wait_any_ready(&wrap_queue, "normalize never handed off")
        .await;
    pipeline
        .channel
        .queue_purge(wrap_queue.as_str().into(), QueuePurgeOptions::default())
        .await
        .unwrap();

    // Not yet ten minutes old: not stuck by default.
    let young = run_bin(pipeline.command(&["audit", "--format", "json"])).await;
    assert_eq!(young.status.code(), Some(0), "{young:?}");
    let (code, findings) = audit(&pipeline).await;
    assert_eq!(code, Some(1));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["problem"], "stuck");
    assert_eq!(findings[0]["version"], 2);
    assert_eq!(findings[0]["dead_letter"], Value::Null);

    let redriven =
        run_bin(pipeline.command(&["reconcile", "--all-stuck", "--older-than", "0s"])).await;
    assert_eq!(redriven.status.code(), Some(0), "{redriven:?}");
    assert_contains(&redriven.stdout, "ports/k1: re-drove version 2 to wrap");

    let wrap = pipeline.start_process(&["run", "wrap"]);
    let state = pipeline.wait_for_state("k1", 2).await;
    assert_eq!(state["state"]["worker_state"], "MODIFY_COMPLETED");
    wait_gone(&pipeline, &job_state).await;
    let (code, findings) = audit(&pipeline).await;
    assert_eq!((code, findings.len()), (Some(0), 0), "{findings:#?}");

    for process in [capture, normalize, wrap] {
        process.terminate().await;
    }
    pipeline.stop().await;
}

#[tokio::test]
async fn audit_that_cannot_reach_etcd_exits_2() {
    let pipeline = TestPipeline::new("audit-no-etcd").await;
    let ran = run_bin({
        let mut command = pipeline.command(&["audit", "--no-dead-letters"]);
        command.env("ETCD_ENDPOINTS", "http://127.0.0.1:1");
        command.env("ETCD_TIMEOUT", "1s");
        command
    })
    .await;
    assert_eq!(ran.status.code(), Some(2), "{ran:?}");
    assert_contains(&ran.stderr, "cannot scan");
    pipeline.stop().await;
}

/// `run --audit-every` exports the audit's counts: one stuck job, and its job_state's age.
#[tokio::test]
async fn a_process_run_with_audit_every_exports_stuck_jobs_and_the_oldest_job_state() {
    use crate::helpers::process::{free_addr, spawn};

    let pipeline = TestPipeline::new("audit-every").await;
    put_job_state(&pipeline, "s1", br#"{"version":2,"phase":"final","stage":"normalize","written_at":"2026-01-01T00:00:00.000Z","trace_id":"x"}"#).await;
    let addr = free_addr();
    let mut env = pipeline.env();
    env.push(("HTTP_ADDR", addr.clone()));
    let process = spawn(
        &env,
        &[
            "run",
            "wrap",
            "--audit-every",
            "1s",
            "--audit-older-than",
            "1m",
        ],
    );

    let metrics = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let body = agent
                .get(&format!("http://{addr}/metrics"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .unwrap_or_default();
            if body.lines().any(|l| l == "heat_pipeline_stuck_jobs 1") {
                return body;
            }
            assert!(Instant::now() < deadline, "no stuck job exported:\n{body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    assert!(
        metrics.contains(r#"heat_pipeline_audit_findings{problem="stuck"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"heat_pipeline_audit_findings{problem="orphan"} 0"#),
        "{metrics}"
    );
    let oldest: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("heat_pipeline_oldest_job_state_seconds "))
        .expect("the oldest job_state's age")
        .parse()
        .unwrap();
    assert!(oldest > 86_400.0, "written in January: {oldest}");
    process.terminate().await;
    pipeline.stop().await;
}

/// Loads `AUDIT_BENCH_RESOURCES` resources (default 1,000,000) under `AUDIT_BENCH_PREFIX`
/// for `scripts/audit-bench.sh`, which starts a private etcd for it: refused against the
/// shared one. Every resource is finished (heat_stacks, both order keys, `/state`, the
/// lineage key) but one in a hundred, which is stuck (job_state, `/state` a version
/// behind), and one in a thousand has an unreadable heat_stacks.
#[tokio::test]
#[ignore = "a benchmark's loader: run by scripts/audit-bench.sh against its own etcd"]
async fn load_resources_for_the_audit_benchmark() {
    use etcd_client::{Txn, TxnOp};
    use futures_util::stream::{self, StreamExt};
    use heat_pipeline::keys::Keyspace;

    let endpoints = std::env::var("AUDIT_BENCH_ETCD").expect("run by scripts/audit-bench.sh");
    assert_ne!(endpoints, "http://127.0.0.1:2379", "never the shared etcd");
    let count: u64 =
        std::env::var("AUDIT_BENCH_RESOURCES").map_or(1_000_000, |n| n.parse().expect("a number"));
    let prefix = std::env::var("AUDIT_BENCH_PREFIX").unwrap_or_default();
    let keys = Keyspace::new(prefix, "v2.0");
    let client = etcd_client::Client::connect([endpoints.as_str()], None)
        .await
        .unwrap();
    let old = "2026-11-27T00:00:00.000Z";
    let outputs = r#"[{"output_key": "id", "output_value": "f68d0924-3f6a-4a8b-a0cc-53f1ae3e2b2b", "description": "Port id"}]"#;
    let started = Instant::now();
    // At most 5 puts per resource, 24 resources: 120 operations per transaction (etcd: 128).
    const PER_TXN: u64 = 24;
    let batches = stream::iter((0..count.div_ceil(PER_TXN)).map(|b| b * PER_TXN..((b + 1) * PER_TXN).min(count)))
        .map(|batch| {
            let mut kv = client.kv_client();
            let keys = keys.clone();
            async move {
                let mut ops = Vec::new();
                for n in batch {
                    let id = format!("{n:08x}-d910-430a-93f7-3776ea07f992");
                    let stuck = n % 100 == 7;
                    let version = 1 + n % 5;
                    let order = format!(r#"{{"version":{version},"phase":"final","stage":"normalize","written_at":"{old}","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}}"#);
                    let stack = if n % 1000 == 3 {
                        "{\"stack_id\": tru".to_string()
                    } else {
                        format!(r#"{{"stack_id": "port_{id}", "tenant_id": "fe3a4a1a72c04479bb6c19c2c0ccba4c", "stack_status": "CREATE_COMPLETE", "output": {outputs}, "status_reason": "Stack CREATE completed successfully", "id": "port:{id}"}}"#)
                    };
                    let state_version = if stuck { version - 1 } else { version };
                    let state = format!(
                        r#"{{"state": {{"worker_state": "CREATE_COMPLETED", "heat_outputs": {}, "orchestration_state": "CREATE_COMPLETE"}}, "version": {state_version}, "error": ""}}"#,
                        serde_json::to_string(outputs).unwrap()
                    );
                    ops.push(TxnOp::put(keys.heat_stack("ports", &id), stack, None));
                    ops.push(TxnOp::put(keys.heat_stack_order("ports", &id), order.clone(), None));
                    ops.push(TxnOp::put(keys.job_state_order("ports", &id), order.clone(), None));
                    if state_version > 0 {
                        ops.push(TxnOp::put(keys.state("ports", &id), state, None));
                    }
                    if stuck {
                        let job_state = format!(r#"{{"heat_outputs": {outputs}, "orchestration_state": "CREATE_COMPLETE"}}"#);
                        ops.push(TxnOp::put(keys.job_state("ports", &id), job_state, None));
                    } else {
                        ops.push(TxnOp::put(keys.state_lineage("ports", &id), order, None));
                    }
                }
                kv.txn(Txn::new().and_then(ops)).await.unwrap();
            }
        })
        .buffer_unordered(16);
    let done = batches.count().await;
    eprintln!(
        "loaded {count} resources in {done} transactions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
