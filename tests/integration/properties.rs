//! Property tests of the two pieces that face arbitrary input: the decoders (of Heat results
//! and of the stages' hand-offs) must never panic whatever the bytes, and the record
//! writer's output must always be JSON that parses back to the value it was given.

use heat_pipeline::error::RejectKind;
use heat_pipeline::keys::Keyspace;
use heat_pipeline::message::HeatResult;
use heat_pipeline::plan::Snapshot;
use heat_pipeline::pyjson;
use heat_pipeline::records::{Handoff, NormalizeRequest, WrapRequest};
use heat_pipeline::stages::{Capture, Normalize, Stage, Wrap};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Number, Value};

/// Arbitrary JSON values: every scalar kind (including floats, big integers and any
/// Unicode), nested arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        "-?[1-9][0-9]{19,39}".prop_map(|digits| serde_json::from_str(&digits).unwrap()),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Equality as a JSON reader sees it: numbers compare by value, not by spelling
/// (the writer prints `1e-05` where the source said `0.00001`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.to_string(), y.to_string());
            x == y || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

/// The hand-off `stage` gives for `body`, deciding on an empty store: a first version,
/// which every stage decides without reading anything back.
fn hand_off<S: Stage>(stage: &S, body: &[u8]) -> Vec<u8> {
    let input = stage.decode(body).expect("a Heat-shaped message decodes");
    let mut snapshot = Snapshot::default();
    for key in stage.reads(&input) {
        snapshot.insert(key, None);
    }
    let decision = stage
        .decide(&input, &snapshot, &Default::default())
        .expect("decides");
    decision.handoff.expect("hands off")
}

/// Hand-offs as the stages write them, capture's to normalize and normalize's to wrap, for
/// a job with arbitrary outputs, status reason and (finished or not) status.
fn hand_offs() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let status = prop_oneof![
        Just("CREATE_COMPLETE"),
        Just("CREATE_IN_PROGRESS"),
        Just("CREATE_FAILED")
    ];
    let outputs = prop::collection::vec(
        (any::<String>(), json_value())
            .prop_map(|(key, value)| serde_json::json!({"output_key": key, "output_value": value})),
        0..4,
    );
    (status, any::<String>(), outputs).prop_map(|(status, reason, outputs)| {
        let body = serde_json::to_vec(&serde_json::json!({
            "job": {"action": "create", "resource_type": "port", "resource_id": "p1", "version": 1, "tenant_id": "t"},
            "stack": {"stack_name": "port_p1", "stack_status": status, "stack_status_reason": reason, "outputs": outputs},
        }))
        .unwrap();
        let keys = Keyspace::new("", "v2.0");
        let to_normalize = hand_off(&Capture { keys: keys.clone() }, &body);
        let to_wrap = hand_off(&Normalize { keys }, &to_normalize);
        (to_normalize, to_wrap)
    })
}

/// How many objects `value` holds, itself included.
fn objects(value: &Value) -> usize {
    match value {
        Value::Array(items) => items.iter().map(objects).sum(),
        Value::Object(map) => 1 + map.values().map(objects).sum::<usize>(),
        _ => 0,
    }
}

/// `value` as JSON text in which the `target`th object (in document order) names one of
/// its keys a second time, at its end, holding `extra` (an empty object gets `"k"` twice).
/// A `Value` cannot hold a duplicate key, so the text is written here.
fn with_duplicate(
    value: &Value,
    target: usize,
    key_at: prop::sample::Index,
    extra: &Value,
) -> String {
    fn write(
        value: &Value,
        at: &mut usize,
        dup: (usize, prop::sample::Index, &Value),
        out: &mut String,
    ) {
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, at, dup, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                let here = *at == dup.0;
                *at += 1;
                out.push('{');
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("{}:", Value::from(key.as_str())));
                    write(item, at, dup, out);
                }
                if here {
                    let key = match map.len() {
                        0 => "k",
                        len => map.keys().nth(dup.1.index(len)).unwrap(),
                    };
                    let entry = format!("{}:{}", Value::from(key), dup.2);
                    if map.is_empty() {
                        out.push_str(&entry);
                    }
                    out.push(',');
                    out.push_str(&entry);
                }
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut 0, (target, key_at, extra), &mut out);
    out
}

/// Replaces the `target`th node of `value` (in document order, `value` itself first) with
/// `with`.
fn replace_node(value: &mut Value, target: usize, with: Value) {
    fn walk(value: &mut Value, at: &mut usize, target: usize, with: &mut Option<Value>) {
        if *at == target {
            *value = with.take().expect("replaced once");
        }
        *at += 1;
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, at, target, with)),
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, at, target, with)),
            _ => {}
        }
    }
    walk(value, &mut 0, target, &mut Some(with));
}

/// How many nodes `value` has, itself included.
fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(nodes).sum(),
        Value::Object(map) => map.values().map(nodes).sum(),
        _ => 0,
    }
}

/// A hand-off with one key named twice is refused, wherever the object (the outputs, which
/// travel as raw text, included), whatever the second value; the same hand-off without it
/// decodes.
fn refuses_a_duplicate<H: Handoff>(
    body: &[u8],
    at: prop::sample::Index,
    key_at: prop::sample::Index,
    extra: &Value,
) -> Result<(), TestCaseError> {
    let tree: Value = serde_json::from_slice(body).unwrap();
    prop_assert!(H::decode(&serde_json::to_vec(&tree).unwrap()).is_ok());
    let doubled = with_duplicate(&tree, at.index(objects(&tree)), key_at, extra);
    let Err(rejection) = H::decode(doubled.as_bytes()) else {
        return Err(TestCaseError::fail(format!("accepted {doubled}")));
    };
    prop_assert_eq!(rejection.kind, RejectKind::InvalidMessage);
    prop_assert!(
        rejection.detail.contains("duplicate"),
        "{}",
        rejection.detail
    );
    Ok(())
}

/// What a hand-off decoder accepts carries its outputs in the records' form: a JSON
/// array in printable ASCII.
fn outputs_in_python_form(outputs: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        outputs.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "{}",
        outputs
    );
    prop_assert!(
        serde_json::from_str::<Vec<Value>>(outputs).is_ok(),
        "{}",
        outputs
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_writer_output_is_ascii_json_that_parses_back(value in json_value()) {
        let bytes = pyjson::to_vec(&value).unwrap();
        prop_assert!(bytes.is_ascii());
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert!(same(&parsed, &value), "{} != {}", parsed, value);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = HeatResult::decode(&bytes);
        let keys = Keyspace::new("", "v2.0");
        let _ = Normalize { keys: keys.clone() }.decode(&bytes);
        let _ = Wrap { keys }.decode(&bytes);
    }

    #[test]
    fn decoding_arbitrary_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = HeatResult::decode(&bytes);
        let _ = NormalizeRequest::decode(&bytes);
        let _ = WrapRequest::decode(&bytes);
    }

    /// A hand-off cut short or with one byte changed: rejected or decoded, never a panic.
    #[test]
    fn a_mangled_hand_off_never_panics(
        (to_normalize, to_wrap) in hand_offs(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        for body in [to_normalize, to_wrap] {
            let cut = &body[..at.index(body.len() + 1)];
            let mut changed = body.clone();
            changed[at.index(body.len())] = byte;
            for mangled in [cut, &changed] {
                let _ = NormalizeRequest::decode(mangled);
                let _ = WrapRequest::decode(mangled);
            }
        }
    }

    /// A hand-off with any value in any place (a field, the job, the outputs or a value
    /// inside them, the whole body): rejected or decoded, never a panic, and what is
    /// decoded has its outputs in Python's form.
    #[test]
    fn a_hand_off_with_any_value_anywhere_never_panics(
        (to_normalize, to_wrap) in hand_offs(),
        at in any::<prop::sample::Index>(),
        with in json_value(),
    ) {
        let mut tree: Value = serde_json::from_slice(&to_normalize).unwrap();
        let target = at.index(nodes(&tree));
        replace_node(&mut tree, target, with.clone());
        if let Ok(request) = NormalizeRequest::decode(&serde_json::to_vec(&tree).unwrap()) {
            outputs_in_python_form(request.heat_stack.output.as_str())?;
        }
        let mut tree: Value = serde_json::from_slice(&to_wrap).unwrap();
        let target = at.index(nodes(&tree));
        replace_node(&mut tree, target, with);
        if let Ok(request) = WrapRequest::decode(&serde_json::to_vec(&tree).unwrap()) {
            outputs_in_python_form(request.job_state.heat_outputs.as_str())?;
        }
    }

    #[test]
    fn a_hand_off_naming_a_key_twice_is_refused(
        (to_normalize, to_wrap) in hand_offs(),
        at in any::<prop::sample::Index>(),
        key_at in any::<prop::sample::Index>(),
        extra in json_value(),
    ) {
        refuses_a_duplicate::<NormalizeRequest>(&to_normalize, at, key_at, &extra)?;
        refuses_a_duplicate::<WrapRequest>(&to_wrap, at, key_at, &extra)?;
    }

    /// Messages shaped like Heat results, with arbitrary values in every field: the whole
    /// capture step either rejects them or produces a record the writer can emit.
    #[test]
    fn capture_accepts_or_rejects_any_heat_shaped_message(
        action in prop_oneof![Just("create".to_string()), Just("modify".to_string()), Just("delete".to_string()), any::<String>()],
        id in any::<String>(),
        version in any::<i64>(),
        status in prop_oneof![Just("CREATE_COMPLETE".to_string()), Just("UPDATE_FAILED".to_string()), any::<String>()],
        outputs in prop::collection::vec(json_value(), 0..4),
    ) {
        let body = serde_json::to_vec(&serde_json::json!({
            "job": {"action": action, "resource_type": "port", "resource_id": id, "version": version, "tenant_id": "t"},
            "stack": {"stack_name": "s", "stack_status": status, "outputs": outputs},
        })).unwrap();
        let capture = Capture { keys: Keyspace::new("", "v2.0") };
        if let Ok(input) = capture.decode(&body) {
            let reads = capture.reads(&input);
            let mut snapshot = heat_pipeline::plan::Snapshot::default();
            for key in reads {
                snapshot.insert(key, None);
            }
            if let Ok(decision) = capture.decide(&input, &snapshot, &Default::default()) {
                for write in decision.writes {
                    if let heat_pipeline::plan::Write::Put { value, .. } = write {
                        prop_assert!(serde_json::from_slice::<Value>(&value).is_ok());
                    }
                }
            }
        }
    }
}
