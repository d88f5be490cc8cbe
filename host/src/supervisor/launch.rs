//! Starting one pipeline: its plugin compiled (or taken from the cache) and admitted,
//! its slot in the registry, its thread.

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::Daemon;
use super::partitions::Partitions;
use super::thread::{Running, spawn_pipeline};
use crate::config::PipelineConfig;
use crate::registry::Streams;
use crate::wasm::{Plugin, Source};

impl Daemon {
    pub(super) async fn load_plugin(&self, pipeline: &PipelineConfig) -> Result<Plugin> {
        let name = pipeline.name.clone();
        let path = pipeline.plugin.clone();
        let runtime = self.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || Plugin::load(&runtime, &path))
            .await?
            .with_context(|| format!("pipeline {:?} cannot start", name.as_str()))?;
        crate::registry::admit(&plugin, &pipeline.state, &pipeline.allowed_outbound_hosts)
            .with_context(|| {
                format!(
                    "pipeline {:?} cannot start with plugin {}",
                    name.as_str(),
                    pipeline.plugin.display()
                )
            })?;
        tracing::info!(pipeline = %name, plugin = %plugin.digest(), compile_ms = plugin.compile_time().as_millis() as u64, cached = plugin.source() == Source::Cached, "plugin loaded");
        Ok(plugin)
    }

    pub(super) async fn start_pipeline(
        &mut self,
        config: PipelineConfig,
        plugin: Plugin,
    ) -> Result<()> {
        let name = config.name.to_string();
        if self.broker.is_cluster() {
            config
                .check_slots()
                .with_context(|| format!("pipeline {name:?} cannot start"))?;
        }
        let streams = Streams::of(&config);
        // The running config keeps `concurrency` as written (a reload compares them);
        // the pipeline gets it resolved for its plugin.
        let mut resolved = config.clone();
        resolved.concurrency = Some(config.resolve_concurrency(plugin.interpreter().is_some()));
        if config.concurrency.is_none()
            && config.allowed_outbound_hosts.is_empty()
            && let Some(language) = plugin.interpreter()
        {
            tracing::info!(pipeline = %name, concurrency = resolved.concurrency, "the plugin embeds a {language} interpreter: one instance per core (set `concurrency` to choose; 1 keeps outputs in input order)");
        }
        let export = export_of(&plugin, &config);
        tracing::info!(pipeline = %name, "entries go to {export}");
        let cell = self.registry.add(&name, &config.plugin, streams, plugin);
        let slot = self.registry.get(&name).context("slot added above")?;
        let (board, shadow) = (slot.board().clone(), slot.shadow().clone());
        let stop = self.shutdown.child_token();
        let kill = CancellationToken::new();
        let partitions = Partitions {
            config: resolved,
            cell,
            shadow,
            broker: self.broker.clone(),
            consumer: self.consumer.clone(),
            names: self.names.clone(),
            board,
            tracing: self.tracing.clone(),
        };
        let (started, ended) = spawn_pipeline(partitions, stop.clone(), kill.clone())
            .with_context(|| format!("pipeline {name:?} cannot start"))?;
        let running = Running {
            config,
            stop,
            kill,
            ended,
        };
        started
            .await
            .context("its thread ended before it started")
            .and_then(|started| started)
            .with_context(|| format!("pipeline {name:?} cannot start"))?;
        self.pipelines.insert(name, running);
        Ok(())
    }
}

/// Which export takes a pipeline's entries, in words (the rule is the handler stage's,
/// in `pipeline::handler`).
fn export_of(plugin: &Plugin, config: &PipelineConfig) -> String {
    match plugin.batch_export() {
        Some(e) if config.state.is_empty() => format!(
            "{} (each instance's share of a batch in one call)",
            e.name()
        ),
        Some(e) => format!(
            "handle per entry (the pipeline has state; {} is not used)",
            e.name()
        ),
        None => "handle per entry (the component has no batch export)".to_owned(),
    }
}
