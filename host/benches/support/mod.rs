//! What every benchmark starts with (not every bench uses every item).
#![allow(dead_code)]

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

/// One seed-shaped order, as the handler benchmarks feed it to the payments plugin.
pub fn order_entry() -> sluice::message::Entry {
    sluice::message::Entry {
        id: "1700000000000-0".into(),
        fields: vec![
            ("orderId".into(), b"01GTP3K2TZQQCQ0T2G43DSSMTD".to_vec()),
            ("orderAmount".into(), b"228.85".to_vec()),
            (
                "userId".into(),
                b"USR_4e7acc44-e91e-4c5c-9112-bdd99d799dd3".to_vec(),
            ),
        ],
        attempt: 1,
        raw_names: None,
        trace: None,
    }
}
