//! A handler component: compiled once, checked against the `handler` world, pre-linked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ComponentExportIndex};

use super::bindings::HandlerPre;
use super::host::HostState;
use super::{Runtime, Source};

/// A compiled, validated handler component, ready to instantiate cheaply.
pub struct Plugin {
    pub(super) runtime: Runtime,
    pub(super) pre: HandlerPre<HostState>,
    digest: Arc<str>,
    path: PathBuf,
    compile_time: Duration,
    source: Source,
    /// Whether the component imports `sluice:plugin/state`.
    imports_state: bool,
    /// Whether the component imports `wasi:http/outgoing-handler`.
    imports_http: bool,
    /// The language whose interpreter it embeds, if any.
    interpreter: Option<&'static str>,
    /// The bundle's source map (a JavaScript or TypeScript plugin built by `sluice build`).
    source_map: Option<Arc<super::source_map::SourceMap>>,
    /// Its export that takes a batch in one call, if it has one.
    pub(super) batch: Option<(BatchExport, ComponentExportIndex)>,
}

/// How a component takes a batch in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchExport {
    /// `handle-batch: func(list<message>) -> list<result<...>>` (world `batch-handler`,
    /// 0.1.2).
    Lists,
    /// `handle-packed: func(list<u8>) -> list<u8>` (world `packed-batch-handler`, 0.1.3;
    /// the encoding in [`super::packed`]).
    Packed,
}

impl BatchExport {
    /// The export's name.
    pub fn name(self) -> &'static str {
        match self {
            BatchExport::Lists => "handle-batch",
            BatchExport::Packed => "handle-packed",
        }
    }
}

/// The component's export that takes a batch in one call, if any. A component with both
/// takes the packed one: it is the cheaper to call.
fn batch_export(
    runtime: &Runtime,
    component: &Component,
) -> Option<(BatchExport, ComponentExportIndex)> {
    [BatchExport::Packed, BatchExport::Lists]
        .into_iter()
        .find_map(|kind| {
            let is_func =
                component
                    .component_type()
                    .exports(runtime.engine())
                    .any(|(name, item)| {
                        name == kind.name()
                            && matches!(
                                item.ty,
                                wasmtime::component::types::ComponentItem::ComponentFunc(_)
                            )
                    });
            let index = component.get_export_index(None, kind.name())?;
            is_func.then_some((kind, index))
        })
}

/// Says that a component is being compiled: at INFO for one large enough to take seconds
/// (a JavaScript or Python interpreter inside), so that a first start or `sluice invoke`
/// is not silent meanwhile; at DEBUG otherwise.
fn announce_compile(path: &Path, size: usize) {
    const LARGE: usize = 1 << 20;
    let size_text = bytesize::ByteSize(size as u64).display().si().to_string();
    if size >= LARGE {
        tracing::info!(plugin = %path.display(), size = %size_text, "compiling the component (seconds for an embedded interpreter; once per version where the compiled-code cache is on)");
    } else {
        tracing::debug!(plugin = %path.display(), size = %size_text, "compiling the component");
    }
}

impl Plugin {
    /// Reads and compiles the component at `path`. This is CPU-heavy (tens of ms for a
    /// Rust handler, seconds for a JS or Python one): call it off the async runtime.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read plugin {}", path.display()))?;
        Self::from_bytes(runtime, &bytes, path)
            .with_context(|| format!("cannot load plugin {}", path.display()))
    }

    /// Compiles a component from its bytes; `path` names it in messages.
    pub fn from_bytes(runtime: &Runtime, bytes: &[u8], path: &Path) -> Result<Self> {
        check_header(bytes)?;
        let digest = digest_of(bytes);
        let started = Instant::now();
        let announce = || announce_compile(path, bytes.len());
        let compiled = match runtime.cache() {
            Some(cache) => cache.load_or_compile(runtime.engine(), bytes, &digest, announce),
            None => {
                announce();
                Component::new(runtime.engine(), bytes)
                    .map(|c| (c, Source::Compiled))
                    .map_err(anyhow::Error::from)
            }
        };
        let (component, source) = compiled.context("not a valid WebAssembly component (build it for wasm32-wasip2, or wrap a core module with `wasm-tools component new`)")?;
        let compile_time = started.elapsed();
        let imports = |prefix: &str| {
            component
                .component_type()
                .imports(runtime.engine())
                .any(|(name, _)| name.starts_with(prefix))
        };
        let imports_state = imports("sluice:plugin/state@");
        let imports_http = imports("wasi:http/outgoing-handler@");
        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component imports something the host does not provide (Sluice grants `sluice:plugin/host`, `sluice:plugin/state`, `wasi:http/outgoing-handler` and WASI 0.2 without files, env or sockets)")?;
        let pre = HandlerPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not implement the `sluice:plugin/handler` world (it must export `handle`)")?;
        let batch = batch_export(runtime, &component);
        Ok(Self {
            batch,
            runtime: runtime.clone(),
            pre,
            digest,
            path: path.to_owned(),
            compile_time,
            source,
            imports_state,
            imports_http,
            interpreter: interpreter(bytes),
            source_map: super::source_map::SourceMap::of_component(bytes),
        })
    }

    /// The language whose interpreter the component embeds (`"JavaScript"` for
    /// componentize-js, `"Python"` for componentize-py), if it does.
    pub fn interpreter(&self) -> Option<&'static str> {
        self.interpreter
    }

    /// The bundle's source map, which maps stack frames in its log to source lines.
    pub fn source_map(&self) -> Option<&Arc<super::source_map::SourceMap>> {
        self.source_map.as_ref()
    }

    /// Whether the component imports the `state` interface (world `stateful-handler`):
    /// only pipelines that declare `state` prefixes may run it.
    pub fn imports_state(&self) -> bool {
        self.imports_state
    }

    /// Whether the component imports `wasi:http/outgoing-handler` (world `http-handler`):
    /// only pipelines that grant hosts may run it.
    pub fn imports_http(&self) -> bool {
        self.imports_http
    }

    /// Whether the component exports `handle-batch` (world `batch-handler`) or
    /// `handle-packed` (world `packed-batch-handler`): pipelines without `state` then hand
    /// each instance its share of a batch in one call.
    pub fn handles_batches(&self) -> bool {
        self.batch.is_some()
    }

    /// Which batch export the component has, if any.
    pub fn batch_export(&self) -> Option<BatchExport> {
        self.batch.map(|(kind, _)| kind)
    }

    /// The content digest, `sha256:<hex>`: names this exact version in dead letters and logs.
    pub fn digest(&self) -> &Arc<str> {
        &self.digest
    }

    /// Where the component was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long compilation (or loading from the cache) took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Whether the compiled code came from the cache.
    pub fn source(&self) -> Source {
        self.source
    }
}

/// Which interpreter a component embeds, from the `producers` sections of it and its
/// modules (<https://github.com/WebAssembly/tool-conventions/blob/main/ProducersSection.md>):
/// componentize-js records `processed-by ComponentizeJS` and `language JavaScript`;
/// componentize-py, `processed-by component-init-transform` (its pre-initializer).
fn interpreter(bytes: &[u8]) -> Option<&'static str> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        let wasmparser::Payload::CustomSection(section) = payload else {
            continue;
        };
        let wasmparser::KnownCustom::Producers(fields) = section.as_known() else {
            continue;
        };
        for field in fields.into_iter().flatten() {
            for value in field.values.into_iter().flatten() {
                match (field.name, value.name) {
                    ("language", "JavaScript") | ("processed-by", "ComponentizeJS") => {
                        return Some("JavaScript");
                    }
                    ("language", "Python")
                    | ("processed-by", "componentize-py" | "component-init-transform") => {
                        return Some("Python");
                    }
                    _ => {}
                }
            }
        }
    }
    None
}

/// The content digest of a plugin's bytes, `sha256:<hex>`, as [`Plugin::digest`] gives it.
pub fn digest_of(bytes: &[u8]) -> Arc<str> {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes))).into()
}

/// Refuses, in words, what is not a WebAssembly component before the engine does (its
/// error for a text file is a debug dump of byte arrays).
fn check_header(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    if bytes.is_empty() {
        anyhow::bail!("the file is empty: build the plugin into it (a .wasm component)");
    }
    let head = &bytes[..bytes.len().min(8)];
    if !head.starts_with(MAGIC) {
        let shown = String::from_utf8_lossy(&head[..head.len().min(4)]).into_owned();
        anyhow::bail!(
            "not a WebAssembly file: it starts with {shown:?}, not the bytes \"\\0asm\" (is it the plugin's source, or a text file?); build the plugin for wasm32-wasip2 and point at the .wasm"
        );
    }
    if head.len() == 8 && head[4..8] != COMPONENT {
        anyhow::bail!(
            "a core WebAssembly module, not a component: build for wasm32-wasip2 (not wasm32-wasip1 or wasm32-unknown-unknown), or wrap it with `wasm-tools component new`"
        );
    }
    Ok(())
}
