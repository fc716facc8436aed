//! Heat's outputs, from a body's text straight into Python's form, in the body's one parse.
//!
//! Parsed into a tree of [`serde_json::Value`]s and then encoded, the outputs cost capture a
//! map and a `String` per node, their hashing (`preserve_order` maps), the encoding's walk
//! and the tree's drop: about 45 k instructions per seed message, a tenth of `run all`'s
//! (docs/SCALING.md). Here each token is written as it is parsed, with the checks the tree
//! had: a list of objects, no key twice in any object.

use std::borrow::Cow;
use std::fmt;

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
#[derive(Clone, Copy, PartialEq)]
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
    /// Fails unless this place may hold `found`.
    fn expect<E: Error>(&self, found: Unexpected<'_>, is_map: bool) -> Result<(), E> {
        match self.shape {
            Shape::List if !matches!(found, Unexpected::Seq) => {
                Err(E::invalid_type(found, &"a list of outputs"))
            }
            Shape::Output if !is_map => Err(E::invalid_type(found, &"an object")),
            _ => Ok(()),
        }
    }

    fn separator(&mut self) {
        if !self.first {
            self.out.extend_from_slice(b", ");
        }
    }

    fn scalar<E: Error>(mut self, found: Unexpected<'_>, text: &[u8]) -> Result<(), E> {
        self.expect(found, false)?;
        self.separator();
        self.out.extend_from_slice(text);
        Ok(())
    }
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
        self.expect(Unexpected::Seq, false)?;
        self.separator();
        self.out.push(b'[');
        let shape = match self.shape {
            Shape::List => Shape::Output,
            _ => Shape::Any,
        };
        let mut first = true;
        while let Some(()) = seq.next_element_seed(Write {
            out: &mut *self.out,
            first,
            shape,
        })? {
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::new();
        let mut opened = false;
        while let Some(key) = map.next_key_seed(Key)? {
            if !opened && key == NUMBER_KEY {
                let text: Cow<'de, str> = map.next_value()?;
                self.expect(Unexpected::Other("a number"), false)?;
                self.separator();
                return pyjson::write_number_text(self.out, &text).map_err(A::Error::custom);
            }
            if !opened {
                self.expect(Unexpected::Map, true)?;
                self.separator();
                self.out.push(b'{');
                opened = true;
            } else {
                self.out.extend_from_slice(b", ");
            }
            pyjson::write_str(self.out, &key);
            self.out.extend_from_slice(b": ");
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format_args!("duplicate key {key}")));
            }
            map.next_value_seed(Write {
                out: &mut *self.out,
                first: true,
                shape: Shape::Any,
            })?;
        }
        if !opened {
            self.expect(Unexpected::Map, true)?;
            self.separator();
            self.out.push(b'{');
        }
        self.out.push(b'}');
        Ok(())
    }

    fn visit_str<E: Error>(mut self, text: &str) -> Result<(), E> {
        self.expect(Unexpected::Str(text), false)?;
        self.separator();
        pyjson::write_str(self.out, text);
        Ok(())
    }
    fn visit_bool<E: Error>(self, value: bool) -> Result<(), E> {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.scalar(Unexpected::Bool(value), text)
    }
    fn visit_unit<E: Error>(self) -> Result<(), E> {
        self.scalar(Unexpected::Unit, b"null")
    }
    fn visit_none<E: Error>(self) -> Result<(), E> {
        self.scalar(Unexpected::Option, b"null")
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    // Without `arbitrary_precision` numbers would come as these; with it they come as the
    // map above. Kept so that the writer is right either way.
    fn visit_i64<E: Error>(self, value: i64) -> Result<(), E> {
        self.scalar(Unexpected::Signed(value), value.to_string().as_bytes())
    }
    fn visit_u64<E: Error>(self, value: u64) -> Result<(), E> {
        self.scalar(Unexpected::Unsigned(value), value.to_string().as_bytes())
    }
    fn visit_f64<E: Error>(mut self, value: f64) -> Result<(), E> {
        self.expect(Unexpected::Float(value), false)?;
        self.separator();
        pyjson::write_f64(self.out, value).map_err(E::custom)
    }
}
