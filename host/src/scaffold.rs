//! `sluice new`: a new plugin project in Rust, JavaScript, TypeScript, Python or C, with
//! its manifest (`plugin.toml`), that builds with `sluice build` and passes `sluice invoke`
//! and `sluice test` as it is.
//!
//! The project refers to the Sluice checkout (its `wit/` and `guest-sdk/`) by a relative
//! path, so a plugin kept in the same repository keeps building when the repository moves.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A plugin language `sluice new` can scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust, with the `sluice-sdk` crate.
    Rust,
    /// JavaScript, with `guest-sdk/js/sluice.js` and componentize-js.
    Js,
    /// TypeScript, with npm dependencies: bundled by esbuild, then componentize-js.
    Ts,
    /// Python, with `guest-sdk/python/sluice.py` and componentize-py.
    Python,
    /// C, with `guest-sdk/c/sluice.h`, clang-19 and wasi-libc.
    C,
}

/// (path in the project, contents) of each language's template; `{{name}}` in either is
/// the plugin's name, `{{file}}` its name with `_` for `-`, `{{sdk}}` the relative path
/// to the Sluice checkout. With `http`, the handler source is the one that calls an
/// HTTP service (`*-http/`).
fn templates(language: Language, http: bool) -> Vec<(&'static str, &'static str)> {
    let files = base_templates(language);
    if !http {
        return files.to_vec();
    }
    let handler = http_template(language);
    let replaced = |path: &str| {
        handler
            .iter()
            .any(|(h, _)| h.split_once('/').map(|x| x.1) == path.split_once('/').map(|x| x.1))
    };
    files
        .iter()
        .filter(|(path, _)| !replaced(path))
        .chain(handler)
        .copied()
        .collect()
}

/// The handler source of `--http` projects.
fn http_template(language: Language) -> &'static [(&'static str, &'static str)] {
    macro_rules! files {
        ($($path:literal),* $(,)?) => {
            &[$(($path, include_str!(concat!("../templates/", $path)))),*]
        };
    }
    match language {
        Language::Rust => files!["rust-http/src/lib.rs", "rust-http/fixtures.toml"],
        Language::Js => files!["js-http/{{name}}.js", "js-http/fixtures.toml"],
        Language::Ts => &[],
        Language::Python => files!["python-http/app.py", "python-http/fixtures.toml"],
        Language::C => files!["c-http/{{name}}.c", "c-http/fixtures.toml"],
    }
}

fn base_templates(language: Language) -> &'static [(&'static str, &'static str)] {
    macro_rules! files {
        ($($path:literal),* $(,)?) => {
            &[$(($path, include_str!(concat!("../templates/", $path)))),*]
        };
    }
    match language {
        Language::Rust => files![
            "rust/Cargo.toml",
            "rust/src/lib.rs",
            "rust/.gitignore",
            "rust/fixtures.toml"
        ],
        Language::Js => files!["js/{{name}}.js", "js/.gitignore", "js/fixtures.toml"],
        // JavaScript's cases, and the SDK's own types.
        Language::Ts => &[
            (
                "ts/{{name}}.ts",
                include_str!("../templates/ts/{{name}}.ts"),
            ),
            ("ts/.gitignore", include_str!("../templates/ts/.gitignore")),
            (
                "ts/fixtures.toml",
                include_str!("../templates/js/fixtures.toml"),
            ),
            (
                "ts/package.json",
                include_str!("../templates/ts/package.json"),
            ),
            (
                "ts/tsconfig.json",
                include_str!("../templates/ts/tsconfig.json"),
            ),
            (
                "ts/sluice.d.ts",
                include_str!("../../guest-sdk/js/sluice.d.ts"),
            ),
            (
                "ts/state.d.ts",
                include_str!("../../guest-sdk/js/state.d.ts"),
            ),
        ],
        Language::Python => files![
            "python/app.py",
            "python/.gitignore",
            "python/fixtures.toml",
            "python/requirements.txt"
        ],
        Language::C => files!["c/{{name}}.c", "c/.gitignore", "c/fixtures.toml"],
    }
}

/// What `create` made.
#[derive(Debug)]
pub struct Scaffold {
    /// The project directory.
    pub dir: PathBuf,
    /// Its manifest, which `sluice build` reads.
    pub manifest: PathBuf,
    /// The component the build writes.
    pub wasm: PathBuf,
}

/// Writes a new `language` plugin called `name` into `dir` (which must not exist or be
/// empty), referring to the Sluice checkout at `root`; with `http`, one that calls an
/// HTTP service for each entry.
pub fn create(
    name: &str,
    language: Language,
    http: bool,
    dir: &Path,
    root: &Path,
) -> Result<Scaffold> {
    crate::build::manifest::check_name(name)?;
    if http && language == Language::Ts {
        bail!(
            "--http has no TypeScript template: start from --lang js --http (its handler is plain JavaScript that TypeScript accepts)"
        );
    }
    if !root.join("wit/handler.wit").is_file() || !root.join("guest-sdk").is_dir() {
        bail!(
            "{} is not a Sluice checkout (no wit/handler.wit and guest-sdk/): pass --sdk PATH",
            root.display()
        );
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} already exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir_abs = std::fs::canonicalize(dir)?;
    let root_abs = std::fs::canonicalize(root)?;
    let sdk = relative(&root_abs, &dir_abs);
    let file = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{file}}", &file)
            .replace("{{sdk}}", &sdk)
    };
    let manifest = dir.join(crate::build::manifest::FILE);
    std::fs::write(&manifest, manifest_text(name, language, http, &sdk))
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    for (template, contents) in templates(language, http) {
        // Drop the language directory: "rust/src/lib.rs" → "src/lib.rs".
        let (_, inner) = template.split_once('/').unwrap_or(("", template));
        let path = dir.join(fill(inner));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, fill(contents))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(Scaffold {
        dir: dir.to_owned(),
        manifest: dir.join(crate::build::manifest::FILE),
        wasm: dir.join(format!("{file}.wasm")),
    })
}

/// The project's `plugin.toml`.
fn manifest_text(name: &str, language: Language, http: bool, sdk: &str) -> String {
    let (language, entry) = match language {
        Language::Rust => ("rust", None),
        Language::Js => ("js", Some(format!("{name}.js"))),
        Language::Ts => ("ts", Some(format!("{name}.ts"))),
        Language::Python => ("python", Some("app.py".to_owned())),
        Language::C => ("c", None),
    };
    let mut text = format!(
        "# What `sluice build` builds, and what the pipeline that runs it must grant (the book's\n\
         # \"Building plugins\"). `sluice build` checks the component against it and prints the\n\
         # [[pipeline]] lines.\n\
         name = \"{name}\"\n\
         language = \"{language}\"\n"
    );
    if let Some(entry) = entry {
        text += &format!("entry = \"{entry}\"\n");
    }
    text += "\n# Handler state: the key prefixes it reads and writes (sluice:plugin/state).\n# state = [\"order:\"]\n";
    text += "\n# The origins it sends HTTP requests to (wasi:http).\n";
    if http {
        text += "allowed_outbound_hosts = [\"http://127.0.0.1:8080\"]\n";
    } else {
        text += "# allowed_outbound_hosts = [\"https://api.example.com\"]\n";
    }
    text += &format!(
        "\n# The Sluice checkout (its wit/ and guest-sdk/), from here.\nsdk = \"{sdk}\"\n"
    );
    text
}

/// `to` relative to `from` (both absolute, canonical), as a '/'-separated path.
fn relative(to: &Path, from: &Path) -> String {
    let to: Vec<Component> = to.components().collect();
    let from: Vec<Component> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let r = |a: &str, b: &str| relative(Path::new(a), Path::new(b));
        assert_eq!(r("/work/main", "/work/main/plugins/x"), "../..");
        assert_eq!(r("/work/main", "/tmp/x"), "../../work/main");
        assert_eq!(r("/work/main", "/work/main"), ".");
    }

    #[test]
    fn every_scaffold_manifest_parses() {
        for language in [
            Language::Rust,
            Language::Js,
            Language::Ts,
            Language::Python,
            Language::C,
        ] {
            for http in [false, true] {
                let text = manifest_text("my-plugin", language, http, "../..");
                let m = crate::build::manifest::Manifest::parse(&text).expect("parses");
                assert_eq!(m.file_name(), "my_plugin.wasm");
                assert_eq!(
                    m.needs(None)
                        .expect("no variant")
                        .allowed_outbound_hosts
                        .is_empty(),
                    !http
                );
            }
        }
    }
}
