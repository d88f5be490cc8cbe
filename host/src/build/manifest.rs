//! `plugin.toml`: what a plugin project is (name, language, entry) and what it needs from
//! the pipeline that runs it (state prefixes, outbound hosts), read by `sluice build`.
//!
//! ```toml
//! name = "orders-check"          # the component is orders_check.wasm
//! language = "ts"                # rust, js, ts, python or c
//! entry = "orders-check.ts"      # js/ts: NAME.js / NAME.ts; python: app.py (the module `app`)
//! # world = "handler"            # default: from the capabilities below and the exports
//! state = ["order:"]             # handler state key prefixes it reads and writes
//! allowed_outbound_hosts = ["https://payments.example.com"]   # origins it calls
//!
//! sdk = "../sluice"             # the Sluice checkout (wit/, guest-sdk/); default: found
//!
//! [variants.with-http]           # `sluice build --variant with-http`: the same sources
//! features = ["http"]            # rust: cargo features
//! allowed_outbound_hosts = ["http://127.0.0.1:*"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The manifest's file name in a plugin project.
pub const FILE: &str = "plugin.toml";

/// A plugin language `sluice build` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust: cargo for `wasm32-wasip2`.
    Rust,
    /// JavaScript: esbuild bundles it (npm packages inside), componentize-js builds it.
    Js,
    /// TypeScript: as JavaScript.
    Ts,
    /// Python: componentize-py, with pure-Python packages from `requirements.txt`.
    Python,
    /// C: clang-19 and wasi-libc, with the `sluice-c` tool.
    C,
}

impl Language {
    /// The language's name in messages.
    pub fn title(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Js => "JavaScript",
            Language::Ts => "TypeScript",
            Language::Python => "Python",
            Language::C => "C",
        }
    }

    /// Whether the world must be chosen before the build (the interpreter's build tools
    /// take one); Rust and C components import and export what their code uses.
    pub fn needs_world(self) -> bool {
        matches!(self, Language::Js | Language::Ts | Language::Python)
    }
}

/// The worlds of `wit/handler.wit` a plugin may name.
pub const WORLDS: &[&str] = &[
    "handler",
    "batch-handler",
    "packed-batch-handler",
    "stateful-handler",
    "http-handler",
    "stateful-http-handler",
];

/// What may differ in a variant: added on top of the manifest's own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    /// Handler state key prefixes (a pipeline's `state`).
    #[serde(default)]
    pub state: Vec<String>,
    /// Origins it sends HTTP requests to (a pipeline's `allowed_outbound_hosts`).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Rust: cargo features.
    #[serde(default)]
    pub features: Vec<String>,
    /// The world to build for (JavaScript, TypeScript, Python); default: from the
    /// capabilities and, for JavaScript, the exports.
    #[serde(default)]
    pub world: Option<String>,
}

/// A parsed `plugin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name: lowercase letters, digits and '-'.
    pub name: String,
    /// Its language.
    pub language: Language,
    /// JavaScript/TypeScript: the module that exports `handle` (default `NAME.js` or
    /// `NAME.ts`); Python: the module file (default `app.py`). C builds every `*.c` of the
    /// project; Rust, its `Cargo.toml`.
    #[serde(default)]
    pub entry: Option<String>,
    /// Handler state key prefixes (a pipeline's `state`).
    #[serde(default)]
    state: Vec<String>,
    /// Origins it sends HTTP requests to (a pipeline's `allowed_outbound_hosts`).
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    /// Rust: cargo features.
    #[serde(default)]
    features: Vec<String>,
    /// The world to build for.
    #[serde(default)]
    world: Option<String>,
    /// Python: more directories on the module path (relative to the project), for modules
    /// shared with another plugin.
    #[serde(default)]
    pub python_path: Vec<PathBuf>,
    /// C: more include directories (relative to the project), for headers shared with
    /// another plugin.
    #[serde(default)]
    pub include: Vec<PathBuf>,
    /// The Sluice checkout (its `wit/` and `guest-sdk/`), relative to the project; default:
    /// the one holding the project, else the one `sluice` was built from.
    #[serde(default)]
    pub sdk: Option<PathBuf>,
    /// Other builds of the same sources (`sluice build --variant NAME`).
    #[serde(default)]
    pub variants: BTreeMap<String, Needs>,
}

impl Manifest {
    /// Reads and checks `DIR/plugin.toml`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: a plugin project has a {FILE} (`sluice new` writes one; see the book's \"Building plugins\")",
                path.display()
            )
        })?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and checks a manifest's text.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        check_name(&manifest.name)?;
        manifest.own().check("")?;
        for (name, variant) in &manifest.variants {
            variant.check(&format!("[variants.{name}]: "))?;
        }
        let features = manifest.variants.values().flat_map(|v| &v.features);
        if manifest.language != Language::Rust
            && (!manifest.features.is_empty() || features.count() > 0)
        {
            bail!("`features` are cargo features: only for language = \"rust\"");
        }
        Ok(manifest)
    }

    /// The manifest's needs with the variant's added.
    pub fn needs(&self, variant: Option<&str>) -> Result<Needs> {
        let mut needs = self.own();
        if let Some(name) = variant {
            let Some(extra) = self.variants.get(name) else {
                let known: Vec<&str> = self.variants.keys().map(String::as_str).collect();
                bail!(
                    "{FILE} has no [variants.{name}] (it has: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            };
            needs.state.extend(extra.state.iter().cloned());
            needs
                .allowed_outbound_hosts
                .extend(extra.allowed_outbound_hosts.iter().cloned());
            needs.features.extend(extra.features.iter().cloned());
            if extra.world.is_some() {
                needs.world.clone_from(&extra.world);
            }
        }
        Ok(needs)
    }

    /// The manifest's own needs, without a variant's.
    fn own(&self) -> Needs {
        Needs {
            state: self.state.clone(),
            allowed_outbound_hosts: self.allowed_outbound_hosts.clone(),
            features: self.features.clone(),
            world: self.world.clone(),
        }
    }

    /// The component's file name: the plugin's name with '_' for '-', `.wasm`.
    pub fn file_name(&self) -> String {
        format!("{}.wasm", self.name.replace('-', "_"))
    }
}

impl Needs {
    /// The same checks a pipeline's `state` and `allowed_outbound_hosts` get.
    fn check(&self, at: &str) -> Result<()> {
        for prefix in &self.state {
            if prefix.is_empty() {
                bail!(
                    "{at}state prefix \"\" would grant every key in Redis; give the prefixes of the handler's own keys, like \"order:\""
                );
            }
        }
        crate::outbound::AllowedHosts::parse(&self.allowed_outbound_hosts)
            .with_context(|| format!("{at}allowed_outbound_hosts"))?;
        if let Some(world) = &self.world
            && !WORLDS.contains(&world.as_str())
        {
            bail!(
                "{at}world {world:?} is not a world of wit/handler.wit (one of: {})",
                WORLDS.join(", ")
            );
        }
        Ok(())
    }
}

/// A name that is a valid crate, module and file name in every language.
pub fn check_name(name: &str) -> Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "plugin name {name:?} is not valid: use lowercase letters, digits and '-', starting with a letter (e.g. order-audit)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("order-audit2").is_ok());
        for bad in ["", "Order", "2x", "a_b", "a-", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_manifest_with_variants() {
        let m = Manifest::parse(
            r#"
            name = "payments"
            language = "rust"
            state = ["order:"]
            [variants.http]
            features = ["http"]
            allowed_outbound_hosts = ["http://127.0.0.1:*"]
            "#,
        )
        .expect("accepted");
        assert_eq!(m.file_name(), "payments.wasm");
        let needs = m.needs(Some("http")).expect("accepted");
        assert_eq!(needs.features, ["http"]);
        assert_eq!(needs.state, ["order:"]);
        assert_eq!(needs.allowed_outbound_hosts, ["http://127.0.0.1:*"]);
        let err = m.needs(Some("nope")).expect_err("refused").to_string();
        assert!(
            err.contains("[variants.nope]") && err.contains("http"),
            "{err}"
        );
    }

    #[test]
    fn bad_manifests_are_refused_naming_the_key() {
        for (text, says) in [
            ("name = \"x\"\nlanguage = \"go\"", "language"),
            ("name = \"X\"\nlanguage = \"js\"", "not valid"),
            (
                "name = \"x\"\nlanguage = \"js\"\nstate = [\"\"]",
                "every key",
            ),
            (
                "name = \"x\"\nlanguage = \"js\"\nallowed_outbound_hosts = [\"ftp://a\"]",
                "allowed_outbound_hosts",
            ),
            ("name = \"x\"\nlanguage = \"js\"\nworld = \"nope\"", "world"),
            (
                "name = \"x\"\nlanguage = \"js\"\nfeatures = [\"a\"]",
                "cargo",
            ),
            ("name = \"x\"\nlanguage = \"js\"\nsatte = []", "satte"),
        ] {
            let err = format!("{:#}", Manifest::parse(text).expect_err("refused"));
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
