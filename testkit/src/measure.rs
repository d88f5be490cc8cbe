//! What the benches measure with: CPU time of a process from `/proc`, the median and
//! range of a benchmark's rounds, the tutorial's Node consumers they compare against,
//! and latency under an open-loop load ([`open_loop`]).

use std::path::PathBuf;
use std::process::Command;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;

/// CPU seconds (user + system) of `/proc/<pid>` (`self` for this process), from fields
/// 14 and 15 of `/proc/<pid>/stat` (proc(5)).
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// The median of `values` (the upper one of an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// The lowest and highest of `values`.
pub fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// `host/benches/seed-node` (the tutorial's node-redis consumers) with its packages
/// installed (`npm ci`, once).
pub fn seed_node() -> Result<PathBuf> {
    let seed = crate::workspace().join("host/benches/seed-node");
    if !seed.join("node_modules/redis").is_dir() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&seed)
            .status()?;
        if !ok.success() {
            bail!("npm ci in {} failed", seed.display());
        }
    }
    Ok(seed)
}

/// Latencies of a consumer under an open-loop load: `add(pipe, i)` queues order `i`
/// (its `orderId` ending in `i` as 8 digits, as [`crate::Order::seed`]'s), sent on a
/// fixed schedule of `rate` a second for `seconds` whatever the consumer does (so that a
/// stalled consumer cannot hide its backlog: no coordinated omission); a sink reads
/// `output` and records, per entry, the time from its order's *scheduled* send to its
/// being read, in µs. The first second is warm-up and not recorded.
pub async fn open_loop(
    url: &str,
    rate: u64,
    seconds: u64,
    output: &'static str,
    add: impl Fn(&mut redis::Pipeline, usize) + Send + 'static,
) -> Result<Histogram<u64>> {
    let client = redis::Client::open(url)?;
    let orders = (rate * seconds) as usize;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let schedule = Schedule {
        start,
        period,
        orders,
    };
    let failed = Arc::new(AtomicBool::new(false));
    let producer = {
        let (con, failed) = (client.get_connection()?, failed.clone());
        std::thread::spawn(move || produce(con, schedule, &failed, add))
    };
    let sink = {
        let (con, failed) = (client.get_connection()?, failed.clone());
        std::thread::spawn(move || read_outputs(con, schedule, output, rate as usize, &failed))
    };
    tokio::task::spawn_blocking(move || match (producer.join(), sink.join()) {
        (Ok(Ok(())), Ok(histogram)) => histogram,
        (Ok(Err(e)), _) => Err(e.context("producer")),
        _ => bail!("a load thread panicked"),
    })
    .await?
}

/// When each order of an open loop is due.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    period: Duration,
    orders: usize,
}

impl Schedule {
    fn due(&self, i: usize) -> Instant {
        self.start + self.period.mul_f64(i as f64)
    }
}

/// Sends every order when due (those due by now in one round trip), until the sink fails.
fn produce(
    mut con: redis::Connection,
    schedule: Schedule,
    failed: &AtomicBool,
    add: impl Fn(&mut redis::Pipeline, usize),
) -> Result<()> {
    let mut next = 0;
    while next < schedule.orders && !failed.load(Ordering::Relaxed) {
        let now = Instant::now();
        if schedule.due(next) > now {
            std::thread::sleep(schedule.due(next) - now);
            continue;
        }
        let mut pipe = redis::pipe();
        while next < schedule.orders && schedule.due(next) <= now {
            add(&mut pipe, next);
            next += 1;
        }
        let () = pipe.query(&mut con)?;
    }
    Ok(())
}

/// Reads `output` until every order's entry is there; each one's latency after `warmup`.
fn read_outputs(
    mut con: redis::Connection,
    schedule: Schedule,
    output: &str,
    warmup: usize,
    failed: &AtomicBool,
) -> Result<Histogram<u64>> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut seen, mut last) = (0, "0".to_owned());
    let opts = redis::streams::StreamReadOptions::default()
        .count(1000)
        .block(10_000);
    while seen < schedule.orders {
        let reply: Option<redis::streams::StreamReadReply> =
            redis::Commands::xread_options(&mut con, &[output], &[&last], &opts)?;
        let now = Instant::now();
        let Some(reply) = reply else {
            failed.store(true, Ordering::Relaxed);
            let read: usize = redis::Commands::xlen(&mut con, output)?;
            bail!(
                "no entry in {output} for 10 s after {seen} of {} ({read} there)",
                schedule.orders
            );
        };
        for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            let id: String = entry.get("orderId").context("an output without orderId")?;
            let i: usize = id[id.len().saturating_sub(8)..].parse()?;
            if i >= warmup {
                let micros = now.saturating_duration_since(schedule.due(i)).as_micros();
                histogram.saturating_record(micros.max(1) as u64);
            }
            seen += 1;
            last = entry.id;
        }
    }
    Ok(histogram)
}
