//! Where a daemon's private `redis-server` is, announced in a file so that the tools
//! (`sluice send`, `sluice dlq`) run with the same config find it.
//!
//! The file is `$XDG_RUNTIME_DIR/sluice/<key>.json` (else `<temp dir>/sluice-<uid>/`),
//! `<key>` a digest of the config file's canonical path; it holds `{"url", "pid",
//! "started", "config"}`, is readable by its owner only, and is removed when the daemon
//! stops (if it is still its own). An announcement whose process is gone (a `kill -9`)
//! is ignored: the process must be alive *and* have started when the announcement says
//! (`/proc/<pid>/stat`), so a reused pid does not count. The latest daemon to start
//! on a config wins; it says so when it takes the place of another.

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
    /// When that process started, in clock ticks after boot (`/proc/<pid>/stat`, field
    /// 22): tells a live daemon from another process that got its pid.
    pub started: u64,
    /// The config file the daemon runs.
    pub config: PathBuf,
}

/// An announcement in place; removed when dropped.
#[derive(Debug)]
pub struct Announced {
    file: PathBuf,
    config: PathBuf,
    text: String,
}

impl Announced {
    /// Puts the announcement back if it is gone or names a process that is gone (a
    /// second daemon on the same config announced itself, then stopped).
    pub fn refresh(&self) {
        if find(&self.config).is_none() {
            let partial = self.file.with_extension("json.partial");
            let _ = std::fs::write(&partial, &self.text)
                .and_then(|()| std::fs::rename(&partial, &self.file));
        }
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        // Another daemon may have announced itself on the same config since.
        let ours = read(&self.file).is_some_and(|a| a.pid == std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// Announces that this process runs `config` on the private server at `url`.
pub fn announce(config: &Path, url: &str) -> Result<Announced> {
    let file = file_for(config)?;
    let dir = file.parent().context("an announcement file has a folder")?;
    create_private_dir(dir)?;
    if let Some(other) = find(config) {
        tracing::warn!(
            "another daemon (pid {}) runs {} on its private server {}: `sluice send` and `sluice dlq` now find this one",
            other.pid,
            config.display(),
            other.url
        );
    }
    let pid = std::process::id();
    let text = serde_json::to_string(&Announcement {
        url: url.to_owned(),
        pid,
        started: start_time(pid).unwrap_or(0),
        config: config.canonicalize()?,
    })?;
    let partial = file.with_extension("json.partial");
    std::fs::write(&partial, &text)
        .and_then(|()| std::fs::rename(&partial, &file))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(Announced {
        file,
        config: config.to_owned(),
        text,
    })
}

/// The private server of a daemon that runs `config` now, if one is announced.
pub fn find(config: &Path) -> Option<Announcement> {
    let found = read(&file_for(config).ok()?)?;
    (start_time(found.pid)? == found.started).then_some(found)
}

fn read(file: &Path) -> Option<Announcement> {
    serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()
}

/// When process `pid` started (clock ticks after boot), if it runs.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_its_start_time() {
        let me = std::process::id();
        let started = start_time(me).expect("this process runs");
        assert_eq!(start_time(me), Some(started));
        // PID 1 started before this process.
        assert!(start_time(1).is_none_or(|init| init <= started));
    }
}
