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

mod checks;
mod entry;
mod memory;
mod model;
mod overlay;
mod seen;
#[cfg(test)]
mod tests;

pub use checks::{check_writes, integer};
pub use entry::{EntryState, Finished, Scope};
pub use memory::MemoryStore;
pub use model::{Bytes, Changes, Known, Read, StateError, Store, Write};
pub use overlay::Overlay;
pub use seen::SeenFirst;
