//! One handler call's view of state through the layers (its own writes, the batch's
//! overlay, Redis), and its record of what it read and wrote.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::checks::integer;
use super::model::{Bytes, Changes, Known, Read, StateError, Store, Write};
use super::overlay::Overlay;

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
    fn uncommitted_clash<T>(&mut self, key: &str) -> Result<T, StateError> {
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
            Some(Known::Hash { .. }) => return self.uncommitted_clash(key),
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
            Err(()) => return self.uncommitted_clash(key),
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
                    return self.uncommitted_clash(key);
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
            Some(Known::Str(_) | Known::Delta(_)) => return self.uncommitted_clash(key),
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
