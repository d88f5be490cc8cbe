//! Numbers for plugin authors, per language: what a `payments` plugin costs to ship,
//! load and run, measured on the `wasm` module alone (no Redis).
//!
//! For each `target/plugins/payments*.wasm` (Rust, JavaScript, Python, C — whichever are
//! built):
//!
//! - **size** of the component;
//! - **cold compile**: Cranelift compiling it with an empty cache (what the first deploy
//!   of a new version costs, once per version and machine);
//! - **warm load**: loading it again from the compiled-code cache (every later start, and
//!   a reload to a version seen before); median of 5;
//! - **reused call**: one message through an instance kept across messages (the default);
//! - **fresh call**: one message through a new instance every time (`instance_reuse = 1`,
//!   and the first message after a start, a reload or a trap).
//!
//! Throughput through the daemon per language is in the `throughput` bench
//! (`--only sluice-js`, ...).
//!
//! Run: `cargo bench -p sluice --bench plugins -- [--only NAME]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sluice::wasm::{Cache, Instance, Limits, Plugin, PluginCell, Runtime, Source};
use sluice_testkit::{Order, build_plugins, workspace};

#[tokio::main]
async fn main() -> Result<()> {
    let only = parse_only()?;
    let root = plugins_built();
    let mut plugins: Vec<PathBuf> = std::fs::read_dir(root.join("target/plugins"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            p.extension().is_some_and(|e| e == "wasm")
                && (name == "payments"
                    || name.starts_with("payments_")
                        && !name.contains("tag")
                        && !name.contains("state"))
        })
        .collect();
    plugins.sort();

    println!(
        "\n{:<18} {:>9} {:>13} {:>10} {:>13} {:>12} {:>16}",
        "plugin",
        "size",
        "cold compile",
        "warm load",
        "reused call",
        "fresh call",
        "batch of 50/entry"
    );
    for path in plugins {
        let name = language(&path);
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let m = measure(&path)
            .await
            .with_context(|| format!("measuring {}", path.display()))?;
        println!(
            "{:<18} {:>9} {:>13} {:>10} {:>13} {:>12} {:>16}",
            name,
            bytesize::ByteSize(m.size).display().si().to_string(),
            format!("{:.2} s", m.cold.as_secs_f64()),
            format!("{:.1} ms", m.warm.as_secs_f64() * 1e3),
            micros(m.reused),
            micros(m.fresh),
            m.batched.map_or_else(|| "(no export)".to_owned(), micros),
        );
    }
    println!(
        "\n(one core of this machine; cold compile is Cranelift at opt-level speed; epoch \
         interruption and the memory limiter on)"
    );
    Ok(())
}

struct Measured {
    size: u64,
    cold: Duration,
    warm: Duration,
    reused: Duration,
    fresh: Duration,
    /// Per entry, through `handle-batch` with 50 entries a call, if the plugin has it.
    batched: Option<Duration>,
}

async fn measure(path: &Path) -> Result<Measured> {
    let size = std::fs::metadata(path)?.len();

    // Cold: no cache at all.
    let runtime = Runtime::new(false, None)?;
    let started = Instant::now();
    let plugin = blocking_load(&runtime, path).await?;
    let cold = started.elapsed();
    drop(plugin);

    // Warm: the first load fills a fresh cache, the next ones read it.
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new(false, Some(Cache::open(dir.path())?))?;
    let plugin = blocking_load(&runtime, path).await?;
    anyhow::ensure!(
        plugin.source() == Source::Compiled,
        "the cache was not empty"
    );
    let mut warm = Vec::new();
    let mut cached = None;
    for _ in 0..5 {
        let started = Instant::now();
        let plugin = blocking_load(&runtime, path).await?;
        warm.push(started.elapsed());
        anyhow::ensure!(
            plugin.source() == Source::Cached,
            "not loaded from the cache"
        );
        cached = Some(plugin);
    }
    warm.sort();
    let plugin = cached.context("loaded")?;
    let cell: PluginCell = Arc::new(arc_swap::ArcSwap::from_pointee(plugin));

    let reused = per_call(&cell, u64::MAX, Duration::from_secs(2)).await?;
    let fresh = per_call(&cell, 1, Duration::from_secs(2)).await?;
    let batched = if cell.load().handles_batches() {
        Some(per_entry_in_batches(&cell, 50, Duration::from_secs(2)).await?)
    } else {
        None
    };
    Ok(Measured {
        batched,
        size,
        cold,
        warm: warm[warm.len() / 2],
        reused,
        fresh,
    })
}

async fn blocking_load(runtime: &Runtime, path: &Path) -> Result<Plugin> {
    let (runtime, path) = (runtime.clone(), path.to_owned());
    tokio::task::spawn_blocking(move || Plugin::load(&runtime, &path)).await?
}

/// The limits the calls run under: roomy, with instances replaced every `reuse` calls.
fn limits(reuse: u64) -> Limits {
    Limits {
        memory: 256 << 20,
        timeout: Duration::from_secs(5),
        instance_reuse: reuse,
        ..sluice::config::LimitsConfig::default().to_limits()
    }
}

/// Checks a call produced the payment.
fn check_payment(outputs: &[sluice::message::Output]) -> Result<()> {
    anyhow::ensure!(
        outputs.len() == 1 && outputs[0].fields.len() == 6,
        "unexpected outputs {outputs:?}"
    );
    Ok(())
}

/// Mean time of `call` over about `budget`, after a warm-up of a quarter of it.
async fn mean_time(
    budget: Duration,
    mut call: impl AsyncFnMut() -> Result<()>,
) -> Result<Duration> {
    let warm_up = Instant::now();
    while warm_up.elapsed() < budget / 4 {
        call().await?;
    }
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < budget {
        call().await?;
        calls += 1;
    }
    Ok(started.elapsed() / calls)
}

/// Mean time per `handle` call over about `budget`, on instances replaced every `reuse`
/// messages. Checks every call produced the payment.
async fn per_call(cell: &PluginCell, reuse: u64, budget: Duration) -> Result<Duration> {
    let mut instance = Instance::new(cell.clone(), Default::default(), limits(reuse));
    let mut entry = Order::seed(0).entry();
    mean_time(budget, async || {
        let outputs = instance.handle("ORDERS_STREAM", &mut entry).await?;
        check_payment(&outputs)
    })
    .await
}

/// Mean time per entry of `handle-batch` calls of `n` entries over about `budget`, on a
/// reused instance. Checks every entry produced the payment.
async fn per_entry_in_batches(cell: &PluginCell, n: usize, budget: Duration) -> Result<Duration> {
    let mut instance = Instance::new(cell.clone(), Default::default(), limits(u64::MAX));
    let mut entries: Vec<_> = (0..n).map(|_| Order::seed(0).entry()).collect();
    let per_call = mean_time(budget, async || {
        let results = instance
            .handle_batch("ORDERS_STREAM", &mut entries)
            .await?
            .context("the plugin takes no batch")?;
        results.into_iter().try_for_each(|r| check_payment(&r?))
    })
    .await?;
    Ok(per_call / n as u32)
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

/// `payments_js.wasm` → `js`; `payments.wasm` → `rust`.
fn language(path: &Path) -> &str {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
    stem.strip_prefix("payments_").unwrap_or("rust")
}

fn parse_only() -> Result<Option<String>> {
    let mut args = std::env::args().skip(1);
    let mut only = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => only = Some(args.next().context("--only needs a language")?),
            "--bench" => {}
            other => bail!("unknown argument {other:?} (expected --only LANGUAGE)"),
        }
    }
    Ok(only)
}

/// Builds every plugin (into `target/plugins`) and returns the workspace root.
fn plugins_built() -> std::path::PathBuf {
    build_plugins();
    workspace()
}
