//! `sluice invoke`: one handler call on one message, with no Redis — the quickest loop
//! for a plugin author, and what `sluice new` scaffolds are checked with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::LimitsConfig;
use crate::message::{Entry, HandlerError, Output};
use crate::state::{Changes, MemoryStore, Scope, Write};
use crate::wasm::{Cache, Instance, Plugin, PluginCell, Runtime};

/// The message and settings of one call.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The input stream the entry comes from (what the handler sees as `source`).
    pub stream: String,
    /// Its ID.
    pub id: String,
    /// Its delivery attempt (1 for a first delivery).
    pub attempt: u32,
    /// Its fields, in order.
    pub fields: Vec<(String, Vec<u8>)>,
    /// What `config(key)` answers.
    pub config: BTreeMap<String, String>,
    /// The limits the call runs under.
    pub limits: LimitsConfig,
    /// Handler state before the call (`--state FILE.json`); empty if `None`.
    pub state: Option<MemoryStore>,
    /// The key prefixes the handler may use; empty: every key.
    pub state_prefixes: Vec<String>,
    /// The origins the handler may send HTTP requests to (`--allow-outbound`), in the
    /// grammar of `allowed_outbound_hosts`; empty: none.
    pub allowed_outbound_hosts: Vec<String>,
    /// The consumer group the entry's idempotency key is derived from.
    pub group: String,
    /// Timeouts, limits and TLS of its requests, as a pipeline's `http` table.
    pub http: crate::config::HttpConfig,
    /// The header its requests carry the idempotency key in, if any.
    pub idempotency_key_header: Option<String>,
}

impl Default for Invocation {
    fn default() -> Self {
        Self {
            stream: "INPUT".into(),
            id: "0-1".into(),
            attempt: 1,
            fields: Vec::new(),
            config: BTreeMap::new(),
            limits: LimitsConfig::default(),
            state: None,
            state_prefixes: Vec::new(),
            allowed_outbound_hosts: Vec::new(),
            group: "invoke".into(),
            http: Default::default(),
            idempotency_key_header: None,
        }
    }
}

/// What one call came to.
#[derive(Debug)]
pub struct Invoked {
    /// The plugin's digest.
    pub digest: Arc<str>,
    /// Time to compile (or load from the cache) the component.
    pub load_time: Duration,
    /// Time of the call, instantiation included.
    pub call_time: Duration,
    /// The handler's outputs, or why there are none.
    pub result: Result<Vec<Output>, HandlerError>,
    /// The handler state it read and the writes its commit would apply.
    pub state: Changes,
    /// Whether the call ran Wasm past `limits.throttle_after` and was throttled.
    pub throttled: bool,
}

/// Loads the plugin at `path` (through the compiled-code cache in `cache_dir`, if any)
/// and calls its handler once.
pub async fn invoke(path: &Path, cache_dir: Option<&Path>, call: Invocation) -> Result<Invoked> {
    let started = Instant::now();
    let plugin = load(path, cache_dir, call.limits.fuel.is_some()).await?;
    let load_time = started.elapsed();
    let digest = plugin.digest().clone();
    let imports_state = plugin.imports_state();
    let outbound = outbound_of(&plugin, &call)?;
    let cell: PluginCell = Arc::new(arc_swap::ArcSwap::from_pointee(plugin));
    let mut instance = Instance::new(cell, Arc::new(call.config), call.limits.to_limits())
        .serving(&call.group, outbound);
    let mut entry = Entry {
        id: call.id,
        fields: call.fields,
        attempt: call.attempt,
        raw_names: None,
        trace: None,
    };
    // A component that imports state gets it: the `--state` values, every key granted
    // unless prefixes are given.
    let initial = call.state.unwrap_or_default();
    let scope = imports_state.then(|| Scope {
        prefixes: if call.state_prefixes.is_empty() {
            vec![String::new()].into()
        } else {
            call.state_prefixes.clone().into()
        },
        overlay: Default::default(),
        store: Arc::new(initial.clone()),
    });
    let started = Instant::now();
    let (result, finished) = instance
        .handle_in(&call.stream, &mut entry, scope.as_ref())
        .await;
    // What the commit would refuse (a hash write to a string...), said now.
    let result = match result {
        Ok(outputs) => match initial.check_writes(&finished.changes.writes) {
            Ok(()) => Ok(outputs),
            Err(reason) => Err(HandlerError::Reject(format!(
                "a state write would be refused at the commit (the entry would be dead-lettered): {reason}"
            ))),
        },
        Err(error) => Err(error),
    };
    Ok(Invoked {
        digest,
        load_time,
        call_time: started.elapsed(),
        throttled: instance.last_call_throttled(),
        state: if result.is_ok() {
            finished.changes
        } else {
            Changes::default()
        },
        result,
    })
}

/// Compiles the plugin at `path` (through the cache in `cache_dir`, if any), off the
/// async runtime.
pub async fn load(path: &Path, cache_dir: Option<&Path>, fuel: bool) -> Result<Plugin> {
    let cache = cache_dir.map(Cache::open).transpose()?;
    let runtime = Runtime::new(fuel, cache)?;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || Plugin::load(&runtime, &path))
        .await
        .context("the plugin loader failed")?
}

/// Parses `NAME=VALUE` (the value may be empty, and may contain `=`).
pub fn parse_pair(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => bail!("{text:?} is not NAME=VALUE"),
    }
}

/// Fields from a JSON object: strings as they are, anything else as its JSON text.
pub fn fields_from_json(text: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("--json must be a JSON object of fields")?;
    let serde_json::Value::Object(members) = value else {
        bail!("--json must be a JSON object of fields, like {{\"orderId\": \"1\"}}");
    };
    Ok(members
        .into_iter()
        .map(|(name, value)| {
            let bytes = match value {
                serde_json::Value::String(s) => s.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            (name, bytes)
        })
        .collect())
}

/// The outcome as text: one block per output, or the failure.
pub fn render_text(result: &Result<Vec<Output>, HandlerError>) -> String {
    match result {
        Ok(outputs) if outputs.is_empty() => {
            "ok: no outputs (the message is acknowledged)\n".into()
        }
        Ok(outputs) => {
            let mut text = String::new();
            for output in outputs {
                text.push_str(&format!("→ {}\n", output.stream));
                for (name, value) in &output.fields {
                    text.push_str(&format!("  {name} = {}\n", show(value)));
                }
            }
            text
        }
        Err(error) => format!("{}: {}\n", error.kind(), reason(error)),
    }
}

/// The outcome as JSON: `{"outputs": [{"target", "fields": [[name, value]]}]}` or
/// `{"failure": {"kind", "reason"}}`; values that are not UTF-8 are arrays of bytes.
pub fn render_json(result: &Result<Vec<Output>, HandlerError>) -> serde_json::Value {
    use serde_json::json;
    match result {
        Ok(outputs) => json!({
            "outputs": outputs.iter().map(|o| json!({
                "target": o.stream,
                "fields": o.fields.iter().map(|(name, value)| {
                    let value = match std::str::from_utf8(value) {
                        Ok(text) => json!(text),
                        Err(_) => json!(value),
                    };
                    json!([name, value])
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        Err(error) => json!({
            "failure": { "kind": error.kind(), "reason": reason(error) }
        }),
    }
}

/// A value for a terminal: text if it is UTF-8, else escaped bytes.
fn show(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => text.to_owned(),
        Err(_) => value.escape_ascii().to_string(),
    }
}

/// The handler's own words for a retry or reject; the host's description otherwise.
fn reason(error: &HandlerError) -> String {
    match error {
        HandlerError::Retry(reason) | HandlerError::Reject(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// The writes a call's commit would apply, one per line (`SET key = value`), after a
/// heading; nothing when there are none.
pub fn render_state_text(state: &Changes) -> String {
    if state.writes.is_empty() {
        return String::new();
    }
    let mut text = String::from("state writes (applied with the outputs at the commit):\n");
    for write in &state.writes {
        text.push_str(&match write {
            Write::Set { key, value } => format!("  SET {key} = {}\n", show(value)),
            Write::Delete { key } => format!("  DEL {key}\n"),
            Write::HSet { key, field, value } => {
                format!("  HSET {key} {field} = {}\n", show(value))
            }
            Write::Add { key, delta } => format!("  INCRBY {key} {delta}\n"),
        });
    }
    text
}

/// The writes as JSON: `[{"op": "set"|"del"|"hset"|"incrby", "key", "field"?,
/// "value"?, "delta"?}]`.
pub fn render_state_json(state: &Changes) -> serde_json::Value {
    use serde_json::json;
    let value = |v: &[u8]| match std::str::from_utf8(v) {
        Ok(text) => json!(text),
        Err(_) => json!(v),
    };
    state
        .writes
        .iter()
        .map(|write| match write {
            Write::Set { key, value: v } => json!({"op": "set", "key": key, "value": value(v)}),
            Write::Delete { key } => json!({"op": "del", "key": key}),
            Write::HSet {
                key,
                field,
                value: v,
            } => {
                json!({"op": "hset", "key": key, "field": field, "value": value(v)})
            }
            Write::Add { key, delta } => json!({"op": "incrby", "key": key, "delta": delta}),
        })
        .collect()
}

/// The outbound HTTP of a call with `--allow-outbound` origins: the daemon's defaults
/// (`[pipeline.http]`) for everything else. A plugin that sends requests needs some.
fn outbound_of(
    plugin: &Plugin,
    call: &Invocation,
) -> Result<Option<Arc<crate::outbound::Outbound>>> {
    if plugin.imports_http() && call.allowed_outbound_hosts.is_empty() {
        bail!(
            "the plugin imports wasi:http/outgoing-handler (it sends HTTP requests): grant the origins it may call with --allow-outbound URL (e.g. --allow-outbound http://127.0.0.1:8080)"
        );
    }
    let header = call.idempotency_key_header.clone();
    let Some(settings) = call.http.settings(&call.allowed_outbound_hosts, header)? else {
        return Ok(None);
    };
    Ok(Some(Arc::new(crate::outbound::Outbound::new(
        "invoke", settings,
    )?)))
}
