//! The control plane: asking a running daemon to reload its config (SIGHUP, the admin
//! API), what a reload changed, and the plan of a reload — a pure diff of the running
//! pipelines against the wanted ones. The supervisor carries plans out; `admin` and
//! `shutdown` only ask.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, PipelineConfig};

/// Reads the config again for a reload (the CLI re-applies its overrides).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config> + Send + Sync>;

/// Where the outcome of one reload request goes.
pub type ReloadReply = oneshot::Sender<Result<ReloadReport, String>>;

/// Asks a running daemon to reload its config.
#[derive(Clone)]
pub struct ReloadHandle(mpsc::Sender<ReloadReply>);

/// The daemon's end: reload requests, in the order they came.
pub struct ReloadRequests(mpsc::Receiver<ReloadReply>);

/// A handle and the requests it sends; a few requests may wait while one runs.
pub fn reload_channel() -> (ReloadHandle, ReloadRequests) {
    let (tx, rx) = mpsc::channel(4);
    (ReloadHandle(tx), ReloadRequests(rx))
}

impl ReloadHandle {
    /// Reloads and waits for the outcome.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "the daemon is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the daemon is shutting down".to_owned())?
    }

    /// Whether the daemon has stopped taking reloads.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl ReloadRequests {
    /// The next request; `None` once every handle is gone.
    pub async fn next(&mut self) -> Option<ReloadReply> {
        self.0.recv().await
    }
}

/// What a config reload changed (and, before it runs, what it will change).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Pipelines started.
    pub added: Vec<String>,
    /// Pipelines drained and stopped.
    pub removed: Vec<String>,
    /// Pipelines stopped and started with their new settings.
    pub restarted: Vec<String>,
}

impl ReloadReport {
    /// Pipelines to start: the added and the restarted.
    pub fn starting(&self) -> impl Iterator<Item = &String> {
        self.added.iter().chain(&self.restarted)
    }

    /// Pipelines to stop: the removed and the restarted.
    pub fn stopping(&self) -> impl Iterator<Item = &String> {
        self.removed.iter().chain(&self.restarted)
    }
}

/// In words, for the log: `added a, b; restarted c` or `no pipeline changed`.
impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.restarted),
        ]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {}", names.join(", ")))
        .collect();
        match parts.is_empty() {
            true => f.write_str("no pipeline changed"),
            false => f.write_str(&parts.join("; ")),
        }
    }
}

/// The plan of a reload from the `running` pipelines (by name) to the `wanted` ones: a
/// pipeline whose settings are unchanged keeps running untouched; one whose settings
/// changed in any way restarts. Names are listed in name order.
pub fn plan(running: &BTreeMap<String, PipelineConfig>, wanted: &[PipelineConfig]) -> ReloadReport {
    let wanted: BTreeMap<&str, &PipelineConfig> =
        wanted.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut report = ReloadReport::default();
    for (name, config) in running {
        match wanted.get(name.as_str()) {
            None => report.removed.push(name.clone()),
            Some(new) if *new != config => report.restarted.push(name.clone()),
            Some(_) => {}
        }
    }
    report.added = wanted
        .keys()
        .filter(|name| !running.contains_key(**name))
        .map(|name| (*name).to_owned())
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_as_words() {
        let report = ReloadReport {
            added: vec!["a".into(), "b".into()],
            removed: vec![],
            restarted: vec!["c".into()],
        };
        assert_eq!(report.to_string(), "added a, b; restarted c");
        assert_eq!(ReloadReport::default().to_string(), "no pipeline changed");
    }

    fn pipelines(toml: &str) -> Vec<PipelineConfig> {
        crate::config::Config::parse(toml, std::path::Path::new("."))
            .expect("config")
            .pipelines
    }

    fn running(list: Vec<PipelineConfig>) -> BTreeMap<String, PipelineConfig> {
        list.into_iter().map(|p| (p.name.to_string(), p)).collect()
    }

    fn pipeline(name: &str, extra: &str) -> String {
        format!(
            "[[pipeline]]\nname = \"{name}\"\nplugin = \"Cargo.toml\"\ninput = \"in-{name}\"\ngroup = \"g\"\n{extra}\n"
        )
    }

    /// The same config plans nothing; a new name is added, a missing one removed, any
    /// changed setting restarts, and the untouched one is not named at all.
    #[test]
    fn a_reload_adds_removes_and_restarts_by_name() {
        let before = running(pipelines(&format!(
            "{}{}{}",
            pipeline("a", ""),
            pipeline("b", ""),
            pipeline("c", "batch = 10")
        )));
        let same: Vec<_> = before.values().cloned().collect();
        assert_eq!(plan(&before, &same), ReloadReport::default());
        let after = pipelines(&format!(
            "{}{}{}",
            pipeline("d", ""),
            pipeline("c", "batch = 20"),
            pipeline("a", "")
        ));
        let report = plan(&before, &after);
        assert_eq!(report.added, ["d"]);
        assert_eq!(report.removed, ["b"]);
        assert_eq!(report.restarted, ["c"]);
        assert_eq!(
            report.starting().collect::<Vec<_>>(),
            ["d", "c"],
            "added, then restarted"
        );
        assert_eq!(report.stopping().collect::<Vec<_>>(), ["b", "c"]);
    }

    /// Nothing running: everything wanted is added; nothing wanted: everything removed.
    #[test]
    fn from_and_to_nothing() {
        let all = pipelines(&format!("{}{}", pipeline("x", ""), pipeline("y", "")));
        let report = plan(&BTreeMap::new(), &all);
        assert_eq!(report.added, ["x", "y"]);
        let report = plan(&running(all), &[]);
        assert_eq!(report.removed, ["x", "y"]);
        assert!(report.added.is_empty() && report.restarted.is_empty());
    }
}
