//! `sluice diff`: two plugins — the live one and a candidate — called on the same
//! entries, each on an instance of its own under the same limits, config and state, and
//! what each gave compared: the result's kind, the outputs and their fields, the failure's
//! reason, the state writes. Nothing is written anywhere.
//!
//! # Layout
//! - this file: the two instances ([`Differ`]), one entry's comparison ([`compare`]) and
//!   the running tally ([`Report`]);
//! - `render.rs`: the report as text (a summary, then the first differences field by
//!   field) and as JSON.
//!
//! Reading the entries (XRANGE of a stream or a dead-letter stream) is the CLI's
//! (`cli/diff.rs`): this module sees entries only.

mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::LimitsConfig;
use crate::invoke::{render_json, render_state_text};
use crate::message::{Entry, Field, HandlerError, Output};
use crate::state::{Changes, MemoryStore, Scope};
use crate::wasm::{Instance, Plugin, PluginCell};
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
        let live = outcome(
            &mut self.live,
            stream,
            &self.settings,
            &mut entry,
            &self.scope,
        )
        .await;
        let candidate = outcome(
            &mut self.candidate,
            stream,
            &self.settings,
            &mut entry,
            &self.scope,
        )
        .await;
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
    let result = match result {
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

/// How two outcomes differ; empty when they agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    /// What differs, each at most once: `result` (one succeeded, the other failed, or
    /// they failed in different ways), `outputs` (their number or streams), `fields`,
    /// `reason` (the same kind of failure for another reason), `state`.
    pub kinds: Vec<&'static str>,
    /// The differing parts, line by line: `- live`, `+ candidate`, with where.
    pub lines: Vec<String>,
}

/// Compares what the live plugin gave with what the candidate gave.
pub fn compare(live: &Outcome, candidate: &Outcome) -> Difference {
    let mut diff = Difference::default();
    match (&live.result, &candidate.result) {
        (Ok(a), Ok(b)) => compare_outputs(a, b, &mut diff),
        (Err(a), Err(b)) if a.kind() == b.kind() => {
            if a != b {
                diff.kinds.push("reason");
                diff.lines
                    .push(format!("- {}: {}", a.kind(), failure_text(a)));
                diff.lines
                    .push(format!("+ {}: {}", b.kind(), failure_text(b)));
            }
        }
        (a, b) => {
            diff.kinds.push("result");
            diff.lines.push(format!("- {}", summary(a)));
            diff.lines.push(format!("+ {}", summary(b)));
        }
    }
    let (a, b) = (
        render_state_text(&live.changes),
        render_state_text(&candidate.changes),
    );
    if a != b {
        diff.kinds.push("state");
        let (a, b): (Vec<&str>, Vec<&str>) =
            (a.lines().skip(1).collect(), b.lines().skip(1).collect());
        diff.lines.extend(
            a.iter()
                .filter(|l| !b.contains(l))
                .map(|l| format!("- state:{l}")),
        );
        diff.lines.extend(
            b.iter()
                .filter(|l| !a.contains(l))
                .map(|l| format!("+ state:{l}")),
        );
    }
    diff
}

/// Outputs compared in order: the number, each one's stream, then its fields by name.
fn compare_outputs(a: &[Output], b: &[Output], diff: &mut Difference) {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.stream != y.stream) {
        diff.kinds.push("outputs");
        diff.lines
            .push(format!("- {} outputs {:?}", a.len(), streams(a)));
        diff.lines
            .push(format!("+ {} outputs {:?}", b.len(), streams(b)));
    }
    let mut fields = Vec::new();
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        if x.fields != y.fields {
            fields.extend(field_lines(n, &x.fields, &y.fields));
        }
    }
    if !fields.is_empty() {
        diff.kinds.push("fields");
        diff.lines.extend(fields);
    }
}

fn streams(outputs: &[Output]) -> Vec<&str> {
    outputs.iter().map(|o| o.stream.as_str()).collect()
}

/// A field as compared: (its name, which occurrence of the name), its value.
type Keyed<'a> = ((&'a str, usize), &'a [u8]);

/// Each field keyed by its name and the occurrence of that name (a name may repeat).
fn occurrences(fields: &[Field]) -> Vec<Keyed<'_>> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    fields
        .iter()
        .map(|(name, value)| {
            let k = seen.entry(name).or_default();
            *k += 1;
            ((name.as_str(), *k), value.as_slice())
        })
        .collect()
}

fn find<'a>(list: &[Keyed<'a>], key: (&str, usize)) -> Option<&'a [u8]> {
    list.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The fields of output `n` that differ: by name (the k-th field of a name against the
/// k-th of the same name), then the order if only that differs.
fn field_lines(n: usize, a: &[Field], b: &[Field]) -> Vec<String> {
    let (a, b) = (occurrences(a), occurrences(b));
    let mut lines = Vec::new();
    let mut names: Vec<(&str, usize)> = a.iter().map(|(k, _)| *k).collect();
    names.extend(b.iter().map(|(k, _)| *k).filter(|k| find(&a, *k).is_none()));
    for key in names {
        let (x, y) = (find(&a, key), find(&b, key));
        if x != y {
            let show = |v: Option<&[u8]>| v.map_or("(absent)".to_owned(), value_text);
            lines.push(format!("- output {n} {}: {}", key.0, show(x)));
            lines.push(format!("+ output {n} {}: {}", key.0, show(y)));
        }
    }
    if lines.is_empty() {
        let order = |l: &[Keyed]| {
            l.iter()
                .map(|((n, _), _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(format!("- output {n} field order: {}", order(&a)));
        lines.push(format!("+ output {n} field order: {}", order(&b)));
    }
    lines
}

/// A value for a line: quoted text if it is UTF-8, else escaped bytes.
fn value_text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("b\"{}\"", value.escape_ascii()),
    }
}

/// A failure's reason: the handler's own words, or the host's description.
fn failure_text(error: &HandlerError) -> String {
    match error {
        HandlerError::Retry(reason) | HandlerError::Reject(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// A result in one line: `ok: N outputs` or `KIND: reason`.
fn summary(result: &Result<Vec<Output>, HandlerError>) -> String {
    match result {
        Ok(outputs) => format!("ok: {} outputs", outputs.len()),
        Err(error) => format!("{}: {}", error.kind(), failure_text(error)),
    }
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

/// An outcome as JSON: `sluice invoke`'s form, with `"state"` writes.
fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let mut value = render_json(&outcome.result);
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
