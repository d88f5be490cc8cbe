//! One consumer loop per pipeline, as five stages that hand each other named records.
//!
//! # Stages
//!
//! | stage | type | file | owns |
//! |---|---|---|---|
//! | reader | `Reader` | `reader.rs` | reads (this consumer's own pending entries first, then new ones), read-ahead, entries held back, the pause |
//! | handler stage | `Handlers` | `handler.rs` | the plugin's instances, handler calls (per entry, or an instance's share through the batch export), offers to an attached candidate (`shadow`) |
//! | committer | `Committer` | `committer.rs`, with `outcome.rs` (each entry's outcome), `commit.rs` (a commit whatever state Redis is in), `account.rs` (each entry's fate), `reruns.rs`, `dead_log.rs` | settling a handled batch: deciding, committing, accounting into a [`BatchReport`] |
//! | redelivery | `Redelivery` | `redelivery.rs`, with `schedule.rs` (timers, scans) and `entry_lease.rs` | retries and reclaims, the entry leases on a batch in hand |
//! | health | `Health` | `health.rs`, with `backlog.rs` | the consumer and its standing with Redis: faults, remedies, backoff, replicas, the backlog |
//!
//! The loop ([`Pipeline::run`], here) asks its [`Order`] (`ordered.rs`) for each turn:
//! in any order (`readahead.rs`: held entries, the due checks, a read, and batches
//! handled back to back with the next one read ahead), or per key (`ordered.rs`: one
//! partition in stream order, under its partition lease).
//!
//! # Records, and where an entry is
//!
//! ```text
//!            Batch                  Handled (one per entry)              Prepared
//!  Reader ──────────▶ Handlers ─────────────────────────▶ Committer ──────────▶ commit
//!   ▲     (reader.rs)  ▲       (handler.rs)              (committer.rs)    (commit.rs)
//!   │                  │                                    │      │            │
//!   │                  │ Batch (claimed)  retry later       │      │ Fate per entry
//!   │                  └──── Redelivery ◀───────────────────┘      ▼ (account.rs)
//!   │                  (redelivery.rs, schedule.rs)            BatchReport
//!   └──────────── Hold (handled again after a state conflict, or not started) ──┘
//!
//!  Health (health.rs): every Redis call goes through its consumer, every fault through
//!  its remedy and fault backoff; it keeps the backlog shown in the status.
//! ```
//!
//! - Read, read ahead, or held back: the reader, as a [`Batch`] (or a [`Hold`]).
//! - In a handler call: the handler stage; the call's result is a `Handled`.
//! - At its commit: the committer, an `Ack` planned in a [`Prepared`]; after it, a
//!   `Fate`, counted in the [`BatchReport`].
//! - Failed and waiting for its retry backoff, or idle with another consumer: pending in
//!   Redis, until the redelivery stage claims it as a new [`Batch`] that goes straight to
//!   the handler stage. In per-key order a failed entry instead stays in memory, at the
//!   head of its key's queue, and `ordered.rs` waits out its backoff (later entries of
//!   the key must not overtake it).
//!
//! One stage owns an entry at a time; others may act on it meanwhile: the redelivery
//! stage renews the entry leases of a batch in a handler call, and with read-ahead the
//! reader reads the next batch while this one is handled.
//!
//! The loop stops only at safe points: shutdown interrupts the wait for entries, never a
//! handler call or a commit. Entries read but not committed stay pending in Redis and are
//! delivered again, so nothing is lost whatever stops the loop.

mod account;
pub mod backlog;
mod commit;
mod committer;
mod dead_log;
mod entry_lease;
mod handler;
mod health;
mod ordered;
mod outcome;
mod readahead;
mod reader;
mod redelivery;
mod reruns;
mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Result, bail};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Consumer, Fault, Fence, KeyMap};
use crate::config::PipelineConfig;
use crate::message::Entry;
use crate::state::Scope;
use crate::status::Board;
use crate::telemetry::PipelineMetrics;
use crate::telemetry::traces::{PipelineNames, Traces, Tracing};
use crate::wasm::PluginCell;
use committer::{Committer, Prepared};
use entry_lease::KeptLeases;
use handler::{Handlers, Until};
use health::Health;
pub use ordered::{Order, PartitionLeaseClock};
use reader::{Batch, Hold, Reader};
use redelivery::Redelivery;

/// A running pipeline: its stages.
pub struct Pipeline {
    config: Arc<PipelineConfig>,
    reader: Reader,
    handlers: Handlers,
    committer: Committer,
    redelivery: Redelivery,
    health: Health,
    metrics: PipelineMetrics,
    traces: Traces,
    /// Which partition of a partitioned pipeline this is.
    partition: Option<u32>,
    halt: Halt,
}

/// When to stop starting handler calls: a drain, or a pause. Calls in flight finish.
#[derive(Clone)]
struct Halt {
    shutdown: CancellationToken,
    paused: watch::Receiver<bool>,
}

impl Halt {
    /// Whether no handler call may start now.
    fn now(&self) -> bool {
        self.draining() || self.paused()
    }

    fn draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    fn paused(&self) -> bool {
        *self.paused.borrow()
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// What one batch came to, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries whose outputs were committed.
    pub delivered: usize,
    /// Entries committed to the dead-letter stream.
    pub dead_lettered: usize,
    /// Entries left pending for another delivery.
    pub retried: usize,
    /// Entries whose commit found them no longer this consumer's: owned by another,
    /// pending for nobody after a try whose reply was lost, or never delivered as far
    /// as Redis knows (nothing written).
    pub unowned: usize,
    /// Entries handled again because handler state they read changed before their
    /// commit (nothing written; no attempt counted).
    pub state_conflicts: usize,
    /// Entries pending for nobody at commit (removed from the pending entries list under
    /// this consumer) whose outputs were written: counted in `delivered` too.
    pub adopted: usize,
}

impl Pipeline {
    /// Sets up the pipeline's consumer (`consumer` names it in its group) and handlers,
    /// and creates its consumer group. A Redis user that may not use the input stream
    /// fails here, with the permission to grant; a Redis that is down does not (the
    /// pipeline starts in state `error` and keeps trying).
    ///
    /// For a partitioned pipeline, `partition` says which partition: `config` is the
    /// whole pipeline's, and the partition's streams and state keys are derived from it.
    pub async fn new(
        config: PipelineConfig,
        partition: Option<u32>,
        plugin: PluginCell,
        broker: &Broker,
        consumer: &str,
        board: Arc<Board>,
        tracing: &Tracing,
    ) -> Result<Self> {
        let keys = KeyMap::new(config.state_keys(partition));
        // Outputs as the handler names them (a partition's are tagged at the commit).
        let outputs: HashSet<String> = config.outputs.iter().map(|o| o.to_string()).collect();
        let config = Arc::new(match partition {
            Some(p) => config.partition(p),
            None => config,
        });
        let consumer = open_consumer(&config, broker, consumer, keys).await?;
        let state = (!config.state.is_empty()).then(|| Scope {
            prefixes: config.state.iter().cloned().collect(),
            overlay: Default::default(),
            store: consumer.state_store(),
        });
        let metrics = PipelineMetrics::new(config.name.as_str(), partition);
        let traces = tracing.pipeline(config.traces, names(&config, partition));
        let (shared, calls) = (config.clone(), metrics.calls.clone());
        let committer = Committer::new(
            shared,
            outputs.clone(),
            partition,
            board.clone(),
            metrics.clone(),
            traces.clone(),
        );
        Ok(Self {
            reader: Reader::new(&config, board.paused()),
            handlers: Handlers::new(&config, plugin, state, calls, &outputs)?,
            committer,
            redelivery: Redelivery::new(&config),
            halt: Halt {
                shutdown: CancellationToken::new(),
                paused: board.paused(),
            },
            health: Health::new(
                consumer,
                config.clone(),
                outputs,
                board,
                metrics.clone(),
                partition,
            ),
            metrics,
            traces,
            partition,
            config,
        })
    }

    /// Commits only under `fence` (the consumer name's lease, or this daemon's partition
    /// lease for a per-key partition).
    pub fn set_fence(&mut self, fence: Fence) {
        self.health.consumer.set_fence(Some(fence));
    }

    /// Runs until `shutdown` is cancelled (or `order` no longer lets it run); in-flight
    /// work finishes and commits first.
    pub async fn run(mut self, shutdown: CancellationToken, mut order: Order) -> Result<()> {
        self.halt.shutdown = shutdown.clone();
        self.start(&shutdown, &order).await;
        while !shutdown.is_cancelled() && order.holds() {
            let schedule = &mut self.redelivery.schedule;
            self.reader
                .pause(&mut self.health, schedule, &shutdown)
                .await;
            self.health.await_replicas(schedule, &shutdown).await;
            if shutdown.is_cancelled() || !order.holds() {
                break;
            }
            let turn = match &mut order {
                Order::Any => self.turn(&shutdown).await,
                Order::PerKey(key) => self.turn_in_order(key, &shutdown).await,
            };
            if turn.is_break() {
                break;
            }
        }
        // Entries read ahead just before a drain began were not started: they stay
        // pending, and are read first (as this consumer's own) on the next start.
        match order {
            Order::Any => tracing::info!("pipeline stopped"),
            Order::PerKey(_) => {
                self.health.board().drop_partition(self.partition);
                tracing::info!("partition released");
            }
        }
        Ok(())
    }

    /// Says so, and makes sure of the consumer group (per key: takes over whatever an
    /// earlier holder of the partition left pending).
    async fn start(&mut self, shutdown: &CancellationToken, order: &Order) {
        let (input, group) = (&self.config.input, &self.config.group);
        let consumer = self.health.consumer.name().to_owned();
        match order {
            Order::Any => tracing::info!(%input, %group, consumer, "pipeline started"),
            Order::PerKey(_) => {
                tracing::info!(%input, %group, consumer, "partition taken: handling its entries in order")
            }
        }
        self.metrics.up.set(1.0);
        let schedule = &mut self.redelivery.schedule;
        self.health
            .ensure_group(schedule, shutdown, || order.holds())
            .await;
        if let Order::PerKey(_) = order {
            ordered::take_over(&mut self.health, schedule, shutdown, order).await;
        }
    }

    /// Handles a batch (read, held or claimed) and commits it; returns what became of
    /// its entries.
    async fn process(&mut self, batch: Batch) -> BatchReport {
        let (prepared, hold) = self.handle(batch, Until::All).await;
        self.reader.hold(hold);
        self.commit(prepared).await
    }

    /// Handles a batch: its traces begin, its entry leases are kept, the handler stage
    /// calls the handler on its entries, and the committer prepares its commit.
    async fn handle(&mut self, mut batch: Batch, until: Until) -> (Prepared, Hold) {
        let leases = self.begin(&mut batch);
        let handled = self
            .handlers
            .handle(&mut batch.entries, &self.halt, until)
            .await;
        let redelivery = &mut self.redelivery;
        (self.committer).prepare(batch.entries, handled, leases, redelivery, &self.halt)
    }

    /// A batch comes into the handler stage: counted, traced, its entry leases kept.
    fn begin(&mut self, batch: &mut Batch) -> KeptLeases {
        self.metrics.read.increment(batch.entries.len() as u64);
        self.traces
            .begin(&mut batch.entries, wall_time(batch.read_at));
        (self.redelivery).entry_leases(&mut self.health, &batch.entries, batch.read_at)
    }

    /// Commits a prepared batch; entries to handle again go back to the reader.
    async fn commit(&mut self, prepared: Prepared) -> BatchReport {
        let (health, redelivery) = (&mut self.health, &mut self.redelivery);
        let (report, hold) = self
            .committer
            .commit(prepared, health, redelivery, &self.halt)
            .await;
        self.reader.hold(hold);
        report
    }

    /// Reclaims other consumers' idle entries and takes back this consumer's due retries
    /// (none of the entries read ahead), and handles them.
    async fn redeliver(&mut self) -> Result<(), Fault> {
        if self.halt.paused() {
            return Ok(());
        }
        let claimed = self.redelivery.reclaim(&mut self.health).await?;
        self.process_claimed(claimed).await;
        if self.halt.paused() {
            return Ok(());
        }
        let in_hand = self.reader.in_hand();
        let claimed = (self.redelivery)
            .known_retries(&mut self.health, &in_hand)
            .await?;
        self.process_claimed(claimed).await;
        let claimed = (self.redelivery)
            .scan_retries(&mut self.health, &in_hand)
            .await?;
        self.process_claimed(claimed).await;
        Ok(())
    }

    async fn process_claimed(&mut self, entries: Vec<Entry>) {
        if !entries.is_empty() {
            self.process(Batch::now(entries)).await;
        }
    }

    /// Whether the loop has work besides new entries: a retry or reclaim scan or a
    /// backlog refresh is due, or the pipeline is to pause or drain.
    fn checks_due(&self) -> bool {
        self.redelivery.schedule.any_due(Instant::now()) || self.halt.now()
    }
}

/// The pipeline's consumer in its group, which is created if missing. A user that may not
/// use the input stream fails here, with the permission to grant.
async fn open_consumer(
    config: &PipelineConfig,
    broker: &Broker,
    name: &str,
    keys: KeyMap,
) -> Result<Consumer> {
    let input = config.input.as_str();
    let mut consumer = broker
        .consumer(input, config.group.as_str(), name)
        .with_state_keys(keys);
    if config.cross_slot && broker.is_cluster() {
        consumer = consumer.with_cross_slot(config.cross_slot_marker_ttl);
    }
    if let Err(fault) = consumer.ensure_group().await
        && fault.is_permission()
    {
        let missing = consumer
            .missing_permission(&[input.to_owned()])
            .await
            .unwrap_or_else(|| "check the ACL user's key and command permissions".into());
        bail!("redis refuses this pipeline's user on input stream {input:?}: {fault}; {missing}");
    }
    Ok(consumer)
}

/// The names a pipeline's spans carry.
fn names(config: &PipelineConfig, partition: Option<u32>) -> PipelineNames {
    PipelineNames {
        pipeline: config.name.to_string(),
        input: config.input.to_string(),
        group: config.group.to_string(),
        partition,
    }
}

/// The wall-clock time of `instant` (spans are in wall time).
fn wall_time(instant: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(instant.elapsed())
        .unwrap_or_else(SystemTime::now)
}
