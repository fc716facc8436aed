//! Property tests of the two pieces that face arbitrary input: the decoder must never panic
//! whatever the bytes, and the record writer's output must always be JSON that parses back
//! to the value it was given.

use heat_pipeline::keys::Keyspace;
use heat_pipeline::message::HeatResult;
use heat_pipeline::pyjson;
use heat_pipeline::stages::{Capture, Normalize, Stage, Wrap};
use proptest::prelude::*;
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
