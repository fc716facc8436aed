//! W3C trace context (`traceparent: 00-<trace-id>-<parent-id>-<flags>`), carried in the
//! AMQP headers from the input through every hand-off, so that one Heat result can be
//! followed across processes. A stage starts a new trace when upstream sent none, and
//! forwards the trace with its own span id as the parent.

/// A parsed `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub parent_id: String,
    pub flags: String,
}

impl TraceParent {
    /// Parses a version-00 header; anything else is treated as absent (the spec says to
    /// start a new trace then).
    pub fn parse(header: &str) -> Option<TraceParent> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let valid = version == "00"
            && parts.next().is_none()
            && hex(trace_id, 32)
            && hex(parent_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && parent_id.bytes().any(|b| b != b'0');
        valid.then(|| TraceParent {
            trace_id: trace_id.into(),
            parent_id: parent_id.into(),
            flags: flags.into(),
        })
    }

    /// A new trace, sampled.
    pub fn start() -> TraceParent {
        TraceParent {
            trace_id: format!("{:032x}", fastrand::u128(1..)),
            parent_id: new_span_id(),
            flags: "01".into(),
        }
    }

    /// The same trace, with this hop as the parent of the next.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id.clone(),
            parent_id: new_span_id(),
            flags: self.flags.clone(),
        }
    }

    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }
}

/// A random, non-zero id (the spec forbids all zeros). Ids need to be unique, not secret,
/// so they come from a per-thread generator seeded once: a v4 UUID asks the kernel
/// (`getrandom`) each time, and a result crosses three of these per hop.
fn new_span_id() -> String {
    format!("{:016x}", fastrand::u64(1..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_headers_and_refuses_others() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(header).unwrap();
        assert_eq!(parsed.header(), header);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_parent() {
        let root = TraceParent::start();
        assert!(TraceParent::parse(&root.header()).is_some());
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.parent_id, root.parent_id);
    }

    #[test]
    fn new_ids_are_valid_and_distinct() {
        let traces: std::collections::BTreeSet<String> = (0..1000)
            .map(|_| {
                let trace = TraceParent::start();
                assert_eq!(TraceParent::parse(&trace.header()), Some(trace.clone()));
                trace.trace_id
            })
            .collect();
        assert_eq!(traces.len(), 1000);
    }
}
