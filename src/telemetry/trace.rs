//! W3C trace context (`traceparent: 00-<trace-id>-<parent-id>-<flags>`), carried in the
//! AMQP headers from the input through every hand-off, so that one Heat result can be
//! followed across processes. A stage starts a new trace when upstream sent none, and
//! forwards the trace with its own span id as the parent.

/// A valid version-00 `traceparent`, kept as the header's text: it is read from one
/// message's headers and written into the next one's, and its parts are only ever read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// `00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 hex flags>`.
    header: String,
}

/// Where the parts sit in [`TraceParent::header`]: `00-`, 32, `-`, 16, `-`, 2.
const TRACE_ID: std::ops::Range<usize> = 3..35;
const PARENT_ID: std::ops::Range<usize> = 36..52;
const FLAGS: std::ops::Range<usize> = 53..55;

impl TraceParent {
    /// Parses a version-00 header; anything else is treated as absent (the spec says to
    /// start a new trace then).
    pub fn parse(header: &str) -> Option<TraceParent> {
        let header = header.trim();
        let bytes = header.as_bytes();
        let hex = |at: std::ops::Range<usize>| {
            bytes[at]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let nonzero = |at: std::ops::Range<usize>| bytes[at].iter().any(|&b| b != b'0');
        let valid = bytes.len() == FLAGS.end
            && header.starts_with("00-")
            && bytes[TRACE_ID.end] == b'-'
            && bytes[PARENT_ID.end] == b'-'
            && hex(TRACE_ID)
            && hex(PARENT_ID)
            && hex(FLAGS)
            && nonzero(TRACE_ID)
            && nonzero(PARENT_ID);
        valid.then(|| TraceParent {
            header: header.to_string(),
        })
    }

    /// A new trace, sampled.
    pub fn start() -> TraceParent {
        let mut header = String::with_capacity(FLAGS.end);
        header.push_str("00-");
        push_hex(&mut header, fastrand::u128(1..), 32);
        header.push('-');
        push_hex(&mut header, u128::from(fastrand::u64(1..)), 16);
        header.push_str("-01");
        TraceParent { header }
    }

    /// The same trace, with this hop as the parent of the next.
    pub fn child(&self) -> TraceParent {
        let mut header = String::with_capacity(FLAGS.end);
        header.push_str(&self.header[..PARENT_ID.start]);
        push_hex(&mut header, u128::from(fastrand::u64(1..)), 16);
        header.push_str(&self.header[PARENT_ID.end..]);
        TraceParent { header }
    }

    /// The header's text.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.header[TRACE_ID]
    }

    /// The parent (span) id: 16 lowercase hex digits.
    pub fn parent_id(&self) -> &str {
        &self.header[PARENT_ID]
    }
}

/// Pushes the low `digits` hex digits of `value`, lowercase. Ids are random and non-zero
/// (the spec forbids all zeros; `fastrand`'s ranges start at 1). They need to be unique, not
/// secret, so they come from a per-thread generator seeded once: a v4 UUID asks the kernel
/// (`getrandom`) each time, and a result crosses three of these per hop. Written digit by
/// digit: through `format!`, a hop's header cost more than its lookup and parse together.
fn push_hex(out: &mut String, value: u128, digits: u32) {
    for shift in (0..digits).rev() {
        let nibble = (value >> (shift * 4)) & 0xf;
        out.push(char::from(b"0123456789abcdef"[nibble as usize]));
    }
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
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_parent() {
        let root = TraceParent::start();
        assert!(TraceParent::parse(root.header()).is_some());
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.parent_id(), root.parent_id());
        assert_eq!(child.header()[FLAGS], root.header()[FLAGS]);
    }

    #[test]
    fn new_ids_are_valid_and_distinct() {
        let traces: std::collections::BTreeSet<String> = (0..1000)
            .map(|_| {
                let trace = TraceParent::start();
                assert_eq!(TraceParent::parse(trace.header()), Some(trace.clone()));
                trace.trace_id().to_string()
            })
            .collect();
        assert_eq!(traces.len(), 1000);
    }
}
