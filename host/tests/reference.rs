//! The book's reference pages are generated from the code and committed: this test
//! generates them again and fails when `docs/src/reference/*.md` differ, so a config
//! key, a command-line argument or a metric cannot be missing from the book.
//!
//! Update the pages with `SLUICE_UPDATE_REFERENCE=1 cargo test -p sluice --test reference`.
//!
//! - config: every key of every table, with its `///` doc (read from
//!   `host/src/config/*.rs`) and its default (what the parser fills in when the key is
//!   left out, written back as TOML);
//! - cli: every subcommand and argument, from clap (`sluice::cli::reference`);
//! - metrics: every series, from the list the exporter describes them with; every
//!   `"sluice_..."` name in `host/src` must be in that list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sluice::cli::reference::{GENERATED, cli_page, metric_names, metrics_page};
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
            "docs/src/reference/{name} is not what the code says (first difference at line {}: {:?}); update it with `{UPDATE}=1 cargo test -p sluice --test reference` and commit it",
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
fn metrics_reference_is_current() {
    check("metrics.md", &metrics_page());
}

#[test]
fn every_metric_in_the_code_is_in_the_reference() {
    let listed: BTreeSet<&str> = metric_names().into_iter().collect();
    let mut used = BTreeSet::new();
    for file in rust_files(&root().join("host/src")) {
        if file.ends_with("telemetry/describe.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for piece in text.split('"').skip(1).step_by(2) {
            if piece.starts_with("sluice_")
                && piece.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                used.insert(piece.to_owned());
            }
        }
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !listed.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used in host/src but not listed in host/src/telemetry/describe.rs (METRICS), so missing from the reference: {missing:?}"
    );
    let stale: Vec<&&str> = listed.iter().filter(|m| !used.contains(**m)).collect();
    assert!(
        stale.is_empty(),
        "metrics listed in host/src/telemetry/describe.rs that nothing in host/src records: {stale:?}"
    );
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
fn config_items() -> BTreeMap<String, Item> {
    let mut items = BTreeMap::new();
    for file in rust_files(&root().join("host/src/config")) {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        parse_items(&text, &mut items);
    }
    items
}

fn parse_items(text: &str, items: &mut BTreeMap<String, Item>) {
    let (mut doc, mut attrs) = (Vec::new(), String::new());
    let mut open: Option<(String, Item)> = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(text) = trimmed.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
            continue;
        }
        if trimmed.starts_with("#[") {
            let mut attr = trimmed.to_owned();
            while attr.matches('[').count() > attr.matches(']').count() {
                attr.push(' ');
                attr.push_str(lines.next().expect("an attribute ends").trim());
            }
            attrs.push_str(&attr);
            continue;
        }
        if let Some((_, item)) = &mut open {
            if line == "}" {
                let (name, item) = open.take().expect("an open item");
                items.insert(name, item);
            } else if let Some(field) = trimmed.strip_prefix("pub ") {
                let (name, ty) = field.split_once(':').expect("a field is `name: Type`");
                item.members.push(Member {
                    name: name.trim().to_owned(),
                    ty: ty.trim().trim_end_matches(',').to_owned(),
                    doc: std::mem::take(&mut doc),
                    attrs: std::mem::take(&mut attrs),
                });
            } else if item.is_enum && trimmed.ends_with(',') && !trimmed.contains(' ') {
                item.members.push(Member {
                    name: trimmed.trim_end_matches(',').to_owned(),
                    ty: String::new(),
                    doc: std::mem::take(&mut doc),
                    attrs: std::mem::take(&mut attrs),
                });
            }
        } else if attrs.contains("Deserialize")
            && let Some(rest) = trimmed
                .strip_prefix("pub struct ")
                .map(|r| (r, false))
                .or(trimmed.strip_prefix("pub enum ").map(|r| (r, true)))
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
    let items = config_items();
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
    walk("Config", "", Some(&defaults), &items, &mut sections);
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
) {
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
    for member in item.members.iter().filter(|m| !m.skipped()) {
        let key = member.key();
        assert!(
            !member.doc.is_empty(),
            "config key {path}.{key} has no /// doc: write one (it is the reference's text)"
        );
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
        walk(&ty, &at, value.as_ref(), items, out);
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
