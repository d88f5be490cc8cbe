//! A local Redis Cluster of child servers, for tests and benchmarks: made the way an
//! operator makes one, resharded and failed over the way an operator does.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use sluice::redis_server::{RedisServer, free_port};

/// A local Redis Cluster of child servers, made the way an operator makes one:
/// `redis-server --cluster-enabled yes` nodes joined by `redis-cli --cluster create`.
/// For tests and benchmarks; killed when dropped.
pub struct RedisCluster {
    /// Every node, primaries first as `redis-cli` assigned them at creation.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries` primaries, each with `replicas` replicas, and waits until the
    /// cluster serves every slot.
    pub fn start(primaries: usize, replicas: usize) -> Result<Self> {
        let mut nodes = Vec::new();
        let mut buses = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let bus = free_port()?;
            buses.push(bus.to_string());
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                "nodes.conf".to_owned(),
                "--cluster-node-timeout".to_owned(),
                "2000".to_owned(),
                "--cluster-port".to_owned(),
                bus.to_string(),
                // A replica's first sync starts at once (the default waits 5 s for more
                // replicas to share a diskless transfer).
                "--repl-diskless-sync-delay".to_owned(),
                "0".to_owned(),
            ])?);
        }
        if primaries < 3 {
            // `redis-cli --cluster create` wants at least 3 primaries; smaller clusters
            // (benchmarks) are joined by hand.
            if replicas > 0 {
                bail!("a cluster of fewer than 3 primaries is made without replicas here");
            }
            let cluster = Self { nodes };
            cluster.join_by_hand(&buses)?;
            cluster.wait_ok(Duration::from_secs(30))?;
            return Ok(cluster);
        }
        create(&nodes, replicas)?;
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(30))?;
        cluster.wait_synced(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Splits the slots evenly between the nodes (all primaries), then has each meet the
    /// others on their bus ports.
    fn join_by_hand(&self, buses: &[String]) -> Result<()> {
        let primaries = self.nodes.len();
        let per = SLOTS_TOTAL / primaries as u32;
        for i in 0..primaries {
            let low = (i as u32 * per).to_string();
            let high = if i + 1 == primaries {
                SLOTS_TOTAL - 1
            } else {
                (i as u32 + 1) * per - 1
            }
            .to_string();
            self.cmd::<()>(i, &["CLUSTER", "ADDSLOTSRANGE", &low, &high])?;
            for (j, (node, bus)) in self.nodes.iter().zip(buses).enumerate() {
                if j != i {
                    // The bus port too: without it, MEET assumes port + 10000.
                    let port = node.port().to_string();
                    self.cmd::<()>(i, &["CLUSTER", "MEET", "127.0.0.1", &port, bus])?;
                }
            }
        }
        Ok(())
    }

    /// Waits until every running replica has its primary's data: its link is up and its
    /// replication offset has reached the primary's. A replica that never synced refuses
    /// to be promoted ("Disconnected from master for longer than allowed",
    /// `cluster-replica-validity-factor`), so a failover test must wait for this first.
    pub fn wait_synced(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            for (i, node) in self.nodes.iter().enumerate() {
                if node.pid().is_some() && self.is_behind(i)? {
                    behind.push(node.port());
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "replicas {behind:?} did not catch up with their primaries within {timeout:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether node `i` is a replica whose link is down or whose offset is short of its
    /// running primary's.
    fn is_behind(&self, i: usize) -> Result<bool> {
        let info: String = self.cmd(i, &["INFO", "replication"])?;
        if info_field(&info, "role:").as_deref() != Some("slave") {
            return Ok(false);
        }
        let primary_port = info_field(&info, "master_port:").unwrap_or_default();
        let Some(p) = self
            .nodes
            .iter()
            .position(|n| n.port().to_string() == primary_port && n.pid().is_some())
        else {
            return Ok(false);
        };
        // The primary's offset first: the replica must reach at least that.
        let primary: String = self.cmd(p, &["INFO", "replication"])?;
        let target: i64 = info_field(&primary, "master_repl_offset:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let info: String = self.cmd(i, &["INFO", "replication"])?;
        let up = info_field(&info, "master_link_status:").as_deref() == Some("up");
        let offset: i64 = info_field(&info, "slave_repl_offset:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        Ok(!up || offset < target)
    }

    /// A connection to the whole cluster, for producing and inspecting.
    pub async fn connect(&self) -> redis::cluster_async::ClusterConnection {
        redis::cluster::ClusterClient::new(self.urls())
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("connect to the cluster")
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Runs `args` on node `i` and returns the reply.
    pub fn cmd<T: redis::FromRedisValue>(&self, i: usize, args: &[&str]) -> Result<T> {
        let client = redis::Client::open(self.nodes[i].url())?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(5))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        Ok(cmd.query(&mut con)?)
    }

    /// Waits until every running node says `cluster_state:ok` and knows every slot's
    /// primary.
    pub fn wait_ok(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.nodes.iter().enumerate().all(|(i, node)| {
                node.pid().is_none()
                    || self
                        .cmd::<String>(i, &["CLUSTER", "INFO"])
                        .is_ok_and(|info| {
                            info.contains("cluster_state:ok")
                                && info.contains("cluster_slots_ok:16384")
                        })
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster did not reach cluster_state:ok within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the node that is primary for `slot` now (asked of a running node).
    pub fn primary_of(&self, slot: u16) -> Result<usize> {
        let asker = self
            .nodes
            .iter()
            .position(|n| n.pid().is_some())
            .context("no node is running")?;
        let slots: redis::Value = self.cmd(asker, &["CLUSTER", "SLOTS"])?;
        let redis::Value::Array(ranges) = slots else {
            bail!("unexpected CLUSTER SLOTS reply");
        };
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (Some(low), Some(high), Some(primary)) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            let low: i64 = redis::from_redis_value(low.clone())?;
            let high: i64 = redis::from_redis_value(high.clone())?;
            if (low..=high).contains(&i64::from(slot)) {
                let redis::Value::Array(addr) = primary else {
                    bail!("unexpected CLUSTER SLOTS node");
                };
                let port: i64 = redis::from_redis_value(addr[1].clone())?;
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port()) == port)
                    .context("CLUSTER SLOTS names a node this cluster did not start");
            }
        }
        bail!("no primary serves slot {slot}")
    }

    /// Moves `slot` with its keys to primary `to` the way `redis-cli --cluster reshard`
    /// does: `CLUSTER SETSLOT ... IMPORTING/MIGRATING`, `MIGRATE` key by key, then
    /// `CLUSTER SETSLOT ... NODE` on every primary. Clients see `ASK` redirections while
    /// it runs and `MOVED` after.
    pub fn move_slot(&self, slot: u16, to: usize) -> Result<()> {
        let from = self.primary_of(slot)?;
        if from == to {
            return Ok(());
        }
        let id = |i: usize| -> Result<String> { self.cmd(i, &["CLUSTER", "MYID"]) };
        let (from_id, to_id) = (id(from)?, id(to)?);
        let s = slot.to_string();
        self.cmd::<()>(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])?;
        self.cmd::<()>(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])?;
        let port = self.nodes[to].port().to_string();
        loop {
            let keys: Vec<String> = self.cmd(from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"])?;
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "10000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            self.cmd::<()>(from, &args)?;
        }
        // Every primary hears it (replicas refuse it, harmlessly).
        for (i, node) in self.nodes.iter().enumerate() {
            if node.pid().is_some() {
                let _ = self.cmd::<()>(i, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
            }
        }
        self.wait_agreed(Duration::from_secs(30))
    }

    /// Waits until every running node sees the same owner and config epoch for every
    /// primary. After `SETSLOT ... NODE` the new owner bumps its config epoch; until its
    /// own replicas hear of it, an election they start is refused by the other primaries
    /// ("slot ... epoch ... > reqEpoch"), so a failover right after a reshard would stall
    /// where `redis-cli --cluster check` would have reported the disagreement.
    pub fn wait_agreed(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut views = Vec::new();
            for (i, node) in self.nodes.iter().enumerate() {
                if node.pid().is_none() {
                    continue;
                }
                let nodes: String = self.cmd(i, &["CLUSTER", "NODES"])?;
                let mut view: Vec<String> = nodes
                    .lines()
                    .filter_map(|line| {
                        let f: Vec<&str> = line.split(' ').collect();
                        // <id> <addr> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
                        (f.len() >= 8 && f[2].contains("master") && !f[2].contains("fail"))
                            .then(|| format!("{} {} {}", f[0], f[6], f[8..].join(" ")))
                    })
                    .collect();
                view.sort();
                views.push(view);
            }
            if views.windows(2).all(|w| w[0] == w[1]) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster's nodes did not agree on slots and epochs within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Hash slots of a Redis Cluster.
const SLOTS_TOTAL: u32 = 16_384;

/// The `redis-cli` binary (`SLUICE_REDIS_CLI`, else `redis-cli`).
fn cli_binary() -> String {
    std::env::var("SLUICE_REDIS_CLI")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "redis-cli".to_owned())
}

/// Joins `nodes` into a cluster with `redis-cli --cluster create`.
fn create(nodes: &[RedisServer], replicas: usize) -> Result<()> {
    let mut create = Command::new(cli_binary());
    create.args(["--cluster", "create"]);
    for node in nodes {
        create.arg(format!("127.0.0.1:{}", node.port()));
    }
    create
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .stdin(Stdio::null());
    let out = create
        .output()
        .context("cannot run redis-cli --cluster create (is redis-cli installed? Debian: apt-get install redis-tools)")?;
    if !out.status.success() {
        bail!(
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The value of `name` (`role:`) in an `INFO` reply.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
}
