//! Forwarding whole entries at realistic sizes, per language: what the scaffolded
//! handlers of `sluice new` do (copy every field to `OUT`, add `handledBy`), built with
//! `sluice build`, against the tutorial's node loop doing the same.
//!
//! Contenders: `rust`, `c`, `js`, `ts`, `python` (the `sluice` daemon, a child process,
//! on the pipeline's defaults with a warm compiled-code cache) and `node-loop`
//! (`seed-node/forward.mjs`, node-redis v4). Sizes: one field of 64 B, 4 KiB and
//! 64 KiB per entry (20,000, 6,000 and 1,000 entries; `--scale F` multiplies them).
//! Each run drains entries preloaded into a fresh redis-server; the rate is the outputs
//! over the span of their stream IDs (start-up is not counted), CPU per entry is the
//! consumer's over that span. Rounds are interleaved (every contender and size once per
//! round): the median and the range are printed, and each median over the node loop's.
//!
//! Run: `cargo bench -p sluice --bench entry_sizes -- [--rounds N] [--scale F] [--only NAME]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use sluice::redis_server::RedisServer;
use sluice_testkit::measure::{cpu_seconds, median, range, seed_node};
use sluice_testkit::{build_plugins, workspace};

/// (label, bytes of the field, entries at scale 1).
const SIZES: &[(&str, usize, usize)] = &[
    ("64 B", 64, 20_000),
    ("4 KiB", 4096, 6_000),
    ("64 KiB", 65536, 1_000),
];
const LANGUAGES: &[&str] = &["rust", "c", "js", "ts", "python"];

struct Options {
    rounds: usize,
    scale: f64,
    only: Option<String>,
}

/// One contender: a scaffolded handler run by the daemon, or the node loop.
enum Contender {
    Sluice { name: String, plugin: PathBuf },
    NodeLoop(PathBuf),
}

impl Contender {
    fn name(&self) -> &str {
        match self {
            Contender::Sluice { name, .. } => name,
            Contender::NodeLoop(_) => "node-loop",
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse()?;
    build_plugins();
    let work = tempfile::tempdir()?;
    let cache = work.path().join("cache");
    let mut contenders = Vec::new();
    for lang in LANGUAGES {
        if options.only.as_deref().is_some_and(|o| o != *lang) {
            continue;
        }
        let plugin = scaffold(work.path(), lang)?;
        compile(&plugin, &cache)?;
        contenders.push(Contender::Sluice {
            name: lang.to_string(),
            plugin,
        });
    }
    contenders.push(Contender::NodeLoop(seed_node()?));
    println!(
        "entry sizes: scaffolded forwarding handlers (sluice build, pipeline defaults) and the node loop, {} rounds interleaved, {} cores",
        options.rounds,
        std::thread::available_parallelism()?
    );
    println!(
        "{:<6} {:<8} {:<10} {:>10} {:>12}",
        "round", "size", "contender", "entries/s", "cpu µs/entry"
    );
    // runs[size][contender] = (rate, cpu per entry)
    let mut runs = vec![vec![Vec::new(); contenders.len()]; SIZES.len()];
    for round in 1..=options.rounds {
        for (s, &(label, bytes, entries)) in SIZES.iter().enumerate() {
            let entries = ((entries as f64 * options.scale) as usize).max(10);
            for (c, contender) in contenders.iter().enumerate() {
                let (rate, cpu) = drain(contender, &cache, bytes, entries).await?;
                println!(
                    "{round:<6} {label:<8} {:<10} {rate:>10.0} {:>12.1}",
                    contender.name(),
                    cpu * 1e6 / entries as f64
                );
                runs[s][c].push((rate, cpu * 1e6 / entries as f64));
            }
        }
    }
    report(&contenders, &runs, options.rounds);
    Ok(())
}

/// The medians, ranges and ratios to the node loop, one table per size.
fn report(contenders: &[Contender], runs: &[Vec<Vec<(f64, f64)>>], rounds: usize) {
    println!("\nmedian of {rounds} rounds (range)");
    println!(
        "{:<8} {:<10} {:>10} {:>17} {:>12} {:>10}",
        "size", "contender", "entries/s", "range", "cpu µs/entry", "/ node"
    );
    for (s, &(label, _, _)) in SIZES.iter().enumerate() {
        let node = runs[s]
            .last()
            .map(|r| median(&r.iter().map(|m| m.0).collect::<Vec<_>>()));
        for (c, contender) in contenders.iter().enumerate() {
            let rates: Vec<f64> = runs[s][c].iter().map(|m| m.0).collect();
            let cpus: Vec<f64> = runs[s][c].iter().map(|m| m.1).collect();
            let (low, high) = range(&rates);
            let rate = median(&rates);
            println!(
                "{label:<8} {:<10} {rate:>10.0} {:>17} {:>12.1} {:>10}",
                contender.name(),
                format!("{low:.0}–{high:.0}"),
                median(&cpus),
                node.map_or("-".to_owned(), |n| format!("{:.2}", rate / n)),
            );
        }
    }
}

/// `sluice new fwd-LANG --lang LANG`, built with `sluice build`; returns the component.
fn scaffold(dir: &Path, lang: &str) -> Result<PathBuf> {
    let name = format!("fwd-{lang}");
    let project = dir.join(&name);
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let made = Command::new(sluice)
        .args(["new", &name, "--lang", lang, "--sdk"])
        .arg(workspace())
        .arg("--dir")
        .arg(&project)
        .output()?;
    if !made.status.success() {
        bail!(
            "sluice new {name}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let target = match lang {
        "c" => "target/plugins",
        _ => "target/plugins/scaffold",
    };
    let built = Command::new(sluice)
        .arg("build")
        .arg(&project)
        .env("CARGO_TARGET_DIR", workspace().join(target))
        .output()?;
    if !built.status.success() {
        bail!(
            "sluice build {name}: {}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    Ok(project.join(format!("fwd_{lang}.wasm")))
}

/// The daemon's config: one pipeline IN → OUT on its defaults, the given cache.
fn config(plugin: &Path, cache: &Path) -> String {
    format!(
        "[plugins]\ncache = true\ncache_dir = {cache:?}\nwatch = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[pipeline]]\nname = \"forward\"\nplugin = {plugin:?}\ninput = \"IN\"\ngroup = \"G\"\noutputs = [\"OUT\"]\n"
    )
}

/// Fills the compiled-code cache, so that runs measure handling, not compiling.
fn compile(plugin: &Path, cache: &Path) -> Result<()> {
    let file = plugin.with_extension("toml");
    std::fs::write(&file, config(plugin, cache))?;
    let ok = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["compile", "-c"])
        .arg(&file)
        .env("SLUICE_LOG", "warn")
        .status()?;
    if !ok.success() {
        bail!("sluice compile {} failed", plugin.display());
    }
    Ok(())
}

/// Preloads `entries` entries of one `bytes`-byte field, drains them through the
/// contender; returns (entries per second, consumer CPU seconds over the span).
async fn drain(
    contender: &Contender,
    cache: &Path,
    bytes: usize,
    entries: usize,
) -> Result<(f64, f64)> {
    let redis = RedisServer::start()?;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for start in (0..entries).step_by(500) {
        let mut pipe = redis::pipe();
        for i in start..(start + 500).min(entries) {
            let payload: String = (0..bytes)
                .map(|k| char::from(b'a' + ((i + k) % 26) as u8))
                .collect();
            pipe.xadd("IN", "*", &[("payload", payload)]).ignore();
        }
        let () = pipe.query_async(&mut con).await?;
    }
    let dir = tempfile::tempdir()?;
    let mut child = match contender {
        Contender::Sluice { plugin, .. } => {
            let file = dir.path().join("sluice.toml");
            std::fs::write(&file, config(plugin, cache))?;
            tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["run", "-c"])
                .arg(&file)
                .arg("--redis")
                .arg(redis.url())
                .env("SLUICE_LOG", "warn")
                .env("SLUICE_ADMIN_TOKEN", "bench")
                .kill_on_drop(true)
                .spawn()?
        }
        Contender::NodeLoop(seed) => tokio::process::Command::new("node")
            .arg("forward.mjs")
            .arg(redis.url())
            .arg(entries.to_string())
            .current_dir(seed)
            .kill_on_drop(true)
            .spawn()?,
    };
    let pid = child
        .id()
        .context("the consumer exited at once")?
        .to_string();
    let mut first_cpu = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: usize = con.xlen("OUT").await?;
        if first_cpu.is_none() && done > 0 {
            first_cpu = Some(cpu_seconds(&pid)?);
        }
        if done >= entries {
            break;
        }
        if Instant::now() > deadline {
            bail!("{}: only {done} of {entries} entries", contender.name());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cpu = cpu_seconds(&pid)? - first_cpu.context("no outputs")?;
    if let Contender::Sluice { .. } = contender {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id().context("pid")? as i32, libc::SIGTERM) };
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("{} exited with {status}", contender.name());
    }
    let ms = |id: &str| -> Result<f64> {
        Ok(id.split_once('-').context("stream ID")?.0.parse::<f64>()? / 1000.0)
    };
    let first: redis::streams::StreamRangeReply = con.xrange_count("OUT", "-", "+", 1).await?;
    let last: redis::streams::StreamRangeReply = con.xrevrange_count("OUT", "+", "-", 1).await?;
    let seconds = ms(&last.ids[0].id)? - ms(&first.ids[0].id)?;
    Ok(((entries - 1) as f64 / seconds.max(0.001), cpu))
}

fn parse() -> Result<Options> {
    let mut options = Options {
        rounds: 3,
        scale: 1.0,
        only: None,
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => options.rounds = value.parse()?,
            "--scale" => options.scale = value.parse()?,
            "--only" => options.only = Some(value),
            other => bail!("unknown option {other}; use --rounds N --scale F --only LANG"),
        }
    }
    if options.rounds < 1 {
        bail!("--rounds must be at least 1");
    }
    Ok(options)
}
