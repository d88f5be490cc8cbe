//! Where a daemon's private `redis-server` is, announced in a file so that the tools
//! (`sluice send`, `sluice dlq`) run with the same config find it.
//!
//! The file is `$XDG_RUNTIME_DIR/sluice/<key>.json` (else `<temp dir>/sluice-<uid>/`),
//! `<key>` a digest of the config file's canonical path; it holds `{"url", "pid",
//! "config"}`, is readable by its owner only, and is removed when the daemon stops.
//! An announcement whose process is gone (a `kill -9`) is ignored.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the file says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Announcement {
    /// The private server's URL.
    pub url: String,
    /// The daemon's process ID.
    pub pid: u32,
    /// The config file the daemon runs.
    pub config: PathBuf,
}

/// An announcement in place; removed when dropped.
#[derive(Debug)]
pub struct Announced {
    file: PathBuf,
}

impl Drop for Announced {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Announces that this process runs `config` on the private server at `url`.
pub fn announce(config: &Path, url: &str) -> Result<Announced> {
    let file = file_for(config)?;
    let dir = file.parent().context("an announcement file has a folder")?;
    create_private_dir(dir)?;
    let text = serde_json::to_string(&Announcement {
        url: url.to_owned(),
        pid: std::process::id(),
        config: config.canonicalize()?,
    })?;
    let partial = file.with_extension("json.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, &file))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(Announced { file })
}

/// The private server of a daemon that runs `config` now, if one is announced.
pub fn find(config: &Path) -> Option<Announcement> {
    let text = std::fs::read_to_string(file_for(config).ok()?).ok()?;
    let found: Announcement = serde_json::from_str(&text).ok()?;
    // SAFETY: kill(2) with signal 0 sends nothing; it checks that the process exists.
    let alive = unsafe { libc::kill(found.pid as i32, 0) } == 0;
    alive.then_some(found)
}

fn file_for(config: &Path) -> Result<PathBuf> {
    let path = config
        .canonicalize()
        .with_context(|| format!("cannot find the config file {}", config.display()))?;
    let key = hex::encode(&Sha256::digest(path.as_os_str().as_encoded_bytes())[..8]);
    Ok(runtime_dir().join(format!("{key}.json")))
}

fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("sluice"),
        // SAFETY: getuid(2) cannot fail.
        None => std::env::temp_dir().join(format!("sluice-{}", unsafe { libc::getuid() })),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // In a shared temp dir, someone else may have made it first.
    // SAFETY: getuid(2) cannot fail.
    let uid = unsafe { libc::getuid() };
    let owner = std::fs::metadata(dir)?.uid();
    anyhow::ensure!(
        owner == uid,
        "{} belongs to another user (uid {owner}); set XDG_RUNTIME_DIR to a folder of your own",
        dir.display()
    );
    Ok(())
}
