//! Who a consumer is: the identity every per-consumer call (reads, the commit, entry
//! leases, cross-slot markers) carries. Below `consumer`, `commit` and `cross_slot` so
//! that each can name it without importing the others.

/// Who a consumer is: `name` in consumer group `group` of stream `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerId {
    /// The stream key.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// The consumer's name in the group.
    pub name: String,
}
