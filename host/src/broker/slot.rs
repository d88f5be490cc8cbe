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

/// A hash tag (`{n}`, `n` a decimal number) whose keys live in `slot`: the same tag for
/// the same slot, whatever key led there, so that a key built with it (a cross-slot
/// marker) is found again however the keys that needed it were grouped.
pub fn tag_for(slot: u16) -> &'static str {
    static TAGS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        // The smallest number hashing to each slot; all 16,384 are found below ~200,000
        // (checked by the test below), in about a millisecond.
        let mut tags = vec![String::new(); usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut n = 0u32;
        while missing > 0 {
            let text = n.to_string();
            let slot = usize::from(key_slot(text.as_bytes()));
            if tags[slot].is_empty() {
                tags[slot] = format!("{{{text}}}");
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    &TAGS[usize::from(slot % SLOTS)]
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
        for slot in [0, 1, 3808, 16_383] {
            let tag = tag_for(slot);
            assert_eq!(key_slot(format!("m:{tag}:x}}b").as_bytes()), slot, "{tag}");
        }
        assert!((0..SLOTS).all(|slot| key_slot(tag_for(slot).as_bytes()) == slot));
    }
}
