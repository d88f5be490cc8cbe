//! The `Host` rule: which `Host` values the API answers (no DNS rebinding).
//!
//! A web page on any site can make a browser send requests to a name that the page's
//! owner points at 127.0.0.1 or at another address of the machine (DNS rebinding); the
//! browser then sends that name as `Host`. So the API answers only to loopback names
//! (`localhost`, `*.localhost`, which browsers resolve to loopback themselves), IP
//! addresses, and the names in `[admin] allowed_hosts`; any other DNS name gets 421.
//! While it listens on a loopback address the IP addresses are only loopback ones
//! (`127.0.0.0/8`, `[::1]`). A wildcard listener (`0.0.0.0`, `[::]`) is reached on
//! loopback too, so it gets the same rule: a pod scraped by IP is answered, a name needs
//! listing.
//!
//! The value is parsed strictly as `host[:port]` (RFC 9110 §7.2), with the host an IPv4
//! address, an IPv6 address in brackets, or a DNS name (letters, digits, `-`, `_`):
//! anything else (`[::1]evil.example`, `[::1]@evil.example`, userinfo, a path) is 400,
//! as are an HTTP/1.1 request without `Host` and one with two (RFC 9112 §3.2). An
//! HTTP/1.0 request may omit it: it is not a browser's, and is answered.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The host of a `Host` value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    Ip(IpAddr),
    /// Lower case, without a trailing dot.
    Dns(String),
}

/// The host of `value`, a `Host` header's value (`host[:port]`), or `None` when it is not
/// one.
fn parse_host(value: &str) -> Option<HostName> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (HostName::Ip(IpAddr::V6(ip.parse().ok()?)), port)
    } else {
        let (name, port) = match value.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        match name.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => (HostName::Ip(IpAddr::V4(ip)), port),
            Err(_) if is_dns_name(name) => (HostName::Dns(name.to_ascii_lowercase()), port),
            Err(_) => return None,
        }
    };
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok.then_some(host)
}

/// Whether `name` is a DNS name: dot-separated labels of letters, digits, `-` and `_`.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Which `Host` values are answered.
#[derive(Debug, Clone)]
pub(crate) struct HostRule {
    /// The listener is on a loopback address: only loopback IP addresses are answered.
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

    /// Whether a request to `host` is answered.
    fn admits(&self, host: &HostName) -> bool {
        match host {
            HostName::Dns(name) => {
                name == "localhost" || name.ends_with(".localhost") || self.allowed.contains(name)
            }
            HostName::Ip(ip) => {
                !self.loopback
                    || ip.to_canonical().is_loopback()
                    || self.allowed.contains(&ip.to_string())
            }
        }
    }

    /// Whether `request` is answered: `Ok`, or the refusal (400 for a missing, repeated
    /// or malformed `Host`, 421 for one not answered).
    fn check(&self, request: &Request) -> Result<(), ApiError> {
        let bad = |why: String| Err(ApiError::new(StatusCode::BAD_REQUEST, why));
        let mut headers = request.headers().get_all(header::HOST).iter();
        let (first, second) = (headers.next(), headers.next());
        if second.is_some() {
            return bad("the request has more than one Host header".to_owned());
        }
        if first.is_none() && request.version() > Version::HTTP_10 {
            return bad("an HTTP/1.1 request needs a Host header".to_owned());
        }
        let value = match (request.uri().authority(), first) {
            // The absolute form's authority is the target (RFC 9112 §3.2.2).
            (Some(authority), _) => authority.as_str(),
            (None, Some(value)) => value.to_str().unwrap_or("\u{fffd}"),
            (None, None) => return Ok(()),
        };
        let Some(host) = parse_host(value) else {
            return bad(format!(
                "Host {:?} is not a host name or IP address with an optional port",
                shown(value)
            ));
        };
        if self.admits(&host) {
            return Ok(());
        }
        tracing::debug!(
            host = shown(value),
            "admin API request refused for its Host"
        );
        Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            self.refusal(&host),
        ))
    }

    /// Why `host` is not answered, and how to allow it.
    fn refusal(&self, host: &HostName) -> String {
        let name = match host {
            HostName::Ip(ip) => ip.to_string(),
            HostName::Dns(name) => name.clone(),
        };
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

/// `value` cut to 100 characters, for messages.
fn shown(value: &str) -> &str {
    value
        .char_indices()
        .nth(100)
        .map_or(value, |(end, _)| &value[..end])
}

/// Middleware on every route: answers 400 or 421 to a request whose `Host` the rule
/// refuses.
pub(crate) async fn check_host(
    State(rule): State<HostRule>,
    request: Request,
    next: Next,
) -> Response {
    match rule.check(&request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(listen: &str, allowed: &[&str]) -> HostRule {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        HostRule::new(listen.parse().expect("ip"), &allowed)
    }

    fn admits(rule: &HostRule, host: &str) -> bool {
        rule.admits(&parse_host(host).expect(host))
    }

    #[test]
    fn only_host_and_port_parse() {
        for bad in [
            "",
            "[::1]evil.example",
            "[::1].evil.example",
            "[::1]@evil.example",
            "[::1]:80evil",
            "user@localhost",
            "localhost@evil.example",
            "evil.example/x",
            "localhost:80:80",
            "localhost:123456",
            "localhost:8o",
            "local host",
            "a..b",
            ".localhost",
            "[evil.example]",
            "[::1",
            "::1",
            "127.0.0.1:80 ",
        ] {
            assert_eq!(parse_host(bad), None, "{bad:?}");
        }
        let ip = |s: &str| Some(HostName::Ip(s.parse().expect("ip")));
        assert_eq!(parse_host("[::1]:9090"), ip("::1"));
        assert_eq!(parse_host("127.0.0.1."), ip("127.0.0.1"));
        assert_eq!(parse_host("127.0.0.1:"), ip("127.0.0.1"));
        assert_eq!(
            parse_host("Dash.LOCALHOST.:9090"),
            Some(HostName::Dns("dash.localhost".to_owned()))
        );
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
            assert!(admits(&r, ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "10.0.0.5",
            "[fe80::1]:9090",
            "127.0.0.1.nip.io",
        ] {
            assert!(!admits(&r, refused), "{refused}");
        }
    }

    #[test]
    fn listed_names_are_answered_on_loopback() {
        let r = rule("::1", &["sluice.internal"]);
        assert!(admits(&r, "Sluice.Internal:9090"));
        assert!(!admits(&r, "other.internal"));
    }

    #[test]
    fn other_listeners_answer_ip_addresses_loopback_and_listed_names() {
        for listen in ["0.0.0.0", "::", "10.0.0.5"] {
            let open = rule(listen, &[]);
            assert!(!admits(&open, "evil.example"), "{listen}");
            for ok in ["10.0.0.5:9090", "[fd00::5]:9090", "127.0.0.1", "localhost"] {
                assert!(admits(&open, ok), "{listen} {ok}");
            }
        }
        let listed = rule("0.0.0.0", &["sluice.internal"]);
        assert!(admits(&listed, "sluice.internal:9090"));
        assert!(!admits(&listed, "evil.example"));
    }

    #[test]
    fn a_refusal_says_how_to_allow_the_name() {
        let r = rule("127.0.0.1", &[]);
        let text = r.refusal(&parse_host("Evil.Example:9090").expect("host"));
        assert!(
            text.contains("allowed_hosts = [\"evil.example\"]"),
            "{text}"
        );
    }
}
