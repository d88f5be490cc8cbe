//! What became of each entry of a batch at its commit ([`Fate`]), and the batch's tally
//! of them for its [`BatchReport`] and logs. Part of the committer stage; no I/O.

use super::BatchReport;
use crate::message::CommitStatus;
use crate::telemetry::traces::Ended;

/// What became of one entry at its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Its outputs were written (`adopted`: it was pending for nobody, nothing to
    /// acknowledge).
    Delivered { adopted: bool },
    /// Its dead letter was written.
    DeadLettered { adopted: bool },
    /// Another consumer claimed it before the commit: nothing written.
    NotOwned,
    /// Pending for nobody after a try whose reply was lost: nothing written.
    Gone,
    /// Redis has no record of delivering it: nothing written.
    Undelivered,
    /// Handler state it read changed before the commit: handled again.
    StateConflict,
    /// A state write of it was refused: dead-lettered next.
    StateRefused,
    /// Not committed (a drain while Redis was unusable): it stays pending.
    Pending,
}

impl Fate {
    /// The fate of an entry whose commit answered `status` (`None`: no answer), for a
    /// dead letter if `dead`.
    pub(super) fn of(status: Option<CommitStatus>, dead: bool) -> Self {
        let Some(status) = status else {
            return Fate::Pending;
        };
        match status {
            CommitStatus::Committed if dead => Fate::DeadLettered { adopted: false },
            CommitStatus::Adopted if dead => Fate::DeadLettered { adopted: true },
            CommitStatus::Committed => Fate::Delivered { adopted: false },
            CommitStatus::Adopted => Fate::Delivered { adopted: true },
            CommitStatus::NotOwned => Fate::NotOwned,
            CommitStatus::Gone => Fate::Gone,
            CommitStatus::Undelivered => Fate::Undelivered,
            CommitStatus::Conflict => Fate::StateConflict,
            CommitStatus::StateRefused => Fate::StateRefused,
        }
    }

    /// How the entry's trace ends (its dead letter's `reason`, if it is one); `None`
    /// when it is handled again as the same delivery, in the same span.
    pub(super) fn ended(self, reason: Option<&str>) -> Option<Ended> {
        Some(match self {
            Fate::Delivered { .. } => Ended::Committed,
            Fate::DeadLettered { .. } => Ended::DeadLettered(reason.unwrap_or_default().to_owned()),
            Fate::StateConflict => return None,
            Fate::StateRefused => {
                Ended::DeadLettered("a state write was refused at the commit".into())
            }
            Fate::NotOwned => Ended::NotCommitted("not-owned"),
            Fate::Gone => Ended::NotCommitted("gone"),
            Fate::Undelivered => Ended::NotCommitted("undelivered"),
            Fate::Pending => Ended::NotCommitted("pending"),
        })
    }

    /// Whether it was adopted (written, pending for nobody).
    pub(super) fn adopted(self) -> bool {
        matches!(
            self,
            Fate::Delivered { adopted: true } | Fate::DeadLettered { adopted: true }
        )
    }
}

/// A batch's fates, counted: the report, and the entries each log line names.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub report: BatchReport,
    pub adopted: Vec<String>,
    pub gone: Vec<String>,
    pub undelivered: Vec<String>,
    /// Entries handled again (their state changed under them).
    pub conflicted: Vec<String>,
    /// Indexes of entries whose state writes were refused.
    pub refused: Vec<usize>,
}

impl Tally {
    /// Counts the fate of entry `id`, the `index`th of the batch.
    pub(super) fn count(&mut self, index: usize, id: &str, fate: Fate) {
        let report = &mut self.report;
        if fate.adopted() {
            self.adopted.push(id.to_owned());
        }
        match fate {
            Fate::Pending => report.retried += 1,
            Fate::DeadLettered { .. } => report.dead_lettered += 1,
            Fate::Delivered { .. } => report.delivered += 1,
            Fate::NotOwned => {
                report.unowned += 1;
                tracing::debug!(
                    id,
                    "entry claimed by another consumer before the commit; its outputs were not written"
                );
            }
            Fate::Gone => {
                report.unowned += 1;
                self.gone.push(id.to_owned());
            }
            Fate::Undelivered => {
                report.unowned += 1;
                self.undelivered.push(id.to_owned());
            }
            Fate::StateConflict => {
                report.state_conflicts += 1;
                self.conflicted.push(id.to_owned());
            }
            Fate::StateRefused => self.refused.push(index),
        }
    }

    /// Logs the entries that met Redis in an unusual state (adopted ones are logged
    /// with their incident by the committer).
    pub(super) fn log(&self) {
        if !self.gone.is_empty() {
            tracing::warn!(ids = ?self.gone, "entries were pending for no consumer at commit after a try whose reply was lost, or after this consumer's entry lease lapsed: taken as committed by that try or by another consumer; nothing written");
        }
        if !self.undelivered.is_empty() {
            tracing::warn!(ids = ?self.undelivered, "redis has no record of delivering these entries to the group (a failover lost the deliveries with the old primary): nothing written; they are delivered again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each commit status has one fate, a dead letter's its own; each fate one count.
    #[test]
    fn each_status_has_one_fate_and_one_count() {
        let cases = [
            (None, false, Fate::Pending),
            (
                Some(CommitStatus::Committed),
                false,
                Fate::Delivered { adopted: false },
            ),
            (
                Some(CommitStatus::Adopted),
                false,
                Fate::Delivered { adopted: true },
            ),
            (
                Some(CommitStatus::Committed),
                true,
                Fate::DeadLettered { adopted: false },
            ),
            (
                Some(CommitStatus::Adopted),
                true,
                Fate::DeadLettered { adopted: true },
            ),
            (Some(CommitStatus::NotOwned), false, Fate::NotOwned),
            (Some(CommitStatus::Gone), false, Fate::Gone),
            (Some(CommitStatus::Undelivered), false, Fate::Undelivered),
            (Some(CommitStatus::Conflict), false, Fate::StateConflict),
            (Some(CommitStatus::StateRefused), false, Fate::StateRefused),
        ];
        let mut tally = Tally::default();
        for (index, (status, dead, fate)) in cases.into_iter().enumerate() {
            assert_eq!(Fate::of(status, dead), fate, "{status:?}, dead: {dead}");
            tally.count(index, &format!("{index}-0"), fate);
        }
        let expected = BatchReport {
            delivered: 2,
            dead_lettered: 2,
            retried: 1,
            unowned: 3,
            state_conflicts: 1,
            adopted: 0,
        };
        assert_eq!(tally.report, expected);
        assert_eq!(tally.adopted, ["2-0", "4-0"]);
        assert_eq!(tally.refused, [9]);
        assert!(Fate::StateConflict.ended(None).is_none());
    }
}
