//! State kept in memory: `sluice invoke --state FILE.json` and tests.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::checks::check_writes;
use super::model::{Bytes, Known, StateError, Store, Write};

/// State kept in memory, for `sluice invoke --state FILE.json` and tests: a JSON object
/// whose values are strings (Redis strings) or objects of strings (hashes).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore(BTreeMap<String, Known>);

impl MemoryStore {
    /// Parses `{"key": "value", "hash": {"field": "value"}}`.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let object = value
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("state must be a JSON object of keys"))?;
        let mut keys = BTreeMap::new();
        for (key, value) in object {
            let known = match value {
                serde_json::Value::String(s) => Known::Str(s.as_bytes().to_vec()),
                serde_json::Value::Number(n) => Known::Str(n.to_string().into_bytes()),
                serde_json::Value::Object(fields) => Known::Hash {
                    fields: fields
                        .iter()
                        .map(|(f, v)| match v {
                            serde_json::Value::String(s) => Ok((f.clone(), s.as_bytes().to_vec())),
                            serde_json::Value::Number(n) => {
                                Ok((f.clone(), n.to_string().into_bytes()))
                            }
                            other => Err(anyhow::anyhow!(
                                "state key {key:?} field {f:?}: {other} is not a string or a number"
                            )),
                        })
                        .collect::<anyhow::Result<_>>()?,
                    complete: true,
                },
                other => anyhow::bail!(
                    "state key {key:?}: {other} is not a string, a number or an object of strings (a hash)"
                ),
            };
            keys.insert(key.clone(), known);
        }
        Ok(Self(keys))
    }
}

impl MemoryStore {
    /// Whether the guarded commit would apply `writes` to these values; the reason if
    /// not (see [`check_writes`]).
    pub fn check_writes(&self, writes: &[Write]) -> Result<(), String> {
        check_writes(writes, |key| self.0.get(key).cloned())
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StateError>> {
        Box::pin(async move {
            match self.0.get(key) {
                None | Some(Known::Absent) => Ok(None),
                Some(Known::Str(v)) => Ok(Some(v.clone())),
                Some(Known::Delta(d)) => Ok(Some(d.to_string().into_bytes())),
                Some(Known::Hash { .. }) => Err(StateError::WrongType(format!(
                    "state key {key:?} holds a hash, not a string"
                ))),
            }
        })
    }

    fn hget<'a>(
        &'a self,
        key: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StateError>> {
        Box::pin(async move {
            match self.0.get(key) {
                None | Some(Known::Absent) => Ok(None),
                Some(Known::Hash { fields, .. }) => Ok(fields.get(field).cloned()),
                Some(Known::Str(_) | Known::Delta(_)) => Err(StateError::WrongType(format!(
                    "state key {key:?} holds a string, not a hash"
                ))),
            }
        })
    }

    fn hgetall<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Bytes>, StateError>> {
        Box::pin(async move {
            match self.0.get(key) {
                None | Some(Known::Absent) => Ok(BTreeMap::new()),
                Some(Known::Hash { fields, .. }) => Ok(fields.clone()),
                Some(Known::Str(_) | Known::Delta(_)) => Err(StateError::WrongType(format!(
                    "state key {key:?} holds a string, not a hash"
                ))),
            }
        })
    }
}
