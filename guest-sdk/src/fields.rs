//! Reading a message's fields as bytes, text, numbers or JSON.

use std::str::FromStr;

use serde::de::DeserializeOwned;

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

    /// All fields, as text, deserialized into a struct whose members are `String`s or
    /// `Option<String>`s (the shape of a typical stream entry); or a `reject` saying why
    /// not. Later fields of the same name win.
    pub fn to_struct<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            let text = String::from_utf8_lossy(value).into_owned();
            map.insert(name.clone(), serde_json::Value::String(text));
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| Failure::reject(format!("message does not have the expected fields: {e}")))
    }
}
