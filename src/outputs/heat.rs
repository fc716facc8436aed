//! Heat's outputs, from a body's text straight into Python's form, in the body's one parse.
//!
//! Parsed into a tree of [`serde_json::Value`]s and then encoded, the outputs cost capture a
//! map and a `String` per node, their hashing (`preserve_order` maps), the encoding's walk
//! and the tree's drop: about 45 k instructions per seed message, a tenth of `run all`'s
//! (docs/SCALING.md). Here each token is written as it is parsed, with the checks the tree
//! had: a list of objects, no key twice in any object.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write as _};

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Unexpected, Visitor};

use super::PythonOutputs;
use crate::pyjson;
use crate::strict_json::{Key, Seen};

/// For `#[serde(deserialize_with)]` on a stack's outputs: `null` or a list of objects, in
/// Python's form. What it refuses (anything else, a key named twice, a number Python would
/// print as `Infinity`) it refuses with serde's error; the decoder then takes its slower
/// way, through a `Value`, which names the place and the kind
/// ([`crate::message::HeatResult::decode`]).
pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PythonOutputs>, D::Error> {
    deserializer.deserialize_option(Outputs)
}

/// The key serde_json (with `arbitrary_precision`) gives a number as: it hands each number
/// to a visitor as a one-entry map from this key to the number's text, so that the text
/// survives. serde_json's own `Value` visitor reads it the same way; the tests of numbers
/// (`outputs_keep_every_number_in_either_form_of_the_stack`) fail if serde_json changes it.
const NUMBER_KEY: &str = "$serde_json::private::Number";

/// `null`, or the list.
struct Outputs;

impl<'de> Visitor<'de> for Outputs {
    type Value = Option<PythonOutputs>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of outputs or null")
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let bytes = crate::scratch::exact_vec(|out| {
            deserializer.deserialize_seq(Write {
                out,
                first: true,
                shape: Shape::List,
            })
        })?;
        let text = String::from_utf8(bytes).expect("ensure_ascii output is ASCII");
        Ok(Some(PythonOutputs(text.into_boxed_str())))
    }
}

/// What a value must be where it stands.
#[derive(Clone, Copy)]
enum Shape {
    /// The outputs: a list.
    List,
    /// One output: an object.
    Output,
    /// Anything inside an output.
    Any,
}

/// Writes one value into `out`, preceded by `", "` unless it is the `first` of its list.
struct Write<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    shape: Shape,
}

impl Write<'_> {
    /// Fails unless this place may hold `found`; otherwise writes the separator before it.
    fn start<E: Error>(&mut self, found: Unexpected<'_>) -> Result<(), E> {
        match (self.shape, found) {
            (Shape::List, Unexpected::Seq) | (Shape::Output, Unexpected::Map) | (Shape::Any, _) => {
            }
            (Shape::List, _) => return Err(E::invalid_type(found, &"a list of outputs")),
            (Shape::Output, _) => return Err(E::invalid_type(found, &"an object")),
        }
        if !self.first {
            self.out.extend_from_slice(b", ");
        }
        Ok(())
    }

    /// A value written whole by `write` (anything but a list or an object with entries).
    fn put<E: Error>(
        mut self,
        found: Unexpected<'_>,
        write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> Result<(), E> {
        self.start(found)?;
        write(self.out).map_err(E::custom)
    }

    /// The next value of a list or an object, into the same `out`.
    fn child(&mut self, first: bool, shape: Shape) -> Write<'_> {
        Write {
            out: &mut *self.out,
            first,
            shape,
        }
    }
}

/// Writes `text` as it is.
fn raw(text: &[u8]) -> impl FnOnce(&mut Vec<u8>) -> io::Result<()> + '_ {
    move |out| out.write_all(text)
}

impl<'de> DeserializeSeed<'de> for Write<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Write<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.start(Unexpected::Seq)?;
        self.out.push(b'[');
        let shape = match self.shape {
            Shape::List => Shape::Output,
            _ => Shape::Any,
        };
        let mut first = true;
        while let Some(()) = seq.next_element_seed(self.child(first, shape))? {
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let Some(mut key) = map.next_key_seed(Key)? else {
            return self.put(Unexpected::Map, raw(b"{}"));
        };
        if key == NUMBER_KEY {
            let text: Cow<'de, str> = map.next_value()?;
            return self.put(Unexpected::Other("a number"), |out| {
                pyjson::write_number_text(out, &text)
            });
        }
        self.start(Unexpected::Map)?;
        self.out.push(b'{');
        let mut seen = Seen::new();
        loop {
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format_args!("duplicate key {key}")));
            }
            pyjson::write_str(self.out, &key);
            self.out.extend_from_slice(b": ");
            map.next_value_seed(self.child(true, Shape::Any))?;
            match map.next_key_seed(Key)? {
                Some(next) => key = next,
                None => break,
            }
            self.out.extend_from_slice(b", ");
        }
        self.out.push(b'}');
        Ok(())
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<(), E> {
        self.put(Unexpected::Str(text), |out| {
            pyjson::write_str(out, text);
            Ok(())
        })
    }
    fn visit_bool<E: Error>(self, value: bool) -> Result<(), E> {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.put(Unexpected::Bool(value), raw(text))
    }
    fn visit_unit<E: Error>(self) -> Result<(), E> {
        self.put(Unexpected::Unit, raw(b"null"))
    }
    fn visit_none<E: Error>(self) -> Result<(), E> {
        self.put(Unexpected::Option, raw(b"null"))
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    // Without `arbitrary_precision` numbers would come as these; with it they come as the
    // map above. Kept so that the writer is right either way.
    fn visit_i64<E: Error>(self, value: i64) -> Result<(), E> {
        self.put(Unexpected::Signed(value), |out| write!(out, "{value}"))
    }
    fn visit_u64<E: Error>(self, value: u64) -> Result<(), E> {
        self.put(Unexpected::Unsigned(value), |out| write!(out, "{value}"))
    }
    fn visit_f64<E: Error>(self, value: f64) -> Result<(), E> {
        self.put(Unexpected::Float(value), |out| {
            pyjson::write_f64(out, value)
        })
    }
}
