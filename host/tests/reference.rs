//! The book's reference pages are generated from the code and committed: this test
//! generates them again and fails when `docs/src/reference/*.md` differ, so a config
//! key, a command-line argument or a metric cannot be missing from the book.
//!
//! Update the pages with `SLUICE_UPDATE_REFERENCE=1 cargo test -p sluice --test suite reference::`.
//!
//! - config: every key of every table, with its `///` doc (read from
//!   `host/src/config/*.rs`) and its default (what the parser fills in when the key is
//!   left out, written back as TOML). Every field of a Deserialize struct counts,
//!   whatever its visibility, and needs a `///` doc, as does every value of an enum;
//! - cli: every subcommand and argument, from clap (`sluice::cli::reference`); each
//!   needs help text unless hidden;
//! - metrics: every series, from the list the exporter describes them with; every
//!   `sluice_*` name in a string literal of `host/src` (comments do not count) must be
//!   in that list, every name in it must be recorded, and no name may be built at run
//!   time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sluice::cli::reference::{
    GENERATED, cli_command, cli_page, metric_names, metrics_page, undocumented,
};
use sluice::config::Config;

const UPDATE: &str = "SLUICE_UPDATE_REFERENCE";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compares `page` with the committed file, or writes it when asked to.
fn check(name: &str, page: &str) {
    let path = root().join("docs/src/reference").join(name);
    if std::env::var_os(UPDATE).is_some() {
        std::fs::create_dir_all(root().join("docs/src/reference")).expect("docs/src/reference");
        std::fs::write(&path, page).expect("write the reference page");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != page {
        let line = committed
            .lines()
            .zip(page.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(page.lines().count()));
        panic!(
            "docs/src/reference/{name} is not what the code says (first difference at line {}: {:?}); update it with `{UPDATE}=1 cargo test -p sluice --test suite reference::` and commit it",
            line + 1,
            page.lines().nth(line).unwrap_or("(end)")
        );
    }
}

#[test]
fn cli_reference_is_current() {
    check("cli.md", &cli_page());
}

#[test]
fn every_cli_argument_and_subcommand_has_help() {
    let missing = undocumented(&cli_command());
    assert!(
        missing.is_empty(),
        "the command line's reference (docs/src/reference/cli.md) has empty cells: give these help text in host/src/cli:\n{}",
        missing.join("\n")
    );
    // The breaches it catches, and what it lets be: hidden ones.
    let breached = cli_command()
        .arg(
            clap::Arg::new("quiet")
                .long("quiet")
                .action(clap::ArgAction::SetTrue),
        )
        .arg(clap::Arg::new("secret").long("secret").hide(true))
        .mut_subcommand("run", |run| run.arg(clap::Arg::new("fast").long("fast")))
        .subcommand(clap::Command::new("nothing"))
        .subcommand(clap::Command::new("internal").hide(true));
    assert_eq!(
        undocumented(&breached),
        [
            "sluice: quiet has no help (a /// doc on its field)",
            "sluice run: fast has no help (a /// doc on its field)",
            "sluice nothing has no about (a /// doc on its variant or struct)",
        ]
    );
}

#[test]
fn metrics_reference_is_current() {
    check("metrics.md", &metrics_page());
}

#[test]
fn every_metric_in_the_code_is_in_the_reference() {
    let problems = metric_problems(&sources(&root().join("host/src")), &metric_names());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Breaches the check above must catch: host/src with one more file (or describe.rs
/// with more text), and what the check must then say.
#[test]
fn the_metrics_check_catches_these_breaches() {
    let listed = metric_names();
    let breaches: &[(&str, &str, &str)] = &[
        // An escaped quote before the name (the old scan got out of step on it).
        (
            "host/src/x.rs",
            "let s = \"\\\"'(),;.\"; counter!(\"sluice_hidden_total\");",
            "host/src/x.rs:1: sluice_hidden_total is not listed",
        ),
        (
            "host/src/x.rs",
            "counter!(\"sluice_http2_errors_total\");",
            "sluice_http2_errors_total is not listed",
        ),
        (
            "host/src/x.rs",
            "let n = format!(\"sluice_{kind}_total\");",
            "builds a metric name at run time",
        ),
        (
            "host/src/x.rs",
            "let n = String::from(\"sluice_\") + kind;",
            "builds a metric name at run time",
        ),
        (
            "host/src/x.rs",
            "gauge!(r#\"sluice_raw_total\"#);",
            "sluice_raw_total is not listed",
        ),
        (
            "host/src/x.rs",
            "gauge!(b\"sluice_bytes_total\");",
            "sluice_bytes_total is not listed",
        ),
        (
            "host/src/x.rs",
            "warn!(\"see sluice_prose_total\");",
            "sluice_prose_total is not listed",
        ),
        (
            "host/src/x.rs",
            "fn f<'a>(x: &'a str) { let q = '\"'; let s = \"a\nb\";\ncounter!(\"sluice_line_total\"); }",
            "host/src/x.rs:3: sluice_line_total is not listed",
        ),
        // A const of describe.rs, used elsewhere.
        (
            DESCRIBE,
            "\nconst HIDDEN: &str = \"sluice_hidden_total\";\n",
            "describe.rs:",
        ),
    ];
    for (file, text, expected) in breaches {
        let mut files = sources(&root().join("host/src"));
        match files.iter_mut().find(|(name, _)| name == file) {
            Some((_, existing)) => existing.push_str(text),
            None => files.push(((*file).to_owned(), (*text).to_owned())),
        }
        files.push(("host/src/y.rs".into(), "counter!(HIDDEN);".into()));
        let problems = metric_problems(&files, &listed);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "the breach {text:?} in {file} was not caught as {expected:?}; the check said: {problems:#?}"
        );
    }
    // A listed name recorded only in comments, or only through a const of describe.rs.
    let describe = "const M: &[Metric] = &[counter(\"sluice_a_total\", PIPELINE, \"A\")];";
    let commented = "// counter!(\"sluice_a_total\")\n/* \"sluice_a_total\" /* */ */ fn f() {}";
    let problems = metric_problems(
        &[
            (DESCRIBE.into(), describe.into()),
            ("host/src/x.rs".into(), commented.into()),
        ],
        &["sluice_a_total"],
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("sluice_a_total is listed in METRICS")),
        "a name recorded only in comments counts as recorded: {problems:?}"
    );
    let describe = format!("const A: &str = \"sluice_a_total\";\n{describe}");
    let problems = metric_problems(
        &[
            (DESCRIBE.into(), describe),
            ("host/src/x.rs".into(), "counter!(A);".into()),
        ],
        &["sluice_a_total"],
    );
    assert_eq!(
        problems,
        Vec::<String>::new(),
        "a const of describe.rs used elsewhere records its name"
    );
}

/// Every Rust file under `dir`: (its path from the repository's root, its text).
fn sources(dir: &Path) -> Vec<(String, String)> {
    rust_files(dir)
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let name = file
                .strip_prefix(root())
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            (name, text)
        })
        .collect()
}

const DESCRIBE: &str = "host/src/telemetry/describe.rs";

/// What is wrong between the `sluice_*` names in the string literals of `files` (comments
/// do not count) and `listed`, the names of METRICS; one line each.
///
/// Every name in a literal must be listed. Every listed name must be recorded: be a whole
/// literal outside describe.rs, or the value of a `const` of describe.rs whose name is
/// used outside it. A name built at run time (`format!("sluice_{kind}_total")`, a
/// `"sluice_"` prefix) cannot be checked, and is refused.
fn metric_problems(files: &[(String, String)], listed: &[&str]) -> Vec<String> {
    let listed: BTreeSet<&str> = listed.iter().copied().collect();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    // describe.rs's constants with a metric name: const name -> metric name.
    let mut constants: BTreeMap<String, String> = BTreeMap::new();
    let lexed: Vec<(&str, Vec<RustToken>)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), rust_tokens(text)))
        .collect();
    for (file, tokens) in &lexed {
        let describe = *file == DESCRIBE;
        for (i, token) in tokens.iter().enumerate() {
            let RustToken::Literal { text, line } = token else {
                continue;
            };
            let names = metric_names_in(text);
            for (name, runtime) in &names {
                if *runtime {
                    problems.push(format!(
                        "{file}:{line}: the string {text:?} builds a metric name at run time ({name}...), which the reference cannot check: write each name whole as a literal (a match over the cases), each listed in METRICS of {DESCRIBE}"
                    ));
                } else if !listed.contains(name.as_str()) {
                    problems.push(format!(
                        "{file}:{line}: {name} is not listed in METRICS of {DESCRIBE}, so the reference (docs/src/reference/metrics.md) misses it: add it there with its type, labels and help"
                    ));
                }
            }
            let whole = names.len() == 1 && !names[0].1 && names[0].0 == *text;
            if !whole {
                continue;
            }
            if describe {
                if let Some(constant) = const_name(tokens, i) {
                    constants.insert(constant, text.clone());
                }
            } else {
                used.insert(text.clone());
            }
        }
    }
    for (file, tokens) in &lexed {
        if *file == DESCRIBE {
            continue;
        }
        for token in tokens {
            if let RustToken::Ident(ident) = token
                && let Some(name) = constants.get(ident)
            {
                used.insert(name.clone());
            }
        }
    }
    for name in &listed {
        if !used.contains(*name) {
            problems.push(format!(
                "{name} is listed in METRICS of {DESCRIBE} but nothing in host/src records it (no literal \"{name}\" outside {DESCRIBE}, and no const of it there used elsewhere): record it or take it out of the list"
            ));
        }
    }
    problems
}

/// The `sluice_[a-z0-9_]+` names in a string literal's text, each with whether it is
/// built at run time (followed by `{`, or ending in `_`: a prefix).
fn metric_names_in(text: &str) -> Vec<(String, bool)> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices("sluice_") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let end = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |e| at + e);
        let name = &text[at..end];
        let runtime = text[end..].starts_with('{') || name.ends_with('_');
        names.push((name.to_owned(), runtime));
    }
    names
}

/// The name of the `const` whose value is the literal at `tokens[at]`
/// (`const NAME: &str = "...";`).
fn const_name(tokens: &[RustToken], at: usize) -> Option<String> {
    let is = |i: usize, p: char| matches!(tokens.get(i), Some(RustToken::Punct(c)) if *c == p);
    if at == 0 || !is(at - 1, '=') || !is(at + 1, ';') {
        return None;
    }
    let start = tokens[..at]
        .iter()
        .rposition(|t| matches!(t, RustToken::Punct(';' | '{' | '}')))
        .map_or(0, |p| p + 1);
    let statement = &tokens[start..at];
    let keyword = statement
        .iter()
        .position(|t| matches!(t, RustToken::Ident(k) if k == "const" || k == "static"))?;
    match statement.get(keyword + 1) {
        Some(RustToken::Ident(name)) => Some(name.clone()),
        _ => None,
    }
}

/// A token of Rust source, as far as the metrics check needs one.
#[derive(Debug, Clone, PartialEq)]
enum RustToken {
    Ident(String),
    /// A string literal of any kind (`"..."`, `b"..."`, `r#"..."#`): the text between
    /// its quotes as written (escapes not undone), and the line it starts on.
    Literal {
        text: String,
        line: usize,
    },
    Punct(char),
}

/// Rust's tokens without comments (`//`, nested `/* */`); characters and lifetimes are
/// skipped, numbers dropped.
fn rust_tokens(source: &str) -> Vec<RustToken> {
    let s: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    let lines = |from: usize, to: usize| {
        s[from..to.min(s.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count()
    };
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let (from, mut depth) = (i, 0);
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += lines(from, i);
        } else if c == '"' {
            let from = i + 1;
            i += 1;
            while i < s.len() && s[i] != '"' {
                i += if s[i] == '\\' { 2 } else { 1 };
            }
            let text: String = s[from..i.min(s.len())].iter().collect();
            tokens.push(RustToken::Literal { text, line });
            line += lines(from, i);
            i += 1;
        } else if c == '\'' {
            if next == Some('\\') {
                i += 2;
                while i < s.len() && s[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if s.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                // A lifetime or a label: its name follows as an identifier.
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let from = i;
            while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                i += 1;
            }
            let ident: String = s[from..i].iter().collect();
            let hashes = s[i..].iter().take_while(|c| **c == '#').count();
            if matches!(ident.as_str(), "r" | "br" | "cr") && s.get(i + hashes) == Some(&'"') {
                let body = i + hashes + 1;
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let mut end = body;
                while end < s.len() && !s[end..].starts_with(&close) {
                    end += 1;
                }
                let text: String = s[body..end.min(s.len())].iter().collect();
                tokens.push(RustToken::Literal { text, line });
                line += lines(i, end);
                i = end + close.len();
            } else if ident == "r" && hashes == 1 {
                // A raw identifier, `r#type`: the identifier follows.
                i += 1;
            } else if matches!(ident.as_str(), "b" | "c") && s.get(i) == Some(&'"') {
                // A byte or C string: the string follows.
            } else {
                tokens.push(RustToken::Ident(ident));
            }
        } else if c.is_ascii_digit() {
            while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                i += 1;
            }
        } else {
            if c == '\n' {
                line += 1;
            } else if !c.is_whitespace() {
                tokens.push(RustToken::Punct(c));
            }
            i += 1;
        }
    }
    tokens
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn config_reference_is_current() {
    check("config.md", &config_page());
}

/// Breaches the config check must catch: `host/src/config` with one edit (`to` put
/// after the first `after`), and what the page must then hold or the check say.
#[test]
fn the_config_check_catches_these_breaches() {
    let tls = "pub struct TlsConfig {\n";
    let field =
        "    /// A key nobody documented elsewhere.\n    pub(crate) hidden_key: Option<u32>,\n";
    // Fields of any visibility are keys of the reference, documented or refused.
    let cases: &[(&str, &str, &str)] = &[
        (
            tls,
            field,
            "| `hidden_key` | integer | unset | A key nobody documented elsewhere. |",
        ),
        (tls, &field.replace("pub(crate) ", ""), "| `hidden_key` |"),
        (
            tls,
            &field.replace("pub(crate) ", "pub(super) "),
            "| `hidden_key` |",
        ),
    ];
    for (after, to, expected) in cases {
        let page = config_page_from(&edited_config(after, to));
        assert!(
            page.contains(expected),
            "{to:?} after {after:?}: the page lacks {expected:?}"
        );
    }
    let refused: &[(&str, &str, &str)] = &[
        (
            tls,
            "    hidden_key: Option<u32>,\n",
            "TlsConfig.hidden_key of host/src/config has no /// doc",
        ),
        (
            tls,
            "    ///\n    pub(crate) hidden_key: Option<u32>,\n",
            "has no /// doc",
        ),
        (
            "pub enum TraceMode {\n",
            "    Sometimes,\n",
            "\"sometimes\" (enum variant Sometimes) has no /// doc",
        ),
        (
            "pub enum TraceMode {\n",
            "    /// Some.\n    Sometimes(u32),\n",
            "as unit variants",
        ),
        (
            "pub use admin::AdminConfig;\n",
            "#[derive(Deserialize)]\nstruct Lost {\n    /// A.\n    a: u32,\n}\n",
            "Lost of host/src/config is no table",
        ),
    ];
    for (after, to, expected) in refused {
        let files = edited_config(after, to);
        let message = std::panic::catch_unwind(|| config_page_from(&files))
            .map(|_| String::new())
            .unwrap_or_else(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or(p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            });
        assert!(
            message.contains(expected),
            "{to:?} after {after:?} was not refused with {expected:?}: {message:?}"
        );
    }
}

/// The sources of `host/src/config` with `to` put after the first `after`.
fn edited_config(after: &str, to: &str) -> Vec<(String, String)> {
    let mut files = sources(&root().join("host/src/config"));
    let (_, text) = files
        .iter_mut()
        .find(|(_, text)| text.contains(after))
        .unwrap_or_else(|| panic!("no {after:?} in host/src/config: update this breach"));
    let at = text.find(after).expect("found") + after.len();
    text.insert_str(at, to);
    files
}

/// A struct or enum of the config, as its source declares it.
#[derive(Default, Debug)]
struct Item {
    doc: Vec<String>,
    /// Fields (struct) or variants (enum), in order.
    members: Vec<Member>,
    is_enum: bool,
    kebab: bool,
}

#[derive(Debug)]
struct Member {
    name: String,
    ty: String,
    doc: Vec<String>,
    attrs: String,
}

impl Member {
    /// The key in the file: the field's name or its `rename`.
    fn key(&self) -> String {
        serde_value(&self.attrs, "rename").unwrap_or_else(|| self.name.clone())
    }
    fn skipped(&self) -> bool {
        self.attrs.contains("serde(skip)")
    }
    fn has_default(&self) -> bool {
        self.attrs.contains("default")
    }
}

/// `key = "value"` inside a `#[serde(..)]` attribute.
fn serde_value(attrs: &str, key: &str) -> Option<String> {
    let at = attrs.find(&format!("{key} = \""))?;
    let rest = &attrs[at + key.len() + 4..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Reads the Deserialize structs and enums of `host/src/config/*.rs`, by their lines
/// (the files are rustfmt-formatted: one field a line).
fn config_items(files: &[(String, String)]) -> BTreeMap<String, Item> {
    let mut items = BTreeMap::new();
    for (_, text) in files {
        parse_items(text, &mut items);
    }
    items
}

/// `rest` without a leading visibility (`pub `, `pub(crate) `, `pub(in path) `...).
fn without_visibility(rest: &str) -> &str {
    if let Some(after) = rest.strip_prefix("pub(") {
        return after.split_once(')').map_or(rest, |(_, r)| r.trim_start());
    }
    rest.strip_prefix("pub ").unwrap_or(rest)
}

/// Whether `name` is one Rust identifier.
fn is_ident(name: &str) -> bool {
    name.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn parse_items(text: &str, items: &mut BTreeMap<String, Item>) {
    let (mut doc, mut attrs) = (Vec::new(), String::new());
    let mut open: Option<(String, Item)> = None;
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let trimmed = line.trim();
        if let Some(text) = trimmed.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
            continue;
        }
        if trimmed.starts_with("#[") {
            let mut attr = trimmed.to_owned();
            while attr.matches('[').count() > attr.matches(']').count() {
                attr.push(' ');
                attr.push_str(lines.next().expect("an attribute ends").1.trim());
            }
            attrs.push_str(&attr);
            continue;
        }
        if let Some((name, item)) = &mut open {
            if line == "}" {
                let (name, item) = open.take().expect("an open item");
                items.insert(name, item);
            } else if trimmed.is_empty() || trimmed.starts_with("//") {
                continue;
            } else if item.is_enum {
                let variant = trimmed.trim_end_matches(',');
                assert!(
                    is_ident(variant),
                    "line {}: the config reference reads the enum {name} of host/src/config as unit variants, one a line (`Name,`), not {trimmed:?}: teach parse_items in host/tests/reference.rs",
                    number + 1
                );
                item.members.push(Member {
                    name: variant.to_owned(),
                    ty: String::new(),
                    doc: std::mem::take(&mut doc),
                    attrs: std::mem::take(&mut attrs),
                });
            } else {
                // Every field, whatever its visibility: `pub(crate) name: Type,` too.
                let field = without_visibility(trimmed)
                    .split_once(':')
                    .filter(|(n, ty)| is_ident(n.trim()) && ty.trim().ends_with(','));
                let Some((field, ty)) = field else {
                    panic!(
                        "line {}: the config reference reads the struct {name} of host/src/config as one `name: Type,` field a line, not {trimmed:?}: keep it rustfmt-formatted or teach parse_items in host/tests/reference.rs",
                        number + 1
                    );
                };
                item.members.push(Member {
                    name: field.trim().to_owned(),
                    ty: ty.trim().trim_end_matches(',').to_owned(),
                    doc: std::mem::take(&mut doc),
                    attrs: std::mem::take(&mut attrs),
                });
            }
        } else if attrs.contains("Deserialize")
            && let rest = without_visibility(trimmed)
            && let Some(rest) = rest
                .strip_prefix("struct ")
                .map(|r| (r, false))
                .or(rest.strip_prefix("enum ").map(|r| (r, true)))
            && rest.0.ends_with('{')
        {
            let name = rest.0.trim_end_matches('{').trim().to_owned();
            let item = Item {
                doc: std::mem::take(&mut doc),
                is_enum: rest.1,
                kebab: attrs.contains("kebab-case"),
                members: Vec::new(),
            };
            open = Some((name, item));
        }
        doc.clear();
        attrs.clear();
    }
}

/// `Option<X>` and `Vec<X>` to `X`.
fn inner(ty: &str) -> &str {
    for wrapper in ["Option<", "Vec<"] {
        if let Some(rest) = ty.strip_prefix(wrapper) {
            return inner(rest.strip_suffix('>').expect("a closed generic"));
        }
    }
    ty
}

fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// What a value of `ty` is written as in the file.
fn type_name(ty: &str, items: &BTreeMap<String, Item>) -> String {
    if let Some(rest) = ty.strip_prefix("Option<") {
        return type_name(rest.strip_suffix('>').expect("a closed generic"), items);
    }
    if let Some(rest) = ty.strip_prefix("Vec<") {
        return format!(
            "list of {}s",
            type_name(rest.strip_suffix('>').expect("a closed generic"), items)
        );
    }
    let name = match ty {
        "Duration" => "duration",
        "ByteSize" => "size",
        "Name" => "name",
        "String" => "string",
        "PathBuf" => "path",
        "bool" => "boolean",
        "usize" | "u32" | "u64" => "integer",
        "f64" => "number",
        "BTreeMap<String, String>" => "table of strings",
        "BTreeMap<String, ConfigValue>" => {
            "table of strings, or secrets (`{ env = \"NAME\" }`, `{ file = \"PATH\" }`)"
        }
        "std::net::SocketAddr" => "address",
        other if items.get(other).is_some_and(|i| i.is_enum) => "string",
        other => panic!(
            "the config reference does not know how to name the type {other}: teach type_name in host/tests/reference.rs"
        ),
    };
    name.to_owned()
}

/// The config every optional key left out, with an `[admin]` table; as the parser
/// fills it in, written back as TOML.
fn defaults() -> toml::Value {
    let text = "[admin]\n[redis]\n[[pipeline]]\nname = \"p\"\nplugin = \"p.wasm\"\ninput = \"IN\"\ngroup = \"G\"\n";
    let config: Config = toml::from_str(text).expect("the minimal config parses");
    toml::Value::try_from(&config).expect("the config serializes")
}

fn config_page() -> String {
    config_page_from(&sources(&root().join("host/src/config")))
}

/// The config page, from these sources of `host/src/config`.
fn config_page_from(files: &[(String, String)]) -> String {
    let items = config_items(files);
    let defaults = defaults();
    let mut page = format!("{GENERATED}\n\n# Configuration file\n\n");
    page.push_str(
        "Every key of the TOML file, with the text of its `///` doc in \
         `host/src/config/` and its default: what the parser fills in when the key is \
         left out. Unknown keys are errors; every error names the file, the key and the \
         fix. Durations are written like `\"250ms\"`, `\"5s\"`, `\"1m\"`; sizes like \
         `\"64MiB\"`. A worked example of a whole file is in \
         [Configuration](../guide/configuration.md).\n",
    );
    let mut sections = Vec::new();
    let mut seen = BTreeSet::new();
    walk(
        "Config",
        "",
        Some(&defaults),
        &items,
        &mut sections,
        &mut seen,
    );
    for (name, item) in &items {
        assert!(
            item.is_enum || seen.contains(name),
            "the Deserialize struct {name} of host/src/config is no table of the config the reference walks from Config: its keys would be missing from it"
        );
    }
    page.push_str(&sections.join(""));
    page
}

/// Renders the table of struct `name` at `path` (`""` for the top level), then its
/// subtables; `values` are its defaults.
fn walk(
    name: &str,
    path: &str,
    values: Option<&toml::Value>,
    items: &BTreeMap<String, Item>,
    out: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) {
    seen.insert(name.to_owned());
    let item = items
        .get(name)
        .unwrap_or_else(|| panic!("no Deserialize struct {name} in host/src/config"));
    let heading = match path {
        "" => "Top level".to_owned(),
        "pipeline" => "`[[pipeline]]`".to_owned(),
        other => format!("`[{other}]`"),
    };
    let mut section = format!("\n## {heading}\n\n{}\n", paragraph(&item.doc));
    section.push_str("\n| key | type | default | what it is |\n|---|---|---|---|\n");
    let mut tables = Vec::new();
    let keys: BTreeSet<String> = item.members.iter().map(Member::key).collect();
    if let Some(toml::Value::Table(table)) = values {
        for key in table.keys() {
            assert!(
                keys.contains(key),
                "the parsed config has {path}.{key}, which host/src/config declares nowhere the reference can see"
            );
        }
    }
    assert!(
        !paragraph(&item.doc).is_empty(),
        "the config struct {name} (table {heading}) has no /// doc: write one (it is the reference's text)"
    );
    for member in &item.members {
        assert!(
            !paragraph(&member.doc).is_empty(),
            "the field {name}.{} of host/src/config has no /// doc: write one (it is the reference's text for key {path}.{})",
            member.name,
            member.key()
        );
    }
    for member in item.members.iter().filter(|m| !m.skipped()) {
        let key = member.key();
        let value = values.and_then(|v| v.get(&key));
        let ty = inner(&member.ty);
        if items.get(ty).is_some_and(|i| !i.is_enum) {
            let at = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let value = match value {
                Some(toml::Value::Array(list)) => list.first(),
                other => other,
            };
            tables.push((ty.to_owned(), at, value.cloned()));
            continue;
        }
        let optional = member.ty.starts_with("Option<") || member.has_default();
        let default = match value {
            _ if !optional => "required".into(),
            Some(v) => format!("`{}`", v.to_string().replace('|', "\\|")),
            None => "unset".into(),
        };
        let mut text = paragraph(&member.doc);
        if let Some(e) = items.get(ty).filter(|i| i.is_enum) {
            text.push_str(&enum_values(e));
        }
        section.push_str(&format!(
            "| `{key}` | {} | {default} | {} |\n",
            type_name(&member.ty, items),
            text.replace('|', "\\|")
        ));
    }
    out.push(section);
    for (ty, at, value) in tables {
        walk(&ty, &at, value.as_ref(), items, out, seen);
    }
}

fn enum_values(item: &Item) -> String {
    let values: Vec<String> = item
        .members
        .iter()
        .map(|m| {
            let name = if item.kebab {
                kebab(&m.name)
            } else {
                m.name.clone()
            };
            assert!(
                !paragraph(&m.doc).is_empty(),
                "the config value \"{name}\" (enum variant {}) has no /// doc: write one (it is the reference's text)",
                m.name
            );
            format!("`\"{name}\"`: {}", paragraph(&m.doc).trim_end_matches('.'))
        })
        .collect();
    format!(" Values: {}", values.join("; "))
}

/// Doc lines as one line of Markdown; rustdoc's links to items (`` [`Item`] ``) become
/// plain code.
fn paragraph(doc: &[String]) -> String {
    let text = doc
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("[`") {
        let end = rest[at..].find("`]").map(|e| at + e);
        match end {
            Some(end) if !rest[end + 2..].starts_with('(') => {
                out.push_str(&rest[..at]);
                out.push_str(&rest[at + 1..end + 1]);
                rest = &rest[end + 2..];
            }
            _ => {
                out.push_str(&rest[..at + 2]);
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}
