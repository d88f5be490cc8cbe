//! Reading a message's fields as bytes, text, numbers or JSON.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::value::{CowStrDeserializer, MapDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};

use crate::{Failure, Message};

impl Message {
    /// The raw value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The raw value of field `name`, or a `reject` saying it is missing.
    pub fn bytes(&self, name: &str) -> Result<&[u8], Failure> {
        self.get(name)
            .ok_or_else(|| Failure::reject(format!("field {name:?} is missing")))
    }

    /// Field `name` as UTF-8 text, or a `reject` saying it is missing or not text.
    pub fn text(&self, name: &str) -> Result<&str, Failure> {
        std::str::from_utf8(self.bytes(name)?)
            .map_err(|_| Failure::reject(format!("field {name:?} is not UTF-8 text")))
    }

    /// Field `name` parsed with [`FromStr`] (numbers, booleans...), or a `reject` saying
    /// why it could not be.
    pub fn parse<T>(&self, name: &str) -> Result<T, Failure>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let text = self.text(name)?;
        text.trim()
            .parse()
            .map_err(|e| Failure::reject(format!("field {name:?} = {text:?} is not valid: {e}")))
    }

    /// Field `name` holding a JSON document, deserialized; or a `reject` saying why not.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, Failure> {
        serde_json::from_slice(self.bytes(name)?)
            .map_err(|e| Failure::reject(format!("field {name:?} is not the expected JSON: {e}")))
    }

    /// All fields, as text, deserialized into a struct whose members are `String`s,
    /// `&str`s or `Option`s of them (the shape of a typical stream entry); or a `reject`
    /// saying why not. Later fields of the same name win; values that are not UTF-8 are
    /// read lossily (U+FFFD for each bad sequence).
    ///
    /// Fields are fed to the struct's `Deserialize` directly, with no intermediate map:
    /// `&str` members borrow from the message instead of copying.
    pub fn to_struct<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Failure> {
        let fields = &self.fields;
        let keep = last_of_each_name(fields);
        let entries = fields
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|((name, value), _)| (name.as_str(), Text(String::from_utf8_lossy(value))));
        T::deserialize(MapDeserializer::<_, de::value::Error>::new(entries))
            .map_err(|e| Failure::reject(format!("message does not have the expected fields: {e}")))
    }
}

/// For each field, whether it is the last one of its name (the one `to_struct` reads).
fn last_of_each_name(fields: &[(String, Vec<u8>)]) -> Vec<bool> {
    let mut keep = vec![true; fields.len()];
    if fields.len() <= 16 {
        for (i, (name, _)) in fields.iter().enumerate() {
            keep[i] = !fields[i + 1..].iter().any(|(later, _)| later == name);
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(fields.len());
        for (i, (name, _)) in fields.iter().enumerate().rev() {
            keep[i] = seen.insert(name.as_str());
        }
    }
    keep
}

/// A field's value as text, borrowed when it was valid UTF-8.
struct Text<'de>(Cow<'de, str>);

impl<'de, E: de::Error> IntoDeserializer<'de, E> for Text<'de> {
    type Deserializer = TextDeserializer<'de, E>;

    fn into_deserializer(self) -> Self::Deserializer {
        TextDeserializer(self.0, PhantomData)
    }
}

/// Deserializes a field's text: as a string, as `Some(string)` for `Option` members, and
/// as a unit variant's name for enums.
struct TextDeserializer<'de, E>(Cow<'de, str>, PhantomData<E>);

impl<'de, E: de::Error> Deserializer<'de> for TextDeserializer<'de, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Cow::Borrowed(text) => visitor.visit_borrowed_str(text),
            Cow::Owned(text) => visitor.visit_string(text),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        CowStrDeserializer::new(self.0).deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(fields: &[(&str, &[u8])]) -> Message {
        Message {
            source: "ORDERS".into(),
            id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            attempt: 1,
        }
    }

    /// What `to_struct` did before it fed fields to serde directly: through a JSON map.
    fn via_json<T: DeserializeOwned>(msg: &Message) -> Result<T, String> {
        let mut map = serde_json::Map::new();
        for (name, value) in &msg.fields {
            let text = String::from_utf8_lossy(value).into_owned();
            map.insert(name.clone(), serde_json::Value::String(text));
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Order {
        order_id: String,
        order_amount: Option<String>,
        user_id: String,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Card,
        Cash,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Borrowing<'a> {
        name: &'a str,
        kind: Kind,
        note: Option<String>,
    }

    #[test]
    fn to_struct_agrees_with_a_json_map() {
        let cases: &[&[(&str, &[u8])]] = &[
            &[
                ("orderId", b"o1"),
                ("orderAmount", b"12.5"),
                ("userId", b"u1"),
            ],
            &[("userId", b"u1"), ("orderId", b"o1")],
            &[
                ("orderId", b"o1"),
                ("orderId", b"o2"),
                ("userId", b"u"),
                ("userId", b"v"),
            ],
            &[
                ("orderId", b"\xff\xfeo"),
                ("userId", b"u\x80"),
                ("extra", b"x"),
            ],
            &[("orderId", b"o1")],
            &[],
        ];
        for fields in cases {
            let msg = message(fields);
            let direct = msg.to_struct::<Order>().map_err(|f| match f {
                Failure::Reject(reason) => reason,
                Failure::Retry(reason) => panic!("a retry: {reason}"),
            });
            let reference = via_json::<Order>(&msg)
                .map_err(|e| format!("message does not have the expected fields: {e}"));
            assert_eq!(direct, reference, "fields {fields:?}");
        }
    }

    #[test]
    fn to_struct_borrows_reads_enums_and_keeps_the_last_of_a_name() {
        let msg = message(&[("name", b"first"), ("kind", b"cash"), ("name", b"last")]);
        let value: Borrowing<'_> = msg.to_struct().expect("a valid message");
        assert_eq!(value.name, "last");
        assert!(std::ptr::eq(value.name.as_ptr(), msg.fields[2].1.as_ptr()));
        assert_eq!(value.kind, Kind::Cash);
        assert_eq!(value.note, None);

        let many: Vec<(String, &[u8])> = (0..40)
            .map(|i| {
                (
                    format!("k{}", i % 20),
                    if i < 20 { &b"old"[..] } else { b"new" },
                )
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let map: std::collections::BTreeMap<String, String> =
            message(&refs).to_struct().expect("a valid map");
        assert_eq!(map.len(), 20);
        assert!(map.values().all(|v| v == "new"));

        match message(&[("name", b"n"), ("kind", b"cheque")]).to_struct::<Borrowing<'_>>() {
            Err(Failure::Reject(reason)) => {
                assert!(reason.contains("unknown variant `cheque`"), "{reason}")
            }
            other => panic!("expected a reject, got {other:?}"),
        }
    }
}
