//! A config reload: the plan (`control::plan`), carried out — new and changed plugins
//! compiled first (a broken one refuses the whole reload), the consumer name held in
//! the groups of the pipelines that start, removed and changed pipelines drained, the
//! new ones started.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::Daemon;
use super::thread::{Running, stop_all};
use crate::config::{Config, PipelineConfig};
use crate::control::{self, ReloadReport};
use crate::wasm::Plugin;

impl Daemon {
    pub(super) async fn reload(&mut self) -> Result<ReloadReport> {
        // Not while a deploy, promotion or revert is under way.
        let registry = self.registry.clone();
        let _one = registry.plugin_change().await;
        let loader = self
            .loader
            .as_ref()
            .context("this daemon was started without a config file to reload")?;
        let config = loader()?;
        self.warn_unapplied(&config);
        let running: BTreeMap<String, PipelineConfig> = self
            .pipelines
            .iter()
            .map(|(name, r)| (name.clone(), r.config.clone()))
            .collect();
        let report = control::plan(&running, &config.pipelines);
        let mut wanted: BTreeMap<String, PipelineConfig> = config
            .pipelines
            .into_iter()
            .map(|p| (p.name.to_string(), p))
            .collect();
        // Compile every new or changed plugin first: a broken one refuses the whole reload.
        let mut plugins = self.compile(&report, &wanted).await?;
        // The consumer name, held in the groups of the pipelines that start.
        let starting: Vec<PipelineConfig> = report
            .starting()
            .filter_map(|name| wanted.get(name).cloned())
            .collect();
        self.names.add_pipelines(&starting).await?;
        let stopping: Vec<Running> = report
            .stopping()
            .filter_map(|name| self.pipelines.remove(name))
            .collect();
        stop_all(stopping, self.drain_timeout).await;
        for name in &report.removed {
            self.registry.remove(name);
        }
        for name in report.starting() {
            let pipeline = wanted
                .remove(name)
                .context("planned from the wanted list")?;
            let plugin = plugins.remove(name).context("plugin compiled above")?;
            self.start_pipeline(pipeline, plugin).await?;
        }
        self.restart_watcher()?;
        tracing::info!("config reloaded: {report}");
        Ok(report)
    }

    /// Says which changed sections a reload does not apply.
    fn warn_unapplied(&self, config: &Config) {
        for (section, changed) in [
            ("[telemetry]", config.telemetry != self.started.telemetry),
            ("[plugins]", config.plugins != self.started.plugins),
            ("[admin]", config.admin != self.started.admin),
        ] {
            if changed {
                tracing::warn!(
                    "{section} changed: it is read at start-up only, so the running settings stay until the daemon restarts"
                );
            }
        }
    }

    /// Compiles the plugin of every pipeline `report` starts (new or changed).
    async fn compile(
        &self,
        report: &ReloadReport,
        wanted: &BTreeMap<String, PipelineConfig>,
    ) -> Result<BTreeMap<String, Plugin>> {
        let mut plugins = BTreeMap::new();
        for name in report.starting() {
            let pipeline = wanted.get(name).context("planned from the wanted list")?;
            if self.broker.is_cluster() {
                pipeline
                    .check_slots()
                    .with_context(|| format!("pipeline {name:?} cannot start"))?;
            }
            plugins.insert(name.clone(), self.load_plugin(pipeline).await?);
        }
        Ok(plugins)
    }
}
