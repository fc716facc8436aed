//! A stack's outputs, carried from capture to wrap as the text Python's `json.dumps` gives.
//!
//! All three records hold the outputs: heat_stacks and job_state as a JSON array, `/state` as
//! that array's text in a string. Capture writes them in that form once, as it parses the
//! body (`heat.rs`; [`PythonOutputs::encode`] for values already parsed); the hand-offs carry
//! that text as raw JSON, and normalize and wrap splice it into their
//! records instead of parsing the outputs into a tree and encoding them again. At 64 KiB
//! of outputs, that parsing and encoding was most of the pipeline's own work.
//! [`OutputsString`] writes `/state`'s copy by escaping only what the text can hold.
//!
//! Whether the text is in Python's form is a type, not a flag beside it:
//! - [`RawOutputs`]: text of any form, what deserializing gives (a hand-off, a record read
//!   back from etcd). It can be carried in a hand-off (without the mark, so the next stage
//!   encodes it again), never written into a record.
//! - [`PythonOutputs`]: text in Python's form, made only by [`PythonOutputs::encode`], by
//!   capture's parse (`heat.rs`) or by [`RawOutputs::into_python`] (the check, or an
//!   encoding). It does not implement `Deserialize`.
//!   Only records built from it encode ([`crate::records::encode`]), and a hand-off
//!   carrying it says so (`"outputs_form": "python"`, [`HandoffOutputs::FORM`]).

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{RejectKind, Rejection};
use crate::pyjson::{self, is_printable_ascii, WrittenJson};

/// The outputs list as `json.dumps(outputs)` writes it: a JSON array, printable ASCII.
///
/// Serialized, the text goes out as it is (a raw JSON fragment, through any formatter,
/// [`pyjson`]'s included). Not `Deserialize`: text from outside is a [`RawOutputs`] until
/// [`RawOutputs::into_python`] has checked or encoded it. The text is JSON because
/// serde_json wrote it or parsed it, so it is not parsed again to be written.
#[derive(Debug, Clone)]
pub struct PythonOutputs(Box<str>);

impl Serialize for PythonOutputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WrittenJson(&self.0).serialize(serializer)
    }
}

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

pub(crate) mod heat;

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
        Ok(PythonOutputs(text.into_boxed_str()))
    }

    /// No outputs: `[]`.
    pub fn empty() -> PythonOutputs {
        PythonOutputs(Box::from("[]"))
    }

    /// The text, as the records hold it.
    pub fn as_str(&self) -> &str {
        &self.0
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
            return Ok(PythonOutputs(self.0.into()));
        }
        let values: Vec<Value> =
            serde_json::from_str(text).map_err(|e| Rejection::invalid(format!("outputs: {e}")))?;
        PythonOutputs::encode(&values)
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
/// character through the formatter; a string so written is JSON whatever it holds, and goes
/// out as it is (`pyjson::WrittenJson`). Other text would take the formatter's way (none comes
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
        WrittenJson(&quoted).serialize(serializer)
    }
}

#[cfg(test)]
mod tests;
