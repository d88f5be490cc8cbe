//! The daemon's consumer name, held: one consumer name, one daemon.
//!
//! Two daemons under one consumer name would each take the other's pending entries for
//! their own and commit them again (the guarded commit checks that an entry is pending
//! for *the name*). So a daemon holds its name in every group it consumes with a lease
//! (`broker::lease`: `<stream>:consumer:<group>:<name>`, holding this daemon's identity
//! and a fencing token), renewed every [`NAME_LEASE`] / 3; every commit and entry-lease
//! renewal it makes checks the lease (`commit.lua`, `touch.lua`), so a daemon that lost
//! its name (stopped past the lease, cut off) can never write in it again.
//!
//! A name held by a live daemon is refused when configured, or passed over for the next
//! free one (`sluice-<host>-2`, ...) when it is the default. A holder on this host whose
//! process is gone (a `kill -9`) is taken over at once: its identity names its host, pid
//! and process start time, which this host can check.

use std::collections::BTreeMap;

mod groups;
mod holder;

use holder::Holder;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use anyhow::{Result, bail};
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Fence, LeaseKeys};
use crate::config::{Ordering, PipelineConfig};

/// How long a consumer name's lease lasts without renewal: a daemon stopped longer than
/// this loses its name to the next that asks for it.
pub(crate) const NAME_LEASE: Duration = Duration::from_secs(10);

/// How often idle consumers are looked for.
const SWEEP: Duration = Duration::from_secs(30);

/// Default names tried, `sluice-<host>` then `-2` up to this.
const DEFAULT_NAMES: u32 = 16;

/// Why a name could not be held.
enum Refusal {
    /// A live daemon holds it in this stream's group.
    Held {
        stream: String,
        group: String,
        holder: String,
    },
    /// Redis failed.
    Failed(anyhow::Error),
}

/// The consumer name this daemon holds, and its leases, one per (stream, group).
pub(crate) struct Names {
    broker: Broker,
    me: Holder,
    held: Mutex<BTreeMap<(String, String), Fence>>,
}

impl Names {
    /// Holds a name in every group of `pipelines`: `configured` or, without one, the
    /// first free default name. A configured name held by a live daemon is an error that
    /// says who holds it and what to do.
    pub(crate) async fn hold(
        broker: &Broker,
        configured: Option<&str>,
        pipelines: &[PipelineConfig],
    ) -> Result<Arc<Self>> {
        let streams = streams_of(pipelines);
        let base = default_name();
        let candidates: Vec<String> = match configured {
            Some(name) => vec![name.to_owned()],
            None => std::iter::once(base.clone())
                .chain((2..=DEFAULT_NAMES).map(|n| format!("{base}-{n}")))
                .collect(),
        };
        let mut passed = Vec::new();
        for name in candidates {
            let names = Arc::new(Self::new(broker, &name));
            match names.add(&streams).await {
                Ok(()) => {
                    if !passed.is_empty() {
                        tracing::info!(consumer = %name, "the consumer name {base} is held by another live daemon ({}): this daemon is {name}", passed.join("; "));
                    }
                    return Ok(names);
                }
                Err(Refusal::Held {
                    holder,
                    stream,
                    group,
                }) if configured.is_none() => {
                    names.release().await;
                    passed.push(format!("{holder} in group {group:?} of {stream:?}"));
                }
                Err(Refusal::Held {
                    stream,
                    group,
                    holder,
                }) => {
                    names.release().await;
                    bail!(
                        "consumer name {name:?} is held in group {group:?} of stream {stream:?} by another daemon ({holder}): two daemons under one name would handle entries twice. Give this daemon a name of its own ([redis] consumer or --consumer; the pod's name under Kubernetes), or stop the other; a daemon that stopped without a word loses the name {} s after its last renewal",
                        NAME_LEASE.as_secs()
                    );
                }
                Err(Refusal::Failed(e)) => return Err(e),
            }
        }
        bail!(
            "every default consumer name from {base} to {base}-{DEFAULT_NAMES} is held by a live daemon ({}): set [redis] consumer",
            passed.join("; ")
        )
    }

    fn new(broker: &Broker, name: &str) -> Self {
        let me = Holder::this(name);
        me.register();
        Self {
            broker: broker.clone(),
            me,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    /// The consumer name.
    pub(crate) fn name(&self) -> &str {
        &self.me.name
    }

    /// This daemon's identity in leases (partition leases use it too).
    pub(crate) fn identity(&self) -> String {
        self.me.identity()
    }

    /// The fence this daemon's commits in `stream`'s `group` pass.
    pub(crate) fn fence(&self, stream: &str, group: &str) -> Option<Fence> {
        self.lock()
            .get(&(stream.to_owned(), group.to_owned()))
            .cloned()
    }

    /// Holds the name in the groups of more pipelines (a reload); an error says who
    /// holds it where.
    pub(crate) async fn add_pipelines(&self, pipelines: &[PipelineConfig]) -> Result<()> {
        match self.add(&streams_of(pipelines)).await {
            Ok(()) => Ok(()),
            Err(Refusal::Held {
                stream,
                group,
                holder,
            }) => bail!(
                "consumer name {:?} is held in group {group:?} of stream {stream:?} by another daemon ({holder})",
                self.me.name
            ),
            Err(Refusal::Failed(e)) => Err(e),
        }
    }

    async fn add(&self, streams: &[(String, String)]) -> Result<(), Refusal> {
        for (stream, group) in streams {
            if self.fence(stream, group).is_some() {
                continue;
            }
            let fence = self.acquire(stream, group).await?;
            self.lock().insert((stream.clone(), group.clone()), fence);
        }
        Ok(())
    }

    /// Takes the name's lease on `stream`'s `group`, and renews it once: a user that may
    /// take it but not renew it (no `+pexpire`) is refused now, not 10 s later.
    async fn acquire(&self, stream: &str, group: &str) -> Result<Fence, Refusal> {
        let keys = LeaseKeys::consumer(stream, group, &self.me.name);
        let fence = self.take(stream, group, &keys).await?;
        self.broker
            .keep_lease(&keys, &fence, NAME_LEASE)
            .await
            .map_err(|f| refused(f, stream, &keys))?;
        Ok(fence)
    }

    async fn take(&self, stream: &str, group: &str, keys: &LeaseKeys) -> Result<Fence, Refusal> {
        let keys = keys.clone();
        let me = self.identity();
        let failed = |f: crate::broker::Fault| refused(f, stream, &keys);
        if let Some(fence) = self
            .broker
            .acquire_lease(&keys, &me, NAME_LEASE)
            .await
            .map_err(failed)?
        {
            return Ok(fence);
        }
        let value = self.broker.lease_holder(&keys).await.map_err(failed)?;
        let holder = value.as_deref().and_then(Holder::parse);
        if let (Some(value), Some(holder)) = (&value, &holder)
            && holder.is_gone(&self.me)
            && let Some(fence) = self
                .broker
                .take_over_lease(&keys, value, &me, NAME_LEASE)
                .await
                .map_err(failed)?
        {
            tracing::info!(consumer = %self.me.name, stream, group, "took the consumer name over from a daemon of this host that is gone ({})", holder.describe());
            return Ok(fence);
        }
        Err(Refusal::Held {
            stream: stream.to_owned(),
            group: group.to_owned(),
            holder: holder.map_or_else(
                || value.unwrap_or_else(|| "a name lease that lapsed meanwhile".into()),
                |h| h.describe(),
            ),
        })
    }

    /// Renews every lease; `Err` with what was lost when one is no longer this daemon's.
    /// A Redis that cannot be reached is not a loss (the fence guards the commits).
    pub(crate) async fn renew(&self) -> Result<(), String> {
        let held: Vec<((String, String), Fence)> = self
            .lock()
            .iter()
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        for ((stream, group), fence) in held {
            let keys = LeaseKeys::consumer(&stream, &group, &self.me.name);
            match self.broker.keep_lease(&keys, &fence, NAME_LEASE).await {
                Ok(true) => {}
                Ok(false) => {
                    let now = match self.broker.lease_holder(&keys).await {
                        Ok(Some(value)) => Holder::parse(&value).map_or(value, |h| h.describe()),
                        _ => "nobody now".to_owned(),
                    };
                    return Err(format!(
                        "this daemon lost its consumer name {:?} in group {group:?} of stream {stream:?}: its lease lapsed (the process was stopped or cut off from Redis for over {} s) or was deleted, and another daemon took the name (held by {now}); it can no longer commit, and stops; its entries are taken over",
                        self.me.name,
                        NAME_LEASE.as_secs()
                    ));
                }
                Err(fault) => {
                    tracing::warn!(stream, group, error = %fault, "cannot renew the consumer name's lease; commits stop being accepted if it lapses");
                }
            }
        }
        Ok(())
    }

    /// Gives every lease back (a clean stop): a daemon started next under this name
    /// takes it at once.
    pub(crate) async fn release(&self) {
        let held = std::mem::take(&mut *self.lock());
        for fence in held.into_values() {
            let _ = self.broker.release_lease(&fence).await;
        }
    }

    /// Renews the leases every [`NAME_LEASE`] / 3 until `stop` (on a loss, says why
    /// through `lost` and returns), and sweeps idle consumers every [`SWEEP`] when
    /// `idle_limit` is not zero.
    pub(crate) async fn keep(
        names: Weak<Self>,
        stop: CancellationToken,
        idle_limit: Duration,
        lost: impl FnOnce(String),
    ) {
        let mut every = tokio::time::interval(NAME_LEASE / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut swept: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let Some(names) = names.upgrade() else { return };
            if let Err(why) = names.renew().await {
                lost(why);
                return;
            }
            if !idle_limit.is_zero() && swept.is_none_or(|at| at.elapsed() >= SWEEP) {
                swept = Some(tokio::time::Instant::now());
                names.sweep(idle_limit).await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Fence>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        self.me.unregister();
    }
}

/// A Redis failure while taking a name's lease; a permission one says what to grant.
fn refused(fault: crate::broker::Fault, stream: &str, keys: &LeaseKeys) -> Refusal {
    let permission = fault.is_permission();
    let e = anyhow::Error::new(fault);
    Refusal::Failed(match permission {
        true => e.context(format!(
            "the ACL user may not use the consumer name's lease keys {:?} and {:?}, or a command their scripts run: grant them (e.g. ACL SETUSER <user> ~{stream}:consumer* +get +set +incr +pexpire +del; see docs/src/concepts/delivery.md, one consumer name, one daemon)",
            keys.lease, keys.token
        )),
        false => e,
    })
}

/// Every (stream, group) `pipelines` consume: the input, or each partition's.
fn streams_of(pipelines: &[PipelineConfig]) -> Vec<(String, String)> {
    let mut streams = Vec::new();
    for p in pipelines {
        match p.partitions {
            None => streams.push((p.input.to_string(), p.group.to_string())),
            Some(n) => {
                for i in 0..n {
                    let part = p.partition(i);
                    streams.push((part.input.to_string(), part.group.to_string()));
                }
            }
        }
    }
    streams
}

/// Whether the pipeline's commits are fenced by the consumer name's lease (per-key
/// partitions commit under their partition's lease instead).
pub(crate) fn fenced_by_name(config: &PipelineConfig) -> bool {
    !(config.partitions.is_some() && config.ordering == Ordering::PerKey)
}

/// `sluice-<hostname>`: stable across restarts of the same daemon on the same host, so
/// that it finds its own pending entries again.
fn default_name() -> String {
    format!("sluice-{}", crate::supervisor::hostname())
}
