//! The broker: the only user of `redis`. Consumer groups, reads, and the guarded commit.
//!
//! Each consumer has two connections ([`link::Link`]): a blocking `XREADGROUP` holds its
//! connection until data arrives, so reads get their own, while commits and bookkeeping
//! share the other. Every call has a response deadline; a call that misses it, or fails
//! in a way only a new connection cures (`READONLY`, `UNBLOCKED`, a broken socket), drops
//! its connection and the next call opens a new one. Every error is classified in one
//! place, [`fault`]; the pipeline decides from that what to do. The daemon-wide
//! [`Broker`] connection (admin API, tools) is a link of the same kind.

mod commit;
mod dead;
pub mod fault;
mod link;
mod reply;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use std::future::Future;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{Client, RedisResult, Value};

use crate::message::{CommitStatus, Entry};

pub use commit::{Ack, MAX_FIELDS_PER_OUTPUT};
pub use fault::{Backoff, Blame, Fault, Remedy};
pub use link::{BLOCK_MARGIN, CALL_DEADLINE};
pub use reply::PendingEntry;

/// The oldest server Sluice runs against: Redis 6.2 brought `XPENDING ... IDLE` (the
/// retry and reclaim scans) and `XGROUP CREATE ... MKSTREAM` with `XAUTOCLAIM`-era
/// stream semantics; Valkey forked from Redis 7.2 and has all of it.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// A handle on one Redis server, shared by every pipeline of a daemon.
#[derive(Clone)]
pub struct Broker {
    client: Client,
    commands: Arc<link::Link>,
    /// What the server said it is at connection (`redis 7.0.15`).
    server: String,
}

/// `url` with its password (if any) replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or("", |(user, _)| user);
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://***@{host}")
                }
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Parses a server version (`7.0.15`) into (major, minor).
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next().unwrap_or("0").trim().parse().ok()?;
    Some((major, minor))
}

/// Whether `server` (`redis`, `valkey`) at `version` has everything Sluice uses; the
/// reason if not.
pub fn check_server(server: &str, version: &str) -> Result<()> {
    let Some(found) = parse_version(version) else {
        bail!(
            "the server reports version {version:?}, which Sluice cannot read; it needs Redis {}.{} or later (or Valkey)",
            MIN_REDIS_VERSION.0,
            MIN_REDIS_VERSION.1
        );
    };
    // Valkey numbers its releases from 7.2 (its fork point) on; it has all Sluice uses.
    if server.eq_ignore_ascii_case("valkey") || found >= MIN_REDIS_VERSION {
        return Ok(());
    }
    bail!(
        "the server is {server} {version}, older than Redis {}.{}: Sluice needs XPENDING with IDLE (Redis 6.2); upgrade the server",
        MIN_REDIS_VERSION.0,
        MIN_REDIS_VERSION.1
    )
}

impl Broker {
    /// Connects to the server at `url` and checks that it is recent enough.
    pub async fn connect(url: &str) -> Result<Self> {
        let shown = redact_url(url);
        let client = Client::open(url).map_err(|e| {
            anyhow::anyhow!(
                "invalid Redis URL {shown:?}: {}",
                e.to_string().replace(url, &shown)
            )
        })?;
        let info = client
            .get_connection_info()
            .clone()
            .set_tcp_settings(link::tcp_settings());
        let client = Client::open(info).with_context(|| format!("invalid Redis URL {shown:?}"))?;
        let commands = Arc::new(link::Link::new(client.clone(), format!("redis at {shown}")));
        // A connection lost while opening (a killed client, a restarting server) is tried
        // again a few times (about 3 s) before start-up fails.
        let mut backoff = Backoff::redis();
        loop {
            match commands.connection().await {
                Ok(_) => break,
                Err(fault)
                    if fault.blame() == Blame::Environment
                        && !fault.is_permission()
                        && backoff.failures() < 5 =>
                {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(fault) => return Err(connect_error(&fault, &shown, &client)),
            }
        }
        let mut broker = Self {
            client,
            commands,
            server: String::new(),
        };
        let (server, version) = broker
            .hello()
            .await
            .with_context(|| format!("cannot ask Redis at {shown} what it is"))?;
        check_server(&server, &version)
            .with_context(|| format!("Redis at {shown} cannot be used"))?;
        broker.server = format!("{server} {version}");
        tracing::info!(url = %shown, server = %broker.server, "connected to redis");
        Ok(broker)
    }

    /// The server's name and version from `HELLO` (needs no ACL permission).
    async fn hello(&mut self) -> Result<(String, String)> {
        // A connection lost at start-up (a restart, a failover, a killed client) is tried
        // again a few times; an unknown command is a server older than Redis 6.0.
        let mut backoff = Backoff::redis();
        let reply: Value = loop {
            let hello = self
                .call("HELLO", |mut c| async move {
                    redis::cmd("HELLO").query_async(&mut c).await
                })
                .await;
            match hello {
                Ok(reply) => break reply,
                Err(fault) if fault.to_string().contains("unknown command") => bail!(
                    "{fault}: the server is older than Redis 6.0; Sluice needs Redis {}.{} or later (or Valkey)",
                    MIN_REDIS_VERSION.0,
                    MIN_REDIS_VERSION.1
                ),
                Err(fault) if fault.blame() == Blame::Environment && backoff.failures() < 5 => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(fault) => return Err(fault.into()),
            }
        };
        let pairs: Vec<(String, Value)> = match reply {
            Value::Array(items) => {
                let mut pairs = Vec::new();
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    pairs.push((redis::from_redis_value::<String>(k).unwrap_or_default(), v));
                }
                pairs
            }
            Value::Map(items) => items
                .into_iter()
                .map(|(k, v)| (redis::from_redis_value::<String>(k).unwrap_or_default(), v))
                .collect(),
            other => bail!("unexpected HELLO reply: {other:?}"),
        };
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| redis::from_redis_value::<String>(v.clone()).ok())
                .unwrap_or_default()
        };
        Ok((get("server"), get("version")))
    }

    /// The server and its version, as `HELLO` told at start-up (`redis 7.0.15`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A consumer named `consumer` in `group` on `stream`, with its own read and
    /// command connections (opened on first use, by the runtime that uses them: a
    /// pipeline's own thread, so its data path never hands work to another thread).
    pub fn consumer(&self, stream: &str, group: &str, consumer: &str) -> Consumer {
        let label = format!("stream {stream:?} group {group:?}");
        Consumer {
            stream: stream.to_owned(),
            group: group.to_owned(),
            name: consumer.to_owned(),
            user: self
                .client
                .get_connection_info()
                .redis_settings()
                .username()
                .unwrap_or("default")
                .to_owned(),
            reads: Arc::new(link::Link::new(self.client.clone(), label.clone())),
            commands: Arc::new(link::Link::new(self.client.clone(), label)),
        }
    }

    /// Runs `call` on the daemon-wide connection, under the usual deadline; `what` names
    /// the command in errors. For commands off the data path (admin API, tools).
    pub async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, Fault>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.commands.call(what, None, call).await
    }
}

/// A connection error at start-up, with what to do about it; never the password.
fn connect_error(fault: &Fault, shown: &str, client: &Client) -> anyhow::Error {
    let user = client
        .get_connection_info()
        .redis_settings()
        .username()
        .unwrap_or("default");
    let hint = match fault.code() {
        "WRONGPASS" => format!(
            ": the user {user:?} or its password is wrong (check the URL's user and password, or the ACL user on the server)"
        ),
        "NOPERM" => format!(": the ACL user {user:?} may not run the commands Sluice needs"),
        "IO" => {
            ": is redis-server running there, and are the URL's host and port right?".to_owned()
        }
        _ => String::new(),
    };
    anyhow::anyhow!("cannot connect to Redis at {shown}: {fault}{hint}")
}

/// One consumer of one group: reads entries and commits them.
pub struct Consumer {
    stream: String,
    group: String,
    name: String,
    /// The ACL user the connections log in as (for permission errors).
    user: String,
    reads: Arc<link::Link>,
    commands: Arc<link::Link>,
}

/// The group's state as `XINFO GROUPS` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// Entries pending in the group (delivered, not acknowledged).
    pub pending: u64,
    /// Entries in the stream not yet delivered to the group (0 when Redis cannot tell).
    pub lag: u64,
    /// The ID of the last entry delivered to the group.
    pub last_delivered: String,
}

/// Where a consumer group lost at runtime was created again, and why there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recreated {
    /// The ID the group starts after.
    pub id: String,
    /// Why that ID.
    pub why: String,
}

impl Consumer {
    /// The consumer's name inside its group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether Redis answers a `PING` on the command connection (opened if need be).
    pub async fn ping(&mut self) -> bool {
        self.commands
            .query::<String>("PING", None, &redis::cmd("PING"))
            .await
            .is_ok()
    }

    /// Drops both connections; the next calls open new ones (resolving the host again).
    pub fn reconnect(&mut self) {
        self.reads.reset();
        self.commands.reset();
    }

    /// Creates the group at the start of the stream (and the stream) unless it exists.
    pub async fn ensure_group(&mut self) -> Result<(), Fault> {
        match self.create_group("0").await? {
            true => {
                tracing::info!(stream = %self.stream, group = %self.group, "created consumer group");
                Ok(())
            }
            false => Ok(()),
        }
    }

    /// `XGROUP CREATE stream group id MKSTREAM`; false if the group exists (BUSYGROUP).
    async fn create_group(&mut self, id: &str) -> Result<bool, Fault> {
        let created = self
            .commands
            .query::<()>(
                "XGROUP CREATE",
                None,
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(id)
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(f) if f.code() == "BUSYGROUP" => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// Creates the consumer group again after it was lost (`NOGROUP`: the stream or the
    /// group was deleted, `FLUSHALL`, a restart without persistence), starting after
    /// `last_known` (the last entry ID this pipeline knows was delivered to the group) so
    /// that every entry added after the loss is delivered, and nothing before it twice.
    /// If the stream's newest ID is below `last_known`, the stream itself is new (its IDs
    /// started again) and the group starts at its beginning. Returns `None` if another
    /// consumer created the group first.
    pub async fn recreate_group(
        &mut self,
        last_known: Option<&str>,
    ) -> Result<Option<Recreated>, Fault> {
        let newest = self.newest_id().await?;
        let choice = match (last_known, newest) {
            (None, _) => Recreated {
                id: "0".into(),
                why: "no entry of the group was known to be delivered before the loss: every entry in the stream is delivered".into(),
            },
            (Some(known), Some(newest)) if StreamId::parse(&newest) < StreamId::parse(known) => Recreated {
                id: "0".into(),
                why: format!("the stream's newest entry {newest} is older than {known}, the last one delivered before the loss: the stream was created anew, so all of it is new"),
            },
            (Some(_), None) => Recreated {
                id: "0".into(),
                why: "the stream is empty or gone: every entry added to it from now on is new".into(),
            },
            (Some(known), Some(_)) => Recreated {
                id: known.to_owned(),
                why: format!("{known} is the last entry known delivered to the group before the loss: entries added after it (during and after the loss) are delivered, those before it are not delivered again"),
            },
        };
        Ok(self.create_group(&choice.id).await?.then_some(choice))
    }

    /// The stream's newest entry ID, `None` if the stream does not exist or is empty.
    async fn newest_id(&mut self) -> Result<Option<String>, Fault> {
        let reply: Value = self
            .commands
            .query(
                "XREVRANGE",
                None,
                redis::cmd("XREVRANGE")
                    .arg(&self.stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let (entries, _) =
            reply::entry_list(reply).map_err(|e| Fault::unexpected("XREVRANGE", &e))?;
        Ok(entries.into_iter().next().map(|e| e.id))
    }

    /// What the ACL user is missing, found by asking Redis to check each of `keys` with
    /// a script that does nothing (`EVAL` checks its declared keys' permissions first).
    /// `None` if every key is allowed.
    pub async fn missing_permission(&mut self, keys: &[String]) -> Option<String> {
        for key in keys {
            let probe = self
                .commands
                .query::<i64>(
                    "permission check",
                    None,
                    redis::cmd("EVAL").arg("return 1").arg(1).arg(key),
                )
                .await;
            if let Err(f) = probe
                && f.code() == "NOPERM"
            {
                let detail = f.to_string();
                if detail.contains("command") {
                    return Some(format!(
                        "the ACL user {:?} may not run a command Sluice needs ({detail}); grant it, e.g. ACL SETUSER {} +@stream +@scripting",
                        self.user, self.user
                    ));
                }
                return Some(format!(
                    "the ACL user {:?} has no permission for key {key:?}; grant it with ACL SETUSER {} ~{key}",
                    self.user, self.user
                ));
            }
        }
        None
    }

    /// Reads up to `count` of this consumer's own pending entries with IDs after `after`
    /// (`"0"` for all). Entries deleted from the stream while pending are acknowledged
    /// and dropped: there is nothing left to process.
    pub async fn read_pending(&mut self, after: &str, count: usize) -> Result<Vec<Entry>, Fault> {
        let reply = self.xreadgroup(after, count, None).await?;
        let (entries, deleted) =
            reply::stream_entries(reply).map_err(|e| Fault::unexpected("XREADGROUP", &e))?;
        if !deleted.is_empty() {
            tracing::warn!(stream = %self.stream, ids = ?deleted, "pending entries were deleted from the stream; acknowledging them");
            let _: i64 = self
                .commands
                .query(
                    "XACK",
                    None,
                    redis::cmd("XACK")
                        .arg(&self.stream)
                        .arg(&self.group)
                        .arg(&deleted),
                )
                .await?;
        }
        self.with_delivery_counts(entries).await
    }

    /// Reads up to `count` entries never delivered to this group, waiting up to `block`.
    pub async fn read_new(&mut self, count: usize, block: Duration) -> Result<Vec<Entry>, Fault> {
        let reply = self.xreadgroup(">", count, Some(block)).await?;
        Ok(reply::stream_entries(reply)
            .map_err(|e| Fault::unexpected("XREADGROUP", &e))?
            .0)
    }

    /// Runs an `XPENDING` (extended form) with `args` after the stream and group.
    async fn xpending(&mut self, args: Vec<String>) -> Result<Vec<PendingEntry>, Fault> {
        let reply: Value = self
            .commands
            .query(
                "XPENDING",
                None,
                redis::cmd("XPENDING")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&args),
            )
            .await?;
        reply::pending_entries(reply).map_err(|e| Fault::unexpected("XPENDING", &e))
    }

    /// This consumer's pending entries idle for at least `min_idle`, in ID order, scanning
    /// from `after` (exclusive; `"-"` for the start) at most `count` rows. Returns them and
    /// where the next scan should start (`"-"` once the end was reached).
    pub async fn idle_pending(
        &mut self,
        min_idle: Duration,
        after: &str,
        count: usize,
    ) -> Result<(Vec<PendingEntry>, String), Fault> {
        let name = self.name.clone();
        self.scan_idle(min_idle, after, count, Some(name)).await
    }

    /// One page of `XPENDING stream group IDLE min_idle (after + count [consumer]`, and
    /// where the next page starts (`"-"` once the end was reached).
    async fn scan_idle(
        &mut self,
        min_idle: Duration,
        after: &str,
        count: usize,
        consumer: Option<String>,
    ) -> Result<(Vec<PendingEntry>, String), Fault> {
        let mut args = vec![
            "IDLE".to_owned(),
            (min_idle.as_millis() as u64).to_string(),
            exclusive(after),
            "+".into(),
            count.to_string(),
        ];
        args.extend(consumer);
        let rows = self.xpending(args).await?;
        let next = next_cursor(&rows, count);
        Ok((rows, next))
    }

    /// Takes `due` entries (own or another consumer's) for a new delivery: their
    /// delivery count goes up by one and their idle time restarts. Entries deleted from
    /// the stream meanwhile are dropped from the pending list by Redis and not returned.
    ///
    /// Only entries still idle for `min_idle` are taken, so of two consumers claiming
    /// the same entry at once only the first gets it.
    pub async fn claim(
        &mut self,
        due: &[PendingEntry],
        min_idle: Duration,
    ) -> Result<Vec<Entry>, Fault> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.stream)
            .arg(&self.group)
            .arg(&self.name)
            .arg(min_idle.as_millis() as u64);
        for p in due {
            cmd.arg(&p.id);
        }
        let reply: Value = self.commands.query("XCLAIM", None, &cmd).await?;
        let (mut entries, _) =
            reply::entry_list(reply).map_err(|e| Fault::unexpected("XCLAIM", &e))?;
        let deliveries: std::collections::HashMap<&str, u32> =
            due.iter().map(|p| (p.id.as_str(), p.deliveries)).collect();
        for entry in &mut entries {
            entry.attempt = deliveries
                .get(entry.id.as_str())
                .map_or(1, |d| d.saturating_add(1));
        }
        Ok(entries)
    }

    /// Pending entries of *other* consumers idle for at least `min_idle`, scanning the
    /// group's pending list from `after` (exclusive; `"-"` for the start). Returns them
    /// and where the next scan should start (`"-"` once the end was reached).
    pub async fn others_idle(
        &mut self,
        min_idle: Duration,
        after: &str,
        count: usize,
    ) -> Result<(Vec<PendingEntry>, String), Fault> {
        let (rows, next) = self.scan_idle(min_idle, after, count, None).await?;
        Ok((
            rows.into_iter()
                .filter(|p| p.consumer != self.name)
                .collect(),
            next,
        ))
    }

    /// The group's pending count, lag and last delivered ID, from `XINFO GROUPS`.
    pub async fn group_info(&mut self) -> Result<GroupInfo, Fault> {
        let reply: Value = self
            .commands
            .query(
                "XINFO GROUPS",
                None,
                redis::cmd("XINFO").arg("GROUPS").arg(&self.stream),
            )
            .await?;
        reply::group_info(reply, &self.group).ok_or_else(|| {
            Fault::from_redis(
                &redis::make_extension_error(
                    "NOGROUP".into(),
                    Some(format!("XINFO GROUPS does not list group {:?}", self.group)),
                ),
                &format!("XINFO GROUPS on stream {:?}", self.stream),
            )
        })
    }

    /// A handle that reads new entries beside this consumer's commits (on the read
    /// connection, if open), so the next batch can be fetched while this one is handled.
    pub fn prefetcher(&mut self) -> Prefetcher {
        Prefetcher {
            stream: self.stream.clone(),
            group: self.group.clone(),
            name: self.name.clone(),
            reads: self.reads.clone(),
        }
    }

    /// A handle that renews this consumer's leases on entries, usable beside reads and
    /// commits (on the command connection, if open).
    pub fn lease(&mut self) -> Lease {
        Lease {
            stream: self.stream.clone(),
            group: self.group.clone(),
            name: self.name.clone(),
            commands: self.commands.clone(),
        }
    }

    /// Sets each entry's attempt from the pending list. Only for a history read at
    /// start-up, when every pending entry of this consumer in the range was just read.
    async fn with_delivery_counts(&mut self, mut entries: Vec<Entry>) -> Result<Vec<Entry>, Fault> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(entries);
        };
        let args = vec![
            first.id.clone(),
            last.id.clone(),
            entries.len().to_string(),
            self.name.clone(),
        ];
        let counts: std::collections::HashMap<String, u32> = self
            .xpending(args)
            .await?
            .into_iter()
            .map(|p| (p.id, p.deliveries))
            .collect();
        for entry in &mut entries {
            entry.attempt = counts.get(&entry.id).copied().unwrap_or(1);
        }
        Ok(entries)
    }

    async fn xreadgroup(
        &mut self,
        id: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Value, Fault> {
        let cmd = xreadgroup([&self.stream, &self.group, &self.name], id, count, block);
        let deadline = block.map(|b| b + BLOCK_MARGIN);
        self.reads.query("XREADGROUP", deadline, &cmd).await
    }

    /// Commits a batch atomically and guarded: for each entry still pending for this
    /// consumer, appends its outputs and acknowledges it; any other entry writes nothing
    /// — unless `adopt` is set and the entry is pending for no consumer at all (an
    /// operator deleted this consumer or the group), in which case its outputs are
    /// written ([`CommitStatus::Adopted`]). See `commit.lua`.
    ///
    /// An error means the outcome is unknown. Committing the same batch again is safe
    /// (without `adopt`).
    pub async fn commit(&mut self, acks: &[Ack], adopt: bool) -> Result<Vec<CommitStatus>, Fault> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let invocation = commit::invocation(&self.stream, &self.group, &self.name, acks, adopt)?;
        let statuses: Vec<i64> = self
            .commands
            .call("commit", Some(commit::deadline(acks)), |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        commit::statuses(statuses, acks.len())
    }
}

/// The start of a range scan after `after` (exclusive), `-` for the beginning.
fn exclusive(after: &str) -> String {
    if after == "-" {
        "-".to_owned()
    } else {
        format!("({after}")
    }
}

/// Where a scan that read `rows` of at most `count` goes on: after the last row, or from
/// the beginning (`-`) once a page came back short.
fn next_cursor(rows: &[PendingEntry], count: usize) -> String {
    match rows.last() {
        Some(last) if rows.len() == count => last.id.clone(),
        _ => "-".to_owned(),
    }
}

/// A parsed stream ID, ordered as Redis orders them: (milliseconds, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId(u64, u64);

impl StreamId {
    /// Parses `ms-seq` (or `ms`); anything else is the smallest ID.
    pub fn parse(id: &str) -> Self {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        Self(ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    }
}

/// Renews a consumer's claim on entries it is still working on.
pub struct Lease {
    stream: String,
    group: String,
    name: String,
    commands: Arc<link::Link>,
}

static TOUCH: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("touch.lua")));

impl Lease {
    /// Resets the idle time of those of `ids` this consumer still owns; returns how many.
    pub async fn renew(&mut self, ids: &[String]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut invocation = TOUCH.key(&self.stream);
        invocation.arg(&self.group).arg(&self.name).arg(ids);
        let renewed = self
            .commands
            .call("lease renewal", None, |mut c| async move {
                invocation.invoke_async::<usize>(&mut c).await
            })
            .await?;
        Ok(renewed)
    }
}

/// Reads new entries without waiting, beside the consumer's commits. See
/// [`Consumer::prefetcher`].
pub struct Prefetcher {
    stream: String,
    group: String,
    name: String,
    reads: Arc<link::Link>,
}

impl Prefetcher {
    /// Reads up to `count` entries never delivered to this group that are already in the
    /// stream; never blocks.
    pub async fn read_available(self, count: usize) -> Result<Vec<Entry>> {
        let cmd = xreadgroup([&self.stream, &self.group, &self.name], ">", count, None);
        let reply: Value = self.reads.query("XREADGROUP", None, &cmd).await?;
        Ok(reply::stream_entries(reply)?.0)
    }
}

/// `XREADGROUP GROUP group consumer COUNT count [BLOCK ms] STREAMS stream id`.
fn xreadgroup(
    [stream, group, consumer]: [&str; 3],
    id: &str,
    count: usize,
    block: Option<Duration>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS").arg(stream).arg(id);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("redis://sluice:secret@host:6379/0"),
            "redis://sluice:***@host:6379/0"
        );
        assert_eq!(redact_url("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn the_version_floor_is_redis_6_2() {
        assert!(check_server("redis", "7.0.15").is_ok());
        assert!(check_server("redis", "6.2.0").is_ok());
        let old = check_server("redis", "6.0.16").expect_err("6.0 is refused");
        assert!(format!("{old}").contains("6.2"), "{old}");
        assert!(check_server("redis", "5.0.7").is_err());
        assert!(check_server("valkey", "8.1.1").is_ok());
        assert!(check_server("redis", "").is_err());
    }

    #[test]
    fn stream_ids_order_numerically() {
        assert!(StreamId::parse("10-0") > StreamId::parse("9-5"));
        assert!(StreamId::parse("5-10") > StreamId::parse("5-9"));
        assert_eq!(StreamId::parse("7"), StreamId::parse("7-0"));
    }
}
