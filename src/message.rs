//! The input message, a Heat result (design section 2), and its decoding.
//!
//! Decoding is strict where a wrong value would write a wrong key or record (a missing
//! `resource_id`, a version that is not a non-negative integer), and lenient where Heat is
//! (unknown fields are ignored, `outputs` and `stack_status_reason` may be absent).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{RejectKind, Rejection};
use crate::outputs::PythonOutputs;

/// The job whose result this is. It travels unchanged through all three stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub action: Action,
    /// Singular, e.g. `port`; part of the capture record's `id`.
    pub resource_type: String,
    /// The key segment, e.g. `ports`; defaults to `resource_type` + `s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_path: Option<String>,
    pub resource_id: String,
    /// The configuration version this job applies; becomes `/state`'s `version`.
    pub version: u64,
    pub tenant_id: String,
}

/// The job's action, as the job manager names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Modify,
    Delete,
}

impl Action {
    /// The upper-case prefix of `worker_state` (`CREATE_COMPLETED`, `MODIFY_FAILED`, ...).
    pub fn worker_prefix(self) -> &'static str {
        match self {
            Action::Create => "CREATE",
            Action::Modify => "MODIFY",
            Action::Delete => "DELETE",
        }
    }
}

impl Job {
    /// The key segment of the resource's collection.
    pub fn path(&self) -> Cow<'_, str> {
        match &self.resource_path {
            Some(path) => Cow::Borrowed(path),
            None => {
                let mut path = String::with_capacity(self.resource_type.len() + 1);
                path.push_str(&self.resource_type);
                path.push('s');
                Cow::Owned(path)
            }
        }
    }

    /// Whether this job applies the resource's first configuration (version 1, or 0 from
    /// an upstream that counts from zero): nothing is stored for it yet, usually.
    pub fn is_first_version(&self) -> bool {
        self.version <= 1
    }

    /// Refuses values that would produce a wrong, ambiguous or unusable etcd key, and a
    /// version no reader can hold: each a permanent rejection, never a retry (etcd refuses
    /// an oversized key on every attempt).
    pub(crate) fn validate(&self) -> Result<(), Rejection> {
        let path = self.path();
        for (name, value) in [
            ("job.resource_type", self.resource_type.as_str()),
            ("job.resource_path", &*path),
            ("job.resource_id", self.resource_id.as_str()),
        ] {
            check_key_segment(value).map_err(|why| Rejection::invalid(format!("{name} {why}")))?;
        }
        if self.version > MAX_VERSION {
            return Err(Rejection::invalid(format!(
                "job.version {} is over the largest version, {MAX_VERSION}",
                self.version
            )));
        }
        Ok(())
    }
}

/// The longest key segment (`resource_type`, `resource_path`, `resource_id`), in bytes: a
/// UUID is 36, a Heat name at most 255. A longer one is refused before any etcd request
/// (etcd would refuse a 1 MB key on every retry).
pub const MAX_KEY_SEGMENT_BYTES: usize = 255;

/// The largest `version`: 2^53 - 1, the largest integer that every JSON reader keeps exact
/// (JavaScript's and other readers that parse numbers as IEEE doubles). `/state` readers
/// compare versions, so one they would round is refused.
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// Why `segment` cannot be one segment of an etcd key, if it cannot. Beyond `/` (which
/// would move the record to another resource's key), `.` and `..` read as paths to tools
/// that map keys to files or URLs, and control and bidirectional-override characters make
/// a key that prints as another one.
fn check_key_segment(segment: &str) -> Result<(), String> {
    // Quoted with `escape_debug` and cut: the reason goes into a header and a log line.
    let shown = || {
        let cut: String = segment.chars().take(64).collect();
        let more = if cut.len() < segment.len() { "..." } else { "" };
        format!("\"{}\"{more}", cut.escape_debug())
    };
    if segment.is_empty() {
        Err("is empty".to_string())
    } else if segment.len() > MAX_KEY_SEGMENT_BYTES {
        Err(format!(
            "is {} bytes, over the {MAX_KEY_SEGMENT_BYTES}-byte limit of a key segment",
            segment.len()
        ))
    } else if segment == "." || segment == ".." {
        Err(format!("{} is not a usable key segment", shown()))
    } else if segment.contains('/') || segment.chars().any(|c| c.is_control() || is_bidi(c)) {
        Err(format!(
            "{} contains '/', a control character or a bidirectional-text control",
            shown()
        ))
    } else {
        Ok(())
    }
}

/// Unicode's bidirectional formatting characters (marks, embeddings, overrides and
/// isolates): they reorder how the text around them is displayed.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The fields of Heat's stack-show body that the records use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stack {
    /// `<resource_type>_<id>`; becomes the capture record's `stack_id`.
    pub stack_name: String,
    pub stack_status: String,
    #[serde(default)]
    pub stack_status_reason: Option<String>,
    /// Heat's outputs in Python's form, each kept as it arrived (key order and number
    /// text): written as they are parsed from text (`outputs/heat.rs`, which also refuses
    /// anything but a list of objects and a key named twice), or encoded from values moved
    /// out of a parsed stack, never deserialized out of another [`Value`] (see
    /// `take_outputs`).
    #[serde(default, deserialize_with = "crate::outputs::heat::deserialize")]
    pub outputs: Option<PythonOutputs>,
}

/// A Heat result as upstream publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatResult {
    pub job: Job,
    /// `None` only for a `delete` whose stack Heat no longer has.
    pub stack: Option<Stack>,
}

/// A body whose stack is in the form this pipeline's publishers use (the stack object
/// itself), parsed in one pass by [`HeatResult::decode`].
#[derive(Deserialize)]
struct PlainHeatResult {
    job: Job,
    #[serde(default)]
    stack: Option<Stack>,
}

/// A body with its stack left as text, parsed by [`decode_stack`]: the way of Heat's body
/// form and of a body that does not decode.
#[derive(Deserialize)]
struct RawHeatResult<'a> {
    job: Job,
    #[serde(default, borrow)]
    stack: Option<&'a RawValue>,
}

impl HeatResult {
    /// Decodes and validates a message body.
    ///
    /// A body in the plain form is parsed in one pass, its outputs straight into
    /// [`Value`]s: at 64 KiB of outputs each further pass over them (skipping the stack as
    /// raw text, copying the outputs out, parsing them again) was a sizeable part of
    /// capture's work; they are written in Python's form in that pass. The same pass refuses
    /// a key named twice in anything it reads (serde's `duplicate field` for the job's and
    /// the stack's fields, [`Stack::outputs`]' own for the outputs); what it does not read (a
    /// field it does not know) it skips unread, so a
    /// key repeated there changes nothing. Any other body, or one that does not parse, takes
    /// `HeatResult::decode_any_form`, which accepts Heat's body form, scans the whole body
    /// for repeated keys (its stack goes through a [`Value`], which would keep the last of
    /// them) and names what is wrong.
    pub fn decode(body: &[u8]) -> Result<HeatResult, Rejection> {
        let Some(plain) = parse_text::<PlainHeatResult>(body) else {
            return HeatResult::decode_any_form(body);
        };
        plain.job.validate()?;
        HeatResult::new(plain.job, plain.stack)
    }

    /// [`HeatResult::decode`]'s way for Heat's body form and for a body it refuses.
    fn decode_any_form(body: &[u8]) -> Result<HeatResult, Rejection> {
        let raw: RawHeatResult = decode_json(body)?;
        refuse_duplicate_keys(body)?;
        raw.job.validate()?;
        let stack = match raw.stack {
            None => None,
            Some(text) => decode_stack(text)?,
        };
        HeatResult::new(raw.job, stack)
    }

    /// The result, unless a stack is missing where only a delete may omit it.
    fn new(job: Job, stack: Option<Stack>) -> Result<HeatResult, Rejection> {
        if stack.is_none() && job.action != Action::Delete {
            return Err(Rejection::invalid(format!(
                "stack is missing, which only a delete may omit (action {:?})",
                job.action
            )));
        }
        Ok(HeatResult { job, stack })
    }
}

/// An object that names a key twice is refused ([`crate::strict_json`]).
fn refuse_duplicate_keys(body: &[u8]) -> Result<(), Rejection> {
    match crate::strict_json::find_duplicate_key(body) {
        Some(duplicate) => Err(Rejection::invalid(duplicate)),
        None => Ok(()),
    }
}

/// Accepts the stack as Heat's body (`{"stack": {...}}`) or as the object inside it; `None`
/// for `null`.
///
/// The stack object itself is parsed straight from its text. Heat's body form, and a stack
/// that does not decode, take the way through a [`Value`], which also names the field that
/// is wrong.
fn decode_stack(text: &RawValue) -> Result<Option<Stack>, Rejection> {
    match serde_json::from_str::<Option<Stack>>(text.get()) {
        Ok(stack) => Ok(stack),
        Err(_) => {
            let value: Value = serde_json::from_str(text.get())
                .map_err(|e| Rejection::new(RejectKind::MalformedJson, e.to_string()))?;
            decode_stack_value(value).map(Some)
        }
    }
}

fn decode_stack_value(value: Value) -> Result<Stack, Rejection> {
    let mut inner = match value {
        Value::Object(mut map)
            if !map.contains_key("stack_status") && map.contains_key("stack") =>
        {
            map.remove("stack").expect("checked above")
        }
        other => other,
    };
    let outputs = take_outputs(&mut inner)?;
    let mut stack: Stack = serde_path_to_error::deserialize(inner)
        .map_err(|e| Rejection::invalid(format!("stack.{e}")))?;
    stack.outputs = outputs.as_deref().map(encode_outputs).transpose()?;
    Ok(stack)
}

/// The outputs of a stack parsed into a [`Value`], moved out of it as they are.
///
/// Deserialized out of the `Value` instead, they would lose number text: serde_json (with
/// `arbitrary_precision`) hands a `Value`'s number beyond `i128`/`u128` to the next
/// deserializer as an `f64` when that `f64`'s `Display` spells the same text, as it does
/// for a round one (`10**40` came out as `1e+40`, where Python keeps all 41 digits).
fn take_outputs(stack: &mut Value) -> Result<Option<Vec<Value>>, Rejection> {
    match stack.as_object_mut().and_then(|map| map.remove("outputs")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(outputs)) => Ok(Some(outputs)),
        Some(other) => {
            let wrong = Vec::<Value>::deserialize(other).expect_err("only an array is a list");
            Err(Rejection::invalid(format!("stack.outputs: {wrong}")))
        }
    }
}

/// Outputs moved out of a parsed stack, each an object, in Python's form.
fn encode_outputs(outputs: &[Value]) -> Result<PythonOutputs, Rejection> {
    if let Some(at) = outputs.iter().position(|o| !o.is_object()) {
        return Err(Rejection::invalid(format!(
            "stack.outputs[{at}]: expected an object"
        )));
    }
    PythonOutputs::encode(outputs)
}

/// `body` parsed into `T` as text, if it is UTF-8 and parses.
///
/// Checked as UTF-8 once, whole, and parsed as a `str`: parsed as bytes, serde_json checks
/// each string on its own, and those hundred short checks per message cost more than the
/// one long one (2.2 % of `run all`'s instructions, under callgrind).
fn parse_text<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(body).ok()?).ok()
}

/// Parses a JSON body into `T`, naming the offending field on failure.
///
/// Syntax errors (including non-UTF-8 input and nesting beyond serde_json's recursion
/// limit) are [`RejectKind::MalformedJson`]; well-formed JSON of the wrong shape is
/// [`RejectKind::InvalidMessage`].
pub fn decode_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::new(RejectKind::MalformedJson, "empty body"));
    }
    // The fast path: plain serde_json. Tracking the field path costs an allocation per
    // field, so it is paid only to explain a failure.
    if let Some(value) = parse_text::<T>(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_json's own classification is unreliable here (with arbitrary_precision a
        // number where a string belongs reads as a syntax error), so ask the question
        // directly: does the body parse as JSON (valid UTF-8, not too deep)?
        let too_deep = e
            .inner()
            .to_string()
            .starts_with("recursion limit exceeded");
        if too_deep {
            let detail = format!("nested too deeply: {}", e.inner());
            return Rejection::new(RejectKind::MalformedJson, detail);
        }
        let is_json = serde_json::from_slice::<Value>(body).is_ok();
        let kind = if is_json {
            RejectKind::InvalidMessage
        } else {
            RejectKind::MalformedJson
        };
        let path = e.path().to_string();
        let detail = if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        };
        Rejection::new(kind, detail)
    })?;
    de.end()
        .map_err(|e| Rejection::new(RejectKind::MalformedJson, e.to_string()))?;
    Ok(value)
}

#[cfg(test)]
mod tests;
