//! Handler state: keys in Redis that a handler reads and writes through the WIT
//! `sluice:plugin/state` interface, committed with its outputs and its acknowledgement.
//!
//! Three layers answer a handler's read: its own writes, the writes of the entries of the
//! same batch handled before it (the [`Overlay`]), and Redis (a [`Store`]). Each read
//! that reaches below the handler's own writes is recorded as a [`Read`] with what it
//! saw; the guarded commit applies the entry's [`Write`]s only if every such read still
//! holds at that point of the commit (after the batch's earlier entries). If one does
//! not, nothing of the entry is written and it is handled again: each committed entry
//! saw exactly the state its writes were applied to (serializable, per entry).
//!
//! Shared by `wasm` (the host functions), `pipeline` (one [`EntryState`] per call, the
//! batch's [`Overlay`]) and `broker` (the [`Store`] on Redis, and the commit).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;

/// A value: any bytes.
pub type Bytes = Vec<u8>;

/// What a layer knows of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// Deleted (or read as absent).
    Absent,
    /// A string.
    Str(Bytes),
    /// An integer the layers below hold, plus this (blind `add`s).
    Delta(i64),
    /// A hash's fields; `complete` when they are all of them, else the layers below may
    /// hold more.
    Hash {
        /// Fields by name.
        fields: BTreeMap<String, Bytes>,
        /// Whether `fields` is the whole hash.
        complete: bool,
    },
}

/// A value an entry read from below its own writes; the commit checks it still holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// `GET key` gave `seen` (`None`: no such key).
    Str {
        /// The key.
        key: String,
        /// What it held.
        seen: Option<Bytes>,
    },
    /// `HGET key field` gave `seen`.
    Field {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// What it held.
        seen: Option<Bytes>,
    },
    /// `HGETALL key` gave `seen`.
    Hash {
        /// The hash.
        key: String,
        /// Every field.
        seen: BTreeMap<String, Bytes>,
    },
}

/// A write an entry made, applied in order at its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// `SET key value`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// `DEL key`.
    Delete {
        /// The key.
        key: String,
    },
    /// `HSET key field value`.
    HSet {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The value.
        value: Bytes,
    },
    /// `INCRBY key delta`, unread.
    Add {
        /// The key.
        key: String,
        /// What to add.
        delta: i64,
    },
}

impl Write {
    /// The key written.
    pub fn key(&self) -> &str {
        match self {
            Write::Set { key, .. }
            | Write::Delete { key }
            | Write::HSet { key, .. }
            | Write::Add { key, .. } => key,
        }
    }
}

impl Read {
    /// The key read.
    pub fn key(&self) -> &str {
        match self {
            Read::Str { key, .. } | Read::Field { key, .. } | Read::Hash { key, .. } => key,
        }
    }
}

/// What one entry read and wrote: carried from its handler call to its commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Reads to check at the commit.
    pub reads: Vec<Read>,
    /// Writes to apply at the commit, in order.
    pub writes: Vec<Write>,
}

impl Changes {
    /// Whether the entry touched no state.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty()
    }
}

/// Why a state call failed (the WIT `state-error`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key is outside the pipeline's `state` prefixes.
    #[error("{0}")]
    Forbidden(String),
    /// The key holds another type, or `incr` met a value that is not an integer.
    #[error("{0}")]
    WrongType(String),
    /// Redis could not be read now.
    #[error("{0}")]
    Unavailable(String),
    /// The call failed on what the batch's earlier entries wrote, which are not
    /// committed yet: the entry is handled again after their commit (no attempt
    /// counted). The guest sees `unavailable`.
    #[error("{0}")]
    Conflict(String),
}

/// Redis, the bottom layer: committed values.
pub trait Store: Send + Sync {
    /// `GET key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StateError>>;
    /// `HGET key field`.
    fn hget<'a>(
        &'a self,
        key: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StateError>>;
    /// `HGETALL key`.
    fn hgetall<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Bytes>, StateError>>;
}

/// The writes of a batch's entries handled so far (and not failed), which later entries
/// of the batch see. Shared by the batch's instances.
#[derive(Debug, Default)]
pub struct Overlay(std::sync::Mutex<HashMap<String, Known>>);

impl Overlay {
    /// What `f` makes of the overlay's `key`, under the lock (no copy of a whole hash).
    fn with<T>(&self, key: &str, f: impl FnOnce(Option<&Known>) -> T) -> T {
        f(crate::lock::lock(&self.0).get(key))
    }

    fn known(&self, key: &str) -> Option<Known> {
        self.with(key, |known| known.cloned())
    }

    /// Adds an entry's writes (its own layer) on top.
    fn absorb(&self, own: HashMap<String, Known>) {
        let mut layer = crate::lock::lock(&self.0);
        for (key, known) in own {
            let merged = match (layer.remove(&key), known) {
                (
                    Some(Known::Hash {
                        fields: mut below,
                        complete,
                    }),
                    Known::Hash {
                        fields,
                        complete: false,
                    },
                ) => {
                    below.extend(fields);
                    Known::Hash {
                        fields: below,
                        complete,
                    }
                }
                (
                    Some(Known::Absent),
                    Known::Hash {
                        fields,
                        complete: false,
                    },
                ) => Known::Hash {
                    fields,
                    complete: true,
                },
                (Some(Known::Str(below)), Known::Delta(delta)) => {
                    match integer(&below).and_then(|n| n.checked_add(delta)) {
                        Some(sum) => Known::Str(sum.to_string().into_bytes()),
                        None => Known::Delta(delta),
                    }
                }
                (Some(Known::Delta(below)), Known::Delta(delta)) => {
                    Known::Delta(below.saturating_add(delta))
                }
                (Some(Known::Absent), Known::Delta(delta)) => {
                    Known::Str(delta.to_string().into_bytes())
                }
                (_, known) => known,
            };
            layer.insert(key, merged);
        }
    }
}

/// What a pipeline grants its handler: the key prefixes, the batch's overlay, Redis.
#[derive(Clone)]
pub struct Scope {
    /// Keys must start with one of these.
    pub prefixes: Arc<[String]>,
    /// Earlier entries' writes.
    pub overlay: Arc<Overlay>,
    /// Committed values.
    pub store: Arc<dyn Store>,
}

impl Scope {
    /// A view for one handler call.
    pub fn entry(&self) -> EntryState {
        EntryState {
            scope: self.clone(),
            own: HashMap::new(),
            changes: Changes::default(),
            failure: None,
            calls: 0,
        }
    }
}

/// One handler call's view of state and its record of it.
pub struct EntryState {
    scope: Scope,
    own: HashMap<String, Known>,
    changes: Changes,
    /// The first error a call returned: it decides the entry's fate, whatever the
    /// handler returns.
    failure: Option<StateError>,
    /// State calls made.
    calls: u64,
}

/// What an entry's state calls came to.
#[derive(Debug, Default)]
pub struct Finished {
    /// Reads to check and writes to apply at the commit.
    pub changes: Changes,
    /// The first failed call, which fails the entry.
    pub failure: Option<StateError>,
    /// State calls made.
    pub calls: u64,
}

impl EntryState {
    /// Ends the call: the record, and (through `keep`) the writes for later entries of
    /// the batch to see when the handler succeeded.
    pub fn finish(self, keep: bool) -> Finished {
        if keep && self.failure.is_none() {
            self.scope.overlay.absorb(self.own);
        }
        Finished {
            changes: self.changes,
            failure: self.failure,
            calls: self.calls,
        }
    }

    fn fail<T>(&mut self, error: StateError) -> Result<T, StateError> {
        if self.failure.is_none() {
            self.failure = Some(error.clone());
        }
        Err(error)
    }

    fn check(&mut self, key: &str) -> Result<(), StateError> {
        self.calls += 1;
        if self
            .scope
            .prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
        {
            return Ok(());
        }
        let granted = self.scope.prefixes.join("\", \"");
        self.fail(StateError::Forbidden(format!(
            "state key {key:?} starts with none of the pipeline's state prefixes [\"{granted}\"]"
        )))
    }

    /// A call the batch's earlier (uncommitted) writes would fail: decided after their
    /// commit instead.
    fn overlay_conflict<T>(&mut self, key: &str) -> Result<T, StateError> {
        self.fail(StateError::Conflict(format!(
            "state key {key:?} is of another type after this batch's earlier entries; handled again after their commit"
        )))
    }

    fn wrong_type<T>(&mut self, key: &str, is: &str, wanted: &str) -> Result<T, StateError> {
        self.fail(StateError::WrongType(format!(
            "state key {key:?} holds a {is}, not a {wanted}"
        )))
    }

    /// `GET key` through the layers.
    pub async fn get(&mut self, key: &str) -> Result<Option<Bytes>, StateError> {
        self.check(key)?;
        self.string(key).await
    }

    async fn string(&mut self, key: &str) -> Result<Option<Bytes>, StateError> {
        match self.own.get(key) {
            Some(Known::Absent) => return Ok(None),
            Some(Known::Str(value)) => return Ok(Some(value.clone())),
            Some(Known::Hash { .. }) => return self.wrong_type(key, "hash", "string"),
            Some(Known::Delta(delta)) => {
                let delta = *delta;
                let below = self.below(key).await?;
                return self.plus(key, below, delta).map(Some);
            }
            None => {}
        }
        self.below(key).await
    }

    /// A string key as the batch's earlier entries leave it (the overlay over Redis),
    /// recorded for the commit to check.
    async fn below(&mut self, key: &str) -> Result<Option<Bytes>, StateError> {
        let seen = match self.scope.overlay.known(key) {
            Some(Known::Absent) => None,
            Some(Known::Str(value)) => Some(value),
            Some(Known::Hash { .. }) => return self.overlay_conflict(key),
            Some(Known::Delta(delta)) => {
                let stored = match self.scope.store.get(key).await {
                    Ok(value) => value,
                    Err(e) => return self.fail(e),
                };
                Some(self.plus(key, stored, delta)?)
            }
            None => match self.scope.store.get(key).await {
                Ok(value) => value,
                Err(e) => return self.fail(e),
            },
        };
        self.changes.reads.push(Read::Str {
            key: key.to_owned(),
            seen: seen.clone(),
        });
        Ok(seen)
    }

    /// `value` (absent: 0) plus `delta`, as text.
    fn plus(&mut self, key: &str, value: Option<Bytes>, delta: i64) -> Result<Bytes, StateError> {
        let current = match &value {
            None => 0,
            Some(bytes) => match integer(bytes) {
                Some(n) => n,
                None => {
                    return self.fail(StateError::WrongType(format!(
                        "state key {key:?} holds {:?}, not a decimal 64-bit integer",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
                    )));
                }
            },
        };
        match current.checked_add(delta) {
            Some(sum) => Ok(sum.to_string().into_bytes()),
            None => self.fail(StateError::WrongType(format!(
                "adding {delta} to state key {key:?} overflows 64 bits (it holds {current})"
            ))),
        }
    }

    /// `INCRBY key delta` at the commit, unread.
    pub fn add(&mut self, key: &str, delta: i64) -> Result<(), StateError> {
        self.check(key)?;
        let next = match self.own.get(key).cloned() {
            Some(Known::Hash { .. }) => return self.wrong_type(key, "hash", "counter"),
            Some(Known::Str(value)) => Known::Str(self.plus(key, Some(value), delta)?),
            Some(Known::Absent) => Known::Str(delta.to_string().into_bytes()),
            Some(Known::Delta(before)) => match before.checked_add(delta) {
                Some(sum) => Known::Delta(sum),
                None => {
                    return self.fail(StateError::WrongType(format!(
                        "adding {delta} to state key {key:?} overflows 64 bits"
                    )));
                }
            },
            None => Known::Delta(delta),
        };
        self.own.insert(key.to_owned(), next);
        self.changes.writes.push(Write::Add {
            key: key.to_owned(),
            delta,
        });
        Ok(())
    }

    /// `SET key value`.
    pub fn set(&mut self, key: &str, value: Bytes) -> Result<(), StateError> {
        self.check(key)?;
        self.own.insert(key.to_owned(), Known::Str(value.clone()));
        self.changes.writes.push(Write::Set {
            key: key.to_owned(),
            value,
        });
        Ok(())
    }

    /// `DEL key`.
    pub fn delete(&mut self, key: &str) -> Result<(), StateError> {
        self.check(key)?;
        self.own.insert(key.to_owned(), Known::Absent);
        self.changes.writes.push(Write::Delete {
            key: key.to_owned(),
        });
        Ok(())
    }

    /// `INCRBY key delta`: reads the integer (0 if absent), writes the sum.
    pub async fn incr(&mut self, key: &str, delta: i64) -> Result<i64, StateError> {
        self.check(key)?;
        let current = self.string(key).await?;
        let sum = self.plus(key, current, delta)?;
        self.own.insert(key.to_owned(), Known::Str(sum.clone()));
        self.changes.writes.push(Write::Set {
            key: key.to_owned(),
            value: sum.clone(),
        });
        Ok(integer(&sum).unwrap_or_default())
    }

    /// `HGET key field` through the layers.
    pub async fn hget(&mut self, key: &str, field: &str) -> Result<Option<Bytes>, StateError> {
        self.check(key)?;
        match self.own.get(key) {
            Some(Known::Absent) => return Ok(None),
            Some(Known::Str(_) | Known::Delta(_)) => return self.wrong_type(key, "string", "hash"),
            Some(Known::Hash { fields, complete }) => {
                if let Some(value) = fields.get(field) {
                    return Ok(Some(value.clone()));
                }
                if *complete {
                    return Ok(None);
                }
            }
            None => {}
        }
        // The field as the overlay knows it: Some(value) when it decides, None when
        // Redis must; Err for a string there.
        let below = self.scope.overlay.with(key, |known| match known {
            Some(Known::Absent) => Ok(Some(None)),
            Some(Known::Str(_) | Known::Delta(_)) => Err(()),
            Some(Known::Hash { fields, complete }) if *complete || fields.contains_key(field) => {
                Ok(Some(fields.get(field).cloned()))
            }
            _ => Ok(None),
        });
        let seen = match below {
            Err(()) => return self.overlay_conflict(key),
            Ok(Some(value)) => value,
            Ok(None) => match self.scope.store.hget(key, field).await {
                Ok(value) => value,
                Err(e) => return self.fail(e),
            },
        };
        self.changes.reads.push(Read::Field {
            key: key.to_owned(),
            field: field.to_owned(),
            seen: seen.clone(),
        });
        Ok(seen)
    }

    /// `HSET key field value`.
    pub fn hset(&mut self, key: &str, field: &str, value: Bytes) -> Result<(), StateError> {
        self.check(key)?;
        match self.own.get(key) {
            Some(Known::Str(_) | Known::Delta(_)) => return self.wrong_type(key, "string", "hash"),
            Some(_) => {}
            // What earlier entries of the batch wrote is not committed yet: a string
            // there is decided after their commit, and absence is not relied on (the
            // hash stays incomplete: its other fields are read below).
            None => {
                let string = self.scope.overlay.with(key, |known| {
                    matches!(known, Some(Known::Str(_) | Known::Delta(_)))
                });
                if string {
                    return self.overlay_conflict(key);
                }
            }
        }
        let entry = self.own.entry(key.to_owned()).or_insert(Known::Hash {
            fields: BTreeMap::new(),
            complete: false,
        });
        match entry {
            Known::Absent => {
                *entry = Known::Hash {
                    fields: BTreeMap::from([(field.to_owned(), value.clone())]),
                    complete: true,
                };
            }
            Known::Hash { fields, .. } => {
                fields.insert(field.to_owned(), value.clone());
            }
            Known::Str(_) | Known::Delta(_) => unreachable!("refused above"),
        }
        self.changes.writes.push(Write::HSet {
            key: key.to_owned(),
            field: field.to_owned(),
            value,
        });
        Ok(())
    }

    /// `HGETALL key` through the layers.
    pub async fn hgetall(&mut self, key: &str) -> Result<BTreeMap<String, Bytes>, StateError> {
        self.check(key)?;
        let mine = match self.own.get(key) {
            Some(Known::Absent) => return Ok(BTreeMap::new()),
            Some(Known::Str(_) | Known::Delta(_)) => return self.wrong_type(key, "string", "hash"),
            Some(Known::Hash {
                fields,
                complete: true,
            }) => return Ok(fields.clone()),
            Some(Known::Hash { fields, .. }) => fields.clone(),
            None => BTreeMap::new(),
        };
        let seen = match self.scope.overlay.known(key) {
            Some(Known::Absent) => BTreeMap::new(),
            Some(Known::Str(_) | Known::Delta(_)) => return self.overlay_conflict(key),
            Some(Known::Hash {
                fields,
                complete: true,
            }) => fields,
            partial => {
                let mut all = match self.scope.store.hgetall(key).await {
                    Ok(all) => all,
                    Err(e) => return self.fail(e),
                };
                if let Some(Known::Hash { fields, .. }) = partial {
                    all.extend(fields);
                }
                all
            }
        };
        self.changes.reads.push(Read::Hash {
            key: key.to_owned(),
            seen: seen.clone(),
        });
        let mut all = seen;
        all.extend(mine);
        Ok(all)
    }
}

/// `bytes` as a decimal 64-bit integer, as Redis `INCRBY` reads it (`string2ll`): an
/// optional `-`, no `+`, no leading zero, not `-0`.
fn integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = text == "0"
        || (!digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()));
    if !canonical {
        return None;
    }
    text.parse().ok()
}

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
    /// Whether the guarded commit would apply `writes` to these values: a hash write
    /// needs a hash (or nothing), an add an integer (or nothing) and a sum within 64
    /// bits, each after the writes before it. The reason if not.
    pub fn check_writes(&self, writes: &[Write]) -> Result<(), String> {
        let mut known: HashMap<&str, Known> = HashMap::new();
        for write in writes {
            let key = write.key();
            let current = known
                .get(key)
                .cloned()
                .or_else(|| self.0.get(key).cloned())
                .unwrap_or(Known::Absent);
            let next = match (write, current) {
                (Write::Set { value, .. }, _) => Known::Str(value.clone()),
                (Write::Delete { .. }, _) => Known::Absent,
                (Write::HSet { .. }, Known::Absent | Known::Hash { .. }) => Known::Hash {
                    fields: BTreeMap::new(),
                    complete: false,
                },
                (Write::HSet { .. }, _) => {
                    return Err(format!("HSET on {key:?}, which is not a hash"));
                }
                (Write::Add { delta, .. }, Known::Absent) => {
                    Known::Str(delta.to_string().into_bytes())
                }
                (Write::Add { delta, .. }, Known::Str(value)) => {
                    match integer(&value).and_then(|n| n.checked_add(*delta)) {
                        Some(sum) => Known::Str(sum.to_string().into_bytes()),
                        None => {
                            return Err(format!(
                                "INCRBY {key:?} {delta}: it does not hold a 64-bit integer, or the sum overflows"
                            ));
                        }
                    }
                }
                (Write::Add { .. }, _) => {
                    return Err(format!("INCRBY on {key:?}, which is not a string"));
                }
            };
            known.insert(key, next);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(store: MemoryStore, prefixes: &[&str]) -> Scope {
        Scope {
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            overlay: Arc::new(Overlay::default()),
            store: Arc::new(store),
        }
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn an_entry_sees_earlier_entries_and_its_own_writes_and_records_what_it_read() {
        let store = MemoryStore::from_json(r#"{"n:a": "5", "h:x": {"f": "1"}}"#).expect("json");
        let scope = scope(store, &["n:", "h:"]);
        let mut first = scope.entry();
        assert_eq!(block(first.incr("n:a", 2)), Ok(7));
        first.hset("h:x", "g", b"2".to_vec()).expect("hset");
        let done = first.finish(true);
        assert_eq!(
            done.changes.reads,
            [Read::Str {
                key: "n:a".into(),
                seen: Some(b"5".to_vec())
            }]
        );

        let mut second = scope.entry();
        assert_eq!(
            block(second.incr("n:a", 1)),
            Ok(8),
            "sees the first entry's write"
        );
        assert_eq!(
            block(second.hget("h:x", "f")),
            Ok(Some(b"1".to_vec())),
            "from redis"
        );
        assert_eq!(
            block(second.hget("h:x", "g")),
            Ok(Some(b"2".to_vec())),
            "from the batch"
        );
        let all = block(second.hgetall("h:x")).expect("hgetall");
        assert_eq!(all.len(), 2);
        let done = second.finish(true);
        assert_eq!(
            done.changes.reads[0],
            Read::Str {
                key: "n:a".into(),
                seen: Some(b"7".to_vec())
            },
            "what the commit checks: the value after the first entry"
        );
    }

    #[test]
    fn a_key_outside_the_prefixes_fails_the_entry_and_a_failed_entry_leaves_no_trace() {
        let scope = scope(MemoryStore::default(), &["order:"]);
        let mut entry = scope.entry();
        entry.set("order:1", b"x".to_vec()).expect("granted");
        assert!(matches!(
            entry.set("user:1", b"x".to_vec()),
            Err(StateError::Forbidden(_))
        ));
        let done = entry.finish(true);
        assert!(matches!(done.failure, Some(StateError::Forbidden(_))));
        let mut next = scope.entry();
        assert_eq!(
            block(next.get("order:1")),
            Ok(None),
            "a failed entry's writes are not seen"
        );
    }

    #[test]
    fn types_are_kept_apart() {
        let store = MemoryStore::from_json(r#"{"k:s": "text", "k:h": {"f": "v"}}"#).expect("json");
        let scope = scope(store, &["k:"]);
        let mut entry = scope.entry();
        assert!(matches!(
            block(entry.get("k:h")),
            Err(StateError::WrongType(_))
        ));
        assert!(matches!(
            block(entry.incr("k:s", 1)),
            Err(StateError::WrongType(_))
        ));
        let mut entry = scope.entry();
        entry.set("k:new", b"1".to_vec()).expect("set");
        assert!(matches!(
            entry.hset("k:new", "f", Vec::new()),
            Err(StateError::WrongType(_))
        ));
        let mut entry = scope.entry();
        assert!(matches!(block(entry.incr("k:max", i64::MAX)), Ok(i64::MAX)));
        assert!(matches!(
            block(entry.incr("k:max", 1)),
            Err(StateError::WrongType(_))
        ));
    }
}
