//! Redis Cluster: a real local cluster made with `redis-cli --cluster create`, the
//! daemon's cluster connection through a reshard and a primary failover, the hash-slot
//! check, partitioned pipelines and per-key order across daemon processes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::cluster_async::ClusterConnection;
use sluice::broker::slot::key_slot;
use sluice_testkit::*;

/// A config for `cluster` (one seed node in `url`, the rest in `nodes`) and `pipelines`.
fn in_cluster(cluster: &RedisCluster) -> ConfigBuilder {
    let urls = cluster.urls();
    ConfigBuilder::new()
        .redis("cluster", true)
        .redis_url(urls[0].clone())
        .redis("nodes", urls[1..].to_vec())
}

/// Every entry of `stream`: (id, fields).
async fn entries(
    con: &mut ClusterConnection,
    stream: &str,
) -> Vec<(String, HashMap<String, String>)> {
    let reply: redis::streams::StreamRangeReply = con.xrange_all(stream).await.expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|e| {
            let fields = e
                .map
                .iter()
                .map(|(k, v)| {
                    let v: String = redis::from_redis_value(v.clone()).unwrap_or_default();
                    (k.clone(), v)
                })
                .collect();
            (e.id, fields)
        })
        .collect()
}

/// Entries pending in `group` of `stream` (0 if there is no such group yet).
async fn pending(con: &mut ClusterConnection, stream: &str, group: &str) -> usize {
    let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(con)
        .await;
    match reply {
        Ok(redis::Value::Array(items)) => items
            .first()
            .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
            .unwrap_or(0) as usize,
        _ => 0,
    }
}

/// `XCLAIM` of entry `id` of `stream` (group `G`) for consumer `to`, at any idle time:
/// what another daemon's reclaim does.
async fn claim(con: &mut ClusterConnection, stream: &str, to: &str, id: &str) {
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(stream)
        .arg("G")
        .arg(to)
        .arg(0)
        .arg(id)
        .query_async(con)
        .await
        .expect("XCLAIM");
}

/// Where a partitioned run stands: orders in `ORDERS:{p}`, payments in `PAYMENTS:{p}`.
#[derive(Debug)]
struct Run {
    orders: usize,
    payments: usize,
    duplicates: usize,
    missing: usize,
    pending: usize,
    /// Users whose payments are not in the order of their orders.
    out_of_order: Vec<String>,
    /// Payments written to another partition than their order's.
    misplaced: usize,
}

impl Run {
    async fn take(con: &mut ClusterConnection, streams: &[(String, String)], group: &str) -> Run {
        let mut orders = Vec::new();
        let mut paid: Vec<(String, String)> = Vec::new();
        let mut pending_total = 0;
        let mut misplaced = 0;
        for (input, output) in streams {
            let inputs = entries(con, input).await;
            let outputs = entries(con, output).await;
            let here: std::collections::HashSet<&str> = inputs
                .iter()
                .filter_map(|(_, f)| f.get("orderId").map(String::as_str))
                .collect();
            for (_, f) in &outputs {
                let order = f.get("orderId").cloned().unwrap_or_default();
                if !here.contains(order.as_str()) {
                    misplaced += 1;
                }
                paid.push((order, f.get("userId").cloned().unwrap_or_default()));
            }
            orders.extend(inputs.into_iter().map(|(_, f)| f));
            pending_total += pending(con, input, group).await;
        }
        let mut seen = std::collections::HashSet::new();
        let duplicates = paid.iter().filter(|(o, _)| !seen.insert(o.clone())).count();
        let missing = orders
            .iter()
            .filter(|f| !seen.contains(f.get("orderId").map_or("", String::as_str)))
            .count();
        // Payments of one user, in the order they were written (one partition's output
        // stream holds all of a user's), must follow the order numbers.
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut out_of_order = Vec::new();
        for (order, user) in &paid {
            let n: u64 = order.trim_start_matches('o').parse().unwrap_or(0);
            if let Some(before) = last.insert(user.clone(), n)
                && before > n
                && !out_of_order.contains(user)
            {
                out_of_order.push(user.clone());
            }
        }
        Run {
            orders: orders.len(),
            payments: paid.len(),
            duplicates,
            missing,
            pending: pending_total,
            out_of_order,
            misplaced,
        }
    }

    fn done(&self, expected: usize) -> bool {
        self.orders == expected
            && self.duplicates == 0
            && self.missing == 0
            && self.pending == 0
            && self.payments == expected
    }
}

/// Partition streams of the payments pipeline below: (input, output) per partition.
fn partition_streams(n: u32) -> Vec<(String, String)> {
    (0..n)
        .map(|p| (format!("ORDERS:{{{p}}}"), format!("PAYMENTS:{{{p}}}")))
        .collect()
}

/// Produces `n` orders `o0..` of `users` users (user `u{i % users}`), each into the
/// partition of its user, `chunk` per round trip, `pause` apart.
async fn produce_partitioned(
    mut con: ClusterConnection,
    n: usize,
    users: usize,
    partitions: u32,
    chunk: usize,
    pause: Duration,
) {
    for start in (0..n).step_by(chunk) {
        for i in start..(start + chunk).min(n) {
            let user = format!("u{}", i % users);
            let p = sluice::partition::of(user.as_bytes(), partitions);
            let _: String = con
                .xadd(
                    format!("ORDERS:{{{p}}}"),
                    "*",
                    &Order::new(i).user(user).fields(),
                )
                .await
                .expect("XADD order");
        }
        tokio::time::sleep(pause).await;
    }
}

/// The partitioned payments pipeline.
fn partitioned_payments(partitions: u32, ordering: &str) -> PipelineBuilder {
    payments("payments")
        .reading("ORDERS", "G")
        .writing(&["PAYMENTS"])
        .partitions(i64::from(partitions))
        .set("ordering", ordering)
        .set_duration("lease_ttl", Duration::from_secs(2))
        .claim_idle(Duration::from_secs(2))
        .plugin_config("payments_stream", "PAYMENTS")
}

async fn wait_run(
    con: &mut ClusterConnection,
    streams: &[(String, String)],
    expected: usize,
    timeout: Duration,
) -> Run {
    eventually_ok("every order paid exactly once", timeout, || {
        let mut con = con.clone();
        async move {
            let run = Run::take(&mut con, streams, "G").await;
            assert_eq!(run.duplicates, 0, "duplicate payments: {run:?}");
            assert_eq!(run.misplaced, 0, "payments in another partition: {run:?}");
            if run.done(expected) {
                Ok(run)
            } else {
                Err(format!("{run:?}"))
            }
        }
    })
    .await
}

/// The case: a pipeline pointed at a 3-primary cluster, 20 entries in its input.
/// Before cluster support the daemon retried "cannot create consumer group" for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_consumes_from_a_three_primary_cluster() {
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let mut con = cluster.connect().await;
    for i in 0..20 {
        let _: String = con
            .xadd("{shop}:IN", "*", &[("n", i.to_string())])
            .await
            .expect("XADD");
    }
    let config = echo("echo")
        .reading("{shop}:IN", "G")
        .writing(&["{shop}:OUT"])
        .plugin_config("target", "{shop}:OUT")
        .config_with(in_cluster(&cluster));
    let host = TestDaemon::launch(config).await;
    eventually(
        "the echo pipeline to copy 20 entries",
        Duration::from_secs(20),
        || {
            let mut con = con.clone();
            async move { (entries(&mut con, "{shop}:OUT").await.len() >= 20).then_some(()) }
        },
    )
    .await;
    assert_eq!(pending(&mut con, "{shop}:IN", "G").await, 0);
    host.stop().await;
}

/// Keys of one commit in different hash slots are refused at start-up, naming each key,
/// its slot and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_different_slots_are_refused_with_the_fix() {
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let config = payments("payments").config_with(in_cluster(&cluster));
    let error = match sluice::start(config, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("a pipeline whose keys span slots started on a cluster"),
        Err(e) => format!("{e:#}"),
    };
    let orders = key_slot(b"ORDERS_STREAM");
    let payments = key_slot(b"PAYMENTS_STREAM");
    for wanted in [
        format!("input \"ORDERS_STREAM\" (slot {orders})"),
        format!("output \"PAYMENTS_STREAM\" (slot {payments})"),
        "hash tag".to_owned(),
        "partitions".to_owned(),
        "cross_slot".to_owned(),
    ] {
        assert!(error.contains(&wanted), "{wanted:?} not in: {error}");
    }
    // The same pipeline on one server is fine: the check is for clusters only.
}

/// `cross_slot = true`: outputs in another hash slot than the input are written apart
/// from the guarded commit, once per input entry. The same commit repeated (a lost
/// reply), and the entry taken over and committed by another consumer, write them once;
/// before cross-slot writes, the commit failed with CROSSSLOT for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_outputs_are_written_once_per_entry() {
    use sluice::broker::{Ack, Broker, Deployment, Nodes};
    use sluice::message::{CommitStatus, Output};
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    assert_ne!(key_slot(b"{a}:IN"), key_slot(b"{b}:OUT"));
    let mut con = cluster.connect().await;
    let mut deployment = Deployment::url("");
    deployment.nodes = Nodes::Cluster(cluster.urls());
    let broker = Broker::connect(&deployment, tokio_util::sync::CancellationToken::new())
        .await
        .expect("broker connects");
    // Markers short-lived enough to outlive here (a pause, a long outage).
    let ttl = Duration::from_millis(1500);
    let mut a = broker.consumer("{a}:IN", "G", "a").with_cross_slot(ttl);
    let mut b = broker.consumer("{a}:IN", "G", "b").with_cross_slot(ttl);
    a.ensure_group().await.expect("group");
    for n in ["1", "2"] {
        let _: String = con.xadd("{a}:IN", "*", &[("n", n)]).await.expect("XADD");
    }
    let read = a
        .read_new(10, Duration::from_millis(100))
        .await
        .expect("read");
    assert_eq!(read.len(), 2);
    let ack = |id: &str, n: &str| Ack {
        id: id.to_owned(),
        outputs: ["{b}:OUT", "{a}:LOCAL"]
            .iter()
            .map(|target| Output {
                stream: (*target).to_owned(),
                fields: vec![("n".into(), n.as_bytes().to_vec())],
                raw_names: None,
            })
            .collect(),
        state: Default::default(),
    };
    // The first entry's commit is sent twice, as after a lost reply.
    let first = [ack(&read[0].id, "1")];
    assert_eq!(
        a.commit(&first, false).await.expect("commit"),
        [CommitStatus::Committed]
    );
    assert_eq!(
        a.commit(&first, false).await.expect("again"),
        [CommitStatus::Gone]
    );
    // The second is taken over by b while a still handles it: a's commit writes the
    // cross-slot output, then finds the entry no longer its own; b handles it again and
    // commits, and its cross-slot output is not written a second time.
    let second = [ack(&read[1].id, "2")];
    claim(&mut con, "{a}:IN", "b", &read[1].id).await;
    assert_eq!(
        a.commit(&second, false).await.expect("commit"),
        [CommitStatus::NotOwned]
    );
    assert_eq!(
        b.commit(&second, false).await.expect("commit"),
        [CommitStatus::Committed]
    );
    // The third is taken over and committed by b while a is paused past the marker's
    // life; a, resumed, finds it no longer its own and writes nothing anywhere.
    let _: String = con.xadd("{a}:IN", "*", &[("n", "3")]).await.expect("XADD");
    let read = a
        .read_new(10, Duration::from_millis(100))
        .await
        .expect("read");
    let third = [ack(&read[0].id, "3")];
    claim(&mut con, "{a}:IN", "b", &read[0].id).await;
    assert_eq!(
        b.commit(&third, false).await.expect("commit"),
        [CommitStatus::Committed]
    );
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(
        a.commit(&third, false).await.expect("commit"),
        [CommitStatus::Gone]
    );
    let out = entries(&mut con, "{b}:OUT").await;
    let local = entries(&mut con, "{a}:LOCAL").await;
    let ns: Vec<&str> = out.iter().map(|(_, f)| f["n"].as_str()).collect();
    assert_eq!(ns, ["1", "2", "3"], "cross-slot outputs, once each");
    assert_eq!(local.len(), 3, "outputs in the input's slot, once each");
    assert_eq!(pending(&mut con, "{a}:IN", "G").await, 0);
}

/// `cross_slot`: the input's node refuses the guarded commit (the ACL user lost XACK
/// there) for longer than the markers live; the commit, tried again once it is granted,
/// does not write the cross-slot outputs a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_slot_commit_retried_after_its_markers_expired_writes_once() {
    use sluice::broker::{Ack, Broker, Deployment, Nodes, Secret};
    use sluice::message::{CommitStatus, Output};
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    for i in 0..3 {
        cluster
            .cmd::<()>(
                i,
                &["ACL", "SETUSER", "u", "on", ">pw", "~*", "&*", "+@all"],
            )
            .expect("ACL SETUSER");
    }
    let mut con = cluster.connect().await;
    let mut deployment = Deployment::url("");
    deployment.nodes = Nodes::Cluster(cluster.urls());
    deployment.username = Some("u".into());
    deployment.password = Some(Secret::new("pw"));
    let broker = Broker::connect(&deployment, tokio_util::sync::CancellationToken::new())
        .await
        .expect("broker connects");
    let ttl = Duration::from_millis(1000);
    let mut a = broker.consumer("{a}:IN", "G", "a").with_cross_slot(ttl);
    a.ensure_group().await.expect("group");
    let _: String = con.xadd("{a}:IN", "*", &[("n", "1")]).await.expect("XADD");
    let read = a
        .read_new(10, Duration::from_millis(100))
        .await
        .expect("read");
    let acks = [Ack {
        id: read[0].id.clone(),
        outputs: vec![Output {
            stream: "{b}:OUT".into(),
            fields: vec![("n".into(), b"1".to_vec())],
            raw_names: None,
        }],
        state: Default::default(),
    }];
    let input_node = cluster.primary_of(key_slot(b"{a}:IN")).expect("primary");
    cluster
        .cmd::<()>(input_node, &["ACL", "SETUSER", "u", "-xack"])
        .expect("ACL SETUSER");
    let refused = a.commit(&acks, false).await;
    assert!(refused.is_err(), "{refused:?}");
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(a.commit(&acks, false).await.is_err(), "still refused");
    cluster
        .cmd::<()>(input_node, &["ACL", "SETUSER", "u", "+xack"])
        .expect("ACL SETUSER");
    assert_eq!(
        a.commit(&acks, false).await.expect("commit"),
        [CommitStatus::Committed]
    );
    assert_eq!(entries(&mut con, "{b}:OUT").await.len(), 1, "written once");
    assert_eq!(pending(&mut con, "{a}:IN", "G").await, 0);
}

/// A lease is taken only from exactly its holder: a daemon named `d` does not take over
/// the lease of one named `d/x` (held as `d/x/<token>`), which would let both commit.
#[tokio::test]
async fn a_lease_is_not_taken_by_a_daemon_whose_name_is_a_prefix() {
    use sluice::broker::LeaseKeys;
    let redis = sluice::redis_server::RedisServer::start().expect("redis-server");
    let broker = broker(&redis).await;
    let keys = LeaseKeys::new("IN:{0}", "G");
    let ttl = Duration::from_secs(10);
    let held = broker
        .acquire_lease(&keys, "d/x", ttl)
        .await
        .expect("acquire");
    assert!(held.is_some());
    let taken = broker
        .acquire_lease(&keys, "d", ttl)
        .await
        .expect("acquire");
    assert_eq!(taken, None, "d took d/x's lease");
    // The holder itself gets it back (a restart), with the same token.
    assert_eq!(
        broker
            .acquire_lease(&keys, "d/x", ttl)
            .await
            .expect("acquire"),
        held
    );
}

/// `ordering = "per-key"`: an ACL user that may not use one partition's keys fails
/// start-up naming the key, instead of that partition silently never being handled.
#[tokio::test]
async fn a_per_key_pipeline_checks_every_partitions_permissions() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "sluice",
            "on",
            ">pw",
            "~ORDERS:{0}*",
            "~ORDERS:{1}*",
            "~ORDERS:{3}*",
            "~ORDERS:dead:*",
            "~ORDERS:daemons:*",
            "~PAYMENTS:*",
            "&*",
            "+@all",
        ])
        .query_async(&mut con)
        .await
        .expect("ACL SETUSER");
    let mut config = partitioned_payments(4, "per-key").config();
    config.redis.url = Some(redis.url().replace("redis://", "redis://sluice:pw@"));
    let error = match sluice::start(config, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("started without permission on partition 2"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("ORDERS:{2}"), "{error}");
}

/// A chain of partitioned pipelines with the same N (payments, then order status with
/// handler state) keeps each partition's work in its partition: every order's payment,
/// status update and order record carry the order's partition tag, in one slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_with_the_same_partitions_stays_in_each_partition() {
    const PARTITIONS: u32 = 4;
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let mut con = cluster.connect().await;
    let partitions = i64::from(PARTITIONS);
    let config = in_cluster(&cluster)
        .pipeline(
            payments("payments")
                .reading("ORDERS", "G")
                .writing(&["PAYMENTS"])
                .partitions(partitions)
                .plugin_config("payments_stream", "PAYMENTS"),
        )
        .pipeline(
            echo("order-status")
                .plugin("{plugin:order-status}")
                .reading("PAYMENTS", "G")
                .writing(&["STATUS"])
                .partitions(partitions)
                .state(&["order:", "user-total:"])
                .plugin_config("status_stream", "STATUS"),
        )
        .config();
    let host = TestDaemon::launch(config).await;
    produce_partitioned(con.clone(), 200, 10, PARTITIONS, 50, Duration::ZERO).await;
    eventually_ok("200 status updates", Duration::from_secs(30), || {
        let mut con = con.clone();
        async move {
            let mut statuses = 0;
            for p in 0..PARTITIONS {
                statuses += entries(&mut con, &format!("STATUS:{{{p}}}")).await.len();
            }
            if statuses == 200 {
                Ok(())
            } else {
                Err(format!("{statuses} of 200"))
            }
        }
    })
    .await;
    for p in 0..PARTITIONS {
        let orders: std::collections::BTreeSet<String> =
            entries(&mut con, &format!("ORDERS:{{{p}}}"))
                .await
                .into_iter()
                .map(|(_, f)| f["orderId"].clone())
                .collect();
        for stream in ["PAYMENTS", "STATUS"] {
            let here: std::collections::BTreeSet<String> =
                entries(&mut con, &format!("{stream}:{{{p}}}"))
                    .await
                    .into_iter()
                    .map(|(_, f)| f["orderId"].clone())
                    .collect();
            assert_eq!(
                here, orders,
                "{stream}:{{{p}}} holds another partition's orders"
            );
        }
        for order in &orders {
            let code: Option<String> = con
                .hget(format!("order:{{{p}}}:{order}"), "orderStatusCode")
                .await
                .expect("HGET");
            assert!(code.is_some(), "no record order:{{{p}}}:{order}");
        }
    }
    host.stop().await;
}

/// A whole pipeline with `cross_slot = true` whose output lives on another primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_slot_pipeline_runs_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let mut con = cluster.connect().await;
    for i in 0..50 {
        let _: String = con
            .xadd("{a}:IN", "*", &[("n", i.to_string())])
            .await
            .expect("XADD");
    }
    let pipeline = echo("echo")
        .reading("{a}:IN", "G")
        .writing(&["{b}:OUT"])
        .plugin_config("target", "{b}:OUT");
    let refused = match sluice::start(
        pipeline.config_with(in_cluster(&cluster)),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    {
        Ok(_) => panic!("started with an output in another slot, without cross_slot"),
        Err(e) => format!("{e:#}"),
    };
    assert!(refused.contains("cross_slot"), "{refused}");
    let host = TestDaemon::launch(
        pipeline
            .set("cross_slot", true)
            .config_with(in_cluster(&cluster)),
    )
    .await;
    eventually(
        "the echo pipeline to copy 50 entries",
        Duration::from_secs(20),
        || {
            let mut con = con.clone();
            async move { (entries(&mut con, "{b}:OUT").await.len() >= 50).then_some(()) }
        },
    )
    .await;
    host.stop().await;
    assert_eq!(entries(&mut con, "{b}:OUT").await.len(), 50);
    assert_eq!(pending(&mut con, "{a}:IN", "G").await, 0);
}

/// A reshard (the pipeline's slot moves to another primary while entries flow: `ASK`,
/// then `MOVED`) and a primary failover (`kill -9` of the slot's primary; its replica
/// takes over) ride through: every order is paid exactly once, nothing stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_and_a_primary_failover_ride_through() {
    let mut cluster = RedisCluster::start(3, 1).expect("cluster starts");
    let con = cluster.connect().await;
    let config = payments("payments")
        .reading("{shop}:ORDERS", "G")
        .writing(&["{shop}:PAYMENTS"])
        .claim_idle(Duration::from_secs(2))
        .plugin_config("payments_stream", "{shop}:PAYMENTS")
        .config_with(in_cluster(&cluster));
    let host = TestDaemon::launch(config).await;
    let slot = key_slot(b"{shop}");
    let produce = |con: ClusterConnection, from: usize, n: usize| async move {
        let mut con = con;
        for i in from..from + n {
            let _: String = con
                .xadd("{shop}:ORDERS", "*", &Order::new(i).amount("1.00").fields())
                .await
                .expect("XADD");
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Reshard while orders flow.
    let flow = tokio::spawn(produce(con.clone(), 0, 1500));
    eventually("orders flow", Duration::from_secs(10), || {
        let mut con = con.clone();
        async move {
            let paid: usize = con.xlen("{shop}:PAYMENTS").await.expect("XLEN");
            (paid >= 50).then_some(())
        }
    })
    .await;
    let from = cluster.primary_of(slot).expect("slot's primary");
    let to = (0..3).find(|&i| i != from).expect("another primary");
    tokio::task::block_in_place(|| cluster.move_slot(slot, to)).expect("slot moves");
    assert_eq!(cluster.primary_of(slot).expect("slot's primary"), to);
    flow.await.expect("producer");
    // Fail the slot's primary over: kill -9, its replica is promoted (once it has the
    // primary's data: a replica that never synced refuses to take over).
    tokio::task::block_in_place(|| cluster.wait_synced(Duration::from_secs(30)))
        .expect("replicas in sync");
    let dead = cluster.primary_of(slot).expect("slot's primary");
    cluster.nodes[dead].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.primary_of(slot).ok().is_none_or(|p| p == dead) {
        assert!(
            Instant::now() < deadline,
            "no replica took over slot {slot} from node {dead}: {:?}\n{}",
            cluster.cmd::<String>((dead + 1) % 3, &["CLUSTER", "NODES"]),
            cluster
                .nodes
                .iter()
                .map(|n| format!("--- node {}:\n{}", n.port(), n.log()))
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let con2 = cluster.connect().await;
    produce(con2.clone(), 1500, 500).await;
    let (orders, paid) = eventually_ok(
        "every order the new primary holds paid once",
        Duration::from_secs(60),
        || {
            let mut con2 = con2.clone();
            async move {
                let orders = entries(&mut con2, "{shop}:ORDERS").await;
                let paid = entries(&mut con2, "{shop}:PAYMENTS").await;
                let mut seen = std::collections::HashSet::new();
                let duplicates = paid
                    .iter()
                    .filter(|(_, f)| !seen.insert(f.get("orderId").cloned().unwrap_or_default()))
                    .count();
                assert_eq!(duplicates, 0, "duplicate payments");
                let pending = pending(&mut con2, "{shop}:ORDERS", "G").await;
                // Entries acknowledged by the killed primary but not yet replicated can
                // be lost with it (asynchronous replication): what the new primary holds
                // is what must be paid exactly once.
                let missing = orders
                    .iter()
                    .filter(|(_, f)| !seen.contains(f.get("orderId").map_or("", String::as_str)))
                    .count();
                if missing == 0 && pending == 0 && orders.len() >= 500 {
                    Ok((orders.len(), paid.len()))
                } else {
                    Err(format!(
                        "orders={} payments={} missing={missing} pending={pending}",
                        orders.len(),
                        paid.len()
                    ))
                }
            }
        },
    )
    .await;
    println!("orders={orders} payments={paid} (after a reshard and a failover)");
    drop(con);
    host.stop().await;
}

/// 3 daemon processes on a 3-primary cluster, 16 partitions, 30,000 orders; one daemon
/// is killed with `kill -9` twice (and started again after the first). Every order is
/// paid exactly once in its own partition, nothing stays pending, and with per-key
/// order each user's payments follow the order of that user's orders.
async fn three_daemons_two_kills(ordering: &str) {
    const PARTITIONS: u32 = 16;
    const ORDERS: usize = 30_000;
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let mut con = cluster.connect().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = in_cluster(&cluster)
        .drain_timeout(Duration::from_secs(5))
        .pipeline(partitioned_payments(PARTITIONS, ordering))
        .write(dir.path());
    let start = |name: &str| {
        DaemonProcess::start(
            &[
                "run".as_ref(),
                "-c".as_ref(),
                path.as_os_str(),
                "--consumer".as_ref(),
                name.as_ref(),
            ],
            &path.with_file_name(format!("{name}-{}.log", rand_suffix())),
        )
    };
    let mut daemons: Vec<DaemonProcess> = ["d0", "d1", "d2"].iter().map(|n| start(n)).collect();
    let producer = tokio::spawn(produce_partitioned(
        con.clone(),
        ORDERS,
        50,
        PARTITIONS,
        500,
        Duration::from_millis(40),
    ));
    let streams = partition_streams(PARTITIONS);
    // First kill once a quarter is paid, second once half is (after a restart).
    for (round, share) in [(0, 4), (1, 2)] {
        let what = format!("1/{share} of the orders paid before kill {round}");
        eventually_ok(&what, Duration::from_secs(120), || {
            let mut con = con.clone();
            let streams = &streams;
            let daemon = &daemons[0];
            async move {
                let run = Run::take(&mut con, streams, "G").await;
                if run.payments >= ORDERS / share {
                    Ok(())
                } else {
                    Err(format!("{run:?}\n{}", daemon.log()))
                }
            }
        })
        .await;
        daemons[0].kill9();
        println!("kill -9 of d0 ({round})");
        if round == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            daemons[0] = start("d0");
        }
    }
    producer.await.expect("producer");
    let run = wait_run(&mut con, &streams, ORDERS, Duration::from_secs(180)).await;
    println!("{ordering}: {run:?}");
    if ordering == "per-key" {
        assert!(
            run.out_of_order.is_empty(),
            "payments out of order for users {:?}",
            run.out_of_order
        );
    }
    for d in &mut daemons[1..] {
        assert!(d.is_running(), "a daemon died: {}", d.log());
    }
}

fn rand_suffix() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_sixteen_partitions_survive_two_kills() {
    three_daemons_two_kills("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_three_daemons_and_two_kills() {
    three_daemons_two_kills("per-key").await;
}

/// With per-key order, an entry that fails with a retry holds back its partition: the
/// entries after it are handled only once it succeeds (here on its third delivery),
/// and entries of other partitions go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_entry_holds_back_its_partition_only() {
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let mut con = cluster.connect().await;
    let config = echo("echo")
        .reading("IN", "G")
        .writing(&["OUT"])
        .partitions(2)
        .set("ordering", "per-key")
        .set_duration("lease_ttl", Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(300), Duration::from_millis(300))
        .plugin_config("target", "OUT");
    let config = in_cluster(&cluster).pipeline(config).config();
    let host = TestDaemon::launch(config).await;
    let add = |stream: &'static str, fields: Vec<(&'static str, &'static str)>| {
        let mut con = con.clone();
        async move {
            let _: String = con.xadd(stream, "*", &fields).await.expect("XADD");
        }
    };
    add(
        "IN:{0}",
        vec![("n", "1"), ("action", "succeed-on"), ("attempt", "3")],
    )
    .await;
    add("IN:{0}", vec![("n", "2")]).await;
    add("IN:{0}", vec![("n", "3")]).await;
    add("IN:{1}", vec![("n", "10")]).await;
    eventually_ok("partition 0 to finish", Duration::from_secs(20), || {
        let mut con = con.clone();
        async move {
            let out0 = entries(&mut con, "OUT:{0}").await;
            let out1 = entries(&mut con, "OUT:{1}").await;
            if out0.len() == 3 {
                let order: Vec<&str> = out0.iter().map(|(_, f)| f["n"].as_str()).collect();
                assert_eq!(order, ["1", "2", "3"], "partition 0's outputs out of order");
                assert_eq!(out0[0].1["seen-attempt"], "3");
                assert_eq!(out1.len(), 1);
                return Ok(());
            }
            // While entry 1 waits for its third delivery, nothing after it is written.
            assert!(out0.is_empty() || out0[0].1["n"] == "1", "{out0:?}");
            Err(format!("{out0:?}"))
        }
    })
    .await;
    // Partition 1 was not held back by partition 0's retries.
    let first1 = entries(&mut con, "OUT:{1}").await;
    assert_eq!(first1.len(), 1);
    host.stop().await;
}

/// `sluice partition` prints zlib's CRC-32 of each key modulo N, and `sluice send --key`
/// adds the entry to that partition's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_a_key_goes_to_the_keys_partition() {
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let mut con = cluster.connect().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = in_cluster(&cluster)
        .pipeline(partitioned_payments(16, "per-key"))
        .write(dir.path());
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let out = std::process::Command::new(sluice)
        .args(["partition", "--partitions", "16", "user-1", "123456789"])
        .output()
        .expect("sluice partition");
    assert!(out.status.success());
    // Python: zlib.crc32(b"user-1") % 16 == 4, zlib.crc32(b"123456789") % 16 == 6.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "user-1 4\n123456789 6\n"
    );
    let out = std::process::Command::new(sluice)
        .arg("send")
        .arg("payments")
        .args(["--key", "user-1", "-c"])
        .arg(&path)
        .args(["orderId=1", "orderAmount=2.5", "userId=user-1"])
        .env_remove("SLUICE_REDIS_URL")
        .output()
        .expect("sluice send");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ORDERS:{4} "), "{stdout}");
    let added = entries(&mut con, "ORDERS:{4}").await;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].1["userId"], "user-1");
    // Without --key, a partitioned pipeline's send is refused with what to do.
    let out = std::process::Command::new(sluice)
        .arg("send")
        .arg("payments")
        .arg("-c")
        .arg(&path)
        .arg("orderId=2")
        .output()
        .expect("sluice send");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key"));
}

/// A cluster node given as a plain `url` (no `cluster = true`) fails start-up with the
/// fix, instead of retrying "cannot create consumer group" for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_without_cluster_true_is_refused_with_the_fix() {
    let cluster = RedisCluster::start(3, 0).expect("cluster starts");
    let mut config = echo("echo").config();
    config.redis.url = Some(cluster.urls()[0].clone());
    let error = match sluice::start(config, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("started against a cluster node as if it were one server"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("cluster = true"), "{error}");
}
