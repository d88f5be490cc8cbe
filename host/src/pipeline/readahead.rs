//! A turn of the loop in any order, and reading ahead: while a full batch is handled, the
//! next one is read beside it, and each batch's commit runs while the next one is
//! handled. Read-ahead stops for every periodic check (retries, reclaim, backlog), a
//! pause or a drain, handing back what it read.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Pipeline;
use super::committer::Prepared;
use super::handler::Until;
use super::reader::{Batch, Hold, Read, Reader};

impl Pipeline {
    /// One turn in any order: held entries first; once this consumer's own pending
    /// entries are read, the due checks (backlog, reclaims, retries); then a read.
    pub(super) async fn turn(&mut self, shutdown: &CancellationToken) -> ControlFlow<()> {
        if let Some(held) = self.reader.take_held() {
            self.process(held).await;
            return ControlFlow::Continue(());
        }
        if !self.reader.reading_own() {
            self.health
                .refresh_backlog(&mut self.redelivery.schedule)
                .await;
            if let Err(fault) = self.redeliver().await {
                let schedule = &mut self.redelivery.schedule;
                self.health.recover(fault, schedule, shutdown).await;
                return ControlFlow::Continue(());
            }
        }
        let schedule = &mut self.redelivery.schedule;
        match self
            .reader
            .read(&mut self.health, schedule, shutdown, Duration::MAX)
            .await
        {
            Read::Stop => return ControlFlow::Break(()),
            Read::Again => {}
            Read::Own(batch) => {
                self.process(batch).await;
            }
            Read::New(batch) => {
                let next = self.process_read_ahead(batch).await;
                self.reader.read_ahead(next);
            }
        }
        ControlFlow::Continue(())
    }

    /// Handles batches back to back while full ones keep coming: the next batch is read
    /// while this one is handled, and each batch's commit runs while the next one is
    /// handled, on another task. Commits stay in order: each is confirmed before the next
    /// is sent. Stops, with the last commit done, when no full batch is waiting, when a
    /// periodic check is due, or on pause or drain; returns the entries it had already
    /// read, to be handled next.
    async fn process_read_ahead(&mut self, mut current: Batch) -> Option<Batch> {
        let mut committing: Option<Prepared> = None;
        loop {
            let read = current.entries.len();
            let prefetch = (self.reader).prefetch(&mut self.health, read, self.halt.shutdown());
            let started = Instant::now();
            let (prepared, hold) = match committing.take() {
                None => self.handle(current, Until::All).await,
                Some(previous) => self.handle_beside(current, previous).await,
            };
            self.reader.hold(hold);
            committing = Some(prepared);
            self.reader.took(started.elapsed());
            match Reader::prefetched(&mut self.health, prefetch).await {
                Some(batch) if !self.checks_due() => current = batch,
                next => {
                    if let Some(last) = committing.take() {
                        self.commit(last).await;
                    }
                    return next;
                }
            }
        }
    }

    /// Handles `current` on another task while `previous` is committed here.
    async fn handle_beside(&mut self, mut current: Batch, previous: Prepared) -> (Prepared, Hold) {
        let leases = self.begin(&mut current);
        let handling = self.handlers.spawn(current.entries, &self.halt);
        self.commit(previous).await;
        let mut batch = match handling.await {
            Ok(batch) => batch,
            // A host bug; the batch's entries stay pending in Redis.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.handlers.restore(&mut batch);
        let redelivery = &mut self.redelivery;
        (self.committer).prepare(batch.entries, batch.handled, leases, redelivery, &self.halt)
    }
}
