//! Per-pipeline resource limits and the store limiter that enforces (and names) them.

use std::time::Duration;

/// The limits one instance runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of all linear memories of an instance together.
    pub memory: usize,
    /// Wall time of one `handle` call.
    pub timeout: Duration,
    /// Fuel (roughly, Wasm instructions) for one call; `None`: unmetered.
    pub fuel: Option<u64>,
    /// Outputs one call may return.
    pub max_outputs: usize,
    /// Bytes (names and values) all outputs of one call may hold.
    pub max_output_bytes: usize,
    /// Messages before the instance is replaced by a fresh one.
    pub instance_reuse: u64,
    /// Time a call may run Wasm (not waiting in host calls) before it is throttled to
    /// `throttle_share`.
    pub throttle_after: Duration,
    /// The share of a core a throttled call may use, in (0, 1]; 1: no throttling.
    pub throttle_share: f64,
}

impl Limits {
    /// `throttle_after` in epoch ticks of running Wasm (at least one).
    pub fn throttle_after_ticks(&self) -> u64 {
        let tick = super::EPOCH_TICK.as_nanos().max(1);
        (self.throttle_after.as_nanos() / tick).max(1) as u64
    }

    /// Epoch ticks a throttled call sleeps after each tick it runs: the share rounded
    /// down to 1/(n+1), so the call never gets more than its share. 0 when the share is 1.
    pub fn throttle_pause_ticks(&self) -> u64 {
        if !(self.throttle_share > 0.0 && self.throttle_share < 1.0) {
            return 0;
        }
        // Tolerance for shares like 0.25 that are exact in decimal but not in binary.
        ((1.0 / self.throttle_share - 1.0) - 1e-9).ceil().max(1.0) as u64
    }
}

/// Table elements an instance may hold: generous for real programs, bounded for hostile ones.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// A `ResourceLimiter` that refuses growth past the limits and remembers why, so that the
/// failure can name the limit instead of a bare trap.
#[derive(Debug)]
pub struct Limiter {
    memory: usize,
    /// Bytes of all the instance's linear memories now (creation included: wasmtime asks
    /// the limiter for each memory's initial size too).
    used: usize,
    /// The breach that stopped the guest, if any.
    pub breach: Option<String>,
}

impl Limiter {
    /// A limiter allowing `memory` bytes for all linear memories of an instance together.
    pub fn new(memory: usize) -> Self {
        Self {
            memory,
            used: 0,
            breach: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory {
            let breach = format!(
                "limits.memory ({}) exceeded: the guest asked to grow its memory from {} to {} ({} in all its memories)",
                bytesize::ByteSize(self.memory as u64).display().iec(),
                bytesize::ByteSize(current as u64).display().iec(),
                bytesize::ByteSize(desired as u64).display().iec(),
                bytesize::ByteSize(total as u64).display().iec()
            );
            self.breach = Some(breach.clone());
            return Err(wasmtime::Error::msg(breach));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let breach = format!(
                "table limit ({MAX_TABLE_ELEMENTS} elements) exceeded: the guest asked for {desired}"
            );
            self.breach = Some(breach.clone());
            return Err(wasmtime::Error::msg(breach));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    const MIB: usize = 1 << 20;

    /// The limit holds for all of an instance's memories together: two memories of
    /// 6 MiB fit 16 MiB, a third does not; a memory growing counts only its growth.
    #[test]
    fn memory_is_limited_across_all_memories() {
        let mut limiter = Limiter::new(16 * MIB);
        assert!(limiter.memory_growing(0, 6 * MIB, None).expect("fits"));
        assert!(limiter.memory_growing(0, 6 * MIB, None).expect("fits"));
        let refused = limiter.memory_growing(0, 6 * MIB, None);
        assert!(refused.is_err());
        let breach = limiter.breach.clone().expect("recorded");
        assert!(
            breach.contains("16.0 MiB") && breach.contains("18.0 MiB"),
            "{breach}"
        );
        // Growing the first from 6 to 10 MiB adds 4: 16 in all, which fits.
        assert!(
            limiter
                .memory_growing(6 * MIB, 10 * MIB, None)
                .expect("fits")
        );
        assert!(
            limiter
                .memory_growing(10 * MIB, 10 * MIB + 1, None)
                .is_err()
        );
    }
}
