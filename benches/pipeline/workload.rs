//! The benchmark's input messages: `create` (the seed result for new resources, today's
//! workload) and `lifecycle` (resources that are created, modified twice and deleted, as a
//! busy region sends them). `benches/instructions.rs` includes this file too.

use serde_json::{json, Value};

/// The seed's resource id, replaced by each message's own.
const SEED_ID: &str = "23464cbc-d910-430a-93f7-3776ea07f992";

/// Messages per resource in `lifecycle`: create in progress, create, modify, modify, delete.
pub const LIFECYCLE_STEPS: usize = 5;

/// One Heat result to publish, and what it should leave in `/state`.
pub struct Message {
    pub id: String,
    pub version: u64,
    pub body: Vec<u8>,
    /// `None`: an in-progress result, which writes no `/state`; `Some(failed)`: a finished
    /// job, whose `/state` is `<ACTION>_FAILED` when `failed`.
    pub finished: Option<bool>,
}

/// The shape of a `lifecycle` run.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleShape {
    /// Resources in flight at once, each sending its next message in its own order.
    pub window: usize,
    /// The share of jobs that fail (`*_FAILED` with a reason).
    pub fail_rate: f64,
    /// Output sizes are drawn log-uniformly from this range, in bytes (per resource).
    pub min_output: usize,
    pub max_output: usize,
}

impl Default for LifecycleShape {
    fn default() -> Self {
        LifecycleShape {
            window: 300,
            fail_rate: 0.05,
            min_output: 1024,
            max_output: 64 * 1024,
        }
    }
}

/// Today's workload: the seed result (a completed create, version 1) for resources
/// `<tag>-<n>`.
pub fn create(template: &str, tag: &str, range: std::ops::Range<usize>) -> Vec<Message> {
    range
        .map(|n| {
            let id = format!("{tag}-{n}");
            Message {
                body: template.replace(SEED_ID, &id).into_bytes(),
                id,
                version: 1,
                finished: Some(false),
            }
        })
        .collect()
}

/// `resources` resources `<tag>-<n>`, each going through [`LIFECYCLE_STEPS`] results, at
/// most `shape.window` of them in flight at once; each step picks an active resource at
/// random and sends its next result, so one resource's results keep their order.
/// Deterministic for a given `seed`.
pub fn lifecycle(tag: &str, resources: usize, shape: LifecycleShape, seed: u64) -> Vec<Message> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut queued: Vec<std::vec::IntoIter<Message>> = Vec::new();
    let mut started = 0;
    let mut out = Vec::with_capacity(resources * LIFECYCLE_STEPS);
    loop {
        while queued.len() < shape.window.max(1) && started < resources {
            let size = log_uniform(&mut rng, shape.min_output, shape.max_output);
            let fails = [(); 4].map(|_| rng.f64() < shape.fail_rate);
            let id = format!("{tag}-{started}");
            queued.push(resource(&id, size, fails, &mut rng).into_iter());
            started += 1;
        }
        if queued.is_empty() {
            return out;
        }
        let i = rng.usize(..queued.len());
        match queued[i].next() {
            Some(message) => out.push(message),
            None => {
                queued.swap_remove(i);
            }
        }
    }
}

/// One resource's results: create (in progress, then finished; version 1), modify
/// (version 2), modify (3), delete (4; the stack is gone, or `DELETE_FAILED`). Each of the
/// four jobs fails where `fails` says so. Outputs add up to `size` bytes of values.
pub fn resource(id: &str, size: usize, fails: [bool; 4], rng: &mut fastrand::Rng) -> Vec<Message> {
    let mut messages = vec![result(
        id,
        "create",
        1,
        "CREATE_IN_PROGRESS",
        "Stack CREATE started",
        json!([]),
        None,
    )];
    let jobs = [
        ("create", "CREATE"),
        ("modify", "UPDATE"),
        ("modify", "UPDATE"),
        ("delete", "DELETE"),
    ];
    for (i, ((action, heat), failed)) in jobs.into_iter().zip(fails).enumerate() {
        let version = i as u64 + 1;
        let message = if action == "delete" && !failed {
            // Heat no longer has the stack: no `stack` at all.
            let body = json!({ "job": job(id, action, version) });
            Message {
                id: id.to_string(),
                version,
                body: serde_json::to_vec(&body).unwrap(),
                finished: Some(false),
            }
        } else {
            let (status, reason) = if failed {
                (
                    format!("{heat}_FAILED"),
                    format!("Resource {heat} failed: Conflict: quota exceeded (version {version})"),
                )
            } else {
                (
                    format!("{heat}_COMPLETE"),
                    format!("Stack {heat} completed successfully"),
                )
            };
            result(
                id,
                action,
                version,
                &status,
                &reason,
                outputs(size, rng),
                Some(failed),
            )
        };
        messages.push(message);
    }
    messages
}

fn job(id: &str, action: &str, version: u64) -> Value {
    json!({
        "action": action,
        "resource_type": "port",
        "resource_path": "ports",
        "resource_id": id,
        "version": version,
        "tenant_id": "fe3a4a1a72c04479bb6c19c2c0ccba4c",
    })
}

fn result(
    id: &str,
    action: &str,
    version: u64,
    status: &str,
    reason: &str,
    outputs: Value,
    finished: Option<bool>,
) -> Message {
    let body = json!({
        "job": job(id, action, version),
        "stack": {
            "id": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
            "stack_name": format!("port_{id}"),
            "stack_status": status,
            "stack_status_reason": reason,
            "outputs": outputs,
        },
    });
    Message {
        id: id.to_string(),
        version,
        body: serde_json::to_vec(&body).unwrap(),
        finished,
    }
}

/// Heat outputs whose values are strings adding up to `size` bytes: one output per started
/// 8 KiB, at most 8.
pub fn outputs(size: usize, rng: &mut fastrand::Rng) -> Value {
    let count = size.div_ceil(8 * 1024).clamp(1, 8);
    let list: Vec<Value> = (0..count)
        .map(|i| {
            let length = size / count + usize::from(i < size % count);
            let value: String = (0..length).map(|_| rng.alphanumeric()).collect();
            json!({
                "output_value": value,
                "description": format!("Output {i} of the port."),
                "output_key": format!("output_{i}"),
            })
        })
        .collect();
    Value::Array(list)
}

/// A size between `min` and `max`, log-uniformly: as many resources of 1-2 KiB as of 32-64.
fn log_uniform(rng: &mut fastrand::Rng, min: usize, max: usize) -> usize {
    let (low, high) = ((min.max(1) as f64).ln(), (max.max(min).max(1) as f64).ln());
    (low + rng.f64() * (high - low)).exp().round() as usize
}
