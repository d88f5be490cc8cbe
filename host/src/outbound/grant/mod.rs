//! `allowed_outbound_hosts`: which origins a pipeline's handler may send requests to.
//!
//! The grammar is Fermyon Spin's (`spin-factor-outbound-networking`,
//! <https://spinframework.dev/v3/http-outbound-rs#granting-http-permissions-to-components>),
//! for the `http` and `https` schemes:
//!
//! ```text
//! entry  := scheme "://" host [ ":" port ]
//! scheme := "http" | "https" | "*"              ("*": either)
//! host   := "*"                                 any host
//!         | "*." domain                         any subdomain of domain (not domain itself)
//!         | name | ipv4 | "[" ipv6 "]"          exactly this host
//!         | ipv4 "/" bits | "[" ipv6 "]/" bits  any address in this network (CIDR)
//! port   := "*" | number | number ".." number   (a range excludes its end, as in Spin)
//! ```
//!
//! Without a port, an entry allows the scheme's default port (80 for http, 443 for
//! https). Names compare without regard to case and to a trailing dot. A path, query,
//! user name or password in an entry is refused, as is any other scheme.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use anyhow::{Context, Result, bail, ensure};

/// A pipeline's grant: nothing is allowed unless an entry allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<Allowed>,
}

/// One entry of the grant, as written (for logs and metric labels) and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    text: String,
    scheme: Option<Scheme>,
    host: Host,
    port: Port,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme named `name` (case-insensitive), if it is one of the two.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    /// `*.example.com`, kept as `.example.com`.
    Subdomains(String),
    Name(String),
    Ip(IpAddr),
    Network(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    /// The scheme's default port.
    Default,
    Any,
    One(u16),
    Range(Range<u16>),
}

/// What a request is addressed to, as the grant sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The URL's scheme.
    pub scheme: Scheme,
    /// The host: a lower-case name without a trailing dot, or an IP address (IPv6
    /// without brackets).
    pub host: String,
    /// The port, the scheme's default when the URL names none.
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.host.clone(),
        };
        write!(f, "{}://{host}:{}", self.scheme.as_str(), self.port)
    }
}

impl AllowedHosts {
    /// Parses every entry; the error names the entry and what is wrong with it.
    pub fn parse(entries: &[String]) -> Result<Self> {
        let entries = entries
            .iter()
            .map(|text| {
                Allowed::parse(text).with_context(|| {
                    format!("allowed_outbound_hosts entry {text:?} is not scheme://host[:port] (e.g. \"https://api.example.com\", \"http://127.0.0.1:8080\", \"https://*.example.com\")")
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { entries })
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry that allows `origin`, if any.
    pub fn allows(&self, origin: &Origin) -> Option<&Allowed> {
        self.entries.iter().find(|entry| entry.allows(origin))
    }

    /// The entries, as written.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.text.as_str())
    }
}

impl Allowed {
    /// The entry as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn parse(text: &str) -> Result<Self> {
        let (scheme, rest) = text
            .split_once("://")
            .context("the scheme is missing (http://, https:// or *://)")?;
        let scheme = match scheme {
            "*" => None,
            other => Some(Scheme::parse(other).with_context(|| {
                format!(
                    "scheme {other:?}: handlers send HTTP requests only, so use http, https or *"
                )
            })?),
        };
        ensure!(
            !rest.contains(['/', '?', '#']) || is_cidr(rest),
            "a grant names an origin, without a path, query or fragment"
        );
        ensure!(
            !rest.contains('@'),
            "a grant cannot hold a user name or password"
        );
        let (host, port) = split_port(rest)?;
        Ok(Self {
            text: text.to_owned(),
            scheme,
            host: parse_host(host)?,
            port: parse_port(port)?,
        })
    }

    fn allows(&self, origin: &Origin) -> bool {
        self.scheme.is_none_or(|s| s == origin.scheme)
            && self.host.allows(&origin.host)
            && self.port.allows(origin.port, origin.scheme)
    }
}

/// `rest` ends in a CIDR suffix (`10.0.0.0/8`, `[fd00::]/8`).
fn is_cidr(rest: &str) -> bool {
    let host = split_port(rest).map(|(h, _)| h).unwrap_or(rest);
    host.split_once('/')
        .is_some_and(|(_, bits)| !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits `host[:port]`, with IPv6 hosts in brackets.
fn split_port(rest: &str) -> Result<(&str, Option<&str>)> {
    if rest.starts_with('[') {
        let close = rest
            .find(']')
            .context("an IPv6 address needs its closing ]")?;
        let after = &rest[close + 1..];
        // `[fd00::]/8:443`: the prefix length belongs to the host.
        let (cidr, after) = match after.strip_prefix('/') {
            Some(bits) => {
                let end = bits.find(':').unwrap_or(bits.len());
                (&after[..end + 1], &bits[end..])
            }
            None => ("", after),
        };
        let host = &rest[..close + 1 + cidr.len()];
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => bail!("unexpected {after:?} after the IPv6 address"),
        };
    }
    Ok(match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

fn parse_host(host: &str) -> Result<Host> {
    ensure!(!host.is_empty(), "the host is missing");
    if host == "*" {
        return Ok(Host::Any);
    }
    if let Some((addr, bits)) = host.split_once('/') {
        let ip = parse_ip(addr).with_context(|| format!("{addr:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u8 = bits
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .with_context(|| format!("/{bits}: a prefix length is 0..={max}"))?;
        return Ok(Host::Network(ip, bits));
    }
    if let Some(ip) = parse_ip(host) {
        return Ok(Host::Ip(ip));
    }
    ensure!(!host.starts_with('['), "{host:?} is not an IPv6 address");
    if let Some(domain) = host.strip_prefix("*.") {
        ensure!(
            valid_name(domain),
            "{domain:?} is not a host name (a wildcard is a whole first label: *.example.com)"
        );
        return Ok(Host::Subdomains(format!(".{}", normal_name(domain))));
    }
    ensure!(
        valid_name(host),
        "{host:?} is not a host name (letters, digits, '-' and '.'; a wildcard is * or *.domain)"
    );
    Ok(Host::Name(normal_name(host)))
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    match text.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?.parse().ok().map(IpAddr::V6),
        None => text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// A DNS name (RFC 1123 §2.1): at most 253 characters, labels of 1 to 63 letters, digits,
/// `-` (not at either end) or `_`, and a last label that is not all digits — so that
/// `2130706433` or `127.1`, which a resolver reads as addresses, are never names here.
fn valid_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let last = name.rsplit('.').next().unwrap_or_default();
    !name.is_empty() && name.len() <= 253 && labels_ok && !last.bytes().all(|b| b.is_ascii_digit())
}

/// Lower case, without a trailing dot: `API.Example.com.` and `api.example.com` are one.
pub fn normal_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn parse_port(port: Option<&str>) -> Result<Port> {
    let Some(port) = port else {
        return Ok(Port::Default);
    };
    let number = |text: &str| {
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| text.parse::<u16>().ok())
            .flatten()
            .with_context(|| format!("port {text:?} is not a number in 0..=65535"))
    };
    Ok(match port {
        "*" => Port::Any,
        range if range.contains("..") => {
            let (start, end) = range.split_once("..").unwrap_or_default();
            let (start, end) = (number(start)?, number(end)?);
            ensure!(
                start < end,
                "port range {range:?} is empty (the end is excluded)"
            );
            Port::Range(start..end)
        }
        one => Port::One(number(one)?),
    })
}

impl Host {
    fn allows(&self, host: &str) -> bool {
        match self {
            Host::Any => true,
            // A name's subdomains, never an IP address (`*.0.0.1` is no grant of 127.0.0.1).
            Host::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && host.parse::<IpAddr>().is_err()
            }
            Host::Name(name) => name == host,
            Host::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            Host::Network(net, bits) => host
                .parse::<IpAddr>()
                .is_ok_and(|h| in_network(h, *net, *bits)),
        }
    }
}

impl Port {
    fn allows(&self, port: u16, scheme: Scheme) -> bool {
        match self {
            Port::Default => port == scheme.default_port(),
            Port::Any => true,
            Port::One(p) => *p == port,
            Port::Range(range) => range.contains(&port),
        }
    }
}

/// Whether `ip` is in `net/bits` (an IPv4 address is never in an IPv6 network).
fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
