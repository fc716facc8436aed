//! The pipeline's own cost per message, counted in instructions by callgrind through the
//! gungraun harness: repeatable from run to run, unlike a time, and free of the broker and
//! etcd. Each benchmark runs one stage's pure step once (decode, then decide, which encodes
//! the record and the hand-off) on one message and the snapshot the stage would read for
//! it; `three_stages` runs all three on it. Run it with `scripts/instructions.sh` (which
//! installs the harness's runner, `gungraun-runner`, of the same version).
//!
//! Messages: `seed`, the seed result (a completed create) on an empty store, and
//! `outputs_64k`, a completed create with 64 KiB of outputs after its in-progress result (as
//! the benchmark's lifecycle workload sends them). Everything the step needs is prepared
//! in the setup, which also runs the step once so that the count is of a warm process;
//! the setup is not counted, and the case is returned so that its drop is not either.

#[path = "pipeline/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::collections::BTreeMap;
use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};
use heat_pipeline::keys::Keyspace;
use heat_pipeline::plan::{Decision, Lineage, Snapshot, Stored, Write};
use heat_pipeline::stages::{Capture, Normalize, Stage, Wrap};

const SEED: &str = include_str!("../examples/heat_result.port.json");

/// The three stages, as the binary builds them.
struct Stages {
    capture: Capture,
    normalize: Normalize,
    wrap: Wrap,
}

impl Stages {
    fn new() -> Stages {
        let keys = Keyspace::new("", "v2.0");
        Stages {
            capture: Capture { keys: keys.clone() },
            normalize: Normalize { keys: keys.clone() },
            wrap: Wrap { keys },
        }
    }
}

/// What the runner passes a stage for each delivery (the time and trace id its order keys
/// record).
fn lineage() -> Lineage {
    Lineage {
        written_at: "2026-11-27T08:00:00.000Z".to_string(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
    }
}

/// An in-memory etcd: values and the revision that last modified each.
#[derive(Default)]
struct Store {
    keys: BTreeMap<String, Stored>,
    revision: i64,
}

impl Store {
    /// Runs `stage` on `body` as the runner would, on what a read finds: returns the
    /// snapshot it decided on and the hand-off.
    fn step<S: Stage>(&mut self, stage: &S, body: &[u8]) -> (Snapshot, Option<Vec<u8>>) {
        let input = stage.decode(body).expect("the message decodes");
        let mut snapshot = Snapshot::default();
        for key in stage.reads(&input) {
            let stored = self.keys.get(&key).cloned();
            snapshot.insert(key, stored);
        }
        let decision = stage
            .decide(&input, &snapshot, &lineage())
            .expect("and decides");
        self.revision += 1;
        for write in &decision.writes {
            match write {
                Write::Put { key, value } => {
                    let stored = Stored {
                        value: value.to_vec(),
                        mod_revision: self.revision,
                    };
                    self.keys.insert(key.clone(), stored);
                }
                Write::Delete { key } => {
                    self.keys.remove(key);
                }
            }
        }
        (snapshot, decision.handoff)
    }
}

/// One message at each stage: its body there (the Heat result, then the hand-offs) and the
/// snapshot the stage decides on.
struct Case {
    stages: Stages,
    lineage: Lineage,
    inputs: [(Vec<u8>, Snapshot); 3],
}

/// The last of `bodies` at each stage, after the ones before it went through all three.
fn prepare(bodies: Vec<Vec<u8>>) -> Case {
    let stages = Stages::new();
    let mut store = Store::default();
    let mut last = None;
    for body in bodies {
        let (captured, handoff) = store.step(&stages.capture, &body);
        let handoff = handoff.expect("capture hands off");
        let (normalized, handoff2) = store.step(&stages.normalize, &handoff);
        let handoff2 = handoff2.expect("normalize hands off");
        let (wrapped, _) = store.step(&stages.wrap, &handoff2);
        last = Some([(body, captured), (handoff, normalized), (handoff2, wrapped)]);
    }
    let case = Case {
        stages,
        lineage: lineage(),
        inputs: last.expect("a message"),
    };
    // Warm up: the counted run is not a process's first.
    for stage in 0..3 {
        step(&case, stage);
    }
    case
}

fn seed() -> Case {
    prepare(vec![SEED.as_bytes().to_vec()])
}

fn outputs_64k() -> Case {
    let mut rng = fastrand::Rng::with_seed(12);
    let id = "5f0c6a2e-1f7b-4c55-9d1e-3a8b2c4d6e70";
    let lifecycle = workload::resource(id, 64 * 1024, [false; 4], &mut rng);
    prepare(lifecycle.into_iter().take(2).map(|m| m.body).collect())
}

/// Decode and decide at one stage (0 capture, 1 normalize, 2 wrap).
fn step(case: &Case, stage: usize) {
    fn run<S: Stage>(stage: &S, (body, snapshot): &(Vec<u8>, Snapshot), lineage: &Lineage) {
        let input = stage.decode(black_box(body)).expect("decodes");
        let decision: Decision = stage
            .decide(&input, black_box(snapshot), lineage)
            .expect("decides");
        black_box(decision);
    }
    let (stages, lineage) = (&case.stages, &case.lineage);
    match stage {
        0 => run(&stages.capture, &case.inputs[0], lineage),
        1 => run(&stages.normalize, &case.inputs[1], lineage),
        _ => run(&stages.wrap, &case.inputs[2], lineage),
    }
}

#[library_benchmark]
#[bench::seed(setup = seed)]
#[bench::outputs_64k(setup = outputs_64k)]
fn capture(case: Case) -> Case {
    step(&case, 0);
    case
}

#[library_benchmark]
#[bench::seed(setup = seed)]
#[bench::outputs_64k(setup = outputs_64k)]
fn normalize(case: Case) -> Case {
    step(&case, 1);
    case
}

#[library_benchmark]
#[bench::seed(setup = seed)]
#[bench::outputs_64k(setup = outputs_64k)]
fn wrap(case: Case) -> Case {
    step(&case, 2);
    case
}

#[library_benchmark]
#[bench::seed(setup = seed)]
#[bench::outputs_64k(setup = outputs_64k)]
fn three_stages(case: Case) -> Case {
    for stage in 0..3 {
        step(&case, stage);
    }
    case
}

library_benchmark_group!(
    name = per_message,
    benchmarks = [capture, normalize, wrap, three_stages]
);

main!(library_benchmark_groups = per_message);
