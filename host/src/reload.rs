//! Hot reload: the only user of `notify`. Watches each pipeline's plugin file and, once a
//! change has settled, compiles the new version off the hot path and swaps it in.
//!
//! Editors and `cargo build` write a file in several steps; a change is acted on only
//! after the file has been quiet for [`DEBOUNCE`], and a half-written file fails
//! compilation and leaves the running version serving.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::{Registry, Slot};
use crate::wasm::Runtime;

/// How long a plugin file must be quiet before it is loaded, after a write that may be
/// one of several.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// The wait after an event that says the file is complete: closed after writing, or
/// renamed into place (what `cargo build` and careful deploy scripts do).
pub const SETTLE: Duration = Duration::from_millis(20);

/// Starts watching every plugin file of `registry` until `shutdown`.
pub fn watch(registry: Arc<Registry>, runtime: Runtime, shutdown: CancellationToken) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(PathBuf, Duration)>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let wait = if is_complete(&event.kind) {
                SETTLE
            } else {
                DEBOUNCE
            };
            for path in event.paths {
                let _ = tx.send((path, wait));
            }
        }
    })
    .context("cannot start the plugin file watcher")?;
    let mut by_path: HashMap<PathBuf, Arc<Slot>> = HashMap::new();
    for slot in registry.slots() {
        let slot = &slot;
        let path = std::fs::canonicalize(slot.path())
            .with_context(|| format!("cannot watch {}", slot.path().display()))?;
        let dir = path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        // Watch the directory: editors and builds replace the file rather than write it.
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        tracing::info!(pipeline = slot.pipeline(), path = %path.display(), "watching the plugin for changes");
        by_path.insert(path, slot.clone());
    }
    tokio::spawn(async move {
        let _watcher = watcher; // lives as long as this task
        let mut due: HashMap<PathBuf, Instant> = HashMap::new();
        loop {
            let next = due.values().min().copied();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                path = rx.recv() => match path {
                    // The latest event decides: a new write postpones, a close hastens.
                    Some((path, wait)) if by_path.contains_key(&path) => {
                        due.insert(path, Instant::now() + wait);
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = sleep_until(next) => {
                    let now = Instant::now();
                    let ready: Vec<PathBuf> = due.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
                    for path in ready {
                        due.remove(&path);
                        if let Some(slot) = by_path.get(&path) {
                            // Errors are logged and kept in the slot's status by `deploy`.
                            let _ = slot.reload_file(&runtime).await;
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// Whether an event says the file is whole: closed after writing, or renamed into place.
fn is_complete(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
    )
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
