//! Building outputs field by field or from a serializable struct.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::{Failure, Output};

impl Output {
    /// An output to stream `target` with no fields yet (add at least one).
    pub fn to(target: impl Into<String>) -> Self {
        Output {
            target: target.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field; the value may be text or bytes.
    pub fn field(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.fields.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// An output whose fields are the members of `value`, a struct or map: strings are
    /// written as they are, numbers and booleans as their text, nested values as JSON,
    /// and `None` members are left out.
    ///
    /// Strings, integers and booleans are written directly; only nested values (and
    /// floats, to keep JSON's spelling) go through `serde_json`.
    pub fn from_struct<T: Serialize>(
        target: impl Into<String>,
        value: &T,
    ) -> Result<Self, Failure> {
        let fields = value.serialize(Members).map_err(|e| match e {
            Error::NotAStruct => Failure::reject("an output must be built from a struct or a map"),
            Error::Other(e) => Failure::reject(format!("cannot serialize output: {e}")),
            Error::Fallback => unreachable!("a fallback is handled where the member is"),
        })?;
        Ok(Output {
            target: target.into(),
            fields,
        })
    }
}

type Fields = Vec<(String, Vec<u8>)>;

/// Why serializing an output failed, or (internally) that a member needs `serde_json`.
#[derive(Debug)]
enum Error {
    NotAStruct,
    Fallback,
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAStruct => f.write_str("not a struct or a map"),
            Error::Fallback => f.write_str("needs serde_json"),
            Error::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Other(msg.to_string())
    }
}

/// A member's value as field bytes; `None` leaves the member out.
fn member<T: Serialize + ?Sized>(value: &T) -> Result<Option<Vec<u8>>, Error> {
    match value.serialize(Value) {
        Err(Error::Fallback) => {
            let json = serde_json::to_value(value).map_err(|e| Error::Other(e.to_string()))?;
            Ok(match json {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.into_bytes()),
                other => Some(other.to_string().into_bytes()),
            })
        }
        other => other,
    }
}

/// A map key as a field name: text, or a number or boolean as its text (as in JSON).
fn key<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
    match serde_json::to_value(key).map_err(|e| Error::Other(e.to_string()))? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(Error::Other("an output's field names must be text".into())),
    }
}

/// Serializes the top level: a struct or map, whose members become fields.
struct Members;

/// Collects the fields of a struct or map.
struct Collect {
    fields: Fields,
    key: Option<String>,
}

impl Collect {
    fn push(&mut self, name: String, value: Option<Vec<u8>>) {
        if let Some(value) = value {
            self.fields.push((name, value));
        }
    }
}

impl ser::Serializer for Members {
    type Ok = Fields;
    type Error = Error;
    type SerializeSeq = Impossible<Fields, Error>;
    type SerializeTuple = Impossible<Fields, Error>;
    type SerializeTupleStruct = Impossible<Fields, Error>;
    type SerializeTupleVariant = Impossible<Fields, Error>;
    type SerializeMap = Collect;
    type SerializeStruct = Collect;
    type SerializeStructVariant = Impossible<Fields, Error>;

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Collect, Error> {
        Ok(Collect {
            fields: Vec::with_capacity(len),
            key: None,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Collect, Error> {
        Ok(Collect {
            fields: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Fields, Error> {
        value.serialize(self)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Fields, Error> {
        value.serialize(self)
    }

    fn serialize_bool(self, _: bool) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_i8(self, _: i8) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_i16(self, _: i16) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_i32(self, _: i32) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_i64(self, _: i64) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_u8(self, _: u8) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_u16(self, _: u16) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_u32(self, _: u32) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_f32(self, _: f32) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_u64(self, _: u64) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_f64(self, _: f64) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_char(self, _: char) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_str(self, _: &str) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_none(self) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_unit(self) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Fields, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error::NotAStruct)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error::NotAStruct)
    }
}

impl ser::SerializeStruct for Collect {
    type Ok = Fields;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let value = member(value)?;
        self.push(name.to_owned(), value);
        Ok(())
    }
    fn end(self) -> Result<Fields, Error> {
        Ok(self.fields)
    }
}

impl ser::SerializeMap for Collect {
    type Ok = Fields;
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, name: &T) -> Result<(), Error> {
        self.key = Some(key(name)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let name = self
            .key
            .take()
            .ok_or_else(|| Error::Other("a map value came without its key".into()))?;
        let value = member(value)?;
        // As in a JSON object, a repeated name keeps its first place and its last value.
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some(field) => match value {
                Some(value) => field.1 = value,
                None => self.fields.retain(|(n, _)| *n != name),
            },
            None => self.push(name, value),
        }
        Ok(())
    }
    fn end(self) -> Result<Fields, Error> {
        Ok(self.fields)
    }
}

/// Serializes one member: text, integers and booleans directly, `None` and `()` as
/// nothing; anything else asks for the `serde_json` fallback.
struct Value;

impl ser::Serializer for Value {
    type Ok = Option<Vec<u8>>;
    type Error = Error;
    type SerializeSeq = Impossible<Self::Ok, Error>;
    type SerializeTuple = Impossible<Self::Ok, Error>;
    type SerializeTupleStruct = Impossible<Self::Ok, Error>;
    type SerializeTupleVariant = Impossible<Self::Ok, Error>;
    type SerializeMap = Impossible<Self::Ok, Error>;
    type SerializeStruct = Impossible<Self::Ok, Error>;
    type SerializeStructVariant = Impossible<Self::Ok, Error>;

    fn serialize_str(self, v: &str) -> Result<Self::Ok, Error> {
        Ok(Some(v.as_bytes().to_vec()))
    }
    fn serialize_char(self, v: char) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_bool(self, v: bool) -> Result<Self::Ok, Error> {
        Ok(Some(if v {
            b"true".to_vec()
        } else {
            b"false".to_vec()
        }))
    }
    fn serialize_i8(self, v: i8) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_i16(self, v: i16) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_i32(self, v: i32) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_i64(self, v: i64) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_u8(self, v: u8) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_u16(self, v: u16) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_u32(self, v: u32) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_u64(self, v: u64) -> Result<Self::Ok, Error> {
        Ok(Some(v.to_string().into_bytes()))
    }
    fn serialize_none(self) -> Result<Self::Ok, Error> {
        Ok(None)
    }
    fn serialize_unit(self) -> Result<Self::Ok, Error> {
        Ok(None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Error> {
        value.serialize(self)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, Error> {
        Ok(Some(variant.as_bytes().to_vec()))
    }

    fn serialize_f64(self, _: f64) -> Result<Self::Ok, Error> {
        Err(Error::Fallback)
    }
    fn serialize_f32(self, _: f32) -> Result<Self::Ok, Error> {
        Err(Error::Fallback)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Self::Ok, Error> {
        Err(Error::Fallback)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, Error> {
        Ok(None)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Error> {
        Err(Error::Fallback)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(Error::Fallback)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(Error::Fallback)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(Error::Fallback)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error::Fallback)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(Error::Fallback)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(Error::Fallback)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error::Fallback)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// What `from_struct` did before it serialized members directly: through a JSON value.
    fn via_json<T: Serialize>(value: &T) -> Result<Fields, String> {
        let json =
            serde_json::to_value(value).map_err(|e| format!("cannot serialize output: {e}"))?;
        let serde_json::Value::Object(members) = json else {
            return Err("an output must be built from a struct or a map".into());
        };
        Ok(members
            .into_iter()
            .filter_map(|(name, value)| match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some((name, s.into_bytes())),
                other => Some((name, other.to_string().into_bytes())),
            })
            .collect())
    }

    fn direct<T: Serialize>(value: &T) -> Result<Fields, String> {
        Output::from_struct("OUT", value)
            .map(|output| output.fields)
            .map_err(|f| match f {
                Failure::Reject(reason) | Failure::Retry(reason) => reason,
            })
    }

    #[derive(Serialize)]
    #[serde(rename_all = "lowercase")]
    enum Status {
        Paid,
    }

    #[derive(Serialize)]
    struct Nested {
        depth: u8,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payment<'a> {
        order_id: &'a str,
        payment_id: String,
        amount: f64,
        cents: u64,
        delta: i32,
        paid: bool,
        status: Status,
        note: Option<&'a str>,
        missing: Option<u32>,
        initial: char,
        tags: Vec<&'a str>,
        nested: Nested,
        nan: f64,
        bytes: &'a [u8],
    }

    #[test]
    fn from_struct_agrees_with_a_json_value() {
        let payment = Payment {
            order_id: "o1",
            payment_id: "p\"1".into(),
            amount: 228.85,
            cents: u64::MAX,
            delta: -3,
            paid: true,
            status: Status::Paid,
            note: Some("ok"),
            missing: None,
            initial: 'é',
            tags: vec!["a", "b"],
            nested: Nested { depth: 2 },
            nan: f64::NAN,
            bytes: b"\x00\xff",
        };
        assert_eq!(direct(&payment), via_json(&payment));

        let mut map = BTreeMap::new();
        map.insert(3, Some("three"));
        map.insert(1, None);
        assert_eq!(direct(&map), via_json(&map));

        for not_a_struct in [
            direct(&"text"),
            direct(&5),
            direct(&vec![1, 2]),
            direct(&()),
        ] {
            assert_eq!(
                not_a_struct,
                Err("an output must be built from a struct or a map".to_string())
            );
        }
    }
}
