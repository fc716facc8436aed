//! A stack's outputs, carried from capture to wrap as the text Python's `json.dumps` gives.
//!
//! All three records hold the outputs: heat_stacks and job_state as a JSON array, `/state` as
//! that array's text in a string. Capture encodes them once ([`Outputs::encode`]); the
//! hand-offs carry that text as raw JSON, and normalize and wrap splice it into their
//! records instead of parsing the outputs into a tree and encoding them again. At 64 KiB
//! of outputs, that parsing and encoding was most of the pipeline's own work.
//! [`OutputsString`] writes `/state`'s copy by escaping only what the text can hold.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{RejectKind, Rejection};
use crate::pyjson;

/// The outputs list as `json.dumps(outputs)` writes it: a JSON array, ASCII only.
///
/// Serialized, the text goes out as it is (a raw JSON fragment, through any formatter,
/// [`pyjson`]'s included); deserialized, the array's text is kept as it came.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outputs(Box<RawValue>);

/// The form a hand-off's outputs are written in. Hand-offs of a capture or normalize that
/// predates [`Outputs`] carry none (serde_json's compact form), and are re-encoded.
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

impl Outputs {
    /// Encodes Heat's outputs as the original worker did.
    pub fn encode(values: &[Value]) -> Result<Outputs, Rejection> {
        let text = pyjson::to_string(values)
            .map_err(|e| Rejection::new(RejectKind::Unencodable, e.to_string()))?;
        let raw = RawValue::from_string(text).expect("the record writer emits JSON");
        Ok(Outputs(raw))
    }

    /// No outputs: `[]`.
    pub fn empty() -> Outputs {
        Outputs::encode(&[]).expect("an empty list encodes")
    }

    /// The text, as the records hold it.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Puts these outputs, which came in `form`, in Python's form: kept as they are when
    /// they say they are in it, parsed and encoded again when `form` is `None` (an older
    /// stage wrote serde_json's form). Text that claims Python's form but is not ASCII
    /// cannot be in it, and is encoded again too (Python writes no whitespace but spaces, so
    /// neither is text with a newline or a tab between its tokens).
    pub fn ensure_python_form(&mut self, form: Option<OutputsForm>) -> Result<(), Rejection> {
        if form == Some(OutputsForm::Python) && is_printable_ascii(self.as_str()) {
            return Ok(());
        }
        let values: Vec<Value> = serde_json::from_str(self.as_str())
            .map_err(|e| Rejection::invalid(format!("outputs: {e}")))?;
        *self = Outputs::encode(&values)?;
        Ok(())
    }
}

/// Equal when the text is: the records compare bytes.
impl PartialEq for Outputs {
    fn eq(&self, other: &Outputs) -> bool {
        self.as_str() == other.as_str()
    }
}

/// `/state`'s `heat_outputs`: the outputs' text, stored as a JSON string.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputsString(pub String);

impl From<&Outputs> for OutputsString {
    fn from(outputs: &Outputs) -> OutputsString {
        OutputsString(outputs.as_str().to_owned())
    }
}

/// Text in Python's form is printable ASCII (`ensure_ascii` escapes the rest, and it
/// writes no other whitespace than spaces), in which a JSON string escapes only `"` and
/// `\`: written with those two escaped, found by `memchr`, instead of character by
/// character through the formatter. Other text (a record read back from etcd) takes the
/// formatter's way.
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

impl<'de> Deserialize<'de> for OutputsString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(OutputsString)
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
            Outputs::encode(&values(r#"[{"b": 1e-5, "a": "café"}, {"x": [1,2]}]"#)).unwrap();
        let python = r#"[{"b": 1e-05, "a": "caf\u00e9"}, {"x": [1, 2]}]"#;
        assert_eq!(outputs.as_str(), python);
        assert_eq!(pyjson::to_string(&outputs).unwrap(), python);
        assert_eq!(serde_json::to_string(&outputs).unwrap(), python);
        assert_eq!(Outputs::empty().as_str(), "[]");
    }

    #[test]
    fn text_in_python_form_is_kept_and_older_text_is_encoded_again() {
        let python = r#"[{"b": 1e-05, "n": 100000000000000000000}]"#;
        let compact = r#"[{"b":1e-5,"n":100000000000000000000}]"#;
        let mut carried: Outputs = serde_json::from_str(python).unwrap();
        carried
            .ensure_python_form(Some(OutputsForm::Python))
            .unwrap();
        assert_eq!(carried.as_str(), python);
        let mut older: Outputs = serde_json::from_str(compact).unwrap();
        older.ensure_python_form(None).unwrap();
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
            let back: OutputsString =
                serde_json::from_str(&pyjson::to_string(&string).unwrap()).unwrap();
            assert_eq!(back, string);
        }
    }

    #[test]
    fn text_that_claims_python_form_but_is_not_ascii_is_encoded_again() {
        let mut claimed: Outputs = serde_json::from_str(r#"[{"a": "café"}]"#).unwrap();
        claimed
            .ensure_python_form(Some(OutputsForm::Python))
            .unwrap();
        assert_eq!(claimed.as_str(), r#"[{"a": "caf\u00e9"}]"#);
        let mut spaced: Outputs = serde_json::from_str("[\n{\"a\":\t1}]").unwrap();
        spaced
            .ensure_python_form(Some(OutputsForm::Python))
            .unwrap();
        assert_eq!(spaced.as_str(), r#"[{"a": 1}]"#);
    }
}
