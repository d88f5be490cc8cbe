//! The scaling signal of a pipeline (or of one partition): its backlog — entries not yet
//! acknowledged, the group's lag plus its pending entries — and how long that backlog
//! would take to drain at the recent rate.
//!
//! The lag comes from `XINFO GROUPS` (Redis 7.0+). Redis answers nil for it when
//! entries were deleted between the group's last-delivered ID and the stream's end (it
//! can no longer count them from `entries-added - entries-read`); then the lag is
//! estimated from the IDs ([`estimate_lag`]) and the `sluice_backlog` series says so in
//! its `lag` label (`"estimated"` instead of `"exact"`).
//!
//! The rate is the group's own (the growth of its `entries-read`, all consumers
//! together) when Redis reports it, so that every daemon of a group reports the same
//! drain time; else this consumer's commits per second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::StreamId;

/// How far back the rate looks.
const WINDOW: Duration = Duration::from_secs(60);

/// Entries with IDs after `last_delivered` in a stream of `length` entries from `oldest`
/// to `newest`, assuming the entries are spread evenly over the IDs' milliseconds
/// (deleted entries leave gaps this cannot see). At least 1 when `newest` is after
/// `last_delivered`.
pub fn estimate_lag(length: u64, oldest: &str, newest: &str, last_delivered: &str) -> u64 {
    let (oldest, newest, delivered) = (
        StreamId::parse(oldest),
        StreamId::parse(newest),
        StreamId::parse(last_delivered),
    );
    if delivered >= newest {
        return 0;
    }
    if delivered < oldest {
        return length;
    }
    let span = newest.ms.saturating_sub(oldest.ms);
    if span == 0 {
        return 1;
    }
    let after = newest.ms.saturating_sub(delivered.ms);
    let share = after as f64 / span as f64;
    ((length as f64 * share).round() as u64).clamp(1, length)
}

/// A running count sampled over time, for a per-second rate over the last minute.
#[derive(Debug, Default)]
pub struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Notes that the count stood at `total` at `now`. A count that went back (the
    /// group was created again) starts the samples afresh.
    pub fn record(&mut self, now: Instant, total: u64) {
        if self.samples.back().is_some_and(|&(_, last)| total < last) {
            self.samples.clear();
        }
        self.samples.push_back((now, total));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|&(at, _)| now.duration_since(at) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Entries per second over the samples, once they span a second.
    pub fn per_second(&self) -> Option<f64> {
        let (&(first_at, first), &(last_at, last)) = (self.samples.front()?, self.samples.back()?);
        let span = last_at.duration_since(first_at).as_secs_f64();
        (span >= 1.0).then(|| (last - first) as f64 / span)
    }
}

/// Seconds to drain `backlog` at `rate` per second: 0 with nothing waiting, infinite
/// while something waits and nothing moves (or no rate is known yet).
pub fn drain_seconds(backlog: u64, rate: Option<f64>) -> f64 {
    match (backlog, rate) {
        (0, _) => 0.0,
        (_, Some(rate)) if rate > 0.0 => backlog as f64 / rate,
        _ => f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_estimated_from_the_ids() {
        // 1,000 entries from ms 1000 to 2000; delivered up to ms 1750: a quarter left.
        assert_eq!(estimate_lag(1000, "1000-0", "2000-0", "1750-0"), 250);
        assert_eq!(estimate_lag(1000, "1000-0", "2000-0", "2000-0"), 0);
        assert_eq!(estimate_lag(1000, "1000-0", "2000-0", "0-0"), 1000);
        assert_eq!(estimate_lag(1000, "1000-0", "2000-0", "1999-9"), 1);
        assert_eq!(estimate_lag(5, "7-0", "7-4", "7-2"), 1);
    }

    #[test]
    fn rate_and_drain_time() {
        let start = Instant::now();
        let mut rate = Rate::default();
        rate.record(start, 100);
        assert_eq!(rate.per_second(), None, "one sample is no rate");
        rate.record(start + Duration::from_secs(2), 300);
        assert_eq!(rate.per_second(), Some(100.0));
        assert_eq!(drain_seconds(1000, rate.per_second()), 10.0);
        assert_eq!(drain_seconds(0, None), 0.0);
        assert!(drain_seconds(5, Some(0.0)).is_infinite());
        rate.record(start + Duration::from_secs(3), 10);
        assert_eq!(
            rate.per_second(),
            None,
            "a count that went back starts afresh"
        );
    }
}
