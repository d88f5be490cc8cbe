//! What a request must pass before it is handled: the `Host` rule (no DNS rebinding) and,
//! for plugin uploads, a permit (a bounded number at once).
//!
//! The `Host` rule: a web page on any site can make a browser send requests to a name
//! that the page's owner points at 127.0.0.1 (DNS rebinding); the browser then sends
//! that name as `Host`. So while the API listens on a loopback address it answers only
//! to loopback names (`localhost`, `*.localhost`, which browsers resolve to loopback
//! themselves), loopback addresses (`127.0.0.0/8`, `[::1]`), and the names in
//! `[admin] allowed_hosts`. On any other address (a pod, scraped by IP) every `Host` is
//! answered unless names are listed: then those, loopback names and IP addresses.
//! A request without `Host` (HTTP/1.0) is not a browser's and is answered.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

/// Which `Host` values are answered.
#[derive(Debug, Clone)]
pub(crate) struct HostRule {
    /// The listener is on a loopback address.
    loopback: bool,
    /// `[admin] allowed_hosts`, lower case.
    allowed: Arc<[String]>,
}

impl HostRule {
    /// The rule for a listener on `listen` with `allowed` names.
    pub(crate) fn new(listen: IpAddr, allowed: &[String]) -> Self {
        Self {
            loopback: listen.to_canonical().is_loopback(),
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request with `Host: host` (`None`: none) is answered.
    pub(crate) fn admits(&self, host: Option<&str>) -> bool {
        if !self.loopback && self.allowed.is_empty() {
            return true;
        }
        let Some(host) = host else { return true };
        let name = name_of(host);
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if self.allowed.contains(&name) {
            return true;
        }
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip.to_canonical().is_loopback() || !self.loopback,
            Err(_) => false,
        }
    }

    /// Why `host` is not answered, and how to allow it.
    fn refusal(&self, host: &str) -> String {
        let name = name_of(host);
        let answers = if self.loopback {
            "it listens on a loopback address and answers only to loopback names and addresses"
        } else {
            "it answers only to IP addresses, loopback names and the names in [admin] allowed_hosts"
        };
        format!(
            "the admin API does not answer to Host {name:?}: {answers} (a guard against DNS rebinding); to reach it by this name add allowed_hosts = [{name:?}] to [admin]"
        )
    }
}

/// The host name of a `Host` value, lower case, without port or trailing dot.
fn name_of(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        // An IPv6 literal, with its brackets: up to the closing one.
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Middleware on every route: answers 421 to a `Host` the rule refuses.
pub(crate) async fn check_host(
    State(rule): State<HostRule>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        });
    if rule.admits(host.as_deref()) {
        return next.run(request).await;
    }
    let host = host.unwrap_or_default();
    tracing::debug!(host, "admin API request refused for its Host");
    ApiError::new(StatusCode::MISDIRECTED_REQUEST, rule.refusal(&host)).into_response()
}

/// Permits for plugin uploads: how many may be received and compiled at once.
#[derive(Debug, Clone)]
pub(crate) struct Uploads {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Uploads {
    /// `max` uploads at once.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// Middleware of the upload route (after the token check): holds a permit while the
/// upload is received, compiled and stored; answers 429 when none is free.
pub(crate) async fn one_upload(
    State(uploads): State<Uploads>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = uploads.permits.clone().try_acquire_owned() else {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} plugin uploads are in progress, the most [admin] max_uploads allows; try again when one is done",
                uploads.max
            ),
        )
        .into_response();
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return refused;
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(listen: &str, allowed: &[&str]) -> HostRule {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        HostRule::new(listen.parse().expect("ip"), &allowed)
    }

    #[test]
    fn a_loopback_listener_answers_loopback_names_and_addresses_only() {
        let r = rule("127.0.0.1", &[]);
        for ok in [
            "localhost",
            "localhost:9090",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1",
            "127.0.0.1:9090",
            "127.9.8.7",
            "[::1]",
            "[::1]:9090",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(r.admits(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "10.0.0.5",
            "[fe80::1]:9090",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!r.admits(Some(refused)), "{refused}");
        }
        assert!(r.admits(None), "no Host: not a browser");
    }

    #[test]
    fn listed_names_are_answered_on_loopback() {
        let r = rule("::1", &["sluice.internal"]);
        assert!(r.admits(Some("Sluice.Internal:9090")));
        assert!(!r.admits(Some("other.internal")));
    }

    #[test]
    fn other_listeners_answer_everything_unless_names_are_listed() {
        let open = rule("0.0.0.0", &[]);
        assert!(open.admits(Some("evil.example")));
        let listed = rule("10.0.0.5", &["sluice.internal"]);
        assert!(listed.admits(Some("sluice.internal")));
        assert!(listed.admits(Some("10.0.0.5:9090")), "scraped by IP");
        assert!(listed.admits(Some("localhost")));
        assert!(!listed.admits(Some("evil.example")));
    }

    #[test]
    fn a_refusal_says_how_to_allow_the_name() {
        let text = rule("127.0.0.1", &[]).refusal("Evil.Example:9090");
        assert!(
            text.contains("allowed_hosts = [\"evil.example\"]"),
            "{text}"
        );
    }
}
