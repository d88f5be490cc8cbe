//! Keeping groups clean: a daemon leaves its groups at a clean stop, and removes
//! consumers idle past `[redis] remove_idle_consumers_after` with nothing pending.

use std::time::Duration;

use super::Names;
use crate::broker::Fence;

impl Names {
    /// Leaves every group (a clean stop, after the drain): this daemon's consumer is
    /// removed from each group where nothing is pending for it, then the leases go back.
    pub(crate) async fn leave(&self) {
        let held: Vec<((String, String), Fence)> = self
            .lock()
            .iter()
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for ((stream, group), fence) in held {
            let removed = self
                .broker
                .remove_consumer(&stream, &group, &self.me.name, Some(&fence.value))
                .await;
            match removed {
                Ok(true) => {
                    metrics::counter!("sluice_consumers_removed_total", "reason" => "left")
                        .increment(1);
                }
                Ok(false) => {}
                Err(fault) => {
                    tracing::warn!(stream, group, error = %fault, "cannot remove this daemon's consumer from the group; it stays listed");
                }
            }
        }
        self.release().await;
    }

    /// Removes the consumers of this daemon's groups idle longer than `limit` with
    /// nothing pending and no live holder (one INFO line per group that lost some).
    pub(crate) async fn sweep(&self, limit: Duration) {
        let groups: Vec<(String, String)> = self.lock().keys().cloned().collect();
        for (stream, group) in groups {
            let Ok(consumers) = self.broker.group_consumers(&stream, &group).await else {
                continue;
            };
            let mut removed = Vec::new();
            for c in consumers {
                let idle = Duration::from_millis(c.idle_ms);
                if c.name == self.me.name || c.pending > 0 || idle < limit {
                    continue;
                }
                if let Ok(true) = self
                    .broker
                    .remove_consumer(&stream, &group, &c.name, None)
                    .await
                {
                    removed.push(c.name);
                }
            }
            if !removed.is_empty() {
                metrics::counter!("sluice_consumers_removed_total", "reason" => "idle")
                    .increment(removed.len() as u64);
                tracing::info!(
                    stream,
                    group,
                    "removed {} consumers idle over {} with nothing pending: {}",
                    removed.len(),
                    humantime::format_duration(limit),
                    removed.join(", ")
                );
            }
        }
    }
}
