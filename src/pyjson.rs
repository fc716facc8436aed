//! A JSON writer that produces the bytes Python's `json.dumps(value)` produces with its
//! default arguments.
//!
//! The records in etcd are read by existing consumers that were written against the original
//! Python worker, and some of them compare bytes, so "equivalent JSON" is not enough:
//! - separators are `", "` and `": "`;
//! - `ensure_ascii`: everything outside printable ASCII (including DEL) is written as a
//!   lowercase `\uXXXX` escape, with a surrogate pair above the BMP;
//! - floats are written as Python's `repr` (`1e-05`, `1e+16`, `0.1`, `100.0`);
//! - integers are written unchanged, whatever their size.
//!
//! Key order is whatever the value carries: the crate enables serde_json's `preserve_order`,
//! so objects keep the order in which their keys arrived, and record structs serialize their
//! fields in declaration order. Numbers keep their source text (`arbitrary_precision`), which
//! is what lets an integer larger than `u64` pass through unchanged. They keep it when a
//! `Value` is parsed from text, not when one is deserialized out of another `Value`: there
//! serde_json turns a round integer beyond `u128` into an `f64` (`1e+40`), which is why
//! capture parses Heat's outputs from text, or moves them out of a parsed stack as they are
//! ([`crate::message::HeatResult::decode`]).

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

/// Serializes `value` exactly as Python's `json.dumps(value)` would.
///
/// ```
/// let value: serde_json::Value = serde_json::from_str(r#"{"b": [1e-5, 0.1], "a": "café"}"#).unwrap();
/// assert_eq!(
///     heat_pipeline::pyjson::to_string(&value).unwrap(),
///     r#"{"b": [1e-05, 0.1], "a": "caf\u00e9"}"#
/// );
/// ```
///
/// Fails only for a number that Python would print as `Infinity` or `NaN`: those are not
/// JSON, and no reader of the records could parse them.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    crate::scratch::exact_vec(|out| {
        value.serialize(&mut Serializer::with_formatter(out, PythonFormatter))
    })
}

/// Same as [`to_vec`], as a `String` (the output is always ASCII).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let bytes = to_vec(value)?;
    Ok(String::from_utf8(bytes).expect("ensure_ascii output is ASCII"))
}

/// The name serde_json's serializer knows a raw JSON fragment by: a struct of this name
/// whose one field, of this name, holds a string is written as that string, unescaped.
/// It is how serde_json's own `RawValue` serializes; the test
/// `written_json_goes_out_as_it_is` fails if serde_json ever changes it.
const RAW_JSON: &str = "$serde_json::private::RawValue";

/// JSON text this crate has just written, serialized as it is (through any formatter,
/// [`to_vec`]'s included), as serde_json's `RawValue` serializes.
///
/// A `RawValue` can only be made by parsing its text again (`RawValue::from_string`), which
/// for text serde_json or this module has just written proves nothing and cost about 7 k
/// instructions per seed message each for capture's outputs and for `/state`'s outputs
/// string (docs/SCALING.md). Only for text this crate wrote as JSON; text from outside is a
/// `RawValue`, parsed.
pub(crate) struct WrittenJson<'a>(pub(crate) &'a str);

impl Serialize for WrittenJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut raw = serializer.serialize_struct(RAW_JSON, 1)?;
        raw.serialize_field(RAW_JSON, self.0)?;
        raw.end()
    }
}

/// Writes `text` as `json.dumps` writes a string: quoted, escaped, ASCII.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    use serde::Serializer as _;
    (&mut Serializer::with_formatter(out, PythonFormatter))
        .serialize_str(text)
        .expect("a string always encodes into memory");
}

/// Writes a number, given as the text it came as, as `json.dumps` writes it; fails for one
/// Python would print as `Infinity` ([`to_vec`]).
pub(crate) fn write_number_text(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    PythonFormatter.write_number_str(out, text)
}

/// Writes a float as `json.dumps` writes it; fails for one that is not finite.
pub(crate) fn write_f64(out: &mut Vec<u8>, value: f64) -> io::Result<()> {
    PythonFormatter.write_f64(out, value)
}

/// The serde_json formatter behind [`to_vec`]; only the points where Python differs from
/// serde_json's compact output are overridden.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_f32<W: ?Sized + Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        if !value.is_finite() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{value} is not a JSON number"),
            ));
        }
        w.write_all(python_float_repr(value).as_bytes())
    }

    /// Numbers parsed from input keep their source text. Python would have parsed an integer
    /// literal into an `int` (printed back unchanged, `-0` as `0`) and anything with a
    /// fraction or exponent into a `float` (printed as its `repr`).
    fn write_number_str<W: ?Sized + Write>(&mut self, w: &mut W, text: &str) -> io::Result<()> {
        if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            let value: f64 = text.parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad number {text}"))
            })?;
            self.write_f64(w, value)
        } else if text == "-0" {
            w.write_all(b"0")
        } else {
            w.write_all(text.as_bytes())
        }
    }

    /// serde_json hands over runs of characters that JSON allows unescaped; Python's
    /// `ensure_ascii` still escapes everything outside `' '..='~'` in them.
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Scanned as bytes: printable ASCII is one byte per character, and the first byte
        // outside it starts a character (a control, DEL, or a multi-byte sequence), so the
        // common all-ASCII fragment costs no UTF-8 decoding, and is written at once after
        // one vectorized check.
        let bytes = fragment.as_bytes();
        if is_printable_ascii(fragment) {
            return w.write_all(bytes);
        }
        let mut plain_from = 0;
        while let Some(offset) = bytes[plain_from..]
            .iter()
            .position(|b| !(b' '..=b'~').contains(b))
        {
            let at = plain_from + offset;
            w.write_all(&bytes[plain_from..at])?;
            let ch = fragment[at..]
                .chars()
                .next()
                .expect("a character starts here");
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            plain_from = at + ch.len_utf8();
        }
        w.write_all(&bytes[plain_from..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        match escape {
            CharEscape::Quote => w.write_all(b"\\\""),
            CharEscape::ReverseSolidus => w.write_all(b"\\\\"),
            // Python never escapes '/'.
            CharEscape::Solidus => w.write_all(b"/"),
            CharEscape::Backspace => w.write_all(b"\\b"),
            CharEscape::FormFeed => w.write_all(b"\\f"),
            CharEscape::LineFeed => w.write_all(b"\\n"),
            CharEscape::CarriageReturn => w.write_all(b"\\r"),
            CharEscape::Tab => w.write_all(b"\\t"),
            CharEscape::AsciiControl(byte) => write!(w, "\\u{byte:04x}"),
        }
    }
}

/// Whether every byte is in `' '..='~'`. Counted over whole chunks without stopping early,
/// which the compiler turns into vector instructions. With a byte-by-byte `all` instead,
/// normalize took 680,639 instructions per 64 KiB lifecycle message; with this, 431,288
/// (`scripts/instructions.sh`).
pub(crate) fn is_printable_ascii(text: &str) -> bool {
    text.as_bytes().chunks(64).all(|chunk| {
        chunk
            .iter()
            .fold(true, |ok, &b| ok & (b.wrapping_sub(b' ') < b'~' - b' ' + 1))
    })
}

/// Python's `repr(float)`: the shortest digits that round-trip (as Rust's formatting also
/// gives), laid out in fixed notation when the decimal exponent is in `-4..16`, otherwise
/// in scientific notation with a signed, at least two-digit exponent.
fn python_float_repr(value: f64) -> String {
    // `{:e}` gives the shortest round-trip digits as `d[.ddd]e[-]x`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if value.is_sign_negative() { "-" } else { "" };

    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        if point <= 0 {
            let zeros = "0".repeat(point.unsigned_abs() as usize);
            format!("{sign}0.{zeros}{digits}")
        } else if digits.len() <= point as usize {
            let zeros = "0".repeat(point as usize - digits.len());
            format!("{sign}{digits}{zeros}.0")
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{sign}{int}.{frac}")
        }
    } else {
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn written_json_goes_out_as_it_is() {
        let text = r#"[{"k": "a \"quoted\" \\ word", "n": 1e-05}]"#;
        #[derive(Serialize)]
        struct Outer<'a> {
            outer: WrittenJson<'a>,
        }
        let inside = Outer {
            outer: WrittenJson(text),
        };
        let expected = format!(r#"{{"outer": {text}}}"#);
        assert_eq!(to_string(&inside).unwrap(), expected);
        let compact = format!(r#"{{"outer":{text}}}"#);
        assert_eq!(serde_json::to_string(&inside).unwrap(), compact);
        assert_eq!(to_string(&WrittenJson("[]")).unwrap(), "[]");
    }

    /// Vectors whose expected bytes were produced by CPython 3.11's `json.dumps(json.loads(input))`
    /// (see `tests/fixtures/pyjson_vectors.json`).
    #[test]
    fn matches_python_on_recorded_vectors() {
        let raw = include_str!("../tests/fixtures/pyjson_vectors.json");
        let vectors: Vec<Value> = serde_json::from_str(raw).unwrap();
        assert!(vectors.len() >= 10);
        for vector in vectors {
            let input = vector["input"].as_str().unwrap();
            let expected = vector["python"].as_str().unwrap();
            let parsed: Value = serde_json::from_str(input).unwrap();
            assert_eq!(to_string(&parsed).unwrap(), expected, "input: {input}");
        }
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_float_repr(value), expected, "value {value:e}");
        }
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let parsed: Value = serde_json::from_str("[1e400]").unwrap();
        assert!(to_vec(&parsed).is_err());
    }
}
