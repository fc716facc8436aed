//! Upgrades, in both directions, from the bytes the previous release wrote
//! (`tests/fixtures/compat/<version>/`, recorded from a live run of its binary; the README
//! there says how): its hand-offs and keys read by this release, and this release's read by
//! the previous release's rules (docs/ARCHITECTURE.md, "Compatibility between versions").
//! Pure: no service.
//!
//! - Forward: each recorded hand-off, decoded by this release and fed to its next stage with
//!   the keys as the previous release left them, gives the records the previous release
//!   wrote, byte for byte, and order and lineage keys of the same order and stage.
//! - Backward: this release's hand-offs, decoded by the previous release's decoder
//!   ([`previous`], its structs transcribed), give what the previous release's own
//!   hand-offs gave, and keep the rules it relies on; its keys read as the previous
//!   release's order keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;

use heat_pipeline::keys::{Family, Keyspace};
use heat_pipeline::lifecycle::Phase;
use heat_pipeline::ops::state::{Resource, ResourceState};
use heat_pipeline::plan::{Decision, Lineage, Snapshot, Stored, Write};
use heat_pipeline::records::{Handoff, NormalizeRequest, OrderKey, WrapRequest};
use heat_pipeline::stages::{Capture, Normalize, Stage, Wrap};
use heat_pipeline::telemetry::trace::TraceParent;

/// The release whose bytes are checked: the one this release upgrades from.
const PREVIOUS: &str = "0.1.0";

/// The recorded cases, in the order they were published (`record.py`'s `CASES`), each with
/// whether it is final (wrap writes `/state`).
const CASES: [(&str, bool); 6] = [
    ("seed", true),
    ("lifecycle-1-create-in-progress", false),
    ("lifecycle-2-create-complete", true),
    ("lifecycle-3-update", true),
    ("lifecycle-4-update-failed", true),
    ("lifecycle-5-delete", true),
];

const SEED_ID: &str = "23464cbc-d910-430a-93f7-3776ea07f992";

/// etcd as a map of key (without the recording's prefix) to value.
type Store = BTreeMap<String, Vec<u8>>;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> Vec<u8> {
    let path = repo().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the previous release published for `case` with routing key `to`'s (`input`,
/// `normalize` or `wrap`), byte for byte.
fn recorded(case: &str, to: &str) -> Vec<u8> {
    read(&format!(
        "tests/fixtures/compat/{PREVIOUS}/handoffs/{case}.{to}.body"
    ))
}

/// Its properties and headers, as `record.py` wrote them.
fn recorded_properties(case: &str, to: &str) -> Value {
    let path = format!("tests/fixtures/compat/{PREVIOUS}/handoffs/{case}.{to}.properties.json");
    serde_json::from_slice(&read(&path)).unwrap()
}

/// etcd as the previous release left it after `case`.
fn etcd_after(case: &str) -> Store {
    let path = format!("tests/fixtures/compat/{PREVIOUS}/etcd/{case}.json");
    let map: BTreeMap<String, String> = serde_json::from_slice(&read(&path)).unwrap();
    map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
}

fn stages() -> (Capture, Normalize, Wrap) {
    let keys = Keyspace::new("", "v2.0");
    (
        Capture { keys: keys.clone() },
        Normalize { keys: keys.clone() },
        Wrap { keys },
    )
}

/// Runs `stage` on `body` against `store` (every key it reads, read), applies its writes.
fn step<S: Stage>(stage: &S, store: &mut Store, body: &[u8]) -> Decision {
    let name = stage.name();
    let input = stage
        .decode(body)
        .unwrap_or_else(|e| panic!("{name} refuses {}: {e}", String::from_utf8_lossy(body)));
    let mut snapshot = Snapshot::default();
    for key in stage.reads(&input) {
        let stored = store.get(&key).map(|value| Stored {
            value: value.clone(),
            mod_revision: 1,
        });
        snapshot.insert(key, stored);
    }
    let lineage = Lineage {
        written_at: "2026-12-02T04:00:00.000Z".into(),
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
    };
    let decision = stage
        .decide(&input, &snapshot, &lineage)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for write in &decision.writes {
        match write {
            Write::Put { key, value } => {
                store.insert(key.clone(), value.to_vec());
            }
            Write::Delete { key } => {
                store.remove(key);
            }
        }
    }
    decision
}

/// Whether `key` is one of heat-pipeline's own (an order or lineage key), not a record.
fn is_own_key(key: &str) -> bool {
    key.starts_with("/heat-pipeline/")
}

/// The stores hold the same records byte for byte, and order and lineage keys that order
/// alike and name the same stage (their time and trace are this run's).
fn assert_same_keys(ours: &Store, theirs: &Store, case: &str) {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{case}: the keys"
    );
    for (key, value) in ours {
        let recorded = &theirs[key];
        if !is_own_key(key) {
            assert_eq!(
                String::from_utf8_lossy(value),
                String::from_utf8_lossy(recorded),
                "{case}: {key}"
            );
            continue;
        }
        let (a, b) = (order_key(value), order_key(recorded));
        assert_eq!(a.order(), b.order(), "{case}: {key}");
        assert_eq!(a.stage, b.stage, "{case}: {key}");
        assert!(
            a.written_at.is_some() && b.written_at.is_some(),
            "{case}: {key}"
        );
        assert!(
            a.trace_id.is_some() && b.trace_id.is_some(),
            "{case}: {key}"
        );
    }
}

fn order_key(bytes: &[u8]) -> OrderKey {
    OrderKey::from_bytes(bytes)
        .unwrap_or_else(|| panic!("not an order key: {}", String::from_utf8_lossy(bytes)))
}

/// Two hand-offs to wrap are the same but for the lineage of the order key they carry.
fn assert_same_wrap_request(ours: &WrapRequest, theirs: &WrapRequest, case: &str) {
    assert_eq!(ours.job, theirs.job, "{case}");
    assert_eq!(ours.job_state, theirs.job_state, "{case}");
    assert_eq!(ours.status_reason, theirs.status_reason, "{case}");
    let carried = |r: &WrapRequest| order_key(r.job_state_order.as_deref().unwrap().as_bytes());
    let (a, b) = (carried(ours), carried(theirs));
    assert_eq!((a.order(), a.stage), (b.order(), b.stage), "{case}");
}

#[test]
fn the_previous_releases_hand_offs_drive_this_release_to_the_records_it_wrote() {
    let (capture, normalize, wrap) = stages();
    let mut before = Store::new();
    for (case, _) in CASES {
        let after = etcd_after(case);
        let mut store = before.clone();

        // Capture: the recorded input gives the hand-off the previous capture gave.
        let ours = step(&capture, &mut store, &recorded(case, "input"))
            .handoff
            .unwrap_or_else(|| panic!("{case}: capture hands off"));
        let theirs = recorded(case, "normalize");
        assert_eq!(
            NormalizeRequest::decode(&ours).unwrap(),
            NormalizeRequest::decode(&theirs).unwrap(),
            "{case}"
        );

        // Normalize, fed the previous capture's hand-off.
        let ours = step(&normalize, &mut store, &theirs)
            .handoff
            .unwrap_or_else(|| panic!("{case}: normalize hands off"));
        let theirs = recorded(case, "wrap");
        assert_same_wrap_request(
            &WrapRequest::decode(&ours).unwrap(),
            &WrapRequest::decode(&theirs).unwrap(),
            case,
        );

        // Wrap, fed the previous normalize's hand-off.
        let decision = step(&wrap, &mut store, &theirs);
        assert_eq!(decision.handoff, None, "{case}");

        assert_same_keys(&store, &after, case);
        before = after;
    }
}

#[test]
fn the_seed_recorded_from_the_previous_release_gives_the_seed_records_byte_for_byte() {
    let seed = |name: &str| read(&format!("tests/fixtures/seed/{name}.port.bytes"));
    let (_, normalize, wrap) = stages();
    let keyspace = Keyspace::new("", "v2.0");
    let job = NormalizeRequest::decode(&recorded("seed", "normalize"))
        .unwrap()
        .job;
    let keys = keyspace.for_job(&job);
    let recorded_etcd = etcd_after("seed");
    assert_eq!(
        recorded_etcd[&keys.key(Family::HeatStacks)],
        seed("heat_stacks")
    );
    assert_eq!(recorded_etcd[&keys.key(Family::State)], seed("state"));
    assert!(keys.key(Family::State).ends_with(SEED_ID));

    let mut store = Store::new();
    step(&normalize, &mut store, &recorded("seed", "normalize"));
    assert_eq!(store[&keys.key(Family::JobState)], seed("job_state"));
    step(&wrap, &mut store, &recorded("seed", "wrap"));
    assert_eq!(store[&keys.key(Family::State)], seed("state"));
    assert!(
        !store.contains_key(&keys.key(Family::JobState)),
        "wrap removes job_state"
    );
}

/// The resources of a store, as `audit`, `reconcile` and `show` read them.
fn resources(store: &Store) -> Vec<Resource> {
    let keys = Keyspace::new("", "v2.0");
    let mut found: BTreeMap<(String, String), Resource> = BTreeMap::new();
    for (key, value) in store {
        let (path, id) = key.rsplit_once('/').unwrap();
        let path = path.rsplit_once('/').unwrap().1;
        let resource = found
            .entry((path.to_string(), id.to_string()))
            .or_insert_with(|| Resource::new(path, id));
        let family = Family::ALL
            .into_iter()
            .find(|f| resource.key(&keys, *f) == *key)
            .unwrap_or_else(|| panic!("{key} is no key of a resource"));
        *resource.slot(family) = Some(Stored {
            value: value.clone(),
            mod_revision: 1,
        });
    }
    found.into_values().collect()
}

#[test]
fn the_previous_releases_keys_read_as_this_releases() {
    for (case, is_final) in CASES {
        let store = etcd_after(case);
        for (key, value) in store.iter().filter(|(k, _)| is_own_key(k)) {
            let read = order_key(value);
            // The format is unchanged: this release writes the same bytes for it.
            assert_eq!(&read.to_bytes()[..], value.as_slice(), "{case}: {key}");
            let stage = if key.contains("/order/heat_stacks/") {
                "capture"
            } else if key.contains("/order/job_state/") {
                "normalize"
            } else {
                assert!(key.contains("/lineage/state/"), "{key}");
                assert_eq!(read.phase, Phase::Final, "{case}: {key}");
                "wrap"
            };
            assert_eq!(read.stage.as_deref(), Some(stage), "{case}: {key}");
            let written_at = read.written_at.as_deref().unwrap();
            assert!(humantime::parse_rfc3339(written_at).is_ok(), "{written_at}");
        }
        for resource in resources(&store) {
            let state = ResourceState::of(&resource);
            let what = format!("{case}: {}/{}", resource.path, resource.id);
            assert_eq!(state.unreadable_keys().count(), 0, "{what}");
            assert!(state.orphans().is_empty(), "{what}");
            assert!(state.stale().is_none(), "{what}");
            if is_final || resource.id == SEED_ID {
                assert!(
                    state.stuck().is_none() && state.behind().is_none(),
                    "{what}"
                );
                assert!(matches!(state.next(), Ok(None)), "{what}");
            } else {
                // In progress: job_state waits for its final result.
                assert_eq!(state.stuck().map(|o| o.phase), Some(Phase::InProgress));
            }
        }
    }
}

#[test]
fn the_previous_releases_hand_off_headers_are_ones_this_release_reads() {
    for (case, _) in CASES {
        for to in ["normalize", "wrap"] {
            let properties = recorded_properties(case, to);
            let what = format!("{case}.{to}");
            assert_eq!(properties["content_type"], "application/json", "{what}");
            assert_eq!(properties["delivery_mode"], 2, "{what}");
            let headers = &properties["headers"];
            let trace = headers["traceparent"].as_str().unwrap();
            assert!(TraceParent::parse(trace).is_some(), "{what}: {trace}");
            assert!(headers["x-published-at-ms"].is_u64(), "{what}");
        }
    }
}

/// The previous release's hand-off decoder: its structs, transcribed field for field from
/// its `src/records.rs`, `src/message.rs`, `src/outputs.rs` and `src/lifecycle.rs`
/// (`git show e3e6d63:src/records.rs`). Like it, they ignore unknown fields; it decoded a
/// body with plain serde_json, then checked the job's key segments and kept the outputs'
/// text only when `outputs_form` said `python` and the text was printable ASCII (otherwise
/// it parsed and encoded them again).
mod previous {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Debug, Deserialize)]
    #[serde(transparent)]
    pub struct Outputs(pub Box<RawValue>);

    impl PartialEq for Outputs {
        fn eq(&self, other: &Outputs) -> bool {
            self.0.get() == other.0.get()
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub struct Job {
        pub action: Action,
        pub resource_type: String,
        #[serde(default)]
        pub resource_path: Option<String>,
        pub resource_id: String,
        pub version: u64,
        pub tenant_id: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Action {
        Create,
        Modify,
        Delete,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub struct HeatStackRecord {
        pub stack_id: String,
        pub tenant_id: String,
        pub stack_status: String,
        pub output: Outputs,
        pub status_reason: String,
        pub id: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub struct JobStateRecord {
        pub heat_outputs: Outputs,
        pub orchestration_state: String,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum OutputsForm {
        Python,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub struct NormalizeRequest {
        pub job: Job,
        pub heat_stack: HeatStackRecord,
        #[serde(default)]
        pub outputs_form: Option<OutputsForm>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    pub struct WrapRequest {
        pub job: Job,
        pub job_state: JobStateRecord,
        pub status_reason: String,
        #[serde(default)]
        pub job_state_order: Option<String>,
        #[serde(default)]
        pub outputs_form: Option<OutputsForm>,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Phase {
        InProgress,
        Final,
    }

    /// An order key as it read one (`Order::from_bytes`): the rest is ignored.
    #[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
    pub struct Order {
        pub version: u64,
        pub phase: Phase,
    }

    /// What its wrap read of a stored `/state`.
    #[derive(Debug, Deserialize)]
    pub struct StoredStateVersion {
        pub version: u64,
    }

    /// Its `Job::validate`: each key segment non-empty, without `/` or a control character.
    pub fn job_is_valid(job: &Job) -> bool {
        let path = job
            .resource_path
            .clone()
            .unwrap_or_else(|| format!("{}s", job.resource_type));
        [&job.resource_type, &path, &job.resource_id]
            .iter()
            .all(|s| !s.is_empty() && !s.contains('/') && !s.chars().any(char::is_control))
    }

    /// Its test for outputs it keeps as they came: printable ASCII.
    pub fn kept_as_is(outputs: &Outputs, form: Option<OutputsForm>) -> bool {
        form == Some(OutputsForm::Python)
            && outputs.0.get().bytes().all(|b| (b' '..=b'~').contains(&b))
    }
}

/// A hand-off as the previous release read it: decoded and checked as it did, its outputs'
/// text kept as it came (not encoded again). `checked` picks what it checked of a `T`: the
/// job, and the outputs with their form.
fn previous_read<T: DeserializeOwned>(
    body: &[u8],
    checked: fn(
        &T,
    ) -> (
        &previous::Job,
        &previous::Outputs,
        Option<previous::OutputsForm>,
    ),
) -> T {
    let request: T = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("0.1.0 refuses {}: {e}", String::from_utf8_lossy(body)));
    let (job, outputs, form) = checked(&request);
    assert!(previous::job_is_valid(job));
    assert!(previous::kept_as_is(outputs, form));
    request
}

/// A hand-off to normalize as the previous release read it.
fn previous_normalize(body: &[u8]) -> previous::NormalizeRequest {
    previous_read(body, |r| (&r.job, &r.heat_stack.output, r.outputs_form))
}

/// A hand-off to wrap, likewise.
fn previous_wrap(body: &[u8]) -> previous::WrapRequest {
    previous_read(body, |r| {
        (&r.job, &r.job_state.heat_outputs, r.outputs_form)
    })
}

/// The rules of docs/ARCHITECTURE.md that the previous release's decoder does not show by
/// its types: a hand-off is one JSON object without a duplicate key (this release refuses
/// one), and `job_state_order`, when present, is the order key's text.
fn assert_keeps_the_written_rules(body: &[u8], what: &str) {
    let value: Value = serde_json::from_slice(body).unwrap();
    assert!(value.is_object(), "{what}");
    assert_eq!(
        heat_pipeline::strict_json::find_duplicate_key(body),
        None,
        "{what}"
    );
    if let Some(order) = value.get("job_state_order") {
        let order = order.as_str().unwrap();
        let read: previous::Order = serde_json::from_str(order).unwrap();
        assert_eq!(read.version, value["job"]["version"], "{what}");
    }
}

#[test]
fn this_releases_hand_offs_and_keys_read_by_the_previous_releases_rules() {
    let (capture, normalize, wrap) = stages();
    let mut store = Store::new();
    for (case, _) in CASES {
        let to_normalize = step(&capture, &mut store, &recorded(case, "input"))
            .handoff
            .unwrap();
        let to_wrap = step(&normalize, &mut store, &to_normalize).handoff.unwrap();
        step(&wrap, &mut store, &to_wrap);
        assert_same_keys(&store, &etcd_after(case), case);

        for (ours, to) in [(&to_normalize, "normalize"), (&to_wrap, "wrap")] {
            let what = format!("{case}.{to}");
            assert_keeps_the_written_rules(ours, &what);
            // The previous release's own hand-off kept them too.
            assert_keeps_the_written_rules(&recorded(case, to), &what);
        }
        assert_eq!(
            previous_normalize(&to_normalize),
            previous_normalize(&recorded(case, "normalize")),
            "{case}"
        );
        let (ours, theirs) = (
            previous_wrap(&to_wrap),
            previous_wrap(&recorded(case, "wrap")),
        );
        assert_eq!(
            (
                &ours.job,
                &ours.job_state,
                &ours.status_reason,
                ours.outputs_form
            ),
            (
                &theirs.job,
                &theirs.job_state,
                &theirs.status_reason,
                theirs.outputs_form
            ),
            "{case}"
        );
        let carried = |r: &previous::WrapRequest| -> previous::Order {
            serde_json::from_str(r.job_state_order.as_deref().unwrap()).unwrap()
        };
        assert_eq!(carried(&ours), carried(&theirs), "{case}");

        // This release's keys, as the previous release's guards read them.
        for (key, value) in &store {
            if is_own_key(key) {
                let read: previous::Order = serde_json::from_slice(value).unwrap();
                assert_eq!(read, carried_order(&etcd_after(case)[key]), "{case}: {key}");
            } else if key.starts_with("/state/") {
                let read = |bytes: &[u8]| {
                    serde_json::from_slice::<previous::StoredStateVersion>(bytes)
                        .unwrap()
                        .version
                };
                assert_eq!(read(value), read(&etcd_after(case)[key]), "{case}: {key}");
            }
        }
    }
}

fn carried_order(bytes: &[u8]) -> previous::Order {
    serde_json::from_slice(bytes).unwrap()
}
