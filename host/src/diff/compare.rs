//! One entry's comparison: how the live plugin's outcome and the candidate's differ,
//! as kinds and `-`/`+` lines, each value and reason cut to a size a report (and a
//! shadow's kept differences) can hold.

use std::collections::BTreeMap;

use super::Outcome;
use crate::invoke::render_state_text;
use crate::message::{Field, HandlerError, Output};

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

/// Compares what the live plugin gave with what the candidate gave; at most
/// [`MAX_LINES`] lines are kept, then how many more there were.
pub fn compare(live: &Outcome, candidate: &Outcome) -> Difference {
    let mut diff = compare_all(live, candidate);
    if diff.lines.len() > MAX_LINES {
        let more = diff.lines.len() - MAX_LINES;
        diff.lines.truncate(MAX_LINES);
        diff.lines.push(format!("… and {more} more lines"));
    }
    diff
}

fn compare_all(live: &Outcome, candidate: &Outcome) -> Difference {
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

/// How much of a value or a reason a line shows: a report (and a shadow's last
/// differences, kept in memory) stays small whatever the entries hold.
pub(super) const SHOWN_BYTES: usize = 256;

/// Lines one entry's difference keeps at most.
const MAX_LINES: usize = 40;

/// A value for a line: quoted text if it is UTF-8, else escaped bytes; the first
/// [`SHOWN_BYTES`] of it, and its size when it is longer.
fn value_text(value: &[u8]) -> String {
    let shown = &value[..value.len().min(SHOWN_BYTES)];
    let text = match std::str::from_utf8(shown) {
        Ok(text) => format!("{text:?}"),
        // A cut through a UTF-8 character is shown as bytes too.
        Err(_) => format!("b\"{}\"", shown.escape_ascii()),
    };
    match value.len() > SHOWN_BYTES {
        true => format!("{text}… ({} bytes)", value.len()),
        false => text,
    }
}

/// A failure's reason: the handler's own words, or the host's description (the first
/// 4 × [`SHOWN_BYTES`]).
fn failure_text(error: &HandlerError) -> String {
    let text = match error {
        HandlerError::Retry(reason) | HandlerError::Reject(reason) => reason.clone(),
        other => other.to_string(),
    };
    clip(text, 4 * SHOWN_BYTES)
}

/// `text` cut to about `max` bytes (on a character boundary), saying so.
pub(super) fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let len = text.len();
        text.truncate(end);
        text.push_str(&format!("… ({len} bytes)"));
    }
    text
}

/// A result in one line: `ok: N outputs` or `KIND: reason`.
fn summary(result: &Result<Vec<Output>, HandlerError>) -> String {
    match result {
        Ok(outputs) if outputs.len() == 1 => "ok: 1 output".to_owned(),
        Ok(outputs) => format!("ok: {} outputs", outputs.len()),
        Err(error) => format!("{}: {}", error.kind(), failure_text(error)),
    }
}
