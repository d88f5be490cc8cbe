//! The book's generated reference pages for the command line (from clap's [`Cli`]) and
//! the metrics (from `telemetry::describe`'s list). `host/tests/reference.rs` compares
//! them with the committed `docs/src/reference/*.md` and fails when they differ.

use std::fmt::Write;

use clap::CommandFactory;

use super::Cli;
use crate::telemetry::describe::METRICS;

/// The line every generated page starts with.
pub const GENERATED: &str = "<!-- Generated from the code by host/tests/reference.rs; do not edit. Update with: SLUICE_UPDATE_REFERENCE=1 cargo test -p sluice --test suite reference:: -->";

/// `docs/src/reference/cli.md`: every subcommand with its usage, text and arguments.
pub fn cli_page() -> String {
    let mut command = Cli::command();
    command.build();
    let mut page = format!("{GENERATED}\n\n# Command line\n\n");
    page.push_str(
        "Every subcommand of `sluice` with its arguments, from the parser itself \
         (`sluice help COMMAND` prints the same). Environment variables named beside an \
         argument stand in for it; `--log-format`, listed under `sluice`, goes with every \
         subcommand.\n",
    );
    write_command(&mut page, &mut command, "sluice");
    page
}

/// The parser the command-line page is generated from (not yet built).
pub fn cli_command() -> clap::Command {
    Cli::command()
}

/// What of `command` has no help text, with its subcommands: one line each, such as
/// `sluice run: --flag has no help`. Hidden arguments and subcommands, and clap's own
/// `help` and `--version`, are left out: the reference lists none of them.
pub fn undocumented(command: &clap::Command) -> Vec<String> {
    let mut command = command.clone();
    command.build();
    let mut missing = Vec::new();
    undocumented_in(&command, "sluice", &mut missing);
    missing
}

fn undocumented_in(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    let text =
        |s: Option<&clap::builder::StyledStr>| s.is_some_and(|s| !s.to_string().trim().is_empty());
    if !text(command.get_about()) && !text(command.get_long_about()) {
        missing.push(format!(
            "{path} has no about (a /// doc on its variant or struct)"
        ));
    }
    for arg in command.get_arguments() {
        if arg.is_hide_set() || matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        if !text(arg.get_help()) && !text(arg.get_long_help()) {
            missing.push(format!(
                "{path}: {} has no help (a /// doc on its field)",
                arg.get_id()
            ));
        }
    }
    for sub in command.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            undocumented_in(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
}

fn write_command(page: &mut String, command: &mut clap::Command, path: &str) {
    let usage = command.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    let _ = write!(page, "\n## `{path}`\n\n");
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        let _ = write!(page, "{}\n\n", sentence(about.to_string().trim()));
    }
    let _ = write!(page, "```text\n{usage}\n```\n");
    let root = path == "sluice";
    let args: Vec<String> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        // The log format is the one global of the root: listed there only.
        .filter(|a| root || a.get_id().as_str() != "log_format")
        .map(argument_row)
        .collect();
    if !args.is_empty() {
        page.push_str("\n| argument | default | environment | what it is |\n|---|---|---|---|\n");
        for row in args {
            page.push_str(&row);
        }
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .map(|c| c.get_name().to_owned())
        .collect();
    for name in subcommands {
        if let Some(sub) = command.find_subcommand_mut(&name) {
            write_command(page, sub, &format!("{path} {name}"));
        }
    }
}

fn argument_row(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    let takes_value = arg.get_action().takes_values();
    let name = match (arg.get_short(), arg.get_long()) {
        (None, None) => value,
        (short, Some(long)) => {
            let short = short.map(|s| format!("-{s}, ")).unwrap_or_default();
            let value = if takes_value {
                format!(" {value}")
            } else {
                String::new()
            };
            format!("{short}--{long}{value}")
        }
        (Some(short), None) => format!("-{short}"),
    };
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let default = cell_code(&defaults.join(", "));
    let env = arg
        .get_env()
        .map(|e| cell_code(&e.to_string_lossy()))
        .unwrap_or_default();
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| sentence(&cell(&h.to_string())))
        .unwrap_or_default();
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    let help = if takes_value && !possible.is_empty() {
        format!("{help} One of {}.", possible.join(", "))
    } else {
        help
    };
    format!(
        "| `{}` | {default} | {env} | {help} |\n",
        name.replace('|', "\\|")
    )
}

/// `docs/src/reference/metrics.md`: every series with its type, labels and help.
pub fn metrics_page() -> String {
    let mut page = format!("{GENERATED}\n\n# Metrics\n\n");
    page.push_str(
        "Every series at `GET /metrics` (Prometheus text format), from the list the \
         exporter describes them with (`host/src/telemetry/describe.rs`). Series of a \
         pipeline carry `pipeline`; the gauges of a partitioned pipeline (and \
         `sluice_trace_context_invalid_total`) carry `partition` too, as their labels \
         below say. What they mean for operating Sluice is in \
         [Metrics, health and logs](../operations/metrics.md).\n\n",
    );
    page.push_str("| name | type | labels | help |\n|---|---|---|---|\n");
    for metric in METRICS {
        let labels: Vec<String> = metric.labels.iter().map(|l| format!("`{l}`")).collect();
        let unit = if metric.seconds { " (seconds)" } else { "" };
        let _ = writeln!(
            page,
            "| `{}` | {}{unit} | {} | {} |",
            metric.name,
            metric.kind.as_str(),
            labels.join(", "),
            cell(metric.help)
        );
    }
    page
}

/// The names of every series Sluice exports.
pub fn metric_names() -> Vec<&'static str> {
    METRICS.iter().map(|m| m.name).collect()
}

/// Text for one cell of a Markdown table: one line, `|` escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Clap drops a one-line help's final period; the reference keeps sentences whole.
fn sentence(text: &str) -> String {
    if text.is_empty() || text.ends_with(['.', ')', ':']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

fn cell_code(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("`{}`", text.replace('|', "\\|"))
    }
}
