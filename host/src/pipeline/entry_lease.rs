//! Entry leases: while a batch is handled and committed, this consumer's claim on its
//! entries is renewed, so that a slow handler does not lose its work to a reclaim (and
//! do it twice). Part of the redelivery stage.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::broker::{Backoff, Consumer};
use crate::lock::lock;
use crate::message::Entry;

/// Since when a batch is known to be this consumer's: its read, or the last renewal of
/// its entry leases that found every entry still owned. While that is under
/// `claim_idle` old, no other consumer can have taken an entry of it by a reclaim.
#[derive(Clone)]
pub(super) struct Held(Arc<Mutex<Instant>>);

impl Held {
    fn since(read_at: Instant) -> Self {
        Self(Arc::new(Mutex::new(read_at)))
    }

    /// When the batch was last known to be this consumer's.
    pub(super) fn at(&self) -> Instant {
        *lock(&self.0)
    }

    fn renewed(&self) {
        *lock(&self.0) = Instant::now();
    }

    /// Whether no reclaim can have taken an entry of the batch yet.
    pub(super) fn fresh(&self, claim_idle: Duration) -> bool {
        lock(&self.0).elapsed() < claim_idle
    }
}

/// The entry leases of one batch in hand, renewed until [`KeptLeases::end`].
pub(super) struct KeptLeases {
    renewal: JoinHandle<()>,
    pub(super) held: Held,
}

impl KeptLeases {
    /// Renews `consumer`'s entry leases on `entries` every third of `claim_idle`; the
    /// batch is known to be this consumer's since `read_at`.
    pub(super) fn keep(
        consumer: &mut Consumer,
        entries: &[Entry],
        read_at: Instant,
        claim_idle: Duration,
    ) -> Self {
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let held = Held::since(read_at);
        let renewal = tokio::spawn(
            renew(consumer.entry_leases(), ids, claim_idle / 3, held.clone()).in_current_span(),
        );
        Self { renewal, held }
    }

    /// Stops the renewals (the batch's commit is done).
    pub(super) fn end(self) {
        self.renewal.abort();
    }
}

/// Renews the entry leases on `ids` `every` so often, forever; after a failed renewal,
/// the next try comes sooner (Redis's backoff), never later than the usual period.
async fn renew(
    mut lease: crate::broker::EntryLeases,
    ids: Vec<String>,
    every: Duration,
    held: Held,
) {
    let mut backoff = Backoff::redis();
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        match lease.renew(&ids).await {
            Ok(renewed) => {
                let renewed = renewed.len();
                backoff.reset();
                wait = every;
                if renewed == ids.len() {
                    held.renewed();
                }
                tracing::debug!(
                    renewed,
                    "renewed the entry leases of entries in a handler call"
                )
            }
            Err(e) => {
                wait = backoff.next_delay().min(every);
                // The pipeline shows the outage; one line per run of failures.
                if backoff.failures() == 1 {
                    tracing::warn!(error = format!("{e:#}"), retry_in = ?wait, "cannot renew the entry leases of entries in a handler call");
                } else {
                    tracing::debug!(error = format!("{e:#}"), retry_in = ?wait, "cannot renew the entry leases of entries in a handler call");
                }
            }
        }
    }
}
