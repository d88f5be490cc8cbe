//! What every benchmark starts with.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Builds every plugin (`scripts/build-plugins.sh`, into `target/plugins`) and returns
/// the workspace root.
pub fn build_plugins() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_owned();
    if !Command::new("bash")
        .arg(root.join("scripts/build-plugins.sh"))
        .status()?
        .success()
    {
        bail!("building the plugins failed");
    }
    Ok(root)
}
