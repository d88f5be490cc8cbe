//! The live plugins, one slot per pipeline: the current version behind an `ArcSwap` (a
//! swap is atomic: calls in flight finish on the old version, the next ones run on the
//! new) and what the operator needs to know about it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use serde::Serialize;

use crate::broker::DeadStream;
use crate::config::PipelineConfig;
use crate::status::Board;
use crate::wasm::{Plugin, PluginCell, Runtime, Source};

/// Every pipeline's plugin slot; pipelines come and go with config reloads.
#[derive(Default)]
pub struct Registry {
    slots: std::sync::RwLock<BTreeMap<String, Arc<Slot>>>,
    /// Plugin changes one at a time: see [`Registry::plugin_change`].
    changes: tokio::sync::Mutex<()>,
}

/// One pipeline's plugin.
pub struct Slot {
    board: Arc<Board>,
    streams: Streams,
    pipeline: String,
    path: PathBuf,
    cell: PluginCell,
    /// A candidate attached beside the running version (see `shadow`).
    shadow: crate::shadow::ShadowCell,
    state: Mutex<SlotState>,
}

struct SlotState {
    loaded_at: SystemTime,
    last_error: Option<String>,
    /// The last versions refused (digest and reason), newest last: the same bytes again
    /// are refused at once, without another compile, warning or count.
    refused: std::collections::VecDeque<(Arc<str>, String)>,
    reloads: u64,
}

/// The streams a pipeline reads and dead-letters to.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Streams {
    /// The input stream, as configured (a partitioned pipeline reads `INPUT:{p}`).
    pub input: String,
    /// Every dead-letter stream, with the input its letters are replayed to: one, or
    /// one per partition, in partition order.
    pub dead_letters: Vec<DeadStream>,
    /// The key prefixes the pipeline's handler state may use (`state`); empty: none.
    pub state: Vec<String>,
    /// The origins its handler may call (`allowed_outbound_hosts`); empty: none.
    #[serde(default)]
    pub outbound_hosts: Vec<String>,
}

impl Streams {
    /// The streams of the pipeline `config`.
    pub fn of(config: &PipelineConfig) -> Self {
        let dead_letters = config
            .parts()
            .iter()
            .map(|part| DeadStream {
                stream: part.dead_letter_stream(),
                input: part.input.to_string(),
            })
            .collect();
        Self {
            input: config.input.to_string(),
            dead_letters,
            state: config.state.clone(),
            outbound_hosts: config.allowed_outbound_hosts.clone(),
        }
    }
}

/// Whether a pipeline whose `state` prefixes are `prefixes` and whose grant is
/// `outbound_hosts` may run `plugin`: a component that imports the `state` interface needs
/// some prefixes, one that imports `wasi:http/outgoing-handler` some granted hosts.
pub fn admit(plugin: &Plugin, prefixes: &[String], outbound_hosts: &[String]) -> Result<()> {
    if plugin.imports_state() && prefixes.is_empty() {
        anyhow::bail!(
            "the plugin imports sluice:plugin/state (world stateful-handler) but the pipeline declares no state prefixes: add state = [\"prefix:\"] to its [[pipeline]] (the keys it may read and write), or build the plugin for world handler"
        );
    }
    if plugin.imports_http() && outbound_hosts.is_empty() {
        anyhow::bail!(
            "the plugin imports wasi:http/outgoing-handler (it sends HTTP requests) but the pipeline grants no hosts: add allowed_outbound_hosts = [\"https://api.example.com\"] (the origins it may call) to its [[pipeline]], or build the plugin without HTTP"
        );
    }
    Ok(())
}

/// What `GET /v1/plugins` shows of a slot.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PluginStatus {
    /// The pipeline.
    pub pipeline: String,
    /// Where the plugin file is; shown only to holders of the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The running version's digest.
    pub digest: String,
    /// When the running version was loaded (seconds since the Unix epoch).
    pub loaded_at: u64,
    /// `ok`, or `error` when the last attempt to load a new version failed (the old
    /// version still serves).
    pub status: String,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Successful reloads since start.
    pub reloads: u64,
}

impl Registry {
    /// Waits for this daemon's turn to change a plugin, held until the guard is dropped:
    /// deploys, shadow runs, promotions, reverts (admin API) and config reloads
    /// (supervisor) run one at a time. Interleaved, a revert could undo the wrong
    /// version, or a reload restart a pipeline on the version a promotion was replacing.
    /// One lock per daemon: daemons embedded in one process do not wait for each other.
    pub async fn plugin_change(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Adds the slot of `pipeline`, serving `plugin` (loaded from `path`). A slot it
    /// replaces (a restart by a config reload) passes on its incidents; its shadow
    /// candidate is detached, recorded with its counts (it was checked against the old
    /// config).
    pub fn add(&self, pipeline: &str, path: &Path, streams: Streams, plugin: Plugin) -> PluginCell {
        let cell: PluginCell = Arc::new(ArcSwap::from_pointee(plugin));
        let board = Arc::new(Board::default());
        if let Some(earlier) = self.get(pipeline) {
            board.carry_incidents(&earlier.board);
            if let Some(shadow) = earlier.shadow.swap(None) {
                board.incident(format!(
                    "shadow detached (the pipeline restarted with a changed config): candidate {}; {}",
                    shadow.plugin().digest(),
                    shadow.summary()
                ));
            }
        }
        let slot = Slot {
            board,
            streams,
            pipeline: pipeline.to_owned(),
            path: path.to_owned(),
            cell: cell.clone(),
            shadow: Default::default(),
            state: Mutex::new(SlotState {
                refused: Default::default(),
                loaded_at: SystemTime::now(),
                last_error: None,
                reloads: 0,
            }),
        };
        self.write().insert(pipeline.to_owned(), Arc::new(slot));
        cell
    }

    /// Removes the slot of `pipeline`.
    pub fn remove(&self, pipeline: &str) {
        self.write().remove(pipeline);
    }

    /// The slot of `pipeline`.
    pub fn get(&self, pipeline: &str) -> Option<Arc<Slot>> {
        self.read().get(pipeline).cloned()
    }

    /// Every slot, by pipeline name.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.read().values().cloned().collect()
    }

    // The lock is never held across an await or a panic-prone call; a poisoned one still
    // holds a consistent map.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Slot>>> {
        crate::lock::read(&self.slots)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Slot>>> {
        crate::lock::write(&self.slots)
    }
}

/// How many refused versions a slot remembers (a bad file flapping between versions is
/// refused once per version).
const REFUSALS_KEPT: usize = 16;

/// How a new version arrived, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// The plugin file changed on disk.
    File,
    /// It was uploaded through the admin API.
    Upload,
}

impl Slot {
    /// The pipeline this slot serves.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The pipeline's status board.
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// The pipeline's streams.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The plugin file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The candidate attached beside the running version, if any.
    pub fn shadow(&self) -> &crate::shadow::ShadowCell {
        &self.shadow
    }

    /// The running version.
    pub fn current(&self) -> Arc<Plugin> {
        self.cell.load_full()
    }

    /// Compiles `bytes` off the async runtime, checks them against the world and, if
    /// they are a new version, makes it the running one. On failure the running version
    /// stays and the error is recorded for the status. Returns the running version and
    /// whether it changed.
    pub async fn deploy(
        &self,
        runtime: &Runtime,
        bytes: Vec<u8>,
        origin: Origin,
    ) -> Result<(Arc<Plugin>, bool)> {
        let current = self.current();
        let digest = crate::wasm::digest_of(&bytes);
        if **current.digest() == *digest {
            if self.lock().last_error.take().is_some() {
                tracing::info!(pipeline = %self.pipeline, version = %digest, "the plugin is the serving version again: the refused version is cleared");
            }
            return Ok((current, false));
        }
        if let Some(reason) = self.refused_again(&digest) {
            self.lock().last_error = Some(reason.clone());
            anyhow::bail!(reason);
        }
        let plugin = match self.compile(runtime, bytes).await {
            Ok(plugin) => plugin,
            Err(e) => {
                self.refuse(digest, origin, &e);
                return Err(e);
            }
        };
        let plugin = Arc::new(plugin);
        tracing::info!(
            pipeline = %self.pipeline,
            ?origin,
            from = %current.digest(),
            to = %plugin.digest(),
            compile_ms = plugin.compile_time().as_millis() as u64,
            cached = plugin.source() == Source::Cached,
            "plugin reloaded"
        );
        self.cell.store(plugin.clone());
        metrics::counter!("sluice_plugin_reloads_total", "pipeline" => self.pipeline.clone())
            .increment(1);
        let mut state = self.lock();
        state.loaded_at = SystemTime::now();
        state.last_error = None;
        state.reloads += 1;
        Ok((plugin, true))
    }

    /// Compiles `bytes` off the async runtime and checks them as this pipeline's plugin
    /// (world, state prefixes, outbound grant): what a deploy, and a shadow run's
    /// candidate, must pass.
    pub async fn compile(&self, runtime: &Runtime, bytes: Vec<u8>) -> Result<Plugin> {
        let (rt, path) = (runtime.clone(), self.path.clone());
        let plugin = tokio::task::spawn_blocking(move || Plugin::from_bytes(&rt, &bytes, &path))
            .await
            .context("the compile task failed")??;
        admit(&plugin, &self.streams.state, &self.streams.outbound_hosts)?;
        Ok(plugin)
    }

    /// Records version `digest` as refused for `error`: one WARN and one count, and
    /// remembered, so that the same bytes again are refused without either.
    fn refuse(&self, digest: Arc<str>, origin: Origin, error: &anyhow::Error) {
        let reason = format!("{error:#}");
        tracing::warn!(pipeline = %self.pipeline, ?origin, version = %digest, error = %reason, "new plugin version refused; the running version keeps serving");
        let mut state = self.lock();
        state.last_error = Some(reason.clone());
        if state.refused.len() == REFUSALS_KEPT {
            state.refused.pop_front();
        }
        state.refused.push_back((digest, reason));
        drop(state);
        metrics::counter!("sluice_plugin_load_failures_total", "pipeline" => self.pipeline.clone())
            .increment(1);
    }

    /// The reason `digest` was refused, if it is one of the versions refused last.
    fn refused_again(&self, digest: &str) -> Option<String> {
        let state = self.lock();
        state
            .refused
            .iter()
            .find(|(refused, _)| **refused == *digest)
            .map(|(_, reason)| reason.clone())
    }

    /// Reads the plugin file and deploys it. A file that cannot be read leaves the
    /// running version serving, with one WARN per distinct reason.
    pub async fn reload_file(&self, runtime: &Runtime) -> Result<(Arc<Plugin>, bool)> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || read_plugin_file(&path))
            .await
            .context("the read task failed")?;
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                let reason = format!("{e:#}");
                let mut state = self.lock();
                if state.last_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(pipeline = %self.pipeline, error = %reason, "cannot read the plugin file; the running version keeps serving");
                }
                state.last_error = Some(reason);
                return Err(e);
            }
        };
        self.deploy(runtime, bytes, Origin::File).await
    }

    /// What the operator sees of this slot.
    pub fn status(&self) -> PluginStatus {
        let current = self.current();
        let state = self.lock();
        let loaded_at = state
            .loaded_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        PluginStatus {
            pipeline: self.pipeline.clone(),
            path: Some(self.path.display().to_string()),
            digest: current.digest().to_string(),
            loaded_at: loaded_at.as_secs(),
            status: if state.last_error.is_some() {
                "error"
            } else {
                "ok"
            }
            .to_owned(),
            last_error: state.last_error.clone(),
            reloads: state.reloads,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        crate::lock::lock(&self.state)
    }
}

/// The largest plugin file read (a component embedding an interpreter is 10-40 MB).
const MAX_PLUGIN_FILE: u64 = 1 << 30;

/// Reads a plugin file: a regular file only (a FIFO would block the read for ever, a
/// device never end), opened without blocking, of at most [`MAX_PLUGIN_FILE`] bytes.
fn read_plugin_file(path: &Path) -> Result<Vec<u8>> {
    use crate::files::{ReadError, read_regular};
    match read_regular(path, MAX_PLUGIN_FILE) {
        Ok(bytes) => Ok(bytes),
        Err(ReadError::Io(e)) => {
            Err(anyhow::Error::new(e).context(format!("cannot read plugin {}", path.display())))
        }
        Err(ReadError::NotRegular) => anyhow::bail!(
            "plugin {} is not a regular file (a directory, FIFO or device): point the pipeline's `plugin` at a .wasm file",
            path.display()
        ),
        Err(ReadError::TooLarge(len)) => anyhow::bail!(
            "plugin {} is {len} bytes, more than the {MAX_PLUGIN_FILE} read",
            path.display()
        ),
    }
}
