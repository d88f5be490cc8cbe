//! `sluice diff`: the live plugin and a candidate over recorded entries (a stream's, or a
//! pipeline's dead letters), read with XRANGE, compared entry by entry (see `crate::diff`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::{Setup, connect_to, find_pipeline, tool_config};
use crate::config::PipelineConfig;
use crate::diff::{Differ, Report, Settings, render_json_report, render_text_report};
use crate::message::{Field, dead_letter_fields};

/// `sluice diff`.
#[derive(clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub setup: Setup,
    /// The candidate plugin (a `.wasm` component).
    pub candidate: PathBuf,
    /// The pipeline whose entries are read and whose plugin is the live one; its
    /// config table, state prefixes, limits and group are used for both plugins.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// The live plugin [default: the pipeline's].
    #[arg(long)]
    pub live: Option<PathBuf>,
    /// The stream to read [default: the pipeline's input, every partition's].
    #[arg(long)]
    pub stream: Option<String>,
    /// Read the pipeline's dead letters instead (their original fields and IDs, as the
    /// handler saw them).
    #[arg(long, conflicts_with = "stream")]
    pub dead_letters: bool,
    /// The first entry ID to read (inclusive; `-`: the first).
    #[arg(long, default_value = "-")]
    pub from: String,
    /// The last entry ID to read (inclusive; `+`: the last).
    #[arg(long, default_value = "+")]
    pub to: String,
    /// Read at most this many entries (at least 1).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Show at most this many differing entries, field by field.
    #[arg(long, default_value_t = 10)]
    pub show: usize,
    /// What the handlers' `config(key)` answers, over the pipeline's; repeat for more.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The key prefixes the handlers may use [default: the pipeline's `state`].
    #[arg(long = "state-prefix", value_name = "PREFIX")]
    pub state_prefixes: Vec<String>,
    /// Handler state every call starts from, as a JSON object (as `sluice invoke
    /// --state`); default: none.
    #[arg(long, value_name = "FILE.json")]
    pub state: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl DiffArgs {
    /// Runs the diff. Exit status (as diff(1)): 0 every entry gave the same, 1 some
    /// differ, 2 trouble (`main` answers an error with 2).
    pub async fn run(self) -> Result<ExitCode> {
        let config = match (&self.pipeline, &self.setup.redis) {
            (None, Some(_)) if !self.setup.config.exists() => None,
            _ => Some(tool_config(&self.setup.config, self.setup.redis.clone())?),
        };
        let pipeline = match (&self.pipeline, &config) {
            (Some(name), Some(config)) => Some(find_pipeline(config, &self.setup.config, name)?),
            _ => None,
        };
        let (live, streams) = self.plan(pipeline)?;
        let settings = self.settings(pipeline)?;
        let cache = config.as_ref().and_then(|c| c.plugins.cache_dir());
        let fuel = settings.limits.fuel.is_some();
        let live_plugin = crate::invoke::load(&live, cache.as_deref(), fuel)
            .await
            .with_context(|| format!("live plugin {}", live.display()))?;
        let candidate = crate::invoke::load(&self.candidate, cache.as_deref(), fuel)
            .await
            .with_context(|| format!("candidate plugin {}", self.candidate.display()))?;
        if let Some(p) = pipeline {
            // What a deploy to this pipeline would refuse, a diff refuses too.
            crate::registry::admit(&candidate, &p.state, &p.allowed_outbound_hosts).with_context(
                || {
                    format!(
                        "candidate plugin {} cannot run on pipeline {:?} as configured",
                        self.candidate.display(),
                        p.name.as_str()
                    )
                },
            )?;
        }
        let broker = match &config {
            Some(config) => connect_to(config, &self.setup.config, "sluice diff").await?,
            None => self.connect().await?,
        };
        let mut differ = Differ::new(live_plugin, candidate, settings);
        let report = self.compare(&broker, &mut differ, &streams).await?;
        if report.entries == 0 {
            let read: Vec<&str> = streams.iter().map(|(s, _)| s.as_str()).collect();
            bail!(
                "no entries in {} from {} to {}: nothing was compared (check the stream's name and the range; XRANGE reads inclusive IDs)",
                read.join(", "),
                self.from,
                self.to
            );
        }
        self.print(&report, &live);
        Ok(match report.differing {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::from(1),
        })
    }

    /// Reads the entries of `streams` (each with the input it stands for) in pages, up
    /// to `--count`, and compares both plugins on each.
    async fn compare(
        &self,
        broker: &crate::broker::Broker,
        differ: &mut Differ,
        streams: &[(String, String)],
    ) -> Result<Report> {
        let mut report = Report::new(self.show);
        let mut left = usize::try_from(self.count).unwrap_or(usize::MAX);
        for (stream, source) in streams {
            let mut after: Option<String> = None;
            while left > 0 {
                let (from, to) = (&self.from, &self.to);
                let page = (broker.range(stream, after.as_deref(), from, to, left.min(500)))
                    .await
                    .with_context(|| format!("reading {stream} from {from} to {to}"))?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                left -= page.len();
                for (id, fields) in page {
                    let (shown, entry_id, fields) = self.entry(id, fields);
                    if fields.is_empty() {
                        // A letter of an entry too wide to keep holds only its metadata.
                        eprintln!(
                            "{shown}: no fields (a dead letter of an entry too wide to keep): not compared"
                        );
                        continue;
                    }
                    let (a, b) = differ.call(source, &entry_id, fields).await;
                    report.add(&shown, &a, &b);
                }
            }
        }
        Ok(report)
    }

    /// A connection to the `--redis` URL (no config file).
    async fn connect(&self) -> Result<crate::broker::Broker> {
        let mut redis = crate::config::RedisConfig::default();
        redis.point_at(self.setup.redis.clone().unwrap_or_default());
        let deployment = redis.deployment()?.context(
            "sluice diff needs Redis: pass --redis URL, or -c a config file with [redis]",
        )?;
        let stop = tokio_util::sync::CancellationToken::new();
        crate::broker::Broker::connect(&deployment, stop).await
    }

    /// The live plugin, and the streams to read with the input each stands for.
    fn plan(&self, pipeline: Option<&PipelineConfig>) -> Result<(PathBuf, Vec<(String, String)>)> {
        let live = match (&self.live, pipeline) {
            (Some(path), _) => path.clone(),
            (None, Some(p)) => p.plugin.clone(),
            (None, None) => {
                bail!("name the live plugin: --pipeline NAME (its plugin) or --live PLUGIN.wasm")
            }
        };
        let streams = match (pipeline, &self.stream) {
            (_, Some(stream)) => {
                let source = pipeline.map_or_else(|| stream.clone(), |p| p.input.to_string());
                vec![(stream.clone(), source)]
            }
            (Some(p), None) => p
                .parts()
                .iter()
                .map(|part| {
                    let read = match self.dead_letters {
                        true => part.dead_letter_stream(),
                        false => part.input.to_string(),
                    };
                    (read, part.input.to_string())
                })
                .collect(),
            (None, None) => bail!(
                "name the entries: --pipeline NAME (its input, or --dead-letters) or --stream KEY"
            ),
        };
        if self.dead_letters && pipeline.is_none() {
            bail!("--dead-letters reads a pipeline's dead-letter streams: add --pipeline NAME");
        }
        Ok((live, streams))
    }

    /// What both plugins are called with: the pipeline's settings, then the flags'.
    fn settings(&self, pipeline: Option<&PipelineConfig>) -> Result<Settings> {
        let mut settings = Settings {
            group: "diff".into(),
            ..Settings::default()
        };
        if let Some(p) = pipeline {
            settings.group = p.group.to_string();
            settings.config = p.plugin_config.values().clone();
            settings.limits = p.limits;
            settings.state_prefixes = p.state.clone();
            settings.outputs = p.outputs.iter().map(|o| o.to_string()).collect();
        }
        for pair in &self.set {
            let (key, value) = crate::invoke::parse_pair(pair)?;
            settings.config.insert(key, value);
        }
        if !self.state_prefixes.is_empty() {
            settings.state_prefixes = self.state_prefixes.clone();
        }
        if let Some(path) = &self.state {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --state {}", path.display()))?;
            settings.state = crate::state::MemoryStore::from_json(&text)
                .with_context(|| format!("--state {}", path.display()))?;
        }
        Ok(settings)
    }

    /// An entry as read: the ID to show, the ID the handler sees, its fields. A dead
    /// letter loses its `sluice.*` metadata and takes its original ID.
    fn entry(&self, id: String, fields: Vec<Field>) -> (String, String, Vec<Field>) {
        if !self.dead_letters {
            return (id.clone(), id, fields);
        }
        let meta = fields
            .iter()
            .take(dead_letter_fields::COUNT)
            .take_while(|(name, _)| name.starts_with("sluice."))
            .count();
        let original = fields[..meta]
            .iter()
            .find(|(name, _)| name == dead_letter_fields::ID)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| id.clone());
        let shown = format!("{id} (entry {original})");
        (shown, original, fields[meta..].to_vec())
    }

    fn print(&self, report: &Report, live: &std::path::Path) {
        let live = live.display().to_string();
        let candidate = self.candidate.display().to_string();
        if self.json {
            println!("{:#}", render_json_report(report, &live, &candidate));
        } else {
            print!("{}", render_text_report(report, &live, &candidate));
        }
    }
}
