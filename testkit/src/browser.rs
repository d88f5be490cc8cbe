//! The dashboard's checks in a real headless browser: Node scripts in `host/tests/browser`
//! driving Chromium with playwright-core (both installed by `scripts/setup.sh`).

use tokio::sync::{Mutex, MutexGuard};

use crate::workspace;

/// Waits for this test's turn at the browser, held until the guard is dropped. One
/// Chromium at a time: the tests share a process and 2 cores, and two browsers starting
/// beside the daemons under test would crowd the checks' time limits.
pub async fn browser_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    TURN.lock().await
}

/// `node SCRIPT` in `host/tests/browser`, killed if the test drops it (a timeout): add
/// the script's arguments, then run it. Take [`browser_turn`] first.
pub fn browser(script: &str) -> tokio::process::Command {
    let mut node = tokio::process::Command::new("node");
    node.current_dir(workspace().join("host/tests/browser"))
        .arg(script)
        .kill_on_drop(true);
    node
}
