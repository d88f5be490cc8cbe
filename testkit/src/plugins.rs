//! The real plugins the tests and benches run, built from `plugins/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The plugins the tests use (every one in `plugins/` is built).
const PLUGINS: &[&str] = &[
    "payments",
    "payments-js",
    "payments-ts",
    "echo-js",
    "echo-lists-js",
    "payments-python",
    "payments-c",
    "order-status",
    "order-status-js",
    "order-status-python",
    "order-status-c",
    "echo",
    "hostile",
    "other-world",
    "stateful",
    "legacy-0-1-0",
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ has a parent")
        .to_owned()
}

/// Builds every plugin into `target/plugins` with `scripts/build-plugins.sh`, which
/// runs `sluice build` (this run's binary: the outer `cargo test` holds the lock on the
/// main target directory, so the script cannot build one) and returns that directory;
/// once per process.
pub fn build_plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(workspace().join("scripts/build-plugins.sh"))
            .env("SLUICE", crate::sluice_binary())
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("cannot run scripts/build-plugins.sh");
        assert!(status.success(), "building the plugins failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)");
        workspace().join("target/plugins")
    })
}

/// The component built from `plugins/NAME` for `wasm32-wasip2` — the same files the
/// example configs point at.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = build_plugins().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "no plugin at {}", path.display());
    path
}

/// Replaces each `{plugin:NAME}` in `text` with the path of the built plugin.
pub fn with_plugins(text: &str) -> String {
    let mut text = text.to_owned();
    for name in PLUGINS {
        let marker = format!("{{plugin:{name}}}");
        if text.contains(&marker) {
            text = text.replace(&marker, &plugin_wasm(name).display().to_string());
        }
    }
    text
}

/// Runs `sluice invoke ARGS` (this run's binary) with its own compiled-code cache;
/// returns (exit code, stdout, stderr).
pub fn invoke(args: &[&str]) -> (i32, String, String) {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = Command::new(crate::sluice_binary())
        .arg("invoke")
        .args(args)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("run sluice invoke");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
