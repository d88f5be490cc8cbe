//! `sluice run` and `sluice dev`: load the config (with the command line's overrides,
//! again on every reload), start the daemon, and announce a private redis-server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::{DevArgs, RunArgs};
use crate::config::Config;

impl RunArgs {
    /// Runs the config until SIGTERM/SIGINT; SIGHUP reloads it.
    pub async fn run(self) -> Result<ExitCode> {
        let overrides = Overrides {
            redis: self.setup.redis,
            consumer: self.consumer,
            watch: self.watch,
        };
        run(self.setup.config, overrides).await
    }
}

impl DevArgs {
    /// `sluice dev`: `run` with every plugin watched.
    pub async fn run(self) -> Result<ExitCode> {
        let overrides = Overrides {
            redis: self.setup.redis,
            consumer: None,
            watch: true,
        };
        run(self.setup.config, overrides).await
    }
}

/// What the command line says over the config file; applied again on every reload.
#[derive(Clone)]
struct Overrides {
    redis: Option<String>,
    consumer: Option<String>,
    watch: bool,
}

fn load(path: &Path, overrides: &Overrides) -> Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(url) = &overrides.redis {
        config.redis.point_at(url.clone());
        config.validate()?;
    }
    if overrides.consumer.is_some() {
        config.redis.consumer.clone_from(&overrides.consumer);
    }
    config.plugins.watch |= overrides.watch;
    Ok(config)
}

/// Runs a config file until SIGTERM/SIGINT; SIGHUP reloads it.
async fn run(path: PathBuf, overrides: Overrides) -> Result<ExitCode> {
    let config = load(&path, &overrides)?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signals(shutdown.clone())?;
    let mut daemon = match crate::start(config, shutdown.clone()).await {
        Ok(daemon) => daemon,
        // SIGTERM during start-up (while Redis does not answer, say) is a stop asked
        // for, not a failure.
        Err(e) if shutdown.is_cancelled() && e.downcast_ref::<crate::DaemonFailed>().is_none() => {
            tracing::info!(reason = %format!("{e:#}"), "stopped during start-up");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    let announced = announce_private_redis(&daemon, &path).map(std::sync::Arc::new);
    if let Some(announced) = announced.clone() {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            while tokio::select! { _ = stop.cancelled() => false, _ = every.tick() => true } {
                announced.refresh();
            }
        });
    }
    daemon.reload_with(Box::new(move || load(&path, &overrides)));
    crate::shutdown::on_hangup(daemon.reload_handle())?;
    daemon.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// With a private redis-server: says how to reach it, and announces it for the tools
/// run with the same config (`send`, `dlq`) for as long as the guard lives.
fn announce_private_redis(
    daemon: &crate::Daemon,
    path: &Path,
) -> Option<crate::redis_server::announce::Announced> {
    if !daemon.runs_private_redis() {
        return None;
    }
    let url = daemon.redis_url();
    let pipelines = daemon.entry_pipelines();
    let pipeline = match pipelines.as_slice() {
        [one] => one.clone(),
        _ => "PIPELINE".to_owned(),
    };
    tracing::info!(
        "send entries with `sluice send {pipeline} -c {} NAME=VALUE...` (it finds this server; entries come in through {}), or from anything else at {url}",
        path.display(),
        pipelines.join(", ")
    );
    match crate::redis_server::announce::announce(path, url) {
        Ok(announced) => Some(announced),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot announce the private server: `sluice send` and `sluice dlq` need --redis {url}");
            None
        }
    }
}
