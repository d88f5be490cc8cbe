//! Running the build tools, and knowing when a build is up to date.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Runs `command` (the tool `what`), returning its stdout; a failure shows the tool's own
/// error output. A tool that is not installed is named with how to get it.
pub fn tool(what: &str, command: &mut Command) -> Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_run(what, &program, e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let said = [stderr.trim(), stdout.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        bail!("{what} failed ({}):\n{said}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` with its error output shown as it comes (compilers' messages are
/// formatted for the terminal); a failure says which tool failed.
pub fn visible(what: &str, command: &mut Command) -> Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = (command.stdin(Stdio::null()).status()).map_err(|e| not_run(what, &program, e))?;
    if !status.success() {
        bail!("{what} failed ({status}): its messages are above");
    }
    Ok(())
}

/// Why `program` (the tool `what`) could not be started: one not installed is named with
/// how to get it.
fn not_run(what: &str, program: &str, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "{what} is not installed ({program} not found): run scripts/setup.sh in the Sluice checkout"
        ),
        _ => anyhow::Error::from(e).context(format!("cannot run {what} ({program})")),
    }
}

/// Puts the component built at `from` in place at `to`: written beside, then renamed, so
/// that a daemon watching `to` never reads half a file.
pub fn install(from: &Path, to: &Path) -> Result<()> {
    if from == to {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let partial = to.with_extension("wasm.partial");
    std::fs::copy(from, &partial).with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, to).with_context(|| format!("cannot write {}", to.display()))?;
    Ok(())
}

/// A fingerprint of a build's inputs: the files' paths, sizes and modification times, and
/// the settings. The build is skipped when the component exists and the fingerprint is
/// the one recorded beside it.
pub struct Stamp(Sha256);

/// The version of what `sluice build` does with the inputs: a change to it (a new step,
/// another layout) makes every recorded build stale.
const FORMAT: &str = "sluice build 2: source map section";

impl Default for Stamp {
    fn default() -> Self {
        let mut stamp = Stamp(Sha256::new());
        stamp.add(FORMAT);
        stamp
    }
}

/// Directories never counted as inputs: build outputs and caches.
const SKIPPED: &[&str] = &["build", "target", "node_modules", "__pycache__", ".git"];

impl Stamp {
    /// Adds a setting or a content.
    pub fn add(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Adds every file under `path` (or the file itself) but components and build outputs.
    /// A dangling symbolic link (an editor's lock file) is not an input.
    pub fn add_tree(&mut self, path: &Path) -> Result<()> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(_) if path.is_symlink() => return Ok(()),
            Err(e) => {
                let e = anyhow::Error::from(e);
                return Err(e.context(format!("cannot read {}", path.display())));
            }
        };
        if meta.is_file() {
            let modified = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.add(path.as_os_str().as_encoded_bytes());
            self.add(meta.len().to_le_bytes());
            self.add(modified.as_nanos().to_le_bytes());
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                !SKIPPED.contains(&name.as_ref()) && !name.ends_with(".wasm")
            })
            .collect();
        entries.sort();
        for entry in entries {
            self.add_tree(&entry)?;
        }
        Ok(())
    }

    /// Whether `out` is the component built from these inputs (recorded in `record`),
    /// untouched since.
    pub fn is_current(&self, out: &Path, record: &Path) -> bool {
        std::fs::read_to_string(record).is_ok_and(|r| Some(r) == self.line(out))
    }

    /// Records the fingerprint of the build that made the component at `out`.
    pub fn save(&self, out: &Path, record: &Path) -> Result<()> {
        let line = self.line(out).context("the component is missing")?;
        std::fs::write(record, line).with_context(|| format!("cannot write {}", record.display()))
    }

    /// The fingerprint with the component's size and modification time.
    fn line(&self, out: &Path) -> Option<String> {
        let meta = std::fs::metadata(out).ok()?;
        let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        Some(format!(
            "{} {} {}",
            self.hex(),
            meta.len(),
            modified.as_nanos()
        ))
    }

    fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_source_changes_the_stamp_and_build_outputs_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.js"), "1").expect("written");
        std::fs::create_dir(dir.path().join("build")).expect("written");
        let stamp = |dir: &Path| {
            let mut s = Stamp::default();
            s.add_tree(dir).expect("written");
            s.hex()
        };
        let first = stamp(dir.path());
        std::fs::write(dir.path().join("build/x"), "x").expect("written");
        std::fs::write(dir.path().join("a.wasm"), "x").expect("written");
        assert_eq!(stamp(dir.path()), first);
        std::fs::write(dir.path().join("a.js"), "22").expect("written");
        assert_ne!(stamp(dir.path()), first);
    }

    #[test]
    fn a_missing_tool_is_named_with_what_to_do() {
        let err = tool("esbuild", &mut Command::new("/nonexistent/esbuild")).expect_err("refused");
        assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
        let err = tool(
            "sh",
            Command::new("sh").args(["-c", "echo broken >&2; exit 3"]),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("broken") && err.contains("sh failed"), "{err}");
    }
}
