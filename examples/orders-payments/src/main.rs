//! The tutorial's orders → payments flow through Sluice, checked end to end.
//!
//! Run it with `examples/orders-payments/run.sh` (it builds the plugins first). It starts
//! Sluice with the `payments` and `order-status` pipelines of `sluice.toml` on a private
//! redis-server, sends 1,000 orders shaped like the tutorial's (a few of them invalid),
//! waits for both pipelines to drain, and prints a summary it has checked.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

/// Orders sent unless `--orders N` says otherwise.
const DEFAULT_ORDERS: usize = 1_000;

fn orders_wanted() -> Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(DEFAULT_ORDERS),
        [flag, n] if flag == "--orders" => n
            .parse()
            .with_context(|| format!("--orders takes a number, not {n:?}")),
        _ => bail!("usage: orders-payments [--orders N]"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                // The handler warns about each invalid order; the summary counts them.
                .unwrap_or_else(|_| {
                    "info,sluice::pipeline=error,sluice::wasm::guest_log=error".into()
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<()> {
    let orders = orders_wanted()?;
    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sluice.toml");
    let config = sluice::config::Config::load(&config_path)
        .context("run examples/orders-payments/run.sh, which builds the plugins first")?;
    let shutdown = CancellationToken::new();
    let daemon = sluice::start(config, shutdown.clone()).await?;
    println!(
        "Sluice is running on {} (a private redis-server)",
        daemon.redis_url()
    );
    let mut con = redis::Client::open(daemon.redis_url())?
        .get_multiplexed_async_connection()
        .await?;

    let started = Instant::now();
    let mut sent = Sent::default();
    send_orders(&mut con, 0..orders, &mut sent).await?;
    println!(
        "sent {orders} orders to ORDERS_STREAM ({} of them invalid)",
        sent.invalid
    );
    drain(&mut con, &sent).await?;
    let elapsed = started.elapsed();
    let checked = match live_phase(&mut con, orders, &mut sent).await {
        Ok(live) => check_state(&mut con, &sent)
            .await
            .map(|state| (live, state)),
        Err(e) => Err(e),
    };
    shutdown.cancel();
    daemon.wait().await?;
    let ((live, latency, summary), (hashes, users)) = checked?;
    print_summary(&summary, hashes, users);
    println!(
        "the first {orders} drained in {:.0} ms: {:.0} orders/s through both pipelines, sending included",
        elapsed.as_secs_f64() * 1e3,
        orders as f64 / elapsed.as_secs_f64()
    );
    println!(
        "live: {live} more orders over {} s at {LIVE_RATE}/s, each paid once; order to payment {latency}",
        LIVE.as_secs()
    );
    for reason in &summary.reasons {
        println!("  dead letter: {reason}");
    }
    Ok(())
}

/// How long the live phase sends orders: longer than any idle timer inside the daemon
/// (tokio retires idle blocking threads after 10 s; the private redis-server once died
/// with one), so that the demo fails if something dies after start-up.
const LIVE: Duration = Duration::from_secs(15);

/// Orders per second in the live phase.
const LIVE_RATE: usize = 50;

/// Waits until every order sent so far is handled: paid and its status updated, or
/// dead-lettered, with nothing pending.
async fn drain(con: &mut redis::aio::MultiplexedConnection, sent: &Sent) -> Result<Summary> {
    let valid = sent.paid.len();
    let drain_limit = Duration::from_secs(60 + sent.total as u64 / 1_000);
    let deadline = Instant::now() + drain_limit;
    loop {
        let s = Summary::read(con).await?;
        if s.payments == valid && s.statuses == valid && s.dead == sent.invalid && s.pending == 0 {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("the pipelines did not drain within {drain_limit:?}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends orders at [`LIVE_RATE`] for [`LIVE`], as producers do, then waits for them
/// all; returns how many it sent, the latency from each order's entry to its
/// payment's (the difference of their entry IDs' milliseconds), and where the run stands.
async fn live_phase(
    con: &mut redis::aio::MultiplexedConnection,
    first: usize,
    sent: &mut Sent,
) -> Result<(usize, String, Summary)> {
    let tick = Duration::from_millis(100);
    let per_tick = LIVE_RATE / 10;
    let mut ticker = tokio::time::interval(tick);
    let (mut next, end) = (first, Instant::now() + LIVE);
    let paid_before = sent.paid.len();
    while Instant::now() < end {
        ticker.tick().await;
        send_orders(con, next..next + per_tick, sent).await?;
        next += per_tick;
    }
    let summary = drain(con, sent).await?;
    let payments: redis::streams::StreamRangeReply = con.xrange_all("PAYMENTS_STREAM").await?;
    let paid_at: std::collections::HashMap<String, u64> = payments
        .ids
        .iter()
        .filter_map(|e| Some((e.get::<String>("orderId")?, entry_ms(&e.id))))
        .collect();
    let mut latencies: Vec<u64> = sent.paid[paid_before..]
        .iter()
        .filter_map(|order| Some(paid_at.get(order)?.saturating_sub(*sent.at.get(order)?)))
        .collect();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let latency = match latencies.is_empty() {
        true => "not measured".to_owned(),
        false => format!("p50 {} ms, p99 {} ms", at(0.5), at(0.99)),
    };
    Ok((next - first, latency, summary))
}

/// The milliseconds part of a stream entry ID.
fn entry_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

fn print_summary(summary: &Summary, hashes: usize, users: usize) {
    println!();
    println!("  orders in                 {:>6}", summary.orders);
    println!(
        "  payments out              {:>6}   (PAYMENTS_STREAM)",
        summary.payments
    );
    println!(
        "  status updates out        {:>6}   (ORDER_STATUS_STREAM)",
        summary.statuses
    );
    println!(
        "  dead-lettered             {:>6}   (ORDERS_STREAM:dead, with reasons)",
        summary.dead
    );
    println!("  pending left              {:>6}", summary.pending);
    println!(
        "  order records             {hashes:>6}   (hash order:<orderId>: orderStatusCode 3, paymentId)"
    );
    println!("  user totals               {users:>6}   (counter user-total:<userId>, in cents)");
    println!();
    println!(
        "checked: every valid order paid once, its status updated and recorded, every user's total the exact sum of its paid orders, every invalid order dead-lettered, nothing pending"
    );
}

/// What was sent: how many orders are invalid, and what the valid ones must leave in
/// Redis.
#[derive(Default)]
struct Sent {
    total: usize,
    invalid: usize,
    /// When each valid order's entry was added (its ID's milliseconds).
    at: std::collections::HashMap<String, u64>,
    /// Valid order IDs.
    paid: Vec<String>,
    /// Each user's total of valid orders, in cents.
    totals: std::collections::BTreeMap<String, i64>,
    /// The users orders come from.
    users: Vec<String>,
}

/// Sends orders number `range` (every hundred has three invalid ones: negative,
/// non-numeric and missing amounts, as a buggy producer would send), from a few hundred
/// users, in one pipeline of XADDs.
///
/// The demo is a producer as a user writes one, with plain redis-rs: it does not take
/// its orders from the test kit (`sluice_testkit::Order`), which tests and benches share
/// and which an example should not teach anyone to depend on.
async fn send_orders(
    con: &mut redis::aio::MultiplexedConnection,
    range: std::ops::Range<usize>,
    sent: &mut Sent,
) -> Result<()> {
    let mut rng = rand::rng();
    if sent.users.is_empty() {
        let users = (range.len() / 20).max(1);
        sent.users = (0..users)
            .map(|_| format!("USR_{}", uuid_like(&mut rng)))
            .collect();
    }
    let mut pipe = redis::pipe();
    // Per order sent, its ID when it is valid.
    let mut valid: Vec<Option<String>> = Vec::new();
    for i in range {
        let order_id = ulid_like(&mut rng);
        let user_id = sent.users[rng.random_range(0..sent.users.len())].clone();
        let cents: i64 = rng.random_range(500..50_000);
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let mut fields = vec![("orderId", order_id.clone()), ("userId", user_id.clone())];
        sent.total += 1;
        match i % 100 {
            17 => fields.push(("orderAmount", "-12.00".into())),
            53 => fields.push(("orderAmount", "twelve".into())),
            89 => {}
            _ => {
                fields.push(("orderAmount", amount));
                *sent.totals.entry(user_id).or_default() += cents;
                valid.push(Some(order_id));
                pipe.xadd("ORDERS_STREAM", "*", &fields);
                continue;
            }
        }
        sent.invalid += 1;
        valid.push(None);
        pipe.xadd("ORDERS_STREAM", "*", &fields);
    }
    let ids: Vec<String> = pipe.query_async(con).await?;
    for (order, id) in valid.into_iter().zip(&ids) {
        if let Some(order) = order {
            sent.at.insert(order.clone(), entry_ms(id));
            sent.paid.push(order);
        }
    }
    Ok(())
}

/// Checks the order-status pipeline's handler state: every paid order's hash holds
/// status 3 and its payment's ID, every user's counter the exact sum of its paid orders.
/// Returns how many of each it checked.
async fn check_state(
    con: &mut redis::aio::MultiplexedConnection,
    sent: &Sent,
) -> Result<(usize, usize)> {
    let payments: redis::streams::StreamRangeReply = con.xrange_all("PAYMENTS_STREAM").await?;
    let payment_ids: std::collections::HashMap<String, String> = payments
        .ids
        .iter()
        .filter_map(|e| Some((e.get::<String>("orderId")?, e.get::<String>("paymentId")?)))
        .collect();
    let mut pipe = redis::pipe();
    for order in &sent.paid {
        pipe.hgetall(format!("order:{order}"));
    }
    let records: Vec<std::collections::HashMap<String, String>> = pipe.query_async(con).await?;
    for (order, record) in sent.paid.iter().zip(&records) {
        let status = record.get("orderStatusCode").map(String::as_str);
        let payment = record.get("paymentId");
        if status != Some("3") || payment.is_none() || payment != payment_ids.get(order) {
            bail!("order:{order} holds {record:?}, not status 3 and its payment's ID");
        }
    }
    let mut pipe = redis::pipe();
    for user in sent.totals.keys() {
        pipe.get(format!("user-total:{user}"));
    }
    let totals: Vec<Option<i64>> = pipe.query_async(con).await?;
    for ((user, want), got) in sent.totals.iter().zip(&totals) {
        if *got != Some(*want) {
            bail!(
                "user-total:{user} is {got:?}, not {want} (the sum of its paid orders, in cents)"
            );
        }
    }
    Ok((records.len(), totals.len()))
}

#[derive(Debug)]
struct Summary {
    orders: usize,
    payments: usize,
    statuses: usize,
    dead: usize,
    pending: usize,
    reasons: Vec<String>,
}

impl Summary {
    async fn read(con: &mut redis::aio::MultiplexedConnection) -> Result<Self> {
        let orders: usize = con.xlen("ORDERS_STREAM").await?;
        let payments: usize = con.xlen("PAYMENTS_STREAM").await?;
        let statuses: usize = con.xlen("ORDER_STATUS_STREAM").await?;
        let dead: usize = con.xlen("ORDERS_STREAM:dead").await?;
        let mut pending = 0;
        for (stream, group) in [
            ("ORDERS_STREAM", "ORDERS_CON_GROUP"),
            ("PAYMENTS_STREAM", "PAYMENTS_CON_GROUP"),
        ] {
            let p: redis::streams::StreamPendingReply = con.xpending(stream, group).await?;
            pending += p.count();
        }
        let letters: redis::streams::StreamRangeReply =
            con.xrange_count("ORDERS_STREAM:dead", "-", "+", 3).await?;
        let reasons = letters
            .ids
            .iter()
            .filter_map(|e| e.get::<String>(sluice::message::dead_letter_fields::ERROR))
            .collect();
        Ok(Self {
            orders,
            payments,
            statuses,
            dead,
            pending,
            reasons,
        })
    }
}

fn ulid_like(rng: &mut impl Rng) -> String {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    (0..26)
        .map(|_| CROCKFORD[rng.random_range(0..32)] as char)
        .collect()
}

fn uuid_like(rng: &mut impl Rng) -> String {
    let hex: String = (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}
