//! Committed handler state, read from Redis for [`crate::state`]: `GET`, `HGET` and
//! `HGETALL` on the consumer's command connection, under the usual deadline.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::fault::Blame;
use super::link::Link;
use crate::state::{Bytes, StateError, Store};

/// The bottom layer of handler state: Redis.
pub struct RedisStore {
    pub(super) link: Arc<Link>,
    /// Where the handler's keys live (a partition's tag).
    pub(super) keys: Arc<super::commit::KeyMap>,
}

impl RedisStore {
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        key: &str,
        cmd: redis::Cmd,
    ) -> Result<T, StateError> {
        self.link.query(what, None, &cmd).await.map_err(|fault| {
            if fault.code() == "WRONGTYPE" || fault.blame() == Blame::Entry {
                StateError::WrongType(format!(
                    "state key {key:?} holds another type than {what} reads (WRONGTYPE)"
                ))
            } else {
                StateError::Unavailable(fault.to_string())
            }
        })
    }
}

impl Store for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StateError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.keys.stored(key).as_ref());
            self.query("GET", key, cmd).await
        })
    }

    fn hget<'a>(
        &'a self,
        key: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StateError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(self.keys.stored(key).as_ref()).arg(field);
            self.query("HGET", key, cmd).await
        })
    }

    fn hgetall<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Bytes>, StateError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(self.keys.stored(key).as_ref());
            let pairs: std::collections::HashMap<Vec<u8>, Bytes> =
                self.query("HGETALL", key, cmd).await?;
            let mut fields = BTreeMap::new();
            for (name, value) in pairs {
                // Handlers see field names as strings; a lossy name would never match
                // the hash again at the commit.
                let Ok(name) = String::from_utf8(name) else {
                    return Err(StateError::WrongType(format!(
                        "state key {key:?} is a hash with a field name that is not UTF-8: handlers see field names as strings"
                    )));
                };
                fields.insert(name, value);
            }
            Ok(fields)
        })
    }
}

/// A key of handler state as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateValue {
    /// No such key.
    Absent,
    /// A string.
    Str(Bytes),
    /// A hash, fields sorted.
    Hash(BTreeMap<String, Bytes>),
    /// Another type (a list, a stream...), by name.
    Other(String),
}

impl super::Broker {
    /// The value of handler-state `key` now (`TYPE`, then `GET` or `HGETALL`).
    pub async fn state_value(&self, key: &str) -> anyhow::Result<StateValue> {
        let kind: String = self
            .call("TYPE", |mut c| {
                let key = key.to_owned();
                async move { redis::cmd("TYPE").arg(key).query_async(&mut c).await }
            })
            .await?;
        Ok(match kind.as_str() {
            "none" => StateValue::Absent,
            "string" => {
                let value: Option<Bytes> = self
                    .call("GET", |mut c| {
                        let key = key.to_owned();
                        async move { redis::cmd("GET").arg(key).query_async(&mut c).await }
                    })
                    .await?;
                value.map_or(StateValue::Absent, StateValue::Str)
            }
            "hash" => {
                let all: std::collections::HashMap<Vec<u8>, Bytes> = self
                    .call("HGETALL", |mut c| {
                        let key = key.to_owned();
                        async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
                    })
                    .await?;
                StateValue::Hash(
                    all.into_iter()
                        .map(|(f, v)| (String::from_utf8_lossy(&f).into_owned(), v))
                        .collect(),
                )
            }
            other => StateValue::Other(other.to_owned()),
        })
    }
}
