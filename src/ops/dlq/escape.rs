//! Text from a dead letter made safe to print.
//!
//! Everything in a dead letter came from whoever published it, upstream included, and
//! `dlq list`, `dlq replay --dry-run`, `audit` and `reconcile` print it to an operator's
//! terminal. A newline there forges a line of the listing, an ESC sequence rewrites the
//! screen or the window title, a bidi control reorders what is shown. So every byte of it
//! goes through [`escape`] (text) or [`escape_bytes`] (bytes that may not be UTF-8) before
//! it is kept in a [`DeadLetterInfo`](super::DeadLetterInfo): what comes out holds no
//! control character, no format character (bidi, zero-width, line separators) and no
//! U+FFFD, and a backslash always starts an escape, so two different values never print
//! the same.

use lapin::types::AMQPValue;

/// How many bytes of a body [`preview`] shows.
pub const PREVIEW_BYTES: usize = 72;

/// `text` with `\\`, `\n`, `\r`, `\t`, `\xNN` (other ASCII controls and DEL) and
/// `\u{NNNN}` (what Rust's `escape_debug` escapes outside ASCII: C1 controls, format and
/// separator characters, unassigned ones, combining marks) in place of anything a terminal
/// could act on; U+FFFD, which stands for bytes that were not UTF-8 (the vendored
/// amq-protocol-types reads a short string so), is escaped too, so it is visible as such.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

/// [`escape`] for bytes that may not be UTF-8: the valid parts as text, each byte of an
/// invalid sequence as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for &byte in chunk.invalid() {
            push_byte(&mut out, byte);
        }
    }
    out
}

/// A header value as escaped text, whatever its type: strings as [`escape_bytes`] gives
/// them, numbers as numbers, arrays as `[a, b]`, tables as `{name: value}`. A header of an
/// unexpected type (a number where text was meant, a table) is shown, not refused.
pub fn value_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => escape_bytes(s.as_bytes()),
        AMQPValue::ShortString(s) => escape(s.as_str()),
        AMQPValue::ByteArray(b) => escape_bytes(b.as_slice()),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::DecimalValue(d) => format!("{}e-{}", d.value, d.scale),
        AMQPValue::FieldArray(values) => {
            let items: Vec<String> = values.as_slice().iter().map(value_text).collect();
            format!("[{}]", items.join(", "))
        }
        AMQPValue::FieldTable(table) => {
            let items: Vec<String> = table
                .into_iter()
                .map(|(name, value)| format!("{}: {}", escape(name.as_str()), value_text(value)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        AMQPValue::Void => "(void)".to_string(),
    }
}

/// The first [`PREVIEW_BYTES`] of `body` as printable ASCII: other bytes (controls,
/// non-ASCII) and the backslash are escaped, so a terminal shows any body safely and
/// unambiguously, JSON or not, UTF-8 or not, while JSON stays readable.
pub fn preview(body: &[u8]) -> String {
    let shown = &body[..body.len().min(PREVIEW_BYTES)];
    let mut text = String::with_capacity(shown.len());
    for &byte in shown {
        match byte {
            b'\\' => text.push_str("\\\\"),
            b'\n' => text.push_str("\\n"),
            b'\t' => text.push_str("\\t"),
            b'\r' => text.push_str("\\r"),
            0x20..=0x7e => text.push(char::from(byte)),
            _ => push_byte(&mut text, byte),
        }
    }
    if shown.len() < body.len() {
        text.push_str("...");
    }
    text
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            '\0'..='\x7f' => push_byte(out, c as u8),
            '\u{fffd}' => out.push_str("\\u{fffd}"),
            // Outside ASCII, escape_debug leaves printable characters as they are.
            _ => out.extend(c.escape_debug()),
        }
    }
}

fn push_byte(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, FieldTable, LongString};

    #[test]
    fn nothing_a_terminal_acts_on_survives() {
        let hostile = "ok\n#2 message id: forged\r\x1b[2J\x07\x7f\u{9b}31m\u{202e}gnp.exe\
                       \u{2066}\u{2028}\u{200b}\u{feff}\u{fffd}\\x41 é ü 日本";
        let shown = escape(hostile);
        assert_eq!(
            shown,
            "ok\\n#2 message id: forged\\r\\x1b[2J\\x07\\x7f\\u{9b}31m\\u{202e}gnp.exe\
             \\u{2066}\\u{2028}\\u{200b}\\u{feff}\\u{fffd}\\\\x41 é ü 日本"
        );
        assert!(shown.chars().all(|c| !c.is_control()));
    }

    #[test]
    fn the_preview_is_short_and_escaped() {
        assert_eq!(
            preview(b"{\"a\": \"\\\\\"}\n\xff\x1b"),
            r#"{"a": "\\\\"}\n\xff\x1b"#
        );
        let long = vec![b'x'; 100];
        assert_eq!(preview(&long), format!("{}...", "x".repeat(PREVIEW_BYTES)));
    }

    #[test]
    fn bytes_that_are_not_utf8_show_as_bytes() {
        assert_eq!(
            escape_bytes(b"a\xffb\xe2\x82c\xe2\x82\xac"),
            "a\\xffb\\xe2\\x82c€"
        );
    }

    #[test]
    fn a_value_of_any_type_is_shown_escaped() {
        let mut table = FieldTable::default();
        table.insert(
            "k\n".into(),
            AMQPValue::LongString(LongString::from(b"v\x1b".to_vec())),
        );
        let array = FieldArray::from(vec![
            AMQPValue::LongLongInt(-3),
            AMQPValue::Boolean(true),
            AMQPValue::FieldTable(table),
            AMQPValue::ByteArray(b"\x00\xff".as_slice().into()),
        ]);
        assert_eq!(
            value_text(&AMQPValue::FieldArray(array)),
            "[-3, true, {k\\n: v\\x1b}, \\x00\\xff]"
        );
    }
}
