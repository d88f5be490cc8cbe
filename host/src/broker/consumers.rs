//! The consumers of a group: listed, and removed when nothing is left to them.
//!
//! Redis keeps every consumer a group ever saw (`XINFO CONSUMERS`) until someone runs
//! `XGROUP DELCONSUMER`, which also drops the consumer's pending entries — so a consumer
//! is removed only by a script that checks, in the same step, that it has no pending
//! entry and that no live daemon holds its name (its lease key is absent, or holds the
//! remover's own value).

use std::sync::LazyLock;

use redis::{Script, Value};

use super::{Broker, Fault, LeaseKeys};

static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1] the stream, KEYS[2] the name's lease key; ARGV group, consumer, the value the
-- lease key may hold ('' : it must be absent).
local held = redis.call('GET', KEYS[2])
if held and held ~= ARGV[3] then
  return -1
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then
  return -2
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// A consumer of a group, as `XINFO CONSUMERS` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConsumer {
    /// Its name.
    pub name: String,
    /// Entries pending for it.
    pub pending: u64,
    /// Milliseconds since it last read or claimed (`idle`).
    pub idle_ms: u64,
}

impl Broker {
    /// The consumers of `group` on `stream`.
    pub async fn group_consumers(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Vec<GroupConsumer>, Fault> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("CONSUMERS").arg(stream).arg(group);
        let value: Value = self
            .call("XINFO CONSUMERS", |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?;
        let Value::Array(rows) = value else {
            return Ok(Vec::new());
        };
        Ok(rows.into_iter().filter_map(consumer_of).collect())
    }

    /// Removes `consumer` from `group` on `stream` if, at that moment, it has no pending
    /// entry and its name's lease is absent or holds `own` (the remover's own value, for
    /// a daemon leaving its group). Whether it was removed.
    pub async fn remove_consumer(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        own: Option<&str>,
    ) -> Result<bool, Fault> {
        let keys = LeaseKeys::consumer(stream, group, consumer);
        let mut call = REMOVE.key(stream);
        call.key(&keys.lease)
            .arg(group)
            .arg(consumer)
            .arg(own.unwrap_or(""));
        let removed: i64 = self
            .call("XGROUP DELCONSUMER", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(removed == 1)
    }
}

/// One row of `XINFO CONSUMERS` (a map in RESP3, a flat list in RESP2).
fn consumer_of(row: Value) -> Option<GroupConsumer> {
    let pairs: Vec<(Value, Value)> = match row {
        Value::Map(pairs) => pairs,
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        _ => return None,
    };
    let (mut name, mut pending, mut idle_ms) = (None, 0, 0);
    for (key, value) in pairs {
        let key: String = redis::from_redis_value(key).ok()?;
        match key.as_str() {
            "name" => name = redis::from_redis_value::<String>(value).ok(),
            "pending" => pending = redis::from_redis_value(value).unwrap_or(0),
            "idle" => idle_ms = redis::from_redis_value(value).unwrap_or(0),
            _ => {}
        }
    }
    Some(GroupConsumer {
        name: name?,
        pending,
        idle_ms,
    })
}
