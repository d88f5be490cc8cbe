//! The tools that need no Redis: `sluice new`, `sluice invoke` and `sluice compile`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{CompileArgs, InvokeArgs, NewArgs, TestArgs};
use crate::config::Config;

impl NewArgs {
    /// Creates the plugin project.
    pub fn run(self) -> Result<ExitCode> {
        let dir = self.dir.unwrap_or_else(|| PathBuf::from(&self.name));
        let root = match self.sdk {
            Some(root) => root,
            None => crate::build::find_root(&std::env::current_dir()?).context(
                "cannot find a Sluice checkout (wit/ and guest-sdk/) here or above: pass --sdk PATH",
            )?,
        };
        let lang = self.lang;
        let made = crate::scaffold::create(&self.name, lang, self.http, &dir, &root)?;
        let language = match lang {
            crate::scaffold::Language::Rust => "Rust",
            crate::scaffold::Language::Js => "JavaScript",
            crate::scaffold::Language::Ts => "TypeScript",
            crate::scaffold::Language::Python => "Python",
            crate::scaffold::Language::C => "C",
        };
        println!(
            "created {} ({language}; its manifest: {})",
            made.dir.display(),
            made.manifest.display()
        );
        println!("  build: sluice build {}", made.dir.display());
        println!("  test:  sluice test {}", made.wasm.display());
        if self.http {
            println!(
                "  try:   sluice invoke {} --allow-outbound http://127.0.0.1:8080 greeting=hello",
                made.wasm.display()
            );
            println!(
                "  grant: allowed_outbound_hosts = [\"http://127.0.0.1:8080\"] in its [[pipeline]]"
            );
        } else {
            println!(
                "  try:   sluice invoke {} greeting=hello",
                made.wasm.display()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl InvokeArgs {
    /// Calls the handler once; exit status 0 with outputs, 2 when the handler failed.
    pub async fn run(self) -> Result<ExitCode> {
        let mut call = crate::invoke::Invocation {
            stream: self.stream,
            id: self.id,
            attempt: self.attempt,
            ..Default::default()
        };
        call.limits.timeout = self.timeout.unwrap_or(if self.allow_outbound.is_empty() {
            std::time::Duration::from_secs(5)
        } else {
            crate::config::GRANTED_TIMEOUT
        });
        for pair in &self.fields {
            let (name, value) = crate::invoke::parse_pair(pair)?;
            call.fields.push((name, value.into_bytes()));
        }
        if let Some(json) = self.json {
            call.fields.extend(crate::invoke::fields_from_json(&json)?);
        }
        for pair in &self.config {
            let (key, value) = crate::invoke::parse_pair(pair)
                .map_err(|e| e.context("--config takes KEY=VALUE"))?;
            call.config.insert(key, value);
        }
        if let Some(path) = &self.state {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --state {}", path.display()))?;
            call.state = Some(
                crate::state::MemoryStore::from_json(&text)
                    .with_context(|| format!("--state {} is not valid", path.display()))?,
            );
        }
        // Without --state-prefix, the prefixes of the plugin.toml beside the plugin (as
        // `sluice test` and the daemon hold it to), else every key.
        call.state_prefixes = match self.state_prefixes.is_empty() {
            true => crate::fixture::manifest_prefixes(&self.plugin)?,
            false => self.state_prefixes,
        };
        call.allowed_outbound_hosts = self.allow_outbound;
        call.group = self.group;
        let cache = crate::config::PluginsConfig::default().cache_dir();
        let invoked = crate::invoke::invoke(&self.plugin, cache.as_deref(), call).await?;
        if self.output_json {
            let mut json = crate::invoke::render_json(&invoked.result);
            json["state"] = crate::invoke::render_state_json(&invoked.state);
            println!("{json}");
        } else {
            print!("{}", crate::invoke::render_text(&invoked.result));
            print!("{}", crate::invoke::render_state_text(&invoked.state));
        }
        tracing::debug!(digest = %invoked.digest, load = ?invoked.load_time, call = ?invoked.call_time, "invoked");
        Ok(if invoked.result.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    }
}

impl CompileArgs {
    /// Precompiles every pipeline's plugin into the cache.
    pub async fn run(self) -> Result<ExitCode> {
        compile(&self.config).await?;
        Ok(ExitCode::SUCCESS)
    }
}

async fn compile(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    let dir = config.plugins.cache_dir().with_context(|| {
        format!(
            "{}: [plugins] cache is off, so there is nothing to precompile into",
            path.display()
        )
    })?;
    let cache = crate::wasm::Cache::open(&dir)?;
    // The same engine settings as the daemon: compiled code is only reused by an engine
    // configured alike (fuel metering changes it).
    let runtime = crate::wasm::Runtime::new(config.meters_fuel(), Some(cache))?;
    let mut plugins: Vec<PathBuf> = config.pipelines.iter().map(|p| p.plugin.clone()).collect();
    plugins.sort();
    plugins.dedup();
    for plugin in plugins {
        let runtime = runtime.clone();
        let path = plugin.clone();
        let loaded =
            tokio::task::spawn_blocking(move || crate::wasm::Plugin::load(&runtime, &path))
                .await??;
        // The same admission the daemon makes: a plugin that imports handler state only
        // in pipelines that declare state prefixes.
        for pipeline in config.pipelines.iter().filter(|p| p.plugin == plugin) {
            crate::registry::admit(&loaded, &pipeline.state, &pipeline.allowed_outbound_hosts)
                .with_context(|| format!("pipeline {:?}", pipeline.name.as_str()))?;
        }
        let how = match loaded.source() {
            crate::wasm::Source::Compiled => "compiled",
            crate::wasm::Source::Cached => "already cached",
        };
        println!(
            "{how}: {} ({}, {:.0?})",
            loaded.path().display(),
            loaded.digest(),
            loaded.compile_time()
        );
    }
    println!("cache: {}", dir.display());
    Ok(())
}

impl TestArgs {
    /// Runs the fixture cases; exit status 0 when all passed, 1 otherwise.
    pub async fn run(mut self) -> Result<ExitCode> {
        // A project directory: the component its manifest names.
        if self.plugin.is_dir() {
            let manifest = crate::build::manifest::Manifest::load(&self.plugin)?;
            self.plugin = self.plugin.join(manifest.file_name());
        }
        let path = self.fixtures.clone().unwrap_or_else(|| {
            let dir = self.plugin.parent().unwrap_or(Path::new("."));
            dir.join("fixtures.toml")
        });
        let fixtures = crate::fixture::Fixtures::load(&path)?;
        let cache = crate::config::PluginsConfig::default().cache_dir();
        let outcomes = crate::fixture::run(&self.plugin, cache.as_deref(), &fixtures).await?;
        for outcome in &outcomes {
            if outcome.passed() {
                println!("ok    {}", outcome.name);
            } else {
                println!("FAIL  {}", outcome.name);
                for line in &outcome.differences {
                    println!("      {line}");
                }
            }
        }
        let failed = outcomes.iter().filter(|o| !o.passed()).count();
        println!(
            "{} passed, {failed} failed ({})",
            outcomes.len() - failed,
            path.display()
        );
        if let Some(junit) = &self.junit {
            let suite = self
                .plugin
                .file_stem()
                .map_or("plugin".into(), |s| s.to_string_lossy());
            std::fs::write(junit, crate::fixture::junit(&suite, &outcomes))
                .with_context(|| format!("cannot write {}", junit.display()))?;
        }
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
