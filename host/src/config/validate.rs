//! The rules a config must keep beyond its types: each names the key and the fix.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};

use super::{Config, PipelineConfig, TelemetryConfig};

impl Config {
    /// Checks the rules that span fields and pipelines.
    pub fn validate(&self) -> Result<()> {
        self.redis.validate()?;
        self.telemetry.validate().context("in [telemetry]")?;
        let mut names = HashSet::new();
        for p in &self.pipelines {
            if !names.insert(&p.name) {
                bail!(
                    "pipeline name {:?} is used twice; give each [[pipeline]] a unique name",
                    p.name.as_str()
                );
            }
            p.validate()
                .with_context(|| format!("in [[pipeline]] {:?}", p.name.as_str()))?;
        }
        self.validate_dead_letter_streams()?;
        // Handler state must not write any pipeline's streams, not only its own.
        for p in &self.pipelines {
            for other in &self.pipelines {
                let streams = std::iter::once(other.input.to_string())
                    .chain(other.outputs.iter().map(|o| o.to_string()))
                    .chain(std::iter::once(other.dead_letter_stream()));
                for stream in streams {
                    if let Some(prefix) =
                        p.state.iter().find(|pre| stream.starts_with(pre.as_str()))
                    {
                        bail!(
                            "in [[pipeline]] {:?}: state prefix {prefix:?} covers the stream {stream:?} of pipeline {:?}: handler state must not write a pipeline's streams; use a prefix of its own",
                            p.name.as_str(),
                            other.name.as_str()
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// No two pipelines share a dead-letter stream: a replay of one would move the
    /// other's letters into its input, and a purge would delete them.
    fn validate_dead_letter_streams(&self) -> Result<()> {
        let mut owners: HashMap<String, &str> = HashMap::new();
        for p in &self.pipelines {
            for stream in p.dead_letter_streams() {
                if let Some(other) = owners.insert(stream.clone(), p.name.as_str()) {
                    bail!(
                        "pipelines {other:?} and {:?} both dead-letter to {stream:?}: a replay of one would move the other's letters into its input, and a purge would delete them; give each its own stream with `dead_letter = \"...\"` (the default is \"INPUT:dead\", and a partitioned pipeline's is tagged {{p}})",
                        p.name.as_str()
                    );
                }
            }
        }
        Ok(())
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            bail!(
                "`sample_ratio` = {} is not in [0, 1]: it is the share of new traces sampled (1 samples all)",
                self.sample_ratio
            );
        }
        if let Some(url) = &self.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!(
                "`otlp_endpoint` {url:?} is not an http:// or https:// URL: Sluice exports OTLP over HTTP (protobuf), e.g. \"http://otel-collector:4318\" (the collector's OTLP/HTTP port, not its gRPC port 4317)"
            );
        }
        if self
            .service_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            bail!("`service_name` is empty; name the service, or leave the key out for \"sluice\"");
        }
        Ok(())
    }
}

impl PipelineConfig {
    pub(super) fn validate(&self) -> Result<()> {
        self.validate_streams()?;
        self.validate_limits()?;
        self.validate_partitions()
    }

    /// The plugin file exists, and the handler's outputs and state keep off the
    /// pipeline's own input and dead letters.
    fn validate_streams(&self) -> Result<()> {
        if !self.plugin.is_file() {
            bail!(
                "plugin file {} does not exist; build the plugin or fix the `plugin` path (relative paths start at the config file's directory)",
                self.plugin.display()
            );
        }
        let dead = self.dead_letter_stream();
        for out in &self.outputs {
            if out == &self.input {
                bail!(
                    "output {out:?} is also the input: the pipeline would consume its own outputs forever"
                );
            }
            if out.as_str() == dead {
                bail!(
                    "output {out:?} is the dead-letter stream; dead letters are written by Sluice, not by the handler"
                );
            }
        }
        for prefix in &self.state {
            if prefix.is_empty() {
                bail!(
                    "state prefix \"\" would grant every key in Redis; give the prefixes of the handler's own keys, like \"order:\""
                );
            }
            let streams = std::iter::once(self.input.as_str())
                .chain(self.outputs.iter().map(|o| o.as_str()))
                .chain(std::iter::once(dead.as_str()));
            for stream in streams {
                if stream.starts_with(prefix.as_str()) {
                    bail!(
                        "state prefix {prefix:?} covers the stream {stream:?}: handler state must not write the pipeline's streams; use a prefix of its own"
                    );
                }
            }
        }
        if dead == self.input.as_str() {
            bail!("dead_letter {dead:?} is the input stream; pick another stream");
        }
        Ok(())
    }

    /// Counts, durations and `limits` within their bounds.
    fn validate_limits(&self) -> Result<()> {
        self.validate_http()?;
        let positive = [
            ("batch", self.batch),
            ("concurrency", self.concurrency.unwrap_or(1)),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("`{key}` must be at least 1");
            }
        }
        if self.max_attempts == 0 {
            bail!("`max_attempts` must be at least 1");
        }
        if self.retry_backoff.initial > self.retry_backoff.max {
            bail!("`retry_backoff.initial` is larger than `retry_backoff.max`");
        }
        if self.claim_idle < std::time::Duration::from_millis(100) {
            bail!(
                "`claim_idle` must be at least 100ms (entries idle this long are taken from their consumer)"
            );
        }
        if self.limits.timeout.is_zero() {
            bail!("`limits.timeout` must be longer than zero");
        }
        if self.limits.memory.as_u64() < 1024 * 1024 {
            bail!("`limits.memory` must be at least 1MiB (a component needs a few pages to start)");
        }
        if self.limits.fuel == Some(0) {
            bail!("`limits.fuel` must be at least 1 (leave it out for no fuel metering)");
        }
        if self.limits.max_outputs == 0 {
            bail!("`limits.max_outputs` must be at least 1");
        }
        let share = self.limits.throttle_share;
        if !(share > 0.0 && share <= 1.0) {
            bail!(
                "`limits.throttle_share` must be more than 0 and at most 1 (the share of a core a call still running after `throttle_after` may use; 1 turns throttling off), not {share}"
            );
        }
        if self.limits.instance_reuse == 0 {
            bail!("`limits.instance_reuse` must be at least 1");
        }
        Ok(())
    }

    fn validate_partitions(&self) -> Result<()> {
        let max = crate::partition::MAX_PARTITIONS;
        match self.partitions {
            Some(n) if n == 0 || n > max => bail!(
                "`partitions` must be from 1 to {max}, not {n} (each partition is a stream of its own)"
            ),
            Some(_) => {
                let dead = self.dead_letter_stream();
                let names = std::iter::once(self.input.as_str())
                    .chain(self.outputs.iter().map(|o| o.as_str()))
                    .chain(std::iter::once(dead.as_str()))
                    .chain(self.state.iter().map(String::as_str));
                for name in names {
                    if name.contains(['{', '}']) {
                        bail!(
                            "{name:?} has a {{hash tag}}, and `partitions` gives each partition's keys the tag {{p}}: name streams and state prefixes without braces in a partitioned pipeline"
                        );
                    }
                }
            }
            None if self.ordering == super::Ordering::PerKey => bail!(
                "`ordering = \"per-key\"` needs `partitions = N`: order is kept per partition, and a producer puts all entries of one key in one partition (see `sluice partition`)"
            ),
            None => {}
        }
        if self.cross_slot && !self.state.is_empty() {
            bail!(
                "`cross_slot = true` cannot be combined with `state`: outputs in other hash slots are written before the guarded commit checks what the handler read, so a conflict would leave outputs of a run that is then handled again; give the outputs the input's {{hash tag}} instead"
            );
        }
        if self.cross_slot && self.cross_slot_marker_ttl <= self.claim_idle {
            bail!(
                "`cross_slot_marker_ttl` ({}) must be longer than `claim_idle` ({}): an entry of a daemon that died before its commit is handled again after `claim_idle`, and its outputs must still be marked as written then",
                humantime::format_duration(self.cross_slot_marker_ttl),
                humantime::format_duration(self.claim_idle)
            );
        }
        if self.lease_ttl < std::time::Duration::from_secs(1)
            || self.lease_ttl > std::time::Duration::from_secs(3600)
        {
            bail!(
                "`lease_ttl` must be from 1s to 1h (a daemon renews its partition leases every third of it, and a dead daemon's partitions wait this long), not {}",
                humantime::format_duration(self.lease_ttl)
            );
        }
        if self.cross_slot_marker_ttl > std::time::Duration::from_secs(7 * 24 * 3600) {
            bail!(
                "`cross_slot_marker_ttl` must be at most 7d (markers of every entry are kept this long), not {}",
                humantime::format_duration(self.cross_slot_marker_ttl)
            );
        }
        Ok(())
    }
}

impl PipelineConfig {
    /// In a Redis Cluster: whether one guarded commit can write every key this pipeline
    /// commits together (input, outputs, dead letters, state, partition lease) — they
    /// must share a hash slot — or, with `cross_slot`, at least all but the outputs.
    /// The error names each key, its slot and the fix.
    pub fn check_slots(&self) -> Result<()> {
        use crate::broker::slot::{hashed_part, key_slot};
        let (part, config) = match self.partitions {
            Some(_) => (Some(0), self.partition(0)),
            None => (None, self.clone()),
        };
        let mut keys: Vec<(&str, String)> = vec![("input", config.input.to_string())];
        if !self.cross_slot {
            keys.extend(config.outputs.iter().map(|o| ("output", o.to_string())));
        }
        keys.push(("dead letter stream", config.dead_letter_stream()));
        let mut untagged = Vec::new();
        for (_, stored) in self.state_keys(part) {
            if hashed_part(stored.as_bytes()).len() == stored.len() {
                untagged.push(stored);
            } else {
                keys.push(("state prefix", stored));
            }
        }
        let slot = key_slot(config.input.as_str().as_bytes());
        let apart = keys.iter().any(|(_, key)| key_slot(key.as_bytes()) != slot);
        if !apart && untagged.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = keys
            .iter()
            .map(|(role, key)| format!("{role} {key:?} (slot {})", key_slot(key.as_bytes())))
            .collect();
        let state_note = if untagged.is_empty() {
            String::new()
        } else {
            format!(
                "; state prefix {} has no {{hash tag}}, so its keys fall in every slot: give it the input's tag (like \"{{shop}}:order:\")",
                untagged
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        bail!(
            "in a Redis Cluster, the guarded commit writes a pipeline's keys in one script, so they must share a hash slot, and these do not: {}{state_note}. Fix: give them a common hash tag, the part in braces that alone is hashed (input = \"{{shop}}:orders\", outputs = [\"{{shop}}:payments\"]); or split the pipeline with partitions = N (each partition's keys share the tag {{p}}){}",
            listed.join(", "),
            if self.cross_slot {
                " (cross_slot = true is set: it lets only outputs live elsewhere)"
            } else {
                "; or, for outputs only, set cross_slot = true (outputs in other slots are written once per entry before the commit)"
            }
        )
    }
}
