//! A check that serde_json does not do: an object must not name the same key twice.
//!
//! Python's `json.loads` (and serde_json) silently keep the last of duplicate keys, so a
//! document with `"version": 1, ..., "version": 7` would be recorded as version 7 by one
//! reader and 1 by another. Upstream never sends such documents on purpose; when one
//! arrives it is rejected rather than guessed at.
//!
//! Two ways, for two kinds of text:
//! - [`find_duplicate_key`]: a scan of a whole body, where the parse cannot see every key:
//!   a hand-off (its outputs stay text), Heat's body form (its stack goes through a
//!   `serde_json::Value`, which keeps the last of two).
//! - `Seen` and `Key`, for a parse that checks as it goes: capture's outputs, written in
//!   Python's form as they are parsed (`outputs/heat.rs`). serde's derived structs refuse a
//!   repeated field themselves (`duplicate field`), so a body parsed into those and these
//!   needs no scan.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::{self, Write};

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// Returns the first duplicated key (with its path) if `body` has one. A body that is not
/// JSON passes: the decoder reports that with a better message.
///
/// Every input is scanned, so the scan is cheap: a pass over the bytes that skips strings
/// with `memchr` and compares keys as bytes, borrowed from `body` (an escaped key is
/// unescaped first), with a linear scan for small objects. Only a body with a duplicate is
/// walked a second time, by serde, keeping the path to name where it is. On the seed the
/// serde walk alone cost a quarter of the three stages' instructions (docs/SCALING.md).
pub fn find_duplicate_key(body: &[u8]) -> Option<String> {
    if has_duplicate(body) {
        duplicate_path(body)
    } else {
        None
    }
}

/// An open object or array of the scan.
struct Open<'a> {
    object: bool,
    /// Where this object's keys start in the scan's one buffer of keys.
    keys_from: usize,
    /// Past `SCAN_LIMIT` keys, the keys as a set too, so that a huge object stays linear.
    many: Option<HashSet<Cow<'a, [u8]>>>,
}

/// Whether an object of `body` names a key twice. Meant for JSON that parsed: on other
/// input it answers without panicking, and what it answers does not matter.
fn has_duplicate(body: &[u8]) -> bool {
    // Sized for a Heat result or a hand-off (a few levels deep, a few dozen keys open at
    // once), so that neither grows on the way: growing them was 2 % of the three stages'
    // instructions (`scripts/instructions.sh`).
    let mut open: Vec<Open<'_>> = Vec::with_capacity(16);
    let mut keys: Vec<Cow<'_, [u8]>> = Vec::with_capacity(64);
    let mut expect_key = false;
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        match byte {
            b'{' | b'[' => {
                open.push(Open {
                    object: byte == b'{',
                    keys_from: keys.len(),
                    many: None,
                });
                expect_key = byte == b'{';
            }
            b'}' | b']' => {
                if let Some(closed) = open.pop() {
                    keys.truncate(closed.keys_from);
                }
                expect_key = false;
            }
            b',' => expect_key = open.last().is_some_and(|o| o.object),
            b'"' => {
                let Some((end, escaped)) = string_end(body, at + 1) else {
                    return false;
                };
                if expect_key {
                    let Some(key) = key_at(body, at, end, escaped) else {
                        return false;
                    };
                    let Some(object) = open.last_mut() else {
                        return false;
                    };
                    let repeated = match &mut object.many {
                        Some(set) => !set.insert(key.clone()),
                        None => keys[object.keys_from..].contains(&key),
                    };
                    if repeated {
                        return true;
                    }
                    keys.push(key);
                    if object.many.is_none() && keys.len() - object.keys_from > SCAN_LIMIT {
                        object.many = Some(keys[object.keys_from..].iter().cloned().collect());
                    }
                    expect_key = false;
                }
                at = end;
            }
            _ => {}
        }
        at += 1;
    }
    false
}

/// The index of the quote that ends the string whose text starts at `from`, and whether
/// the string holds an escape.
fn string_end(body: &[u8], mut from: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        let found = from + memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[found] == b'"' {
            return Some((found, escaped));
        }
        escaped = true;
        from = found + 2;
    }
}

/// The key quoted from `start` to `end`, unescaped when it holds an escape (`"\u0061"` is
/// `"a"`).
fn key_at(body: &[u8], start: usize, end: usize, escaped: bool) -> Option<Cow<'_, [u8]>> {
    let text = &body[start + 1..end];
    if !escaped {
        return Some(Cow::Borrowed(text));
    }
    let key: String = serde_json::from_slice(&body[start..=end]).ok()?;
    Some(Cow::Owned(key.into_bytes()))
}

/// The first duplicated key of `body`, with its path.
fn duplicate_path(body: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let path = RefCell::new(Vec::new());
    match (Unique { path: &path }).deserialize(&mut de) {
        Err(e) if e.is_data() => Some(e.to_string()),
        _ => None,
    }
}

/// One step of the path to a value: an object key or an array index.
enum Segment<'de> {
    Key(Cow<'de, str>),
    Index(usize),
}

/// Renders a path such as `stack.outputs[2].output_key`.
fn render(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) if out.is_empty() => out.push_str(key),
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(index) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
    out
}

/// Objects up to this many keys are checked by a linear scan; larger ones by a hash set,
/// so that a hostile object with a million keys stays linear.
const SCAN_LIMIT: usize = 16;

/// The keys of one object seen so far.
pub(crate) enum Seen<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(HashSet<Cow<'de, str>>),
}

impl<'de> Seen<'de> {
    /// No key yet.
    pub(crate) fn new() -> Seen<'de> {
        Seen::Few(Vec::new())
    }

    /// Records `key`; false if it was already there.
    pub(crate) fn insert(&mut self, key: Cow<'de, str>) -> bool {
        match self {
            Seen::Few(keys) if keys.contains(&key) => false,
            Seen::Few(keys) if keys.len() < SCAN_LIMIT => {
                keys.push(key);
                true
            }
            Seen::Few(keys) => {
                let mut set: HashSet<_> = keys.drain(..).collect();
                set.insert(key);
                *self = Seen::Many(set);
                true
            }
            Seen::Many(set) => set.insert(key),
        }
    }
}

/// Walks one value, failing on the first object with a repeated key. `path` is the stack of
/// segments down to this value, shared by the whole walk (each level pushes its segment
/// before walking a child and pops it after).
struct Unique<'p, 'de> {
    path: &'p RefCell<Vec<Segment<'de>>>,
}

impl<'de> DeserializeSeed<'de> for Unique<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An object key, borrowed from the input when it has no escapes.
pub(crate) struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_string()))
    }
    fn visit_string<E>(self, key: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key))
    }
}

impl<'de> Visitor<'de> for Unique<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if !seen.insert(key.clone()) {
                let mut path = self.path.borrow_mut();
                path.push(Segment::Key(key));
                return Err(A::Error::custom(format_args!(
                    "duplicate key {}",
                    render(&path)
                )));
            }
            self.path.borrow_mut().push(Segment::Key(key));
            let result = map.next_value_seed(Unique { path: self.path });
            self.path.borrow_mut().pop();
            result?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            self.path.borrow_mut().push(Segment::Index(index));
            let next = seq.next_element_seed(Unique { path: self.path });
            self.path.borrow_mut().pop();
            if next?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // With serde_json's arbitrary_precision, numbers arrive as a one-entry map; the
        // generic path below handles them, this is for completeness.
        d.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_duplicate_at_any_depth() {
        assert_eq!(find_duplicate_key(br#"{"a": 1, "b": 2}"#), None);
        assert_eq!(
            find_duplicate_key(br#"{"a": 1.5, "b": [1, {"c": 2}]}"#),
            None
        );
        let found = find_duplicate_key(br#"{"job": {"version": 1, "version": 7}}"#).unwrap();
        assert!(found.starts_with("duplicate key job.version"), "{found}");
        let found = find_duplicate_key(br#"{"s": {"o": [{"k": 1}, {"k": 1, "k": 2}]}}"#).unwrap();
        assert!(found.starts_with("duplicate key s.o[1].k"), "{found}");
        assert_eq!(find_duplicate_key(b"not json"), None);
    }

    #[test]
    fn the_scan_tells_keys_from_strings_that_look_like_json() {
        let unique: &[&[u8]] = &[
            br#"{"a": "}", "b": "{\"a\": 1, \"a\": 2}"}"#,
            br#"{"a": ["a", "a", {"a": 1}], "b": [{"a": 1}, {"a": 2}]}"#,
            br#"{"a\\": 1, "a": 2, "x": "\\", "y": "\"", "z": []}"#,
            br#"[{"a": 1}, {"a": 1}, "a", {}]"#,
            "{\"caf\\u00e9\": 1, \"cafe\": 2}".as_bytes(),
        ];
        for body in unique {
            assert!(!has_duplicate(body), "{}", String::from_utf8_lossy(body));
        }
        let repeated: &[&[u8]] = &[
            br#"{"a": [1, "x", {"b": 1}], "a": 2}"#,
            br#"{"s": "}", "o": {"k": "{", "k": 1}}"#,
            "{\"café\": 1, \"caf\\u00e9\": 2}".as_bytes(),
        ];
        for body in repeated {
            assert!(has_duplicate(body), "{}", String::from_utf8_lossy(body));
            assert!(find_duplicate_key(body).is_some());
        }
        // Not JSON: no panic, whatever the answer.
        for body in [&b"{\"a"[..], b"{\"a\\", b"}}]]", b"\"", b"{\"a\": 1, \"a"] {
            has_duplicate(body);
        }
    }

    #[test]
    fn finds_a_duplicate_in_a_large_object_and_behind_escapes() {
        let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\": {i}")).collect();
        let unique = format!("{{\"big\": {{{}}}}}", keys.join(", "));
        assert_eq!(find_duplicate_key(unique.as_bytes()), None);
        let repeated = format!("{{\"big\": {{{}, \"k57\": 0}}}}", keys.join(", "));
        let found = find_duplicate_key(repeated.as_bytes()).unwrap();
        assert!(found.starts_with("duplicate key big.k57"), "{found}");
        // "\u0061" is "a": the same key, spelt differently.
        let found = find_duplicate_key(br#"{"x": [{"a": 1, "\u0061": 2}]}"#).unwrap();
        assert!(found.starts_with("duplicate key x[0].a"), "{found}");
    }
}
