//! A diff's report for people (a summary line, the counts by kind, then the first
//! differing entries field by field) and for CI (JSON).

use serde_json::json;

use super::Report;

/// The report as text. `live` and `candidate` name the two plugins.
pub fn render_text_report(report: &Report, live: &str, candidate: &str) -> String {
    let mut text = format!(
        "{} {}: {} the same, {} different\n  - live:      {live}\n  + candidate: {candidate}\n",
        report.entries,
        if report.entries == 1 {
            "entry"
        } else {
            "entries"
        },
        report.entries - report.differing,
        report.differing
    );
    if !report.by_kind.is_empty() {
        let kinds: Vec<String> = report
            .by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        text.push_str(&format!("differences by kind: {}\n", kinds.join(", ")));
    }
    for entry in &report.shown {
        text.push_str(&format!(
            "\nentry {} ({}):\n",
            entry.id,
            entry.difference.kinds.join(", ")
        ));
        for line in &entry.difference.lines {
            text.push_str(&format!("  {line}\n"));
        }
    }
    if report.differing > report.shown.len() {
        text.push_str(&format!(
            "\n... and {} more (--show N shows more)\n",
            report.differing - report.shown.len()
        ));
    }
    text
}

/// The report as JSON: `{"entries", "same", "different", "by_kind": {kind: n},
/// "shown", "differences": [{"id", "kinds", "lines", "live", "candidate"}]}` (the first
/// `shown` differing entries, `--show`), where `live` and
/// `candidate` are outcomes as `sluice invoke --output-json` prints them (`outputs` or
/// `failure`, and `state` writes).
pub fn render_json_report(report: &Report, live: &str, candidate: &str) -> serde_json::Value {
    json!({
        "live": live,
        "candidate": candidate,
        "entries": report.entries,
        "same": report.entries - report.differing,
        "different": report.differing,
        "by_kind": report.by_kind,
        "shown": report.shown.len(),
        "differences": report.shown.iter().map(|d| json!({
            "id": d.id,
            "kinds": d.difference.kinds,
            "lines": d.difference.lines,
            "live": d.live,
            "candidate": d.candidate,
        })).collect::<Vec<_>>(),
    })
}
