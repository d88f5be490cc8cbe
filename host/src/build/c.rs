//! C: clang-19 with wasi-libc, the SDK's `sluice.c`, and bindings of the handler world
//! with state and wasi:http (the `sluice-c` tool, built with cargo), then `sluice-c
//! component`. wasm-ld drops the imports the code never calls, so the component's world
//! is its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use super::run::{self, Stamp};
use super::{Job, Step};

pub(super) fn build(job: &Job) -> Result<Step> {
    let c_sdk = job.sdk.join("guest-sdk/c");
    let tool = tool(job)?;
    let cc = std::env::var("SLUICE_CC").unwrap_or_else(|_| "clang-19".to_owned());
    let cflags = std::env::var("SLUICE_CFLAGS").unwrap_or_default();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&job.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        bail!("{} has no .c file to build", job.dir.display());
    }
    let includes: Vec<PathBuf> = job
        .manifest
        .include
        .iter()
        .map(|p| job.dir.join(p))
        .collect();
    let mut stamp = Stamp::default();
    stamp.add(&cc);
    stamp.add(&cflags);
    for path in [&job.dir, &c_sdk, &job.sdk.join("wit"), &tool]
        .into_iter()
        .chain(&includes)
    {
        stamp.add_tree(path)?;
    }
    if !job.force && stamp.is_current(&job.out, &job.record()) {
        return Ok(Step::up_to_date(None));
    }
    compile(job, &tool, &cc, &cflags, &sources, &includes)?;
    Ok(Step {
        world: None,
        built: Some(job.component()),
        stamp: Some(stamp),
    })
}

/// Makes the bindings, compiles and links the core module, and turns it into the
/// component.
fn compile(
    job: &Job,
    tool: &Path,
    cc: &str,
    cflags: &str,
    sources: &[PathBuf],
    includes: &[PathBuf],
) -> Result<()> {
    let c_sdk = job.sdk.join("guest-sdk/c");
    let bindings = job.staging.join("bindings");
    run::tool(
        "sluice-c bindings",
        Command::new(tool)
            .args(["bindings", "--wit"])
            .arg(job.sdk.join("wit"))
            .args([
                "--world",
                "stateful-http-handler",
                "--as",
                "handler",
                "--out",
            ])
            .arg(&bindings),
    )?;
    let core = job.staging.join("core.wasm");
    let mut clang = Command::new(cc);
    clang
        .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-s"])
        .args(["-Wall", "-Wextra"])
        .args(cflags.split_whitespace());
    for dir in [&bindings, &c_sdk].into_iter().chain(includes) {
        clang.arg("-I").arg(dir);
    }
    clang
        .arg("-o")
        .arg(&core)
        .args(sources)
        .arg(c_sdk.join("sluice.c"));
    clang
        .arg(bindings.join("handler.c"))
        .arg(bindings.join("handler_component_type.o"));
    run::visible(
        &format!("{cc} (set SLUICE_CC to use another clang)"),
        &mut clang,
    )?;
    run::tool(
        "sluice-c component",
        Command::new(tool)
            .arg("component")
            .arg(&core)
            .arg("-o")
            .arg(job.component()),
    )?;
    Ok(())
}

/// Builds the `sluice-c` tool of the SDK (in `CARGO_TARGET_DIR`, else beside the build's
/// scratch directories) and returns its path.
fn tool(job: &Job) -> Result<PathBuf> {
    let tool_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => job.staging.parent().unwrap_or(&job.staging).join("tool"),
    };
    run::visible(
        "cargo build -p sluice-c",
        Command::new("cargo")
            .args(["build", "--quiet", "-p", "sluice-c", "--manifest-path"])
            .arg(job.sdk.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&tool_dir),
    )?;
    Ok(tool_dir.join("debug/sluice-c"))
}
