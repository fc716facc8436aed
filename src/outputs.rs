//! A stack's outputs, carried from capture to wrap as the text Python's `json.dumps` gives.
//!
//! All three records hold the outputs: heat_stacks and job_state as a JSON array, `/state` as
//! that array's text in a string. Capture encodes them once ([`PythonOutputs::encode`]); the
//! hand-offs carry that text as raw JSON, and normalize and wrap splice it into their
//! records instead of parsing the outputs into a tree and encoding them again. At 64 KiB
//! of outputs, that parsing and encoding was most of the pipeline's own work.
//! [`OutputsString`] writes `/state`'s copy by escaping only what the text can hold.
//!
//! Whether the text is in Python's form is a type, not a flag beside it:
//! - [`RawOutputs`]: text of any form, what deserializing gives (a hand-off, a record read
//!   back from etcd). It can be carried in a hand-off (without the mark, so the next stage
//!   encodes it again), never written into a record.
//! - [`PythonOutputs`]: text in Python's form, made only by [`PythonOutputs::encode`] or
//!   by [`RawOutputs::into_python`] (the check, or an encoding). It does not deserialize.
//!   Only records built from it encode ([`crate::records::encode`]), and a hand-off
//!   carrying it says so (`"outputs_form": "python"`, [`HandoffOutputs::FORM`]).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{RejectKind, Rejection};
use crate::pyjson;

/// The outputs list as `json.dumps(outputs)` writes it: a JSON array, printable ASCII.
///
/// Serialized, the text goes out as it is (a raw JSON fragment, through any formatter,
/// [`pyjson`]'s included). Not `Deserialize`: text from outside is a [`RawOutputs`] until
/// [`RawOutputs::into_python`] has checked or encoded it.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct PythonOutputs(Box<RawValue>);

/// Outputs text as it came, in whatever form: a hand-off's before it is checked, or a
/// stored record's (which may have been written by hand). Deserialized, the text is kept
/// as it came.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawOutputs(Box<RawValue>);

/// The form a hand-off's outputs say they are written in. Hand-offs of a capture or
/// normalize that predates [`PythonOutputs`], and those `reconcile` rebuilds from stored
/// records, carry none (any form), and are re-encoded.
///
/// The mark is trusted, as the rest of a hand-off is: only this pipeline's stages publish
/// to the stage queues. What is checked is what can be checked in one pass (the text is
/// JSON and printable ASCII); number formatting is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputsForm {
    /// Python's `json.dumps`, as the records hold them.
    Python,
}

/// Outputs a hand-off can carry, and the form it says they are in: [`PythonOutputs`]
/// (marked, spliced by the next stage) or [`RawOutputs`] (unmarked, encoded again).
/// Sealed: no other type can claim a form.
pub trait HandoffOutputs: Serialize + sealed::Sealed {
    /// The hand-off's `outputs_form`.
    const FORM: Option<OutputsForm>;
}

impl HandoffOutputs for PythonOutputs {
    const FORM: Option<OutputsForm> = Some(OutputsForm::Python);
}

impl HandoffOutputs for RawOutputs {
    const FORM: Option<OutputsForm> = None;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::PythonOutputs {}
    impl Sealed for super::RawOutputs {}
}

impl PythonOutputs {
    /// Encodes Heat's outputs as the original worker did.
    pub fn encode(values: &[Value]) -> Result<PythonOutputs, Rejection> {
        let text = pyjson::to_string(values)
            .map_err(|e| Rejection::new(RejectKind::Unencodable, e.to_string()))?;
        let raw = RawValue::from_string(text).expect("the record writer emits JSON");
        Ok(PythonOutputs(raw))
    }

    /// No outputs: `[]`.
    pub fn empty() -> PythonOutputs {
        PythonOutputs::encode(&[]).expect("an empty list encodes")
    }

    /// The text, as the records hold it.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl RawOutputs {
    /// The text, as it came.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// These outputs, which came in `form`, in Python's form: the same text when they say
    /// they are in it, parsed and encoded again when `form` is `None` (an older stage
    /// wrote serde_json's form, or `reconcile` took a stored record's). Text that claims
    /// Python's form but is not ASCII cannot be in it, and is encoded again too (Python
    /// writes no whitespace but spaces, so neither is text with a newline or a tab between
    /// its tokens). Nor is text that is not an array (the JSON is whole, so a `[` first
    /// says it is one); it is refused as the older form's is.
    ///
    /// The only way from [`RawOutputs`] to [`PythonOutputs`]; text that says it is in
    /// Python's form is moved, not copied.
    pub fn into_python(self, form: Option<OutputsForm>) -> Result<PythonOutputs, Rejection> {
        let text = self.as_str();
        if form == Some(OutputsForm::Python) && text.starts_with('[') && is_printable_ascii(text) {
            return Ok(PythonOutputs(self.0));
        }
        let values: Vec<Value> =
            serde_json::from_str(text).map_err(|e| Rejection::invalid(format!("outputs: {e}")))?;
        PythonOutputs::encode(&values)
    }
}

/// Heat's outputs as they arrived, for `#[serde(deserialize_with)]` where they are taken out
/// of a [`Value`] rather than out of text (capture reads the stack as a `Value` first).
///
/// serde_json (with `arbitrary_precision`) hands a `Value`'s number beyond `i128`/`u128`
/// to the next deserializer as an `f64` when that `f64`'s `Display` spells the same text,
/// as it does for a round one: `10**40` came out as `1e+40`, where Python keeps all 41
/// digits. A `Value` printed as text keeps every number's text, so the outputs are
/// taken as that text and parsed from it.
pub fn deserialize_values<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Value>>, D::Error> {
    match Option::<Box<RawValue>>::deserialize(deserializer)? {
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(D::Error::custom),
        None => Ok(None),
    }
}

/// Equal when the text is: the records compare bytes.
impl PartialEq for PythonOutputs {
    fn eq(&self, other: &PythonOutputs) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Equal when the text is.
impl PartialEq for RawOutputs {
    fn eq(&self, other: &RawOutputs) -> bool {
        self.as_str() == other.as_str()
    }
}

/// `/state`'s `heat_outputs` as wrap writes it: the text of [`PythonOutputs`], stored as a
/// JSON string. Made only from them, and not `Deserialize` (a `/state` read back holds a
/// plain `String`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputsString(String);

impl From<&PythonOutputs> for OutputsString {
    fn from(outputs: &PythonOutputs) -> OutputsString {
        OutputsString(outputs.as_str().to_owned())
    }
}

/// Text in Python's form is printable ASCII (`ensure_ascii` escapes the rest, and it
/// writes no other whitespace than spaces), in which a JSON string escapes only `"` and
/// `\`: written with those two escaped, found by `memchr`, instead of character by
/// character through the formatter. Other text would take the formatter's way (none comes
/// from [`PythonOutputs`]).
impl Serialize for OutputsString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.0.as_str();
        if !is_printable_ascii(text) {
            return serializer.serialize_str(text);
        }
        let mut quoted = String::with_capacity(text.len() + text.len() / 8 + 2);
        quoted.push('"');
        let mut plain_from = 0;
        for at in memchr::memchr2_iter(b'"', b'\\', text.as_bytes()) {
            quoted.push_str(&text[plain_from..at]);
            quoted.push('\\');
            plain_from = at;
        }
        quoted.push_str(&text[plain_from..]);
        quoted.push('"');
        let raw = RawValue::from_string(quoted).expect("an escaped string is JSON");
        raw.serialize(serializer)
    }
}

/// Whether every byte is in `' '..='~'`. Counted over whole chunks without stopping early,
/// which the compiler turns into vector instructions. With a byte-by-byte `all` instead,
/// normalize took 680,639 instructions per 64 KiB lifecycle message; with this, 431,288
/// (`scripts/instructions.sh`).
fn is_printable_ascii(text: &str) -> bool {
    text.as_bytes().chunks(64).all(|chunk| {
        chunk
            .iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(b' ') < b'~' - b' ' + 1))
    })
}

#[cfg(test)]
mod tests {
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
    /// and below `i64`, `-0`, and floats printed as `repr`), in outputs at every depth: as
    /// an output's value, in a list, in nested objects. [`HEAT`] is the outputs as Heat
    /// sends them; [`PYTHON`] and [`PYTHON_STRING`] are what CPython 3.11 printed for
    /// `json.dumps(json.loads(HEAT))` and `json.dumps(json.dumps(json.loads(HEAT)))`.
    const HEAT: &str = concat!(
        r#"[{"output_key": "n0", "output_value": 10000000000000000000000000000000000000000}, "#,
        r#"{"output_key": "n1", "output_value": -10000000000000000000000000000000000000000}, "#,
        r#"{"output_key": "n2", "output_value": 18446744073709551616}, "#,
        r#"{"output_key": "n3", "output_value": 18446744073709551615}, "#,
        r#"{"output_key": "n4", "output_value": -9223372036854775809}, "#,
        r#"{"output_key": "n5", "output_value": -0}, "#,
        r#"{"output_key": "n6", "output_value": 1e-05}, "#,
        r#"{"output_key": "n7", "output_value": 1e+16}, "#,
        r#"{"output_key": "n8", "output_value": 0.30000000000000004}, "#,
        r#"{"output_key": "n9", "output_value": 1e22}, "#,
        r#"{"output_key": "n10", "output_value": 5e-324}, "#,
        r#"{"output_key": "list", "output_value": [10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, 18446744073709551616, 18446744073709551615, -9223372036854775809, -0, 1e-05, 1e+16, 0.30000000000000004, 1e22, 5e-324]}, "#,
        r#"{"output_key": "object", "output_value": {"n": {"deep": [10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, 18446744073709551616, 18446744073709551615, -9223372036854775809, -0, 1e-05, 1e+16, 0.30000000000000004, 1e22, 5e-324]}}}]"#,
    );

    const PYTHON: &str = concat!(
        r#"[{"output_key": "n0", "output_value": 10000000000000000000000000000000000000000}, "#,
        r#"{"output_key": "n1", "output_value": -10000000000000000000000000000000000000000}, "#,
        r#"{"output_key": "n2", "output_value": 18446744073709551616}, "#,
        r#"{"output_key": "n3", "output_value": 18446744073709551615}, "#,
        r#"{"output_key": "n4", "output_value": -9223372036854775809}, "#,
        r#"{"output_key": "n5", "output_value": 0}, "#,
        r#"{"output_key": "n6", "output_value": 1e-05}, "#,
        r#"{"output_key": "n7", "output_value": 1e+16}, "#,
        r#"{"output_key": "n8", "output_value": 0.30000000000000004}, "#,
        r#"{"output_key": "n9", "output_value": 1e+22}, "#,
        r#"{"output_key": "n10", "output_value": 5e-324}, "#,
        r#"{"output_key": "list", "output_value": [10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, 18446744073709551616, 18446744073709551615, -9223372036854775809, 0, 1e-05, 1e+16, 0.30000000000000004, 1e+22, 5e-324]}, "#,
        r#"{"output_key": "object", "output_value": {"n": {"deep": [10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, 18446744073709551616, 18446744073709551615, -9223372036854775809, 0, 1e-05, 1e+16, 0.30000000000000004, 1e+22, 5e-324]}}}]"#,
    );

    const PYTHON_STRING: &str = concat!(
        r#""[{\"output_key\": \"n0\", \"output_value\": 10000000000000000000000000000000000000000}, "#,
        r#"{\"output_key\": \"n1\", \"output_value\": -10000000000000000000000000000000000000000}, "#,
        r#"{\"output_key\": \"n2\", \"output_value\": 18446744073709551616}, "#,
        r#"{\"output_key\": \"n3\", \"output_value\": 18446744073709551615}, "#,
        r#"{\"output_key\": \"n4\", \"output_value\": -9223372036854775809}, "#,
        r#"{\"output_key\": \"n5\", \"output_value\": 0}, "#,
        r#"{\"output_key\": \"n6\", \"output_value\": 1e-05}, "#,
        r#"{\"output_key\": \"n7\", \"output_value\": 1e+16}, "#,
        r#"{\"output_key\": \"n8\", \"output_value\": 0.30000000000000004}, "#,
        r#"{\"output_key\": \"n9\", \"output_value\": 1e+22}, "#,
        r#"{\"output_key\": \"n10\", \"output_value\": 5e-324}, "#,
        r#"{\"output_key\": \"list\", \"output_value\": [10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, 18446744073709551616, 18446744073709551615, -9223372036854775809, 0, 1e-05, 1e+16, 0.30000000000000004, 1e+22, 5e-324]}, "#,
        r#"{\"output_key\": \"object\", \"output_value\": {\"n\": {\"deep\": [10000000000000000000000000000000000000000, -10000000000000000000000000000000000000000, 18446744073709551616, 18446744073709551615, -9223372036854775809, 0, 1e-05, 1e+16, 0.30000000000000004, 1e+22, 5e-324]}}}]""#,
    );

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
        let body = format!(
            r#"{{"job": {{"action": "create", "resource_type": "port", "resource_id": "n1", "version": 1, "tenant_id": "t"}}, "stack": {{"stack_name": "port_n1", "stack_status": "CREATE_COMPLETE", "outputs": {HEAT}}}}}"#
        );
        let heat_stacks = format!(
            r#"{{"stack_id": "port_n1", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": {PYTHON}, "status_reason": "", "id": "port:n1"}}"#
        );
        let job_state =
            format!(r#"{{"heat_outputs": {PYTHON}, "orchestration_state": "CREATE_COMPLETE"}}"#);
        let state = format!(
            r#"{{"state": {{"worker_state": "CREATE_COMPLETED", "heat_outputs": {PYTHON_STRING}, "orchestration_state": "CREATE_COMPLETE"}}, "version": 1, "error": ""}}"#
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
                String::from_utf8(get(&store, &keys.state("ports", "n1")).unwrap().to_vec())
                    .unwrap(),
                state
            );
        }
    }

    /// The path capture takes: the stack is a [`Value`] first, and its outputs are taken out
    /// of it (through `serde_path_to_error`, for the field paths of its errors).
    #[test]
    fn outputs_taken_out_of_a_value_keep_every_number() {
        #[derive(Deserialize)]
        struct Stack {
            #[serde(default, deserialize_with = "deserialize_values")]
            outputs: Option<Vec<Value>>,
        }
        let tree: Value = serde_json::from_str(&format!(r#"{{"outputs": {HEAT}}}"#)).unwrap();
        let stack: Stack = serde_path_to_error::deserialize(tree).unwrap();
        let outputs = PythonOutputs::encode(&stack.outputs.unwrap()).unwrap();
        assert_eq!(outputs.as_str(), PYTHON);
        for absent in [r#"{}"#, r#"{"outputs": null}"#] {
            let tree: Value = serde_json::from_str(absent).unwrap();
            let stack: Stack = serde_path_to_error::deserialize(tree).unwrap();
            assert_eq!(stack.outputs, None, "{absent}");
        }
    }

    /// The outputs text alone, whether a hand-off carries it in Python's form or an older
    /// stage's compact form.
    #[test]
    fn python_numbers_survive_both_hand_off_forms() {
        let compact = serde_json::to_string(&values(HEAT)).unwrap();
        assert!(
            compact.contains("-9223372036854775809,-0,1e-05"),
            "{compact}"
        );
        let older: RawOutputs = serde_json::from_str(&compact).unwrap();
        let older = older.into_python(None).unwrap();
        assert_eq!(older.as_str(), PYTHON);
        let carried: RawOutputs = serde_json::from_str(PYTHON).unwrap();
        let carried = carried.into_python(Some(OutputsForm::Python)).unwrap();
        assert_eq!(carried.as_str(), PYTHON);
    }

    /// `1e400` is a float that overflows: Python would write `Infinity`, which is not JSON.
    #[test]
    fn a_float_python_would_print_as_infinity_is_refused() {
        let refused = PythonOutputs::encode(&values(r#"[{"output_value": {"n": [1e400]}}]"#));
        assert_eq!(refused.unwrap_err().kind, RejectKind::Unencodable);
    }
}
