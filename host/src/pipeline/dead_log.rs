//! One WARN line per dead letter, rate-limited: the operator sees that an entry left the
//! flow, why, and what to do, without a poison storm flooding the log.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Dead-letter lines per second a pipeline may log, and the burst it may save up; the
/// rest are counted and the count is given on the next line logged.
const LINES_PER_SECOND: u32 = 5;
const BURST: u32 = 20;

/// A pipeline's dead-letter log.
pub(super) struct DeadLog {
    pipeline: String,
    stream: String,
    limiter: DefaultDirectRateLimiter,
    /// Dead letters not logged since the last line.
    unlogged: u64,
}

impl DeadLog {
    /// The log of `pipeline`, whose letters go to `stream`.
    pub(super) fn new(pipeline: &str, stream: &str) -> Self {
        let rate = NonZeroU32::new(LINES_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
        Self {
            pipeline: pipeline.to_owned(),
            stream: stream.to_owned(),
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            unlogged: 0,
        }
    }

    /// Says that entry `id` was dead-lettered for `reason` (its `sluice.error`).
    pub(super) fn record(&mut self, id: &str, reason: &str) {
        if self.limiter.check().is_err() {
            self.unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut self.unlogged);
        let fix = fix_for(reason, &self.pipeline);
        tracing::warn!(
            entry = id,
            stream = %self.stream,
            reason,
            unlogged,
            "entry dead-lettered: {fix}"
        );
    }
}

/// What to do about a dead letter with `reason`.
fn fix_for(reason: &str, pipeline: &str) -> String {
    let then = format!(
        "then send it back with `sluice dlq replay {pipeline} --id <the letter's ID>` (`sluice dlq list {pipeline}` shows each letter's ID, and the entry's as its sluice.id)"
    );
    if reason.starts_with("rejected:") {
        format!("the handler rejected it; if the entry was good, fix the handler, {then}")
    } else if reason.starts_with("gave up after") {
        format!(
            "every attempt failed (see the handler's log lines for this entry); fix the cause, {then}"
        )
    } else {
        format!("fix what the reason says, {then}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_name_the_pipeline_and_the_command() {
        let fix = fix_for("rejected: no amount", "payments");
        assert!(fix.contains("sluice dlq replay payments"), "{fix}");
        assert!(fix_for("gave up after 5 attempts: trap", "p").contains("every attempt failed"));
    }

    #[test]
    fn lines_past_the_burst_are_counted_not_logged() {
        let mut log = DeadLog::new("p", "IN:dead");
        for i in 0..BURST + 7 {
            log.record(&format!("{i}-0"), "rejected: no");
        }
        assert_eq!(log.unlogged, 7);
    }
}
