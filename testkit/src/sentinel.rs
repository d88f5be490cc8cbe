//! Replication harnesses: a replica in sync, and a `redis-sentinel` watching a primary.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use sluice::redis_server::{RedisServer, free_port};

use crate::{connect, eventually};

/// A replica of `primary`, in sync.
pub async fn replica_of(primary: &RedisServer) -> RedisServer {
    let replica = RedisServer::start_with(&[
        "--replicaof".to_owned(),
        "127.0.0.1".to_owned(),
        primary.port().to_string(),
    ])
    .expect("replica starts");
    let mut con = connect(&replica).await;
    eventually("the replica syncs", Duration::from_secs(20), || {
        let mut con = con.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut con)
                .await
                .ok()?;
            info.contains("master_link_status:up").then_some(())
        }
    })
    .await;
    let _: Option<String> = redis::cmd("PING").query_async(&mut con).await.ok();
    replica
}

/// A `redis-sentinel` watching `primary` as `mymaster` (quorum 1, down after 1 s).
pub struct Sentinel {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// Starts it, and waits until it knows the replica.
    pub async fn start(primary: &RedisServer) -> Sentinel {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().expect("port");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\n",
                dir = dir.path().display(),
                primary = primary.port()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-sentinel")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel starts (apt-get install redis-sentinel)");
        let sentinel = Sentinel {
            child,
            port,
            _dir: dir,
        };
        // Ready once it knows the replica (it asks the primary's INFO every 10 s).
        eventually(
            "the sentinel sees the replica",
            Duration::from_secs(30),
            || async {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
                let mut con = client.get_multiplexed_async_connection().await.ok()?;
                let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
                    .arg(&["REPLICAS", "mymaster"])
                    .query_async(&mut con)
                    .await
                    .ok()?;
                replicas
                    .iter()
                    .any(|r| r.windows(2).any(|w| w[0] == "flags" && w[1] == "slave"))
                    .then_some(())
            },
        )
        .await;
        sentinel
    }
}

impl Sentinel {
    /// A connection to the sentinel.
    pub async fn connect(&self) -> MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("sentinel answers")
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
