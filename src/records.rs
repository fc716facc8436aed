//! The three records (design section 3) and the hand-off messages between stages.
//!
//! Field order in these structs is the key order of the stored JSON: do not reorder them.
//! Records are encoded with [`crate::pyjson`]; hand-offs with plain serde_json, since only
//! the stages read them.
//!
//! A record's type says what its outputs are known to be (`crate::outputs`): a record
//! read back from etcd holds [`RawOutputs`] (the default) and cannot be encoded; a stage
//! writes one holding [`PythonOutputs`]. A hand-off is decoded only by [`Handoff::decode`],
//! which checks its outputs into [`PythonOutputs`].

use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::{RejectKind, Rejection};
use crate::lifecycle::Phase;
use crate::message::Job;
use crate::outputs::{HandoffOutputs, OutputsForm, OutputsString, PythonOutputs, RawOutputs};
use crate::pyjson;

/// Who writes a decision's records and when: kept in heat-pipeline's own order keys beside
/// the records (never inside them), so that `show` can say which message wrote what and
/// `audit` how old a record is. The runner makes one per delivery; the stage only copies it,
/// so a decision stays a pure function of its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// RFC 3339 with milliseconds, UTC.
    pub written_at: String,
    /// The W3C trace id of the message being handled.
    pub trace_id: String,
}

/// `/esi-worker/heat_stacks/<api>/<path>/<id>`, written by capture with `O` =
/// [`PythonOutputs`], read back with [`RawOutputs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeatStackRecord<O = RawOutputs> {
    /// Heat's `stack_name`.
    pub stack_id: String,
    pub tenant_id: String,
    pub stack_status: String,
    pub output: O,
    /// Heat's `stack_status_reason`.
    pub status_reason: String,
    /// `<resource_type>:<resource_id>`.
    pub id: String,
}

/// `/esi-worker/job_state/<api>/<path>/<id>`, written by normalize (`O` =
/// [`PythonOutputs`]) and removed by wrap; read back with [`RawOutputs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStateRecord<O = RawOutputs> {
    pub heat_outputs: O,
    pub orchestration_state: String,
}

/// `/state/<api>/<path>/<id>`, written by wrap (`S` = [`OutputsString`]) and read by the
/// API server; read back with `S` = `String`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord<S = String> {
    pub state: WorkerState<S>,
    pub version: u64,
    /// `""` on success, the stack's status reason on failure.
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerState<S = String> {
    pub worker_state: String,
    /// The outputs as a JSON string, as the original worker stored them.
    pub heat_outputs: S,
    pub orchestration_state: String,
}

/// The part of a stored `/state` that wrap's version guard needs.
#[derive(Debug, Deserialize)]
pub struct StoredStateVersion {
    pub version: u64,
}

/// The order key of a heat_stacks or job_state record, kept beside it because the
/// record formats have no room for a version. Results are ordered by `(version, phase)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Order {
    pub version: u64,
    pub phase: Phase,
}

impl Order {
    pub fn to_bytes(self) -> Vec<u8> {
        serde_json::to_vec(&self).expect("an Order always serializes")
    }

    /// `None` for bytes that are not an order key (treated as "no order known").
    pub fn from_bytes(bytes: &[u8]) -> Option<Order> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The value of an order key: the [`Order`] that guards the record, and the lineage of the
/// write (which stage, when, for which message). Keys written before lineage existed hold
/// `{"version", "phase"}` only and read with `None` lineage; [`Order::from_bytes`] ignores
/// the lineage fields, so only `(version, phase)` ever orders results.
///
/// The same shape is kept for `/state` under [`crate::keys::Keyspace::state_lineage`]
/// (always phase `final`), since `/state`'s own bytes are a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderKey {
    pub version: u64,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl OrderKey {
    /// `order` written by `stage` with `lineage`.
    pub fn new(order: Order, stage: &str, lineage: &Lineage) -> OrderKey {
        OrderKey {
            version: order.version,
            phase: order.phase,
            stage: Some(stage.to_string()),
            written_at: Some(lineage.written_at.clone()),
            trace_id: Some(lineage.trace_id.clone()),
        }
    }

    pub fn order(&self) -> Order {
        Order {
            version: self.version,
            phase: self.phase,
        }
    }

    pub fn to_bytes(&self) -> Encoded {
        Encoded(serde_json::to_vec(self).expect("an OrderKey always serializes"))
    }

    /// `None` for bytes that are not an order key, old format or new.
    pub fn from_bytes(bytes: &[u8]) -> Option<OrderKey> {
        serde_json::from_slice(bytes).ok()
    }
}

/// capture → normalize. `O` is [`PythonOutputs`] as a stage sends it and as
/// [`Handoff::decode`] gives it, [`RawOutputs`] as `reconcile` rebuilds it from a stored
/// record; the first goes out with `"outputs_form": "python"`, the second without, and
/// the next stage encodes its outputs again.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizeRequest<O = PythonOutputs> {
    pub job: Job,
    pub heat_stack: HeatStackRecord<O>,
}

/// normalize → wrap; `O` as in [`NormalizeRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct WrapRequest<O = PythonOutputs> {
    pub job: Job,
    pub job_state: JobStateRecord<O>,
    /// Carried past job_state (which has no room for it) because a failed job's `/state`
    /// reports it as `error`.
    pub status_reason: String,
    /// The exact bytes of the job_state order key normalize wrote (or found, for a
    /// duplicate), so that wrap's guess ([`crate::stages::Stage::expected`]) can hold
    /// although the key carries a time and a trace id. Absent from an older normalize.
    pub job_state_order: Option<String>,
}

impl<O: HandoffOutputs> Serialize for NormalizeRequest<O> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("NormalizeRequest", 3)?;
        s.serialize_field("job", &self.job)?;
        s.serialize_field("heat_stack", &self.heat_stack)?;
        outputs_form::<O, S>(&mut s)?;
        s.end()
    }
}

impl<O: HandoffOutputs> Serialize for WrapRequest<O> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("WrapRequest", 5)?;
        s.serialize_field("job", &self.job)?;
        s.serialize_field("job_state", &self.job_state)?;
        s.serialize_field("status_reason", &self.status_reason)?;
        match &self.job_state_order {
            Some(order) => s.serialize_field("job_state_order", order)?,
            None => s.skip_field("job_state_order")?,
        }
        outputs_form::<O, S>(&mut s)?;
        s.end()
    }
}

/// A hand-off's last field: `"outputs_form": "python"` for [`PythonOutputs`], nothing for
/// [`RawOutputs`].
fn outputs_form<O: HandoffOutputs, S: Serializer>(
    s: &mut S::SerializeStruct,
) -> Result<(), S::Error> {
    match O::FORM {
        Some(form) => s.serialize_field("outputs_form", &form),
        None => s.skip_field("outputs_form"),
    }
}

/// A [`NormalizeRequest`] as it arrives: outputs unchecked, with the form it claims for them.
#[derive(Deserialize)]
#[serde(rename = "NormalizeRequest")]
struct NormalizeReceived {
    job: Job,
    heat_stack: HeatStackRecord<RawOutputs>,
    #[serde(default)]
    outputs_form: Option<OutputsForm>,
}

/// A [`WrapRequest`] as it arrives.
#[derive(Deserialize)]
#[serde(rename = "WrapRequest")]
struct WrapReceived {
    job: Job,
    job_state: JobStateRecord<RawOutputs>,
    status_reason: String,
    #[serde(default)]
    job_state_order: Option<String>,
    #[serde(default)]
    outputs_form: Option<OutputsForm>,
}

/// A message from the previous stage, decoded as strictly as input (design section 4): it
/// carries the job, which is validated as capture validated it, since its fields become
/// keys, and duplicate keys are refused as they are in input.
///
/// A hand-off does not deserialize any other way, so its outputs are in Python's form
/// whatever the previous stage sent: a hand-off with outputs of any other form does not
/// compile, whichever way it is tried:
///
/// ```compile_fail
/// # let body = b"{}";
/// let request: heat_pipeline::records::NormalizeRequest = serde_json::from_slice(body).unwrap();
/// ```
pub trait Handoff: Sized + sealed::Sealed {
    /// Decodes a hand-off. Its outputs are kept as the text the previous stage wrote when
    /// it says that text is Python's form (the records' form), so the stage splices it into
    /// its record as it is; a hand-off of an older stage (or of `reconcile`) has them in
    /// another form, and they are encoded again ([`RawOutputs::into_python`]).
    fn decode(body: &[u8]) -> Result<Self, Rejection>;
}

/// A hand-off as it arrives, and how it becomes one a stage can use.
trait Received: serde::de::DeserializeOwned {
    type Checked;
    fn job(&self) -> &Job;
    /// The outputs, as the text they came as.
    fn outputs(&self) -> &RawOutputs;
    fn check(self) -> Result<Self::Checked, Rejection>;
}

/// A key named twice is refused wherever it is: serde refuses a field of the hand-off named
/// twice (`duplicate field`) and skips a field it does not know unread, so only the outputs,
/// kept as text, are scanned ([`crate::strict_json`]), not the whole body (about 40 % of
/// the scan's work on the seed's hand-offs was outside the outputs).
fn decode<R: Received>(body: &[u8]) -> Result<R::Checked, Rejection> {
    let received: R = crate::message::decode_json(body)?;
    let outputs = received.outputs().as_str().as_bytes();
    if let Some(duplicate) = crate::strict_json::find_duplicate_key(outputs) {
        // Named again with its path from the body's top, as input's are.
        let named = crate::strict_json::find_duplicate_key(body).unwrap_or(duplicate);
        return Err(Rejection::invalid(named));
    }
    received.job().validate()?;
    received.check()
}

impl Received for NormalizeReceived {
    type Checked = NormalizeRequest;

    fn job(&self) -> &Job {
        &self.job
    }

    fn outputs(&self) -> &RawOutputs {
        &self.heat_stack.output
    }

    fn check(self) -> Result<NormalizeRequest, Rejection> {
        let HeatStackRecord {
            stack_id,
            tenant_id,
            stack_status,
            output,
            status_reason,
            id,
        } = self.heat_stack;
        Ok(NormalizeRequest {
            job: self.job,
            heat_stack: HeatStackRecord {
                stack_id,
                tenant_id,
                stack_status,
                output: output.into_python(self.outputs_form)?,
                status_reason,
                id,
            },
        })
    }
}

impl Received for WrapReceived {
    type Checked = WrapRequest;

    fn job(&self) -> &Job {
        &self.job
    }

    fn outputs(&self) -> &RawOutputs {
        &self.job_state.heat_outputs
    }

    fn check(self) -> Result<WrapRequest, Rejection> {
        Ok(WrapRequest {
            job: self.job,
            job_state: JobStateRecord {
                heat_outputs: self.job_state.heat_outputs.into_python(self.outputs_form)?,
                orchestration_state: self.job_state.orchestration_state,
            },
            status_reason: self.status_reason,
            job_state_order: self.job_state_order,
        })
    }
}

impl Handoff for NormalizeRequest {
    fn decode(body: &[u8]) -> Result<NormalizeRequest, Rejection> {
        decode::<NormalizeReceived>(body)
    }
}

impl Handoff for WrapRequest {
    fn decode(body: &[u8]) -> Result<WrapRequest, Rejection> {
        decode::<WrapReceived>(body)
    }
}

/// A record as a stage writes it: its outputs in Python's form. Only these encode.
pub trait Record: Serialize + sealed::Sealed {}

impl Record for HeatStackRecord<PythonOutputs> {}
impl Record for JobStateRecord<PythonOutputs> {}
impl Record for StateRecord<OutputsString> {}

mod sealed {
    use super::*;

    pub trait Sealed {}
    impl Sealed for NormalizeRequest {}
    impl Sealed for WrapRequest {}
    impl Sealed for HeatStackRecord<PythonOutputs> {}
    impl Sealed for JobStateRecord<PythonOutputs> {}
    impl Sealed for StateRecord<OutputsString> {}
}

/// Encodes a record as the original writer did, or says why it cannot be.
///
/// Only a [`Record`]: outputs in Python's form. A record read back from etcd holds outputs
/// of any form, and does not compile here:
///
/// ```compile_fail
/// # let bytes = b"{}";
/// let stored: heat_pipeline::records::JobStateRecord = serde_json::from_slice(bytes).unwrap();
/// heat_pipeline::records::encode(&stored).unwrap();
/// ```
///
/// The bytes are exactly sized ([`pyjson::to_vec`]): a record is held (in flight, in an etcd
/// batch, in the stage's cache) long enough for slack to be a large share of a process's
/// memory when outputs are tens of KiB.
pub fn encode<R: Record>(record: &R) -> Result<Encoded, Rejection> {
    let bytes = pyjson::to_vec(record)
        .map_err(|e| Rejection::new(RejectKind::Unencodable, e.to_string()))?;
    Ok(Encoded(bytes))
}

/// A hand-off's body, exactly sized like a record's.
pub(crate) fn handoff_bytes<H: Serialize>(handoff: &H) -> Vec<u8> {
    crate::scratch::exact_vec(|out| serde_json::to_writer(out, handoff))
        .expect("a hand-off always serializes")
}

/// Bytes fit to be stored: a record in Python's form ([`encode`]) or an order key
/// ([`OrderKey::to_bytes`]). Only this module makes one and a [`crate::plan::Write`] puts
/// nothing else, so a path that would store other bytes does not compile:
///
/// ```compile_fail
/// let write = heat_pipeline::plan::Write::Put {
///     key: "/state/v2.0/ports/a".into(),
///     value: b"{'not': 'Python JSON'}".to_vec(),
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(Vec<u8>);

impl Encoded {
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Bytes of a stored value, for tests that build the writes a stage would make.
    #[cfg(test)]
    pub(crate) fn stored(bytes: &[u8]) -> Encoded {
        Encoded(bytes.to_vec())
    }
}

impl std::ops::Deref for Encoded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests;
