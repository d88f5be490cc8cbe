//! The rules of the `[redis]` table that span its keys: one server, Sentinels or a
//! cluster; TLS only towards a server that speaks it; a login only where there is one to
//! log in to. Each rule's error names the keys and the fix.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::redis::{MAX_WAIT_TIMEOUT, RedisConfig, consumer_name};

impl RedisConfig {
    /// Checks the table as a whole; the first rule broken is the error.
    pub(super) fn validate(&self) -> Result<()> {
        if let Some(name) = &self.consumer {
            consumer_name(name).context("[redis] consumer")?;
        }
        let idle = self.remove_idle_consumers_after;
        if !idle.is_zero() && idle < Duration::from_secs(60) {
            bail!(
                "[redis] remove_idle_consumers_after = {idle:?} is too short: a consumer between two reads looks idle; give at least \"1m\", or \"0s\" to keep idle consumers"
            );
        }
        self.check_urls()?;
        self.check_cluster()?;
        self.check_placement()?;
        self.check_tls()?;
        self.check_durability()?;
        self.check_login()?;
        self.check_names()
    }

    /// `url` and `nodes` are Redis URLs (not quoted back: they may hold a password).
    fn check_urls(&self) -> Result<()> {
        if let Some(url) = &self.url {
            ::redis::Client::open(url.as_str()).context(
                "[redis] url is not a valid Redis URL; write it like \"redis://127.0.0.1:6379\", \"rediss://host:6380\" (TLS) or \"redis://user:password@host:6379\" (a password with # @ / ? or % in it must be percent-encoded, # as %23; or keep it in password_file)",
            )?;
        }
        for node in &self.nodes {
            ::redis::Client::open(node.as_str()).with_context(|| {
                format!(
                    "[redis] nodes: {:?} is not a valid Redis URL; write each like \"redis://10.0.0.5:6379\"",
                    crate::broker::redact_url(node)
                )
            })?;
        }
        Ok(())
    }

    /// `cluster = true` with seed nodes alike (no Sentinels, one scheme), and `nodes`
    /// only with it.
    fn check_cluster(&self) -> Result<()> {
        if !self.cluster {
            if !self.nodes.is_empty() {
                bail!(
                    "[redis] nodes is set without cluster = true: nodes lists seed nodes of a Redis Cluster; add cluster = true, or give one server in url"
                );
            }
            return Ok(());
        }
        if !self.sentinels.is_empty() {
            bail!(
                "[redis] cluster = true and sentinels are set: a Redis Cluster fails over by itself; give its nodes in url or nodes, and remove sentinels and master"
            );
        }
        if self.url.is_none() && self.nodes.is_empty() {
            bail!(
                "[redis] cluster = true needs at least one node of the cluster: set url = \"redis://host:port\" or nodes = [\"redis://host:port\", ...]"
            );
        }
        if self.tls.as_ref().is_some_and(|t| t.server_name.is_some()) {
            bail!(
                "[redis.tls] server_name cannot be used with cluster = true: each node's certificate must name the address the cluster announces"
            );
        }
        let schemes: std::collections::BTreeSet<bool> = self
            .url
            .iter()
            .chain(&self.nodes)
            .map(|u| u.starts_with("rediss://"))
            .collect();
        if schemes.len() > 1 {
            bail!(
                "[redis] the cluster's node URLs mix redis:// and rediss://: a cluster speaks TLS on every node or on none; write them all alike"
            );
        }
        Ok(())
    }

    /// One server (`url`) or Sentinels with `master`; one place for the password.
    fn check_placement(&self) -> Result<()> {
        match (&self.url, self.sentinels.is_empty(), &self.master) {
            (Some(_), false, _) => bail!(
                "[redis] sets both url and sentinels: give one (url for one server, sentinels + master for a Sentinel set-up)"
            ),
            (_, false, None) => bail!(
                "[redis] sentinels is set without master: add master = \"<name>\", the name in the sentinels' `sentinel monitor <name> ...`"
            ),
            (_, true, Some(_)) => bail!(
                "[redis] master is set without sentinels: add sentinels = [\"host:26379\", ...] (or remove master and give url)"
            ),
            _ => {}
        }
        if let Some(url) = &self.url
            && crate::broker::url_password(url)
            && self.password_file.is_some()
        {
            bail!(
                "[redis] the url holds a password and password_file is set too: keep one (password_file keeps it out of the config)"
            );
        }
        Ok(())
    }

    /// `[redis.tls]` only towards a `rediss://` server, with whole client certificates.
    fn check_tls(&self) -> Result<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        if !self.is_external() {
            bail!(
                "[redis.tls] is set but there is no [redis] url or sentinels: the private redis-server speaks plain TCP"
            );
        }
        if let Some(url) = &self.url
            && !url.starts_with("rediss://")
        {
            bail!(
                "[redis.tls] is set but [redis] url is not a rediss:// URL: write rediss:// to use TLS, or remove [redis.tls]"
            );
        }
        if tls.server_name.is_some() && !self.sentinels.is_empty() {
            bail!(
                "[redis.tls] server_name cannot be used with sentinels: each node's certificate must name the address the sentinels announce"
            );
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            bail!(
                "[redis.tls] cert_file and key_file go together: give both for a client certificate, or neither"
            );
        }
        Ok(())
    }

    /// `wait_replicas` needs a server with replicas; `wait_timeout` is bounded.
    fn check_durability(&self) -> Result<()> {
        if self.wait_replicas > 0 && !self.is_external() {
            bail!(
                "[redis] wait_replicas = {} but the private redis-server has no replicas: set [redis] url or sentinels, or remove wait_replicas",
                self.wait_replicas
            );
        }
        if self.wait_timeout.is_zero() || self.wait_timeout > MAX_WAIT_TIMEOUT {
            bail!(
                "[redis] wait_timeout must be more than 0 (WAIT with 0 blocks for ever) and at most {} (one WAIT's wait; it is asked again); write it like \"1s\"",
                humantime::format_duration(MAX_WAIT_TIMEOUT)
            );
        }
        Ok(())
    }

    /// A login only towards a server named in the config.
    fn check_login(&self) -> Result<()> {
        if !self.is_external() && (self.username.is_some() || self.password_file.is_some()) {
            bail!(
                "[redis] username and password_file log in to the Redis in [redis] url or sentinels, and there is none: the private redis-server needs no login; set url (or sentinels), or remove them"
            );
        }
        Ok(())
    }

    /// Sentinels as `host:port`, and a `server_name` a certificate can hold.
    fn check_names(&self) -> Result<()> {
        for sentinel in &self.sentinels {
            let port = sentinel.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                bail!(
                    "[redis] sentinels: {sentinel:?} is not host:port; write it like \"10.0.0.5:26379\""
                );
            }
        }
        if let Some(name) = self.tls.as_ref().and_then(|t| t.server_name.as_ref())
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            bail!(
                "[redis.tls] server_name {name:?} is not a DNS name or an IP address; give the name the server's certificate holds"
            );
        }
        Ok(())
    }
}
