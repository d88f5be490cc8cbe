//! Leases: which daemon holds a consumer name in a group (name leases) and, with
//! `ordering = "per-key"`, which daemon handles a partition now (partition leases). One
//! mechanism for both. Entry leases (a consumer's claim on the entries it works on) are
//! in [`entry`].
//!
//! A lease is a key in the partition's hash slot holding `<daemon>/<fencing token>`, with
//! an expiry. A daemon takes a free lease with a fresh token (one more than the last one
//! given for that partition), renews it well within its expiry, and gives it back when
//! it stops. Every commit it makes for the partition checks that the key still holds its
//! value (`commit.lua`): a daemon that lost its lease (paused past the expiry, cut off
//! from Redis) can no longer commit, even if it does not know yet.
//!
//! Daemons also announce themselves in a sorted set per pipeline (scored by when their
//! announcement lapses, in Redis's clock), so that each knows how many share the
//! partitions and takes no more than its even share.

mod entry;

use std::time::Duration;

use redis::Script;
use std::sync::LazyLock;

use super::commit::Fence;
use super::{Broker, Fault};

pub use entry::EntryLeases;

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('GET', KEYS[1])
if held then
  -- Ours only if it is exactly <this daemon>/<token>: a daemon named `d` must not take
  -- the lease of one named `d/x` (held as `d/x/7`).
  if string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '/' and string.match(string.sub(held, #ARGV[1] + 2), '^%d+$') then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return held
  end
  return false
end
local value = ARGV[1] .. '/' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
",
    )
});

static TAKE_OVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
local value = ARGV[2] .. '/' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
return value
",
    )
});

static KEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1] the lease, KEYS[2] its token counter; ARGV[1] the value held, ARGV[2] the
-- ttl (ms), ARGV[3] the token in ARGV[1].
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if held then
  return 0
end
-- Gone: put back only if nobody took the name since (the counter still gives this
-- holder's token; a FLUSHALL took the counter too).
local last = redis.call('GET', KEYS[2])
if last and last ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
",
    )
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

static ANNOUNCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], math.max(ttl, 1000) * 3)
return redis.call('ZCARD', KEYS[1])
",
    )
});

/// The keys of one partition's lease.
#[derive(Debug, Clone)]
pub struct LeaseKeys {
    /// Holds `<daemon>/<token>` while leased.
    pub lease: String,
    /// The last fencing token given for the partition.
    pub token: String,
}

impl LeaseKeys {
    /// The lease keys of consumer name `consumer` in group `group` of `stream`, in the
    /// stream's hash slot: a stream with a hash tag (a partition's) lends it; one without
    /// gets a tag of the same slot after its name (`IN:consumer:{1234}:G:name`), so
    /// that `~IN:consumer*` grants them either way.
    pub fn consumer(stream: &str, group: &str, consumer: &str) -> Self {
        let tag = match super::slot::hashed_part(stream.as_bytes()).len() == stream.len() {
            true => format!(
                "{}:",
                super::slot::tag_for(super::slot::key_slot(stream.as_bytes()))
            ),
            false => String::new(),
        };
        Self {
            lease: format!("{stream}:consumer:{tag}{group}:{consumer}"),
            token: format!("{stream}:consumer-token:{tag}{group}"),
        }
    }

    /// The lease keys of the partition whose input stream is `stream` (`orders:{3}`), for
    /// consumer group `group`: in the stream's hash slot.
    pub fn new(stream: &str, group: &str) -> Self {
        Self {
            lease: format!("{stream}:lease:{group}"),
            token: format!("{stream}:lease-token:{group}"),
        }
    }
}

impl Broker {
    /// Takes the lease of `keys` for `daemon` for `ttl` if it is free (or already
    /// `daemon`'s, from an earlier run); the fence its commits must then pass.
    pub async fn acquire_lease(
        &self,
        keys: &LeaseKeys,
        daemon: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>, Fault> {
        let mut call = ACQUIRE.key(&keys.lease);
        call.key(&keys.token)
            .arg(daemon)
            .arg(ttl.as_millis() as u64);
        let value: Option<String> = self
            .call(
                "lease",
                |mut c| async move { call.invoke_async(&mut c).await },
            )
            .await?;
        Ok(value.map(|value| Fence {
            key: keys.lease.clone(),
            value,
        }))
    }

    /// What the lease of `keys` holds now, if it is held.
    pub async fn lease_holder(&self, keys: &LeaseKeys) -> Result<Option<String>, Fault> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(&keys.lease);
        self.call(
            "lease",
            |mut c| async move { cmd.query_async(&mut c).await },
        )
        .await
    }

    /// Takes the lease of `keys` for `daemon` from the holder whose value was `held`
    /// (a holder proven gone), with a new fencing token; `None` if the value changed.
    pub async fn take_over_lease(
        &self,
        keys: &LeaseKeys,
        held: &str,
        daemon: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>, Fault> {
        let mut call = TAKE_OVER.key(&keys.lease);
        call.key(&keys.token)
            .arg(held)
            .arg(daemon)
            .arg(ttl.as_millis() as u64);
        let value: Option<String> = self
            .call(
                "lease",
                |mut c| async move { call.invoke_async(&mut c).await },
            )
            .await?;
        Ok(value.map(|value| Fence {
            key: keys.lease.clone(),
            value,
        }))
    }

    /// Extends a consumer name's lease held with `fence` (keys `keys`) by `ttl`, or puts
    /// it back if the key is gone and nobody took the name since (its token counter
    /// still gives this holder's token, or was flushed with it); `false` if another
    /// daemon holds it, or held it meanwhile.
    pub async fn keep_lease(
        &self,
        keys: &LeaseKeys,
        fence: &Fence,
        ttl: Duration,
    ) -> Result<bool, Fault> {
        let token = token(fence);
        let mut call = KEEP.key(&fence.key);
        call.key(&keys.token)
            .arg(&fence.value)
            .arg(ttl.as_millis() as u64)
            .arg(token);
        let kept: i64 = self
            .call(
                "lease",
                |mut c| async move { call.invoke_async(&mut c).await },
            )
            .await?;
        if kept == 2 {
            tracing::warn!(key = %fence.key, "the consumer name's lease had lapsed (the process was stopped or cut off from Redis, or the key was deleted or flushed) and nobody took the name meanwhile: put back");
        }
        Ok(kept > 0)
    }

    /// Extends a lease held with `fence` by `ttl`; `false` if it is no longer held.
    pub async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, Fault> {
        let mut call = RENEW.key(&fence.key);
        call.arg(&fence.value).arg(ttl.as_millis() as u64);
        let renewed: i64 = self
            .call(
                "lease",
                |mut c| async move { call.invoke_async(&mut c).await },
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Gives a lease back (if still held with `fence`), so another daemon may take it
    /// at once.
    pub async fn release_lease(&self, fence: &Fence) -> Result<(), Fault> {
        let mut call = RELEASE.key(&fence.key);
        call.arg(&fence.value);
        let _: i64 = self
            .call(
                "lease",
                |mut c| async move { call.invoke_async(&mut c).await },
            )
            .await?;
        Ok(())
    }

    /// Announces `daemon` in `members` for `ttl` (a zero `ttl` withdraws it); how many
    /// daemons are announced now.
    pub async fn announce(&self, members: &str, daemon: &str, ttl: Duration) -> Result<u32, Fault> {
        let mut call = ANNOUNCE.key(members);
        call.arg(daemon).arg(ttl.as_millis() as u64);
        self.call("announce", |mut c| async move {
            call.invoke_async(&mut c).await
        })
        .await
    }
}

/// The fencing token in a lease value (`<daemon>/<token>`; a daemon name may hold `/`).
fn token(fence: &Fence) -> &str {
    fence.value.rsplit_once('/').map_or("", |(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::slot::key_slot;

    #[test]
    fn a_consumer_names_lease_lives_in_its_streams_slot() {
        for stream in ["IN", "ORDERS_STREAM", "orders:{3}", "a}b"] {
            let keys = LeaseKeys::consumer(stream, "G", "c1");
            let slot = key_slot(stream.as_bytes());
            assert_eq!(key_slot(keys.lease.as_bytes()), slot, "{keys:?}");
            assert_eq!(key_slot(keys.token.as_bytes()), slot, "{keys:?}");
            assert!(keys.lease.starts_with(&format!("{stream}:consumer")));
        }
    }

    #[test]
    fn a_partitions_lease_lives_in_its_streams_slot() {
        let keys = LeaseKeys::new("orders:{3}", "G");
        assert_eq!(keys.lease, "orders:{3}:lease:G");
        assert_eq!(keys.token, "orders:{3}:lease-token:G");
        let slot = key_slot(b"orders:{3}");
        assert_eq!(key_slot(keys.lease.as_bytes()), slot);
        assert_eq!(key_slot(keys.token.as_bytes()), slot);
    }

    #[test]
    fn a_name_lease_of_a_stream_without_a_tag_gets_one_of_its_slot() {
        let keys = LeaseKeys::consumer("IN", "G", "c1");
        let tag = crate::broker::slot::tag_for(key_slot(b"IN"));
        assert_eq!(keys.lease, format!("IN:consumer:{tag}:G:c1"));
        assert_eq!(keys.token, format!("IN:consumer-token:{tag}:G"));
        let tagged = LeaseKeys::consumer("orders:{3}", "G", "c1");
        assert_eq!(tagged.lease, "orders:{3}:consumer:G:c1");
    }

    #[test]
    fn the_token_is_after_the_last_slash() {
        let fence = |value: &str| Fence {
            key: "k".into(),
            value: value.into(),
        };
        assert_eq!(token(&fence("d/7")), "7");
        assert_eq!(token(&fence("d/x/12")), "12");
        assert_eq!(token(&fence("no-token")), "");
    }
}
