//! Partitioned pipelines: the partition function and the names a partition's keys take.
//!
//! A pipeline with `partitions = N` reads N streams, `NAME:{0}` .. `NAME:{N-1}`; its
//! outputs, dead letters, handler state and partition leases take the same `{p}` tag.
//! The tag is a Redis Cluster hash tag, so every key of partition `p` of every pipeline
//! lives in one hash slot: a partition's guarded commit stays one script on one node,
//! and a chain of pipelines with the same `N` keeps each partition's work there.
//!
//! Producers pick the partition of a key (a user ID, an order ID: whatever must stay in
//! order) with [`of`]: zlib's CRC-32 of the key's bytes, modulo N. The same function is
//! `zlib.crc32(key) % n` in Python, `crc32(key) % n` in PHP, `hash/crc32.ChecksumIEEE(key)
//! % n` in Go, and `sluice partition --partitions N KEY` on the command line.

/// The most partitions a pipeline may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// The partition of `key` among `partitions`: CRC-32 (ISO-HDLC, as zlib computes it) of
/// the key's bytes modulo `partitions`.
///
/// # Panics
/// If `partitions` is 0.
pub fn of(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a pipeline has at least one partition");
    crc32fast::hash(key) % partitions
}

/// `name` in partition `p`: `name:{p}`.
pub fn tagged(name: &str, p: u32) -> String {
    format!("{name}:{{{p}}}")
}

/// Where handler state keys under `prefix` live in partition `p`: `prefix{p}:` (so the
/// handler's `order:42` is `order:{3}:42` in Redis).
pub fn state_prefix(prefix: &str, p: u32) -> String {
    format!("{prefix}{{{p}}}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_function_is_zlib_crc32() {
        // Python's zlib.crc32(b"user-1") is 0x7e264614; CRC-32's check value is
        // crc32("123456789") == 0xCBF43926.
        assert_eq!(crc32fast::hash(b"user-1"), 0x7e26_4614);
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(of(b"123456789", 1000), 0xCBF4_3926 % 1000);
        assert_eq!(of(b"", 16), 0);
        assert_eq!(tagged("orders", 3), "orders:{3}");
        assert_eq!(state_prefix("order:", 3), "order:{3}:");
    }
}
