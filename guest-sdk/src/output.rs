//! Building outputs field by field or from a serializable struct.

use serde::Serialize;

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
    pub fn from_struct<T: Serialize>(
        target: impl Into<String>,
        value: &T,
    ) -> Result<Self, Failure> {
        let json = serde_json::to_value(value)
            .map_err(|e| Failure::reject(format!("cannot serialize output: {e}")))?;
        let serde_json::Value::Object(members) = json else {
            return Err(Failure::reject(
                "an output must be built from a struct or a map",
            ));
        };
        let mut output = Output::to(target);
        for (name, value) in members {
            let bytes = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            output.fields.push((name, bytes));
        }
        Ok(output)
    }
}
