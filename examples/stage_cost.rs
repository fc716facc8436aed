//! The pipeline's own cost, without the broker and etcd: runs one stage's pure step
//! (decode, then decide, which encodes the record and the hand-off) over a workload's
//! messages ITERATIONS times, each on the snapshot the stage would read for it.
//! `scripts/instructions.sh` runs it under callgrind to count instructions per message.
//!
//!   cargo run --release --example stage_cost -- STAGE WORKLOAD ITERATIONS
//!
//! STAGE: capture, normalize or wrap. WORKLOAD: `seed` (the seed create on an empty store)
//! or `lifecycle-1k`, `lifecycle-8k`, `lifecycle-64k` (one resource's five results, as the
//! benchmark's lifecycle workload sends them, with outputs of that size). The inputs of
//! normalize and wrap are the hand-offs of the stage before, and every snapshot is what
//! the stage finds after the earlier messages went through all three stages; all of it is
//! prepared before the loop, so start-up and preparation cost the same whatever ITERATIONS.

#[path = "../benches/pipeline/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::collections::BTreeMap;
use std::hint::black_box;

use heat_pipeline::keys::Keyspace;
use heat_pipeline::plan::{Decision, Lineage, Snapshot, Stored, Write};
use heat_pipeline::stages::{Capture, Normalize, Stage, StageName, Wrap};

const SEED: &str = include_str!("heat_result.port.json");

/// An in-memory etcd: values and the revision that last modified each.
#[derive(Default)]
struct Store {
    keys: BTreeMap<String, Stored>,
    revision: i64,
}

impl Store {
    /// What a read of `stage`'s keys for `input` finds.
    fn read<S: Stage>(&self, stage: &S, input: &S::Input) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for key in stage.reads(input) {
            let stored = self.keys.get(&key).cloned();
            snapshot.insert(key, stored);
        }
        snapshot
    }

    fn apply(&mut self, decision: &Decision) {
        self.revision += 1;
        for write in &decision.writes {
            match write {
                Write::Put { key, value } => {
                    let stored = Stored {
                        value: value.clone(),
                        mod_revision: self.revision,
                    };
                    self.keys.insert(key.clone(), stored);
                }
                Write::Delete { key } => {
                    self.keys.remove(key);
                }
            }
        }
    }

    /// Runs `stage` on `body` as the runner would: returns the snapshot it decided on and
    /// the hand-off.
    fn step<S: Stage>(&mut self, stage: &S, body: &[u8]) -> (Snapshot, Option<Vec<u8>>) {
        let input = stage.decode(body).expect("the workload's messages decode");
        let snapshot = self.read(stage, &input);
        let decision = stage
            .decide(&input, &snapshot, &lineage())
            .expect("and decide");
        self.apply(&decision);
        (snapshot, decision.handoff)
    }
}

/// Each stage's messages (body, and the snapshot it decides on), in order.
type Cases = [Vec<(Vec<u8>, Snapshot)>; 3];

fn cases(bodies: &[Vec<u8>], capture: &Capture, normalize: &Normalize, wrap: &Wrap) -> Cases {
    let mut store = Store::default();
    let mut cases: Cases = Default::default();
    for body in bodies {
        let (snapshot, handoff) = store.step(capture, body);
        cases[0].push((body.clone(), snapshot));
        let Some(body) = handoff else { continue };
        let (snapshot, handoff) = store.step(normalize, &body);
        cases[1].push((body, snapshot));
        let Some(body) = handoff else { continue };
        let (snapshot, _) = store.step(wrap, &body);
        cases[2].push((body, snapshot));
    }
    cases
}

fn bodies(workload: &str) -> Vec<Vec<u8>> {
    let size = match workload {
        "seed" => return vec![SEED.as_bytes().to_vec()],
        "lifecycle-1k" => 1024,
        "lifecycle-8k" => 8 * 1024,
        "lifecycle-64k" => 64 * 1024,
        other => {
            panic!("unknown workload {other:?} (seed, lifecycle-1k, lifecycle-8k, lifecycle-64k)")
        }
    };
    let mut rng = fastrand::Rng::with_seed(12);
    workload::resource(
        "5f0c6a2e-1f7b-4c55-9d1e-3a8b2c4d6e70",
        size,
        [false; 4],
        &mut rng,
    )
    .into_iter()
    .map(|m| m.body)
    .collect()
}

/// What the runner passes a stage for each delivery (the time and trace id its order keys
/// record).
fn lineage() -> Lineage {
    Lineage {
        written_at: "2026-11-27T08:00:00.000Z".to_string(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
    }
}

/// The measured loop: decode and decide, `iterations` times over every case.
#[inline(never)]
fn run<S: Stage>(stage: &S, cases: &[(Vec<u8>, Snapshot)], iterations: usize) {
    let lineage = lineage();
    for _ in 0..iterations {
        for (body, snapshot) in cases {
            let input = stage.decode(black_box(body)).expect("decodes");
            black_box(
                stage
                    .decide(&input, black_box(snapshot), &lineage)
                    .expect("decides"),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [stage, workload, iterations] = args.as_slice() else {
        eprintln!("usage: stage_cost capture|normalize|wrap seed|lifecycle-1k|lifecycle-8k|lifecycle-64k ITERATIONS");
        std::process::exit(2);
    };
    let stage: StageName = stage.parse().unwrap_or_else(|e| panic!("{e}"));
    let iterations: usize = iterations.parse().expect("ITERATIONS is a number");
    let keys = Keyspace::new("", "v2.0");
    let capture = Capture { keys: keys.clone() };
    let normalize = Normalize { keys: keys.clone() };
    let wrap = Wrap { keys };
    let cases = cases(&bodies(workload), &capture, &normalize, &wrap);
    let bytes = |i: usize| cases[i].iter().map(|(b, _)| b.len()).sum::<usize>();
    let i = match stage {
        StageName::Capture => 0,
        StageName::Normalize => 1,
        StageName::Wrap => 2,
    };
    // What scripts/instructions.sh divides by.
    println!("messages {} bytes {}", cases[i].len(), bytes(i));
    match stage {
        StageName::Capture => run(&capture, &cases[0], iterations),
        StageName::Normalize => run(&normalize, &cases[1], iterations),
        StageName::Wrap => run(&wrap, &cases[2], iterations),
    }
}
