//! The one retry policy for everything that talks to Redis.

use std::time::Duration;

/// One retry policy for everything that talks to Redis: jittered exponential backoff
/// (equal jitter: half the delay fixed, half random), from `min` doubling up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Delays from `min` doubling to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            failures: 0,
        }
    }

    /// The policy for Redis calls: 100 ms doubling to 5 s.
    pub fn redis() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (a call succeeded).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exponent = (self.failures - 1).min(31);
        let delay = self.min.saturating_mul(1u32 << exponent).min(self.max);
        let random = rand_fraction();
        delay / 2 + (delay / 2).mul_f64(random)
    }

    /// Counts a failure and waits; returns `false` at once if `cancel` fires first.
    pub async fn wait(&mut self, cancel: &tokio_util::sync::CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// A number in [0, 1) from the standard library's randomly seeded hasher (no `rand` crate
/// for one jitter).
fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() % 1_000_000) as f64 / 1_000_000.0
}
