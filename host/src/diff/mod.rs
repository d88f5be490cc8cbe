//! `sluice diff`: two plugins — the live one and a candidate — called on the same
//! entries, each on an instance of its own under the same limits, config and state, and
//! what each gave compared: the result's kind, the outputs and their fields, the failure's
//! reason, the state writes. Nothing is written anywhere.
//!
//! # Layout
//! - this file: the two instances ([`Differ`]) and the running tally ([`Report`]);
//! - `compare.rs`: one entry's comparison ([`compare`]);
//! - `render.rs`: the report as text (a summary, then the first differences field by
//!   field) and as JSON.
//!
//! Reading the entries (XRANGE of a stream or a dead-letter stream) is the CLI's
//! (`cli/diff.rs`): this module sees entries only.

mod compare;
mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::LimitsConfig;
use crate::invoke::render_json;
use crate::message::{Entry, Field, HandlerError, Output};
use crate::state::{Changes, MemoryStore, Scope};
use crate::wasm::{Instance, Plugin, PluginCell};
pub use compare::{Difference, compare};
use compare::{SHOWN_BYTES, clip};
pub use render::{render_json_report, render_text_report};

/// What both plugins are called with, besides the entry.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The consumer group idempotency keys are derived from.
    pub group: String,
    /// What `config(key)` answers.
    pub config: BTreeMap<String, String>,
    /// The limits every call runs under.
    pub limits: LimitsConfig,
    /// The key prefixes the handlers may use (empty: every key).
    pub state_prefixes: Vec<String>,
    /// Handler state before each call (the same for every entry: each call starts from
    /// it, as if it were the first of its batch).
    pub state: MemoryStore,
    /// The streams outputs may go to (the pipeline's `outputs`); empty: any.
    pub outputs: Vec<String>,
}

/// `result` as the pipeline would take it: an output to a stream not in `outputs`
/// (unless empty), or with no fields, fails the entry, which the daemon dead-letters.
pub fn as_the_pipeline_would(
    outputs: &[String],
    result: Result<Vec<Output>, HandlerError>,
) -> Result<Vec<Output>, HandlerError> {
    let written = result?;
    for output in &written {
        if !outputs.is_empty() && !outputs.contains(&output.stream) {
            return Err(HandlerError::Reject(format!(
                "output to undeclared stream {:?}: the pipeline would dead-letter the entry",
                output.stream
            )));
        }
        if output.fields.is_empty() {
            return Err(HandlerError::Reject(format!(
                "output to {:?} has no fields: the pipeline would dead-letter the entry",
                output.stream
            )));
        }
    }
    Ok(written)
}

/// One plugin's outcome for one entry.
#[derive(Debug)]
pub struct Outcome {
    /// Its outputs, or why there are none.
    pub result: Result<Vec<Output>, HandlerError>,
    /// The state writes its commit would apply (none unless it succeeded).
    pub changes: Changes,
}

/// The live plugin and the candidate, each on an instance of its own.
pub struct Differ {
    live: Instance,
    candidate: Instance,
    scope: Scope,
    settings: Settings,
}

impl Differ {
    /// Instances of `live` and `candidate`. Neither may send HTTP requests: a request
    /// is refused as a pipeline without `allowed_outbound_hosts` refuses it (wasi:http
    /// `HTTP-request-denied`), for both alike, so that nothing leaves the machine.
    pub fn new(live: Plugin, candidate: Plugin, settings: Settings) -> Self {
        let instance = |plugin: Plugin| {
            let cell: PluginCell = Arc::new(arc_swap::ArcSwap::from_pointee(plugin));
            Instance::new(
                cell,
                Arc::new(settings.config.clone()),
                settings.limits.to_limits(),
            )
            .serving(&settings.group, None)
        };
        let prefixes = match settings.state_prefixes.is_empty() {
            true => vec![String::new()],
            false => settings.state_prefixes.clone(),
        };
        let scope = Scope {
            prefixes: prefixes.into(),
            overlay: Default::default(),
            store: Arc::new(settings.state.clone()),
        };
        Self {
            live: instance(live),
            candidate: instance(candidate),
            scope,
            settings,
        }
    }

    /// Both plugins' outcomes for the entry `id` of input stream `stream`.
    pub async fn call(&mut self, stream: &str, id: &str, fields: Vec<Field>) -> (Outcome, Outcome) {
        let mut entry = Entry {
            id: id.to_owned(),
            fields,
            attempt: 1,
            raw_names: None,
            trace: None,
        };
        // Each call starts from the same state: a fresh overlay over `--state`, so that
        // neither sees the other's writes, nor an earlier entry's.
        let fresh = || Scope {
            overlay: Default::default(),
            ..self.scope.clone()
        };
        let (settings, live) = (&self.settings, &mut self.live);
        let live = outcome(live, stream, settings, &mut entry, &fresh()).await;
        let candidate = &mut self.candidate;
        let candidate = outcome(candidate, stream, settings, &mut entry, &fresh()).await;
        (live, candidate)
    }
}

/// One call, with the state writes a commit would refuse turned into the rejection the
/// daemon would give (as `sluice invoke` does).
async fn outcome(
    instance: &mut Instance,
    stream: &str,
    settings: &Settings,
    entry: &mut Entry,
    scope: &Scope,
) -> Outcome {
    let scope = instance.plugin().imports_state().then_some(scope);
    let (result, finished) = instance.handle_in(stream, entry, scope).await;
    let result = match as_the_pipeline_would(&settings.outputs, result) {
        Ok(outputs) => match settings.state.check_writes(&finished.changes.writes) {
            Ok(()) => Ok(outputs),
            Err(reason) => Err(HandlerError::Reject(format!(
                "a state write would be refused at the commit: {reason}"
            ))),
        },
        Err(error) => Err(error),
    };
    let changes = match result.is_ok() {
        true => finished.changes,
        false => Changes::default(),
    };
    Outcome { result, changes }
}

/// One entry whose outcomes differ, kept for the report.
#[derive(Debug)]
pub struct Differing {
    /// The entry's ID (for a dead letter: the letter's ID in its stream).
    pub id: String,
    /// How the outcomes differ.
    pub difference: Difference,
    /// Both outcomes as `sluice invoke --output-json` gives them.
    pub live: serde_json::Value,
    pub candidate: serde_json::Value,
}

/// The tally of a diff run.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries both plugins were called on.
    pub entries: usize,
    /// Entries whose outcomes differ.
    pub differing: usize,
    /// Differing entries by kind of difference.
    pub by_kind: BTreeMap<&'static str, usize>,
    /// The first differing entries, up to `show`.
    pub shown: Vec<Differing>,
    /// How many differing entries to keep.
    pub show: usize,
}

impl Report {
    /// A report keeping the first `show` differing entries.
    pub fn new(show: usize) -> Self {
        Self {
            show,
            ..Self::default()
        }
    }

    /// Counts one entry's outcomes.
    pub fn add(&mut self, id: &str, live: &Outcome, candidate: &Outcome) {
        self.entries += 1;
        let difference = compare(live, candidate);
        if difference.kinds.is_empty() {
            return;
        }
        self.differing += 1;
        for kind in &difference.kinds {
            *self.by_kind.entry(kind).or_default() += 1;
        }
        if self.shown.len() < self.show {
            self.shown.push(Differing {
                id: id.to_owned(),
                difference,
                live: outcome_json(live),
                candidate: outcome_json(candidate),
            });
        }
    }
}

/// An outcome as JSON: `sluice invoke`'s form, with `"state"` writes; strings and byte
/// arrays longer than 4 × [`SHOWN_BYTES`] cut (saying so).
fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let mut value = render_json(&outcome.result);
    clip_json(&mut value);
    if let Some(object) = value.as_object_mut()
        && !outcome.changes.writes.is_empty()
    {
        object.insert(
            "state".into(),
            crate::invoke::render_state_json(&outcome.changes),
        );
    }
    value
}

/// Cuts `value`'s long strings and byte arrays (see [`outcome_json`]).
fn clip_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    let max = 4 * SHOWN_BYTES;
    match value {
        Value::String(text) => *text = clip(std::mem::take(text), max),
        Value::Array(items) if items.len() > max && items.iter().all(Value::is_number) => {
            let len = items.len();
            *value = Value::String(format!("({len} bytes, not UTF-8)"));
        }
        Value::Array(items) => items.iter_mut().for_each(clip_json),
        Value::Object(members) => members.values_mut().for_each(clip_json),
        _ => {}
    }
}
