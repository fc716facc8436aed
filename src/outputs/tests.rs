use super::*;

fn values(text: &str) -> Vec<Value> {
    serde_json::from_str(text).unwrap()
}

#[test]
fn encodes_as_python_and_serializes_its_text_unchanged_through_any_formatter() {
    let outputs =
        PythonOutputs::encode(&values(r#"[{"b": 1e-5, "a": "café"}, {"x": [1,2]}]"#)).unwrap();
    let python = r#"[{"b": 1e-05, "a": "caf\u00e9"}, {"x": [1, 2]}]"#;
    assert_eq!(outputs.as_str(), python);
    assert_eq!(pyjson::to_string(&outputs).unwrap(), python);
    assert_eq!(serde_json::to_string(&outputs).unwrap(), python);
    assert_eq!(PythonOutputs::empty().as_str(), "[]");
}

#[test]
fn text_in_python_form_is_kept_and_older_text_is_encoded_again() {
    let python = r#"[{"b": 1e-05, "n": 100000000000000000000}]"#;
    let compact = r#"[{"b":1e-5,"n":100000000000000000000}]"#;
    let carried: RawOutputs = serde_json::from_str(python).unwrap();
    let carried = carried.into_python(Some(OutputsForm::Python)).unwrap();
    assert_eq!(carried.as_str(), python);
    let older: RawOutputs = serde_json::from_str(compact).unwrap();
    let older = older.into_python(None).unwrap();
    assert_eq!(older.as_str(), python);
}

#[test]
fn the_state_string_escapes_as_python_does() {
    for text in [
        r#"[{"a": "q\"uo\\te\n"}]"#,
        "[]",
        r#"["\\\""]"#,
        "caf\u{e9} \t\"",
    ] {
        let string = OutputsString(text.to_string());
        assert_eq!(
            pyjson::to_string(&string).unwrap(),
            pyjson::to_string(text).unwrap(),
            "{text}"
        );
        let back: String = serde_json::from_str(&pyjson::to_string(&string).unwrap()).unwrap();
        assert_eq!(back, string.0);
    }
}

#[test]
fn text_that_claims_python_form_but_is_not_ascii_is_encoded_again() {
    let claimed: RawOutputs = serde_json::from_str(r#"[{"a": "café"}]"#).unwrap();
    let claimed = claimed.into_python(Some(OutputsForm::Python)).unwrap();
    assert_eq!(claimed.as_str(), r#"[{"a": "caf\u00e9"}]"#);
    let spaced: RawOutputs = serde_json::from_str("[\n{\"a\":\t1}]").unwrap();
    let spaced = spaced.into_python(Some(OutputsForm::Python)).unwrap();
    assert_eq!(spaced.as_str(), r#"[{"a": 1}]"#);
}

#[test]
fn text_that_claims_python_form_but_is_not_a_list_is_refused() {
    // A raw value's text starts at the value, whatever whitespace is around it.
    let spaced: RawOutputs = serde_json::from_str(" \n [1] ").unwrap();
    let spaced = spaced.into_python(Some(OutputsForm::Python)).unwrap();
    assert_eq!(spaced.as_str(), "[1]");
    for not_a_list in ["null", "{}", "1", r#""[]""#] {
        let claimed: RawOutputs = serde_json::from_str(not_a_list).unwrap();
        let refused = claimed.into_python(Some(OutputsForm::Python));
        assert_eq!(
            refused.unwrap_err().kind,
            RejectKind::InvalidMessage,
            "{not_a_list}"
        );
    }
}

/// Numbers Python prints in a form of its own (integers beyond `u128`, beyond `u64`
/// and below `i64`, `-0`, and floats printed as `repr`), as Heat sends them; [`outputs_of`]
/// puts them at every depth.
const HEAT_NUMBERS: &str = concat!(
    "10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, ",
    "18446744073709551616, 18446744073709551615, -9223372036854775809, -0, 1e-05, 1e+16, ",
    "0.30000000000000004, 1e22, 5e-324",
);

/// What CPython 3.11 printed of them for `json.dumps(json.loads(outputs_of(HEAT_NUMBERS)))`:
/// `-0` is `0` and `1e22` is `1e+22`. It printed `json.dumps` of that as serde_json quotes
/// it (the text is ASCII, so neither escapes more than `\"`).
const PYTHON_NUMBERS: &str = concat!(
    "10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, ",
    "18446744073709551616, 18446744073709551615, -9223372036854775809, 0, 1e-05, 1e+16, ",
    "0.30000000000000004, 1e+22, 5e-324",
);

/// Outputs holding `numbers` (comma-separated) at every depth, in Python's spacing: each as
/// an output's value (`n0`, `n1`, ...), all in a list, and all in nested objects.
fn outputs_of(numbers: &str) -> String {
    let each: String = numbers
        .split(", ")
        .enumerate()
        .map(|(i, n)| format!(r#"{{"output_key": "n{i}", "output_value": {n}}}, "#))
        .collect();
    format!(
        r#"[{each}{{"output_key": "list", "output_value": [{numbers}]}}, {{"output_key": "object", "output_value": {{"n": {{"deep": [{numbers}]}}}}}}]"#
    )
}

/// capture → normalize → wrap, with hand-offs of this version and of an older stage
/// (compact outputs, no `outputs_form`): every record holds Python's bytes.
#[test]
fn numbers_in_outputs_reach_all_three_records_as_python_wrote_them() {
    use crate::keys::Keyspace;
    use crate::stages::test_support::{get, step};
    use crate::stages::{Capture, Normalize, Wrap};

    fn older(handoff: Vec<u8>) -> Vec<u8> {
        let mut value: Value = serde_json::from_slice(&handoff).unwrap();
        value.as_object_mut().unwrap().remove("outputs_form");
        serde_json::to_vec(&value).unwrap()
    }
    let (heat, python) = (outputs_of(HEAT_NUMBERS), outputs_of(PYTHON_NUMBERS));
    let body = format!(
        r#"{{"job": {{"action": "create", "resource_type": "port", "resource_id": "n1", "version": 1, "tenant_id": "t"}}, "stack": {{"stack_name": "port_n1", "stack_status": "CREATE_COMPLETE", "outputs": {heat}}}}}"#
    );
    let heat_stacks = format!(
        r#"{{"stack_id": "port_n1", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": {python}, "status_reason": "", "id": "port:n1"}}"#
    );
    let job_state =
        format!(r#"{{"heat_outputs": {python}, "orchestration_state": "CREATE_COMPLETE"}}"#);
    let python_string = serde_json::to_string(&python).unwrap();
    let state = format!(
        r#"{{"state": {{"worker_state": "CREATE_COMPLETED", "heat_outputs": {python_string}, "orchestration_state": "CREATE_COMPLETE"}}, "version": 1, "error": ""}}"#
    );
    let keys = Keyspace::new("", "v2.0");
    let (capture, normalize, wrap) = (
        Capture { keys: keys.clone() },
        Normalize { keys: keys.clone() },
        Wrap { keys: keys.clone() },
    );
    let hand_offs: [fn(Vec<u8>) -> Vec<u8>; 2] = [|this| this, older];
    for hand_off in hand_offs {
        let mut store = vec![];
        let to_normalize = step(&capture, &mut store, body.as_bytes()).handoff.unwrap();
        let to_wrap = step(&normalize, &mut store, &hand_off(to_normalize))
            .handoff
            .unwrap();
        let at = |key: String| String::from_utf8(get(&store, &key).unwrap().to_vec()).unwrap();
        assert_eq!(at(keys.heat_stack("ports", "n1")), heat_stacks);
        assert_eq!(at(keys.job_state("ports", "n1")), job_state);
        step(&wrap, &mut store, &hand_off(to_wrap));
        assert_eq!(
            String::from_utf8(get(&store, &keys.state("ports", "n1")).unwrap().to_vec()).unwrap(),
            state
        );
    }
}

/// Both ways capture decodes a stack: the plain form straight from text, and Heat's body
/// form (`{"stack": {...}}`) through a [`Value`], out of which the outputs are moved.
#[test]
fn outputs_keep_every_number_in_either_form_of_the_stack() {
    use crate::message::HeatResult;

    let heat = outputs_of(HEAT_NUMBERS);
    let stack =
        format!(r#"{{"stack_name": "s", "stack_status": "CREATE_COMPLETE", "outputs": {heat}}}"#);
    for stack in [stack.clone(), format!(r#"{{"stack": {stack}}}"#)] {
        let body = format!(
            r#"{{"job": {{"action": "create", "resource_type": "port", "resource_id": "n1", "version": 1, "tenant_id": "t"}}, "stack": {stack}}}"#
        );
        let outputs = HeatResult::decode(body.as_bytes())
            .unwrap()
            .stack
            .unwrap()
            .outputs;
        assert_eq!(
            outputs.unwrap().as_str(),
            outputs_of(PYTHON_NUMBERS),
            "{stack}"
        );
    }
}

/// The outputs text alone, whether a hand-off carries it in Python's form or an older
/// stage's compact form.
#[test]
fn python_numbers_survive_both_hand_off_forms() {
    let python = outputs_of(PYTHON_NUMBERS);
    let compact = serde_json::to_string(&values(&outputs_of(HEAT_NUMBERS))).unwrap();
    assert!(
        compact.contains("-9223372036854775809,-0,1e-05"),
        "{compact}"
    );
    let older: RawOutputs = serde_json::from_str(&compact).unwrap();
    let older = older.into_python(None).unwrap();
    assert_eq!(older.as_str(), python);
    let carried: RawOutputs = serde_json::from_str(&python).unwrap();
    let carried = carried.into_python(Some(OutputsForm::Python)).unwrap();
    assert_eq!(carried.as_str(), python);
}

/// `1e400` is a float that overflows: Python would write `Infinity`, which is not JSON.
#[test]
fn a_float_python_would_print_as_infinity_is_refused() {
    let refused = PythonOutputs::encode(&values(r#"[{"output_value": {"n": [1e400]}}]"#));
    assert_eq!(refused.unwrap_err().kind, RejectKind::Unencodable);
}

/// Heat's outputs written as they are parsed (`heat.rs`), from `text`.
fn transcoded(text: &str) -> Result<Option<PythonOutputs>, serde_json::Error> {
    heat::deserialize(&mut serde_json::Deserializer::from_str(text))
}

#[test]
fn outputs_written_as_parsed_are_what_encoding_the_parsed_values_gives() {
    let texts = [
        "[]",
        "[{}]",
        r#"[{"k": "v", "n": null, "t": true, "f": false, "e": [], "o": {}}]"#,
        r#"[{"nested": [[1, -2, 3.5, -0, 1E3], {"a": {"b": []}}], "s": "\u00e9\n\"\\/ \u2028 😀"}]"#,
        r#"[{"z": 1, "a": 2, "m": 3}, {"output_key": "k", "output_value": [["x", "y"]]}]"#,
        "[ { \"spaced\" :\t[ 1 ,2 ] } ]",
    ];
    for text in texts {
        let expected = PythonOutputs::encode(&values(text)).unwrap();
        assert_eq!(transcoded(text).unwrap(), Some(expected), "{text}");
    }
    assert_eq!(transcoded("null").unwrap(), None);
    let seed: Value =
        serde_json::from_str(include_str!("../../examples/heat_result.port.json")).unwrap();
    let outputs = seed["stack"]["outputs"].to_string();
    let expected = PythonOutputs::encode(&values(&outputs)).unwrap();
    assert_eq!(transcoded(&outputs).unwrap(), Some(expected));
}

#[test]
fn outputs_written_as_parsed_keep_every_number() {
    let heat = outputs_of(HEAT_NUMBERS);
    assert_eq!(
        transcoded(&heat).unwrap().unwrap().as_str(),
        outputs_of(PYTHON_NUMBERS)
    );
    // An object that spells serde_json's number key fares as it does through a `Value`.
    for lookalike in [
        r#"[{"x": {"$serde_json::private::Number": "7"}}]"#,
        r#"[{"x": {"$serde_json::private::Number": "7", "y": 1}}]"#,
        r#"[{"x": 1, "$serde_json::private::Number": "7"}]"#,
    ] {
        let through_values = serde_json::from_str::<Vec<Value>>(lookalike)
            .ok()
            .map(|v| PythonOutputs::encode(&v).unwrap());
        assert_eq!(
            transcoded(lookalike).ok().flatten(),
            through_values,
            "{lookalike}"
        );
    }
}

#[test]
fn outputs_written_as_parsed_refuse_what_the_values_refuse() {
    for text in [
        r#"{"k": 1}"#,
        r#""text""#,
        "[1]",
        r#"[{"a": 1}, [2]]"#,
        r#"[{"k": 1, "k": 2}]"#,
        r#"[{"a": {"b": [{"c": 1, "d": 2, "c": 3}]}}]"#,
        r#"[{"a": 1, "\u0061": 2}]"#,
        r#"[{"n": [1e400]}]"#,
    ] {
        assert!(transcoded(text).is_err(), "{text}");
    }
    assert!(transcoded(r#"[{"a": 1}, {"a": 1}, {"b": {"a": 1}}]"#).is_ok());
}
