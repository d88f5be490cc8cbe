//! The values of a pipeline's `config` table: text as written, or a secret read from the
//! environment or a file when the config is loaded (and again at each reload), whose value
//! is never shown.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One value of `config`: `key = "text"`, `key = { env = "NAME" }` (the environment
/// variable's value) or `key = { file = "PATH" }` (the file's contents without one trailing
/// newline; a relative path is read from the config file's folder). A secret is read when
/// the config is loaded or reloaded; its value is never logged or shown.
///
/// Read and written by hand (not derived): a value is a string or a one-key table, and a
/// wrong shape gets an error that says which shapes there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// The value as written.
    Text(String),
    /// A secret: the value of this environment variable.
    Env {
        /// The variable's name.
        env: String,
    },
    /// A secret: the contents of this file.
    File {
        /// The file's path.
        file: PathBuf,
    },
}

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::try_from(toml::Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ConfigValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let one = |key: &str, value: &str| {
            let mut table = toml::Table::new();
            table.insert(key.to_owned(), toml::Value::String(value.to_owned()));
            table
        };
        match self {
            Self::Text(text) => serializer.serialize_str(text),
            Self::Env { env } => one("env", env).serialize(serializer),
            Self::File { file } => one("file", &file.to_string_lossy()).serialize(serializer),
        }
    }
}

impl TryFrom<toml::Value> for ConfigValue {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Self, String> {
        const SHAPES: &str = "give a string, { env = \"NAME\" } or { file = \"PATH\" }";
        let table = match value {
            toml::Value::String(text) => return Ok(Self::Text(text)),
            toml::Value::Table(table) => table,
            other => {
                let kind = other.type_str();
                let article = if kind.starts_with(['a', 'i']) {
                    "an"
                } else {
                    "a"
                };
                return Err(format!("{article} {kind} is not a config value: {SHAPES}"));
            }
        };
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let (["env"] | ["file"]) = keys.as_slice() else {
            return Err(format!(
                "a secret is a table of exactly one key, env or file, not {keys:?}: {SHAPES}"
            ));
        };
        let (key, value) = table.into_iter().next().expect("one key");
        match value {
            toml::Value::String(name) if !name.is_empty() => Ok(if key == "env" {
                Self::Env { env: name }
            } else {
                Self::File { file: name.into() }
            }),
            _ => Err(format!(
                "{key} must be a non-empty string (the {}): {SHAPES}",
                if key == "env" {
                    "variable's name"
                } else {
                    "file's path"
                }
            )),
        }
    }
}

/// What the handler's `config(key)` answers: every value of a pipeline's `config` table,
/// secrets read. Its `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PluginConfig(BTreeMap<String, String>);

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl PluginConfig {
    /// Reads the secrets of `values` (relative files from `base`); the error names the key
    /// and the variable or file, never a value.
    pub fn read(values: &BTreeMap<String, ConfigValue>, base: &Path) -> Result<Self> {
        let mut read = BTreeMap::new();
        for (name, value) in values {
            // Names as written may hold control characters: shown escaped.
            let key = name.escape_debug();
            let text = match value {
                ConfigValue::Text(text) => text.clone(),
                ConfigValue::Env { env } => match std::env::var(env) {
                    Ok(text) => text,
                    Err(std::env::VarError::NotPresent) => bail!(
                        "config.{key}: the environment variable {} is not set: set it in the daemon's environment, or give the value another way",
                        env.escape_debug()
                    ),
                    Err(std::env::VarError::NotUnicode(_)) => {
                        bail!(
                            "config.{key}: the environment variable {} is not UTF-8",
                            env.escape_debug()
                        )
                    }
                },
                ConfigValue::File { file } => {
                    read_secret_file(&base.join(file)).with_context(|| format!("config.{key}"))?
                }
            };
            read.insert(name.clone(), text);
        }
        Ok(Self(read))
    }

    /// The values, for the handler's instances.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// The largest secret file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret file's text without one trailing newline: a regular file only (a FIFO would
/// block the read for ever, a device never end), opened without blocking, of at most
/// [`MAX_SECRET_FILE`] bytes of UTF-8. Errors name the file, never its contents.
fn read_secret_file(path: &Path) -> Result<String> {
    use crate::files::{ReadError, read_regular};
    let bytes = match read_regular(path, MAX_SECRET_FILE) {
        Ok(bytes) => bytes,
        Err(ReadError::Io(e)) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot read the secret file {}: the daemon's user must be able to read it",
                path.display()
            )));
        }
        Err(ReadError::NotRegular) => bail!(
            "the secret file {} is not a regular file (a directory, FIFO or device): point it at a file",
            path.display()
        ),
        Err(ReadError::TooLarge(_)) => bail!(
            "the secret file {} is over {MAX_SECRET_FILE} bytes: is it the right file?",
            path.display()
        ),
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the secret file {} is not UTF-8 text", path.display()))?;
    let trimmed = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t));
    Ok(trimmed.unwrap_or(&text).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, base: &Path) -> PluginConfig {
        let values: BTreeMap<String, ConfigValue> = toml::from_str(text).expect("values");
        PluginConfig::read(&values, base).expect("read")
    }

    #[test]
    fn a_secret_is_read_and_never_debug_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("k"), "hunter2-from-file\r\n").expect("write");
        let config = read("plain = \"shown\"\nkey = { file = \"k\" }", dir.path());
        assert_eq!(config.values()["key"], "hunter2-from-file");
        assert_eq!(config.values()["plain"], "shown");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("key"),
            "{debug}"
        );
    }

    #[test]
    fn a_secret_file_that_is_not_a_small_regular_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let values = |file: &str| -> BTreeMap<String, ConfigValue> {
            toml::from_str(&format!("key = {{ file = \"{file}\" }}")).expect("values")
        };
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        std::fs::write(dir.path().join("big"), vec![b'a'; 70_000]).expect("write");
        std::fs::write(dir.path().join("bytes"), [0xff, 0xfe]).expect("write");
        for (file, says) in [
            ("fifo", "not a regular file"),
            ("/dev/zero", "not a regular file"),
            (".", "not a regular file"),
            ("big", "over 65536 bytes"),
            ("bytes", "not UTF-8"),
        ] {
            let error = format!(
                "{:#}",
                PluginConfig::read(&values(file), dir.path()).expect_err(file)
            );
            assert!(
                error.contains("config.key") && error.contains(says),
                "{file}: {error}"
            );
        }
    }

    #[test]
    fn a_changed_secret_is_a_changed_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("k"), "one").expect("write");
        let before = read("key = { file = \"k\" }", dir.path());
        std::fs::write(dir.path().join("k"), "two").expect("write");
        assert_ne!(
            before,
            read("key = { file = \"k\" }", dir.path()),
            "a reload restarts the pipeline"
        );
    }
}
