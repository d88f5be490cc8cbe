//! Running a partitioned pipeline on a daemon: with `ordering = "none"`, a consumer on
//! every partition; with `"per-key"`, the partitions whose lease this daemon holds, an
//! even share of them, taken over from daemons that die.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::{Broker, Fence, LeaseKeys};
use crate::config::PipelineConfig;
use crate::pipeline::{Order, PartitionLeaseClock, Pipeline};
use crate::status::Board;
use crate::telemetry::traces::Tracing;
use crate::wasm::PluginCell;

/// What a pipeline's thread needs to start partitions.
#[derive(Clone)]
pub(super) struct Partitions {
    pub config: PipelineConfig,
    pub cell: PluginCell,
    /// The candidate attached to the pipeline, if any.
    pub shadow: crate::shadow::ShadowCell,
    pub broker: Broker,
    pub consumer: String,
    /// The consumer name's leases: the fence of each stream's commits.
    pub names: Arc<super::names::Names>,
    pub board: Arc<Board>,
    pub tracing: Tracing,
}

impl Partitions {
    /// Opens partition `p` of the pipeline (`None`: the unpartitioned pipeline).
    pub async fn open(&self, p: Option<u32>) -> Result<Pipeline> {
        let mut pipeline = Pipeline::new(
            self.config.clone(),
            p,
            self.cell.clone(),
            &self.broker,
            &self.consumer,
            self.board.clone(),
            &self.tracing,
        )
        .await?;
        pipeline.shadowed_by(self.shadow.clone());
        // Commits under the consumer name's lease (a per-key partition's commits are
        // under its partition's lease instead: see `take`).
        if super::names::fenced_by_name(&self.config) {
            let part = match p {
                Some(p) => self.config.partition(p),
                None => self.config.clone(),
            };
            let fence = self
                .names
                .fence(part.input.as_str(), part.group.as_str())
                .with_context(|| {
                    format!(
                        "this daemon does not hold its consumer name in group {:?} of {:?}",
                        part.group.as_str(),
                        part.input.as_str()
                    )
                })?;
            pipeline.set_fence(fence);
        }
        Ok(pipeline)
    }

    /// `ordering = "none"`: opens every partition (a failure fails the start), then runs
    /// them all until `stop`.
    pub async fn open_all(&self) -> Result<Vec<Pipeline>> {
        let mut pipelines = Vec::new();
        for p in 0..self.config.partitions.unwrap_or(1) {
            pipelines.push(self.open(Some(p)).await?);
        }
        Ok(pipelines)
    }

    /// `ordering = "per-key"`, before the start counts as done: the user may use the
    /// partitions' streams (checked on the first), and their groups exist.
    pub async fn open_all_checked(&self) -> Result<()> {
        self.open(Some(0)).await.map(drop)?;
        // Every partition's keys, not only the first's: a partition the ACL user may not
        // use would otherwise just never be handled.
        let n = self.config.partitions.unwrap_or(1);
        let mut keys = Vec::new();
        for p in 0..n {
            let part = self.config.partition(p);
            let lease = LeaseKeys::new(part.input.as_str(), part.group.as_str());
            keys.push(part.input.to_string());
            keys.extend(part.outputs.iter().map(|o| o.to_string()));
            keys.push(part.dead_letter_stream());
            keys.push(lease.lease);
            keys.push(lease.token);
        }
        let mut probe = self.broker.consumer(
            &crate::partition::tagged(self.config.input.as_str(), 0),
            self.config.group.as_str(),
            &self.consumer,
        );
        if let Some(missing) = probe.missing_permission(&keys).await {
            anyhow::bail!("redis refuses this pipeline's user on a partition's keys: {missing}");
        }
        Ok(())
    }

    /// `ordering = "per-key"`: holds an even share of the partitions' leases and runs
    /// those partitions, until `stop`; then drains them and gives their leases back.
    pub async fn run_leased(self, stop: CancellationToken) {
        let ttl = self.config.lease_ttl;
        let every = ttl / 3;
        let members = format!(
            "{}:daemons:{}",
            self.config.input.as_str(),
            self.config.group.as_str()
        );
        let mut leases = PartitionLeases::default();
        // How many daemons share the partitions, as last announced: an announcement that
        // fails (the node holding the members key is down, out of memory, or denies it)
        // leaves the count as it was, so leases of dead daemons are still taken over.
        let mut live = 1;
        loop {
            let round = Instant::now();
            match self.broker.announce(&members, &self.consumer, ttl).await {
                Ok(count) => live = count.max(1),
                Err(fault) => {
                    tracing::warn!(error = %fault, daemons = live, members = %members, "cannot announce this daemon for the partition leases; counting the daemons as last seen");
                }
            };
            self.renew(&mut leases, ttl).await;
            if stop.is_cancelled() {
                break;
            }
            self.rebalance(&mut leases, live, round, &stop).await;
            self.release_finished(&mut leases.releasing).await;
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(every.saturating_sub(round.elapsed())) => {}
            }
        }
        // Drain: every partition finishes its work in flight, then its lease goes back.
        let PartitionLeases {
            held,
            mut releasing,
        } = leases;
        for (p, leased) in held {
            leased.stop.cancel();
            releasing.push((leased, p));
        }
        for (leased, _) in &mut releasing {
            let _ = (&mut leased.task).await;
        }
        self.release_finished(&mut releasing).await;
        let _ = self
            .broker
            .announce(&members, &self.consumer, Duration::ZERO)
            .await;
    }

    /// Renews the partition leases held; a lease lost stops its partition at once.
    async fn renew(&self, leases: &mut PartitionLeases, ttl: Duration) {
        for (p, leased) in std::mem::take(&mut leases.held) {
            let sent = Instant::now();
            match self.broker.renew_lease(&leased.fence, ttl).await {
                Ok(true) => {
                    leased.clock.extend(valid_until(sent, ttl));
                    leases.keep(p, leased);
                }
                Ok(false) => {
                    tracing::warn!(
                        partition = p,
                        "the partition's lease was lost (it lapsed, and another daemon took it); stopping the partition"
                    );
                    leased.clock.expire();
                    leased.stop.cancel();
                    leased.task.abort();
                    self.board.drop_partition(Some(p));
                }
                Err(fault) => {
                    tracing::warn!(partition = p, error = %fault, "cannot renew the partition's lease; the partition stops when it runs out");
                    leases.keep(p, leased);
                }
            }
        }
    }

    /// Holds this daemon's share of the partitions among `live` daemons: drains some
    /// and gives them back when over it (another daemon joined), takes free ones when
    /// under it — stopping in time to renew those held (the next round goes on).
    async fn rebalance(
        &self,
        leases: &mut PartitionLeases,
        live: u32,
        round: Instant,
        stop: &CancellationToken,
    ) {
        let (ttl, n) = (self.config.lease_ttl, self.config.partitions.unwrap_or(1));
        let share = n.div_ceil(live) as usize;
        while leases.held.len() > share {
            let Some((p, leased)) = leases.held.pop_last() else {
                break;
            };
            tracing::info!(
                partition = p,
                daemons = live,
                share,
                "handing the partition over to another daemon"
            );
            leased.stop.cancel();
            leases.releasing.push((leased, p));
        }
        // Where this daemon starts looking for free partitions: spread over daemons.
        let offset = crate::partition::of(self.consumer.as_bytes(), n);
        for i in 0..n {
            // Taking many leases takes a while: stop in time to renew those held.
            if leases.held.len() >= share || stop.is_cancelled() || round.elapsed() >= ttl / 3 {
                break;
            }
            let p = (offset + i) % n;
            if leases.held.contains_key(&p) || leases.releasing.iter().any(|(_, q)| *q == p) {
                continue;
            }
            if let Some(leased) = self.take(p, ttl, stop).await {
                leases.held.insert(p, leased);
            }
        }
    }

    /// Takes partition `p`'s lease if it is free, and starts the partition.
    async fn take(&self, p: u32, ttl: Duration, stop: &CancellationToken) -> Option<HeldPartition> {
        let stream = crate::partition::tagged(self.config.input.as_str(), p);
        let keys = LeaseKeys::new(&stream, self.config.group.as_str());
        let sent = Instant::now();
        // The daemon's identity, not its name: two daemons can never both believe they
        // hold a partition.
        let me = self.names.identity();
        let fence = match self.broker.acquire_lease(&keys, &me, ttl).await {
            Ok(Some(fence)) => fence,
            Ok(None) => return None,
            Err(fault) if fault.is_permission() => {
                tracing::error!(partition = p, key = %keys.lease, error = %fault, "the ACL user may not use the partition's lease key: the partition is not handled until it may; grant it (see docs/src/concepts/partitions.md, Keys and permissions)");
                return None;
            }
            Err(fault) => {
                tracing::warn!(partition = p, error = %fault, "cannot take the partition's lease");
                return None;
            }
        };
        let mut pipeline = match self.open(Some(p)).await {
            Ok(pipeline) => pipeline,
            Err(e) => {
                tracing::error!(
                    partition = p,
                    error = format!("{e:#}"),
                    "cannot start the partition"
                );
                let _ = self.broker.release_lease(&fence).await;
                return None;
            }
        };
        pipeline.set_fence(fence.clone());
        let clock = Arc::new(PartitionLeaseClock::new(valid_until(sent, ttl)));
        let partition_stop = stop.child_token();
        let span = tracing::info_span!("partition", partition = p);
        let task = tokio::spawn(
            {
                let clock = clock.clone();
                let stop = partition_stop.clone();
                async move {
                    if let Err(e) = pipeline.run(stop, Order::per_key(clock)).await {
                        tracing::error!(error = format!("{e:#}"), "partition failed");
                    }
                }
            }
            .instrument(span),
        );
        tracing::info!(partition = p, lease = %fence.value, "took the partition's lease");
        Some(HeldPartition {
            fence,
            clock,
            stop: partition_stop,
            task,
        })
    }

    /// Gives back the leases of stopped partitions whose work in flight has committed.
    async fn release_finished(&self, releasing: &mut Vec<(HeldPartition, u32)>) {
        let mut still = Vec::new();
        for (leased, p) in releasing.drain(..) {
            if !leased.task.is_finished() {
                still.push((leased, p));
                continue;
            }
            self.board.drop_partition(Some(p));
            if let Err(fault) = self.broker.release_lease(&leased.fence).await {
                tracing::warn!(partition = p, error = %fault, "cannot give the partition's lease back; it lapses by itself");
            }
        }
        *releasing = still;
    }
}

/// The partition leases of a per-key pipeline on this daemon.
#[derive(Default)]
struct PartitionLeases {
    held: BTreeMap<u32, HeldPartition>,
    /// Partitions stopped (lost, or over this daemon's share) whose lease is given back
    /// once their work in flight has committed.
    releasing: Vec<(HeldPartition, u32)>,
}

impl PartitionLeases {
    /// Keeps partition `p`, renewed, held; or releasing, if its partition ended.
    fn keep(&mut self, p: u32, leased: HeldPartition) {
        if leased.task.is_finished() {
            self.releasing.push((leased, p));
        } else {
            self.held.insert(p, leased);
        }
    }
}

/// A partition this daemon holds.
struct HeldPartition {
    fence: Fence,
    clock: Arc<PartitionLeaseClock>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Until when a lease renewed (or taken) at `sent` for `ttl` is surely still this
/// daemon's: Redis started its `ttl` after `sent`; a tenth is kept back for clocks that
/// run at slightly different rates.
fn valid_until(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - ttl / 10
}
