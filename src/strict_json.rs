//! A check that serde_json does not do: an object must not name the same key twice.
//!
//! Python's `json.loads` (and serde_json) silently keep the last of duplicate keys, so a
//! document with `"version": 1, ..., "version": 7` would be recorded as version 7 by one
//! reader and 1 by another. Upstream never sends such documents on purpose; when one
//! arrives it is rejected rather than guessed at.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// Returns the first duplicated key (with its path) if `body` has one. A body that is not
/// JSON passes: the decoder reports that with a better message.
pub fn find_duplicate_key(body: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let root = Unique {
        path: String::new(),
    };
    match root.deserialize(&mut de) {
        Err(e) if e.is_data() => Some(e.to_string()),
        _ => None,
    }
}

/// Walks one value, failing on the first object with a repeated key.
struct Unique {
    /// Where this value sits, e.g. `job` or `stack.outputs[2]`, for the error message.
    path: String,
}

impl Unique {
    fn child(&self, segment: fmt::Arguments<'_>) -> Unique {
        let path = if self.path.is_empty() {
            segment.to_string()
        } else {
            format!("{}{}", self.path, segment)
        };
        Unique { path }
    }
}

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let separator = if self.path.is_empty() { "" } else { "." };
            let child = self.child(format_args!("{separator}{key}"));
            if !seen.insert(key) {
                return Err(A::Error::custom(format_args!(
                    "duplicate key {}",
                    child.path
                )));
            }
            map.next_value_seed(child)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(self.child(format_args!("[{index}]")))?
            .is_some()
        {
            index += 1;
        }
        Ok(())
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
}
