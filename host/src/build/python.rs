//! Python: pure-Python packages from `requirements.txt` are installed into a vendored
//! folder (a package with native code is refused: a component cannot load a `.so`), and
//! componentize-py builds the module for a world.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use super::run::{self, Stamp};
use super::{Job, Step};

pub(super) fn build(job: &Job) -> Result<Step> {
    let entry = job.manifest.entry.as_deref().unwrap_or("app.py");
    let module = entry.strip_suffix(".py").unwrap_or(entry);
    if module.contains(['/', '\\']) || module.starts_with('.') {
        bail!(
            "entry = {entry:?}: name a module file in the project itself (like \"app.py\"); put shared modules on python_path"
        );
    }
    if !job.dir.join(format!("{module}.py")).is_file() {
        bail!(
            "no module {}/{module}.py: name the module that defines the handler in plugin.toml (entry = \"app.py\")",
            job.dir.display()
        );
    }
    let world = world(job.needs);
    let sdk = job.sdk.join("guest-sdk/python");
    let extra: Vec<PathBuf> = job
        .manifest
        .python_path
        .iter()
        .map(|p| job.dir.join(p))
        .collect();
    let mut stamp = Stamp::default();
    stamp.add(&world);
    stamp.add(module);
    for dir in [&job.dir, &sdk, &job.sdk.join("wit")]
        .into_iter()
        .chain(&extra)
    {
        stamp.add_tree(dir)?;
    }
    if !job.force && stamp.is_current(&job.out, &job.record()) {
        return Ok(Step::up_to_date(Some(world)));
    }
    let vendor = vendor(job)?;
    componentize(job, &world, module, &extra, &vendor)?;
    Ok(Step {
        world: Some(world),
        built: Some(job.component()),
        stamp: Some(stamp),
    })
}

/// The world: the manifest's, else from its capabilities (hosts: `http-handler`; state:
/// `stateful-handler`), else `batch-handler` (the SDK's Handler implements
/// `handle_batch`).
fn world(needs: &super::manifest::Needs) -> String {
    let world = match (
        &needs.world,
        needs.allowed_outbound_hosts.is_empty(),
        needs.state.is_empty(),
    ) {
        (Some(world), _, _) => world.as_str(),
        (None, false, false) => "stateful-http-handler",
        (None, false, true) => "http-handler",
        (None, true, false) => "stateful-handler",
        (None, true, true) => "batch-handler",
    };
    world.to_owned()
}

/// Runs componentize-py: the module, with the project, `python_path`, the vendored
/// packages and the SDK on the path.
fn componentize(
    job: &Job,
    world: &str,
    module: &str,
    extra: &[PathBuf],
    vendor: &Path,
) -> Result<()> {
    let sdk = job.sdk.join("guest-sdk/python");
    let mut command = Command::new("python3");
    command
        .args([
            "-c",
            "import sys, componentize_py; sys.exit(componentize_py.script())",
        ])
        .arg("-d")
        .arg(job.sdk.join("wit"))
        .args(["-w", world, "componentize", module, "-p"])
        .arg(&job.dir);
    for dir in extra
        .iter()
        .map(PathBuf::as_path)
        .chain([vendor, sdk.as_path()])
    {
        command.arg("-p").arg(dir);
    }
    command.arg("-o").arg(job.component());
    run::tool("componentize-py", &mut command).map_err(|e| {
        e.context(format!(
            "building for world {world} (if the handler imports the state module, plugin.toml needs `state`; if it imports the HTTP module, `allowed_outbound_hosts`)"
        ))
    })?;
    Ok(())
}

/// Installs `requirements.txt` (if it names anything) into the build's `vendor/`, and
/// refuses packages with native code, named.
fn vendor(job: &Job) -> Result<PathBuf> {
    let vendor = job.staging.join("vendor");
    if vendor.exists() {
        std::fs::remove_dir_all(&vendor)?;
    }
    std::fs::create_dir_all(&vendor)?;
    let requirements = job.dir.join("requirements.txt");
    let text = std::fs::read_to_string(&requirements).unwrap_or_default();
    if !text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    {
        return Ok(vendor);
    }
    if let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("-e") || l.starts_with("--editable"))
    {
        bail!(
            "requirements.txt: {line:?} is an editable install, which leaves the code outside the component: name the package (or its path, without -e)"
        );
    }
    run::tool(
        "pip (python3 -m pip)",
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-compile", "--target"])
            .arg(&vendor)
            .arg("-r")
            .arg(&requirements),
    )?;
    let native = native_packages(&vendor)?;
    if !native.is_empty() {
        bail!(
            "requirements.txt brings native code, which a WebAssembly component cannot load: {} (in {}); use a pure-Python package instead",
            native.join(", "),
            vendor.display()
        );
    }
    Ok(vendor)
}

/// The top-level entries of `vendor` holding a native extension module (`.so`, `.pyd`).
fn native_packages(vendor: &Path) -> Result<Vec<String>> {
    fn has_native(path: &Path) -> bool {
        if path.is_dir() {
            return std::fs::read_dir(path)
                .map(|d| d.filter_map(|e| e.ok()).any(|e| has_native(&e.path())))
                .unwrap_or(false);
        }
        path.extension().is_some_and(|e| e == "so" || e == "pyd")
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(vendor)? {
        let path = entry?.path();
        if has_native(&path) {
            found.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    found.sort();
    Ok(found)
}
