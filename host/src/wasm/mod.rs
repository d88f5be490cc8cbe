//! The sandbox: the only user of `wasmtime`. Compiles handler components, instantiates
//! them under limits, and calls `handle`.
//!
//! One [`Runtime`] (engine, linker, epoch ticker) serves every plugin of a daemon. A
//! [`Plugin`] is a component compiled once and pre-linked (`InstancePre`); an
//! [`Instance`] is one live instance with its own store, reused across messages.

mod bindings;
mod cache;
mod guest_log;
mod host;
mod instance;
mod limits;
mod packed;
mod plugin;
pub mod source_map;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

pub use cache::{Cache, Source, write_atomically};
pub use instance::Instance;
pub use limits::Limits;
pub use plugin::{BatchExport, Plugin, digest_of};

use host::HostState;

/// How often the epoch ticks: the granularity of timeouts and of yields to the runtime.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine, the linker with the host's imports, and the epoch ticker.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    fuel: bool,
    cache: Option<Cache>,
}

/// The live version of a pipeline's plugin: swapped atomically on reload; every
/// instance moves to the new version before its next message.
pub type PluginCell = Arc<arc_swap::ArcSwap<Plugin>>;

impl Runtime {
    /// Creates the engine and starts its epoch ticker thread, which ends with the engine.
    ///
    /// `fuel` turns on fuel metering for every store (it costs 10–80% per call): only
    /// when some pipeline sets `limits.fuel`.
    ///
    /// With a `cache`, compiled components are kept on disk and reused.
    pub fn new(fuel: bool, cache: Option<Cache>) -> Result<Self> {
        let mut config = Config::new();
        config.consume_fuel(fuel);
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Component-model async is unused: it costs ~1.3 µs per call when on.
            .concurrency_support(false)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.profiler(profiler()?);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Handler::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        // Linked for every component, used only by those that import it: their pipelines
        // must grant hosts (`registry::admit`), and each request goes through the grant.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;

        let inner = Arc::new(RuntimeInner {
            engine,
            linker,
            fuel,
            cache,
        });
        spawn_epoch_ticker(inner.engine.weak());
        Ok(Self { inner })
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Whether stores meter fuel.
    pub fn meters_fuel(&self) -> bool {
        self.inner.fuel
    }

    fn cache(&self) -> Option<&Cache> {
        self.inner.cache.as_ref()
    }

    fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }
}

/// `SLUICE_WASM_PROFILER=perfmap` (or `jitdump`) names guest functions for `perf`:
/// `perf record -k mono -p PID`, then `perf report` (after `perf inject --jit` for
/// jitdump). Off by default.
fn profiler() -> Result<wasmtime::ProfilingStrategy> {
    Ok(match std::env::var("SLUICE_WASM_PROFILER").as_deref() {
        Err(_) | Ok("") | Ok("none") => wasmtime::ProfilingStrategy::None,
        Ok("perfmap") => wasmtime::ProfilingStrategy::PerfMap,
        Ok("jitdump") => wasmtime::ProfilingStrategy::JitDump,
        Ok(other) => anyhow::bail!(
            "SLUICE_WASM_PROFILER={other:?}: use \"perfmap\" or \"jitdump\" (or unset it)"
        ),
    })
}

/// Ticks for as long as the engine lives — stores hold it too, so a guest still running
/// somewhere (a call being cancelled while its daemon goes away) keeps reaching its
/// yields and ends.
fn spawn_epoch_ticker(engine: wasmtime::EngineWeak) {
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the epoch ticker; handler timeouts will not fire"));
}
