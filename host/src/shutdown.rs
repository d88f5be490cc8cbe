//! Signals: SIGHUP reloads the config; SIGTERM/SIGINT → one [`CancellationToken`]: the first SIGTERM/SIGINT asks for a drain, a
//! second one exits at once (nothing committed is lost either way: uncommitted entries
//! stay pending in Redis).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::control::ReloadHandle;

/// Cancels `token` on the first SIGTERM or SIGINT; exits the process on the second.
pub fn on_signals(token: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("shutting down: finishing in-flight messages (signal again to exit now)");
        token.cancel();
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::warn!("second signal: exiting now; uncommitted entries stay pending in Redis");
        std::process::exit(130);
    });
    Ok(())
}

/// Reloads the config on every SIGHUP.
pub fn on_hangup(reload: ReloadHandle) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            // The outcome is logged by the daemon; a refused reload keeps the old config.
            let _ = reload.reload().await;
            if reload.is_closed() {
                break;
            }
        }
    });
    Ok(())
}
