//! Typed config builders: [`ConfigBuilder`] for a config file (top-level settings,
//! `[redis]`, `[admin]`, `[plugins]`, pipelines) and [`PipelineBuilder`] for one
//! `[[pipeline]]` table. `{plugin:NAME}` stands for a built plugin's path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::config::Config;
use toml::{Table, Value};

use crate::plugins::{with_plugins, workspace};

/// Parses a config whose text may mention `{plugin:NAME}` for a built plugin's path.
pub fn config(text: &str) -> Config {
    let text = with_plugins(text);
    Config::parse(&text, &workspace())
        .unwrap_or_else(|e| panic!("test config is invalid: {e:#}\n{text}"))
}

/// Writes a config file (with `{plugin:NAME}` filled in) into `dir` for a daemon process.
pub fn config_file(dir: impl AsRef<Path>, text: &str) -> PathBuf {
    write_config(dir.as_ref(), text)
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, with_plugins(text)).expect("write config");
    path
}

/// A duration as the config writes it (`250ms`, `2s`).
fn duration(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

/// A whole config file, built from typed settings; `Display` gives its TOML.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    top: Table,
    redis: Table,
    tls: Table,
    admin: Option<Table>,
    plugins: Table,
    sections: Table,
    pipelines: Vec<PipelineBuilder>,
}

impl ConfigBuilder {
    /// An empty config (in-process daemons get their `[redis] url` when started).
    pub fn new() -> Self {
        Self::default()
    }

    /// The admin API on a free loopback port.
    pub fn admin(self) -> Self {
        self.admin_set("listen", "127.0.0.1:0")
    }

    /// An `[admin]` setting (`listen`, `max_body`...).
    pub fn admin_set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.admin
            .get_or_insert_with(Table::new)
            .insert(key.to_owned(), value.into());
        self
    }

    /// A top-level setting (`drain_timeout`...).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.top.insert(key.to_owned(), value.into());
        self
    }

    /// How long a stop may take to finish and commit work in flight.
    pub fn drain_timeout(self, timeout: Duration) -> Self {
        self.set("drain_timeout", duration(timeout))
    }

    /// `[redis] url`.
    pub fn redis_url(self, url: impl Into<String>) -> Self {
        self.redis("url", url.into())
    }

    /// A `[redis]` setting (`password_file`, `sentinels`, `wait_replicas`...).
    pub fn redis(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.redis.insert(key.to_owned(), value.into());
        self
    }

    /// A `[redis]` duration setting (`wait_timeout`...).
    pub fn redis_duration(self, key: &str, value: Duration) -> Self {
        self.redis(key, duration(value))
    }

    /// A `[redis.tls]` setting (`ca_file`, `cert_file`, `key_file`, `server_name`).
    pub fn tls(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.tls.insert(key.to_owned(), value.into());
        self
    }

    /// A setting of another table (`[telemetry] otlp_endpoint`...).
    pub fn section(mut self, table: &str, key: &str, value: impl Into<Value>) -> Self {
        match self
            .sections
            .entry(table.to_owned())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(t) => {
                t.insert(key.to_owned(), value.into());
            }
            other => panic!("[{table}] is {other}"),
        }
        self
    }

    /// A `[plugins]` setting (`watch`, `cache`, `cache_dir`).
    pub fn plugins(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.plugins.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a pipeline.
    pub fn pipeline(mut self, pipeline: PipelineBuilder) -> Self {
        self.pipelines.push(pipeline);
        self
    }

    /// The parsed config.
    pub fn config(&self) -> Config {
        config(&self.to_string())
    }

    /// Writes the config as `sluice.toml` in `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        write_config(dir, &self.to_string())
    }
}

impl fmt::Display for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_pairs(f, &self.top)?;
        let mut redis = self.redis.clone();
        if !self.tls.is_empty() {
            redis.insert("tls".to_owned(), Value::Table(self.tls.clone()));
        }
        let mut tables = self.sections.clone();
        for (name, table) in [
            ("redis", Some(redis)),
            ("admin", self.admin.clone()),
            ("plugins", Some(self.plugins.clone())),
        ] {
            if let Some(table) = table.filter(|t| !t.is_empty()) {
                tables.insert(name.to_owned(), Value::Table(table));
            }
        }
        if !tables.is_empty() {
            writeln!(f, "{}", toml::to_string(&tables).map_err(|_| fmt::Error)?)?;
        }
        for pipeline in &self.pipelines {
            write!(f, "{pipeline}")?;
        }
        Ok(())
    }
}

/// `key = value` lines, values inline.
fn write_pairs(f: &mut fmt::Formatter<'_>, table: &Table) -> fmt::Result {
    for (key, value) in table {
        writeln!(f, "{key} = {value}")?;
    }
    if !table.is_empty() {
        writeln!(f)?;
    }
    Ok(())
}

impl From<PipelineBuilder> for ConfigBuilder {
    fn from(pipeline: PipelineBuilder) -> Self {
        ConfigBuilder::new().pipeline(pipeline)
    }
}

/// One `[[pipeline]]` table of a config: the tests' one way to write a pipeline.
#[derive(Clone, Debug)]
pub struct PipelineBuilder {
    name: String,
    plugin: String,
    input: String,
    group: String,
    outputs: Vec<String>,
    settings: Table,
}

/// The tutorial's payments pipeline: `ORDERS_STREAM` (group `ORDERS_CON_GROUP`) →
/// `PAYMENTS_STREAM`, with `plugins/payments`.
pub fn payments(name: &str) -> PipelineBuilder {
    PipelineBuilder::new(
        name,
        "{plugin:payments}",
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
    )
    .writing(&["PAYMENTS_STREAM"])
}

/// The test handler `plugins/echo` on `IN` (group `G`) → `OUT`.
pub fn echo(name: &str) -> PipelineBuilder {
    PipelineBuilder::new(name, "{plugin:echo}", "IN", "G").writing(&["OUT"])
}

impl PipelineBuilder {
    /// A pipeline reading `input` in `group` with `plugin` (`{plugin:NAME}` or a path).
    pub fn new(name: &str, plugin: &str, input: &str, group: &str) -> Self {
        PipelineBuilder {
            name: name.to_owned(),
            plugin: plugin.to_owned(),
            input: input.to_owned(),
            group: group.to_owned(),
            outputs: Vec::new(),
            settings: Table::new(),
        }
    }

    /// Another plugin: `{plugin:NAME}` or a path.
    pub fn plugin(mut self, plugin: impl fmt::Display) -> Self {
        self.plugin = plugin.to_string();
        self
    }

    /// Another input stream and group.
    pub fn reading(mut self, input: &str, group: &str) -> Self {
        self.input = input.to_owned();
        self.group = group.to_owned();
        self
    }

    /// Other output streams.
    pub fn writing(mut self, outputs: &[&str]) -> Self {
        self.outputs = outputs.iter().map(|o| (*o).to_owned()).collect();
        self
    }

    /// Any other setting of the pipeline (`ordering`, `cross_slot`...).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.settings.insert(key.to_owned(), value.into());
        self
    }

    /// A duration setting (`lease_ttl`...).
    pub fn set_duration(self, key: &str, value: Duration) -> Self {
        self.set(key, duration(value))
    }

    /// Entries per read.
    pub fn batch(self, n: i64) -> Self {
        self.set("batch", n)
    }

    /// Calls in flight at once.
    pub fn concurrency(self, n: i64) -> Self {
        self.set("concurrency", n)
    }

    /// Calls of an entry before it is dead-lettered.
    pub fn max_attempts(self, n: i64) -> Self {
        self.set("max_attempts", n)
    }

    /// How long an entry stays pending before another consumer takes it over.
    pub fn claim_idle(self, idle: Duration) -> Self {
        self.set_duration("claim_idle", idle)
    }

    /// The retry backoff, from `initial` doubling to `max`.
    pub fn retry_backoff(self, initial: Duration, max: Duration) -> Self {
        let mut table = Table::new();
        table.insert("initial".to_owned(), duration(initial));
        table.insert("max".to_owned(), duration(max));
        self.set("retry_backoff", table)
    }

    /// `limits.timeout`: the wall time of one call.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.limit("timeout", duration(timeout))
    }

    /// Another `limits` entry (`memory = "16MiB"`, `fuel`, `instance_reuse`...).
    pub fn limit(mut self, key: &str, value: impl Into<Value>) -> Self {
        table(&mut self.settings, "limits").insert(key.to_owned(), value.into());
        self
    }

    /// An entry of the plugin's `config` table.
    pub fn plugin_config(mut self, key: &str, value: impl Into<Value>) -> Self {
        table(&mut self.settings, "config").insert(key.to_owned(), value.into());
        self
    }

    /// The key prefixes the handler's state may use.
    pub fn state(self, prefixes: &[&str]) -> Self {
        let prefixes: Vec<Value> = prefixes.iter().map(|p| Value::from(*p)).collect();
        self.set("state", prefixes)
    }

    /// The dead-letter stream.
    pub fn dead_letter(self, stream: &str) -> Self {
        self.set("dead_letter", stream)
    }

    /// Partitions of the input stream.
    pub fn partitions(self, n: i64) -> Self {
        self.set("partitions", n)
    }

    /// A config with this pipeline alone.
    pub fn config(&self) -> Config {
        config(&self.to_string())
    }

    /// The config `file` with this pipeline added.
    pub fn config_with(&self, file: ConfigBuilder) -> Config {
        file.pipeline(self.clone()).config()
    }

    /// A config file with this pipeline alone and the admin API on.
    pub fn with_admin(self) -> ConfigBuilder {
        ConfigBuilder::from(self).admin()
    }
}

/// The inline table `key` of `settings`, made if missing.
fn table<'a>(settings: &'a mut Table, key: &str) -> &'a mut Table {
    let entry = settings
        .entry(key.to_owned())
        .or_insert_with(|| Value::Table(Table::new()));
    match entry {
        Value::Table(table) => table,
        other => panic!("pipeline setting {key} is {other}, not a table"),
    }
}

impl fmt::Display for PipelineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[[pipeline]]")?;
        writeln!(f, "name = {:?}", self.name)?;
        writeln!(f, "plugin = {:?}", self.plugin)?;
        writeln!(f, "input = {:?}", self.input)?;
        writeln!(f, "group = {:?}", self.group)?;
        writeln!(f, "outputs = {:?}", self.outputs)?;
        for (key, value) in &self.settings {
            writeln!(f, "{key} = {value}")?;
        }
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_render_as_the_config_reads_them() {
        let text = ConfigBuilder::new()
            .drain_timeout(Duration::from_secs(5))
            .admin()
            .redis("sentinels", vec!["127.0.0.1:1".to_owned()])
            .tls("ca_file", "ca.pem")
            .pipeline(
                echo("e")
                    .batch(5)
                    .retry_backoff(Duration::from_millis(50), Duration::from_secs(1))
                    .timeout(Duration::from_secs(2))
                    .state(&["k:"]),
            )
            .to_string();
        let parsed: Table = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["drain_timeout"].as_str(), Some("5s"), "{text}");
        assert_eq!(parsed["redis"]["tls"]["ca_file"].as_str(), Some("ca.pem"));
        assert_eq!(parsed["admin"]["listen"].as_str(), Some("127.0.0.1:0"));
        let pipeline = &parsed["pipeline"][0];
        assert_eq!(pipeline["retry_backoff"]["initial"].as_str(), Some("50ms"));
        assert_eq!(pipeline["limits"]["timeout"].as_str(), Some("2s"));
        assert_eq!(pipeline["batch"].as_integer(), Some(5));
    }
}
