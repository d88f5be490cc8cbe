//! Redis Cluster hash slots: which of the 16,384 slots a key lives in, and which keys may
//! therefore share one script.
//!
//! The rule (<https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags>):
//! a key's slot is CRC-16/XMODEM of the key modulo 16384, except that when the key holds a
//! `{`, followed later by a `}` with at least one byte between them, only the bytes
//! between the first `{` and the first `}` after it (the *hash tag*) are hashed. Keys with
//! the same hash tag share a slot, which is what lets one script (a guarded commit)
//! touch them all.

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The part of `key` that is hashed: its hash tag if it has one, else all of it.
pub fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(close) = key[open + 1..].iter().position(|&b| b == b'}')
        && close > 0
    {
        return &key[open + 1..open + 1 + close];
    }
    key
}

/// The hash slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hashed_part(key)) % SLOTS
}

/// A hash tag (`{...}`) that puts a key in the slot of `key`: `{tag}` where `tag` is the
/// part of `key` that is hashed. `None` when no tag can (the hashed part holds a `}`,
/// as in a key `a}b` without a tag of its own).
pub fn tag_of(key: &str) -> Option<String> {
    let part = std::str::from_utf8(hashed_part(key.as_bytes())).ok()?;
    (!part.is_empty() && !part.contains('}')).then(|| format!("{{{part}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"orders:{3}"), key_slot(b"payments:{3}:dead"));
        // An empty tag hashes the whole key; only the first {...} counts.
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hashed_part(b"no-close{here"), b"no-close{here");
        for key in ["payments", "{shop}:payments", "no-close{here", "x{y}z{w}"] {
            let tag = tag_of(key).expect("a tag");
            assert_eq!(
                key_slot(format!("m:{tag}:1-0").as_bytes()),
                key_slot(key.as_bytes())
            );
        }
        assert_eq!(tag_of("a}b"), None);
        assert_eq!(tag_of("a{}b"), None);
    }
}
