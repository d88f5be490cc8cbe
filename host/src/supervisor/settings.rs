//! The Redis server's settings that lose data without an error: an eviction policy
//! other than `noeviction` (under memory pressure the server may drop an input stream
//! with its consumer group and pending entries, an output, a dead-letter stream or
//! handler state, and nothing tells Sluice), and no persistence at all (a restart of the
//! server loses everything).
//!
//! Checked at start-up and every [`RECHECK`] after. Each finding is logged once while it
//! lasts (at WARN for eviction, at INFO for no persistence; none for the private server
//! `sluice dev` starts, whose data is gone at exit by design); one that goes away and
//! comes back is logged again. The eviction warning is also shown with every pipeline
//! ([`Warnings`]); readiness does not depend on it. A server whose settings cannot be
//! read (an ACL user without `+config|get`, a managed service without `CONFIG`) is said
//! so once. Gauges, labelled `redis` (where it is, without password):
//! `sluice_redis_eviction_policy_safe` and `sluice_redis_persistent`, 1 (yes), 0 (no) or
//! -1 (could not be checked).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, NO_EVICTION, ServerSettings, settings_unreadable};
use crate::status::Warnings;

/// How often the settings are read again after start-up.
pub(super) const RECHECK: Duration = Duration::from_secs(5 * 60);

/// One thing the settings say about the data Sluice writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Finding {
    /// The server may evict keys: its `maxmemory-policy`.
    Evicts(String),
    /// The server keeps nothing across a restart.
    NoPersistence,
}

impl Finding {
    fn message(&self) -> String {
        match self {
            Finding::Evicts(policy) => format!(
                "Redis has maxmemory-policy {policy}, not {NO_EVICTION}: under memory pressure it may evict an input stream with its consumer group and pending entries, an output, a dead-letter stream or handler state, and Sluice cannot tell; set maxmemory-policy {NO_EVICTION} (CONFIG SET and redis.conf) so that a full server refuses writes instead"
            ),
            Finding::NoPersistence => "Redis keeps nothing on disk (save \"\" and appendonly no): a restart of the server loses every stream, consumer group, pending entry and handler state; turn on appendonly (or RDB snapshots) if they must survive one".to_owned(),
        }
    }

    fn log(&self) {
        match self {
            Finding::Evicts(policy) => {
                tracing::warn!(maxmemory_policy = %policy, "{}", self.message())
            }
            Finding::NoPersistence => tracing::info!("{}", self.message()),
        }
    }

    /// Whether it is shown with the pipelines (the risk of losing data while running).
    fn is_warning(&self) -> bool {
        matches!(self, Finding::Evicts(_))
    }
}

/// What `settings` say, for a server this daemon started itself if `private`.
fn findings(settings: &ServerSettings, private: bool) -> BTreeSet<Finding> {
    let mut found = BTreeSet::new();
    if settings.evicts() {
        found.insert(Finding::Evicts(settings.maxmemory_policy.clone()));
    }
    if !settings.persists() && !private {
        found.insert(Finding::NoPersistence);
    }
    found
}

/// The findings of the last check, so that each is logged once while it lasts.
#[derive(Default)]
struct Logged(BTreeSet<Finding>);

impl Logged {
    /// Keeps `found`; returns those the last check did not find.
    fn update(&mut self, found: BTreeSet<Finding>) -> Vec<Finding> {
        let fresh = found.difference(&self.0).cloned().collect();
        self.0 = found;
        fresh
    }
}

/// The check of one daemon's Redis.
pub(super) struct SettingsCheck {
    broker: Broker,
    private: bool,
    warnings: Arc<Warnings>,
    logged: Logged,
    /// Whether "could not be checked" was said.
    unreadable_told: bool,
}

impl SettingsCheck {
    /// Checks the settings of `broker`'s server once (at start-up), showing its
    /// warnings in `warnings`; `private` when the daemon started that server itself.
    pub(super) async fn start(broker: Broker, private: bool, warnings: Arc<Warnings>) -> Self {
        let mut check = Self {
            broker,
            private,
            warnings,
            logged: Logged::default(),
            unreadable_told: false,
        };
        check.run().await;
        check
    }

    /// Checks again every [`RECHECK`] on `tasks` until `stop`.
    pub(super) fn spawn(mut self, tasks: &TaskTracker, stop: CancellationToken) {
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RECHECK) => {}
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.run() => {}
                }
            }
        });
    }

    async fn run(&mut self) {
        match self.broker.server_settings().await {
            Ok(settings) => {
                self.gauges(i8::from(!settings.evicts()), i8::from(settings.persists()));
                let found = findings(&settings, self.private);
                self.warnings.set(
                    found
                        .iter()
                        .filter(|f| f.is_warning())
                        .map(Finding::message)
                        .collect(),
                );
                for finding in self.logged.update(found) {
                    finding.log();
                }
            }
            Err(fault) if settings_unreadable(&fault) => {
                self.gauges(-1, -1);
                if !std::mem::replace(&mut self.unreadable_told, true) {
                    tracing::warn!(error = %fault, "Redis's maxmemory-policy could not be checked (it must be {NO_EVICTION}, or the server may evict streams, consumer groups and state on its own), nor its persistence: grant the ACL user +config|get to have them checked");
                }
            }
            Err(fault) => {
                tracing::debug!(error = %fault, "Redis's settings could not be read now; they are read again at the next check");
            }
        }
    }

    /// Sets the gauges: 1 yes, 0 no, -1 could not be checked.
    fn gauges(&self, eviction_safe: i8, persistent: i8) {
        let redis = self.broker.shown().to_owned();
        metrics::gauge!("sluice_redis_eviction_policy_safe", "redis" => redis.clone())
            .set(f64::from(eviction_safe));
        metrics::gauge!("sluice_redis_persistent", "redis" => redis).set(f64::from(persistent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: &str, save: &str) -> ServerSettings {
        ServerSettings {
            maxmemory_policy: policy.to_owned(),
            save: save.to_owned(),
            appendonly: false,
        }
    }

    #[test]
    fn an_evicting_policy_is_a_warning_that_names_it() {
        let found = findings(&settings("allkeys-lru", "3600 1"), false);
        assert_eq!(found.len(), 1, "{found:?}");
        let finding = found.first().expect("one finding");
        assert!(finding.is_warning());
        let message = finding.message();
        for word in ["maxmemory-policy", "allkeys-lru", "noeviction"] {
            assert!(message.contains(word), "{message}");
        }
        assert!(findings(&settings("noeviction", "3600 1"), false).is_empty());
    }

    #[test]
    fn no_persistence_is_said_but_not_of_the_private_server() {
        let found = findings(&settings("noeviction", ""), false);
        assert_eq!(found, BTreeSet::from([Finding::NoPersistence]));
        assert!(!Finding::NoPersistence.is_warning());
        assert!(findings(&settings("noeviction", ""), true).is_empty());
    }

    #[test]
    fn each_finding_is_logged_once_while_it_lasts() {
        let mut logged = Logged::default();
        let lru = || BTreeSet::from([Finding::Evicts("allkeys-lru".into())]);
        assert_eq!(logged.update(lru()).len(), 1);
        assert!(
            logged.update(lru()).is_empty(),
            "a re-check says nothing new"
        );
        let ttl = BTreeSet::from([Finding::Evicts("volatile-ttl".into())]);
        assert_eq!(logged.update(ttl), [Finding::Evicts("volatile-ttl".into())]);
        assert!(logged.update(BTreeSet::new()).is_empty());
        assert_eq!(logged.update(lru()).len(), 1, "back again: said again");
    }
}
