//! The server's own settings that decide whether it keeps what Sluice writes: its
//! eviction policy (`maxmemory-policy`) and its persistence (`save`, `appendonly`),
//! read with `CONFIG GET` on the daemon-wide connection. What to make of them is the
//! supervisor's (`supervisor::settings`).

use std::collections::HashMap;

use super::{Broker, Fault};

/// The eviction policy under which the server never drops a key on its own: a write
/// that needs memory it does not have fails instead
/// (<https://redis.io/docs/latest/develop/reference/eviction/>).
pub const NO_EVICTION: &str = "noeviction";

/// What the server said of its eviction policy and persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// `maxmemory-policy`: `noeviction`, `allkeys-lru`, `volatile-ttl`...
    pub maxmemory_policy: String,
    /// `save`: the RDB snapshot points (`3600 1 300 100`), empty when off.
    pub save: String,
    /// `appendonly`: whether the append-only file is on.
    pub appendonly: bool,
}

impl ServerSettings {
    /// Whether the server may evict keys on its own under memory pressure: any policy
    /// but `noeviction`, even with no `maxmemory` set now (it can be set at runtime).
    pub fn evicts(&self) -> bool {
        !self.maxmemory_policy.eq_ignore_ascii_case(NO_EVICTION)
    }

    /// Whether the server keeps its data across a restart: RDB snapshots or AOF.
    pub fn persists(&self) -> bool {
        !self.save.trim().is_empty() || self.appendonly
    }
}

/// Whether `fault` says the settings cannot be read at all, not just now: the ACL user
/// may not run `CONFIG GET` (`NOPERM`), or the server has no `CONFIG` (managed
/// services rename or disable it).
pub fn settings_unreadable(fault: &Fault) -> bool {
    fault.is_permission() || fault.to_string().contains("unknown command")
}

impl Broker {
    /// The server's eviction policy and persistence (`CONFIG GET`, one parameter at a
    /// time: several in one call need Redis 7.0).
    pub async fn server_settings(&self) -> Result<ServerSettings, Fault> {
        Ok(ServerSettings {
            maxmemory_policy: self.config_get("maxmemory-policy").await?,
            save: self.config_get("save").await?,
            appendonly: self.config_get("appendonly").await? == "yes",
        })
    }

    /// The value of one `CONFIG GET` parameter (empty if the server has none by that
    /// name).
    async fn config_get(&self, parameter: &'static str) -> Result<String, Fault> {
        let what = format!("CONFIG GET {parameter}");
        let mut values: HashMap<String, String> = self
            .call(&what, |mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(parameter)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(values.remove(parameter).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: &str, save: &str, appendonly: bool) -> ServerSettings {
        ServerSettings {
            maxmemory_policy: policy.to_owned(),
            save: save.to_owned(),
            appendonly,
        }
    }

    #[test]
    fn every_policy_but_noeviction_evicts() {
        assert!(!settings("noeviction", "", false).evicts());
        for policy in [
            "allkeys-lru",
            "volatile-lru",
            "allkeys-random",
            "volatile-ttl",
        ] {
            assert!(settings(policy, "", false).evicts(), "{policy}");
        }
    }

    #[test]
    fn snapshots_or_an_append_only_file_persist() {
        assert!(!settings("noeviction", "", false).persists());
        assert!(!settings("noeviction", " ", false).persists());
        assert!(settings("noeviction", "3600 1", false).persists());
        assert!(settings("noeviction", "", true).persists());
    }
}
