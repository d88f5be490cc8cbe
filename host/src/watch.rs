//! Plugin file watching: the only user of `notify`. Watches each pipeline's plugin file and, once a
//! change has settled, compiles the new version off the hot path and swaps it in.
//!
//! Editors and `cargo build` write a file in several steps; a change is acted on only
//! after the file has been quiet for [`DEBOUNCE`], and a half-written file fails
//! compilation and leaves the running version serving.
//!
//! A plugin path may go through symbolic links, as a Kubernetes ConfigMap mounts files:
//! `echo.wasm -> ..data/echo.wasm`, `..data -> ..v1`, and an update re-points `..data` to a
//! new `..v2` (renamed into place) and removes `..v1`. Every link on the way to the file,
//! and the file it resolves to, is watched (through their directories); after each event
//! the way is resolved again and the watches follow it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
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
            for change in changes(event) {
                let _ = tx.send(change);
            }
        }
    })
    .context("cannot start the plugin file watcher")?;
    let slots = registry.slots();
    // A path may belong to several slots: pipelines can share a plugin file.
    let mut by_path: HashMap<PathBuf, BTreeSet<usize>> = HashMap::new();
    for (index, slot) in slots.iter().enumerate() {
        std::fs::canonicalize(slot.path())
            .with_context(|| format!("cannot watch {}", slot.path().display()))?;
        follow(&mut watcher, &mut by_path, slot.path(), index)?;
        tracing::info!(pipeline = slot.pipeline(), path = %slot.path().display(), "watching the plugin for changes");
    }
    tokio::spawn(async move {
        let mut watcher = watcher; // lives as long as this task
        let mut by_path = by_path;
        let mut due: HashMap<usize, Instant> = HashMap::new();
        loop {
            let next = due.values().min().copied();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                path = rx.recv() => match path {
                    // The latest event decides: a new write postpones, a close hastens.
                    Some((path, wait)) if by_path.contains_key(&path) => {
                        for index in &by_path[&path] {
                            due.insert(*index, Instant::now() + wait);
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = sleep_until(next) => {
                    let now = Instant::now();
                    let ready: Vec<usize> = due.iter().filter(|(_, at)| **at <= now).map(|(i, _)| *i).collect();
                    for index in ready {
                        due.remove(&index);
                        let slot = &slots[index];
                        // The way to the file may have changed (a link re-pointed).
                        if let Err(e) = follow(&mut watcher, &mut by_path, slot.path(), index) {
                            tracing::warn!(pipeline = slot.pipeline(), error = format!("{e:#}"), "cannot watch the plugin's new location");
                        }
                        // Errors are logged and kept in the slot's status by `deploy`.
                        let _ = slot.reload_file(&runtime).await;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Watches every path on the way from `path` to the file it resolves to (each symbolic
/// link met, and the file), through their directories, as belonging to slot `index`.
fn follow(
    watcher: &mut notify::RecommendedWatcher,
    by_path: &mut HashMap<PathBuf, BTreeSet<usize>>,
    path: &Path,
    index: usize,
) -> Result<()> {
    for step in link_chain(path) {
        let dir = step
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        // Watch the directory: editors and builds replace the file rather than write it.
        // Watching one again is harmless; a directory removed and made anew is watched
        // again.
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        by_path.entry(step).or_default().insert(index);
    }
    Ok(())
}

/// `path`, each symbolic link met while resolving it, and what it resolves to (absolute
/// paths; at most 40 links, as the kernel allows).
fn link_chain(path: &Path) -> Vec<PathBuf> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut chain = vec![absolute.clone()];
    let mut current = absolute;
    for _ in 0..40 {
        let mut prefix = PathBuf::new();
        let mut link = None;
        for component in current.components() {
            prefix.push(component);
            if std::fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink()) {
                link = Some(prefix.clone());
                break;
            }
        }
        let Some(link) = link else { break };
        let Ok(target) = std::fs::read_link(&link) else {
            break;
        };
        let rest = current
            .strip_prefix(&link)
            .map(Path::to_owned)
            .unwrap_or_default();
        let base = link.parent().map(Path::to_owned).unwrap_or_default();
        chain.push(link);
        current = normalize(&base.join(target).join(rest));
        chain.push(current.clone());
    }
    chain.dedup();
    chain
}

/// `path` with `.` and `..` resolved lexically (after a link, as the kernel does).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The paths an event changed and how long to wait before loading them: none for a
/// read (a reload reads the file: acting on that would read it again, every DEBOUNCE,
/// for ever).
fn changes(event: notify::Event) -> Vec<(PathBuf, Duration)> {
    if is_read(&event.kind) {
        return Vec::new();
    }
    let wait = if is_complete(&event.kind) {
        SETTLE
    } else {
        DEBOUNCE
    };
    event.paths.into_iter().map(|path| (path, wait)).collect()
}

/// Whether an event is only an access that changes nothing: an open, a read, a close
/// after reading.
fn is_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
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
