//! Rust: cargo for `wasm32-wasip2`. The component imports and exports what its code uses,
//! so no world is chosen here; cargo decides what is up to date.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::run;
use super::{Job, Step};

/// The parts of `cargo metadata` a build needs.
#[derive(Deserialize)]
struct Metadata {
    target_directory: PathBuf,
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

/// The crate to build: its package, its library's file name and cargo's target directory.
struct Crate {
    package: String,
    library: String,
    target_directory: PathBuf,
}

pub(super) fn rust(job: &Job) -> Result<Step> {
    let manifest = job.dir.join("Cargo.toml");
    let found = locate(&manifest)?;
    let mut command = Command::new("cargo");
    command
        .args(["build", "--quiet", "--target", "wasm32-wasip2"])
        .args(["--profile", job.profile, "--manifest-path"])
        .arg(&manifest)
        .args(["-p", &found.package]);
    if !job.needs.features.is_empty() {
        command.args(["--features", &job.needs.features.join(",")]);
    }
    run::visible(
        "cargo build (is the target installed? rustup target add wasm32-wasip2)",
        &mut command,
    )?;
    let profile_dir = match job.profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    };
    let built = found
        .target_directory
        .join("wasm32-wasip2")
        .join(profile_dir)
        .join(format!("{}.wasm", found.library.replace('-', "_")));
    Ok(Step {
        world: None,
        built: Some(built),
        stamp: None,
    })
}

/// Finds the package of `manifest` and its `cdylib` target with `cargo metadata`.
fn locate(manifest: &Path) -> Result<Crate> {
    let said = run::tool(
        "cargo metadata",
        Command::new("cargo")
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .arg("--manifest-path")
            .arg(manifest),
    )?;
    let metadata: Metadata = serde_json::from_str(&said).context("cannot read cargo metadata")?;
    let canonical = std::fs::canonicalize(manifest)?;
    let package = metadata
        .packages
        .into_iter()
        .find(|p| std::fs::canonicalize(&p.manifest_path).is_ok_and(|m| m == canonical))
        .with_context(|| format!("cargo metadata lists no package at {}", manifest.display()))?;
    let library = package
        .targets
        .into_iter()
        .find(|t| t.kind.iter().any(|k| k == "cdylib"))
        .with_context(|| {
            format!(
                "{} builds no component: give its [lib] crate-type = [\"cdylib\"]",
                manifest.display()
            )
        })?;
    Ok(Crate {
        package: package.name,
        library: library.name,
        target_directory: metadata.target_directory,
    })
}
