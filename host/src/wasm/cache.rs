//! The precompiled-component cache: compiled code on disk, keyed by the component's
//! digest and the engine's compatibility hash, so that a restart, or a reload of a version
//! seen before, skips compilation.
//!
//! An entry is `sha256(payload) ‖ payload`. A truncated, corrupted or foreign entry fails
//! the check and is rebuilt: nothing read from the cache is trusted unchecked (deserializing
//! compiled code is `unsafe` precisely because it is not validated).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Compiled now (and stored, if there is a cache).
    Compiled,
    /// Loaded from the cache.
    Cached,
}

impl Cache {
    /// A cache in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot create the plugin cache directory {}", dir.display())
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The entry for the component with content digest `digest` on `engine`.
    fn entry(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join(format!("{hex}-{:016x}.cwasm", hasher.finish()))
    }

    /// The compiled component for `bytes`, from the cache when a sound entry exists,
    /// compiled (and stored) otherwise, calling `on_compile` first.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
        on_compile: impl FnOnce(),
    ) -> Result<(Component, Source)> {
        let path = self.entry(engine, digest);
        if let Some(component) = self.read(engine, &path) {
            return Ok((component, Source::Cached));
        }
        on_compile();
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = self.write(&component, &path) {
            tracing::warn!(path = %path.display(), error = format!("{e:#}"), "cannot store the compiled plugin in the cache");
        }
        Ok((component, Source::Compiled))
    }

    fn read(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let data = std::fs::read(path).ok()?;
        let sound = data.len() > 32 && Sha256::digest(&data[32..]).as_slice() == &data[..32];
        if !sound {
            tracing::warn!(path = %path.display(), "ignoring a corrupt plugin cache entry; recompiling");
            return None;
        }
        // SAFETY: the payload is byte for byte what `serialize` wrote for this engine
        // configuration (checked by its hash and by the entry's name).
        match unsafe { Component::deserialize(engine, &data[32..]) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable plugin cache entry; recompiling");
                None
            }
        }
    }

    fn write(&self, component: &Component, path: &Path) -> Result<()> {
        let payload = component.serialize().map_err(anyhow::Error::from)?;
        let mut data = Sha256::digest(&payload).to_vec();
        data.extend_from_slice(&payload);
        write_atomically(path, &data)
    }
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename,
/// so that readers see the old file or the new one, never a part. A file replaced keeps
/// its permissions (the temporary file is created private, 0600); a new one stays 0600.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    if let Ok(replaced) = std::fs::metadata(path) {
        tmp.as_file()
            .set_permissions(replaced.permissions())
            .with_context(|| format!("cannot give the new {} its mode", path.display()))?;
    }
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
