//! The grant's grammar and matching, case by case.

use super::*;

fn grant(entries: &[&str]) -> AllowedHosts {
    let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    AllowedHosts::parse(&entries).expect("a valid grant")
}

fn origin(scheme: Scheme, host: &str, port: u16) -> Origin {
    Origin {
        scheme,
        host: host.into(),
        port,
    }
}

#[test]
fn exact_hosts_allow_their_scheme_and_default_port_only() {
    let g = grant(&["https://api.example.com"]);
    assert!(
        g.allows(&origin(Scheme::Https, "api.example.com", 443))
            .is_some()
    );
    assert!(
        g.allows(&origin(Scheme::Http, "api.example.com", 80))
            .is_none()
    );
    assert!(
        g.allows(&origin(Scheme::Https, "api.example.com", 8443))
            .is_none()
    );
    assert!(
        g.allows(&origin(Scheme::Https, "example.com", 443))
            .is_none()
    );
    assert!(
        g.allows(&origin(Scheme::Https, "api.example.com.evil", 443))
            .is_none()
    );
}

#[test]
fn wildcards_ports_and_ranges_match_as_in_spin() {
    let g = grant(&[
        "https://*.example.com",
        "http://127.0.0.1:8000..8002",
        "*://*:9000",
    ]);
    assert!(
        g.allows(&origin(Scheme::Https, "a.b.example.com", 443))
            .is_some()
    );
    assert!(
        g.allows(&origin(Scheme::Https, "example.com", 443))
            .is_none()
    );
    assert!(
        g.allows(&origin(Scheme::Https, "badexample.com", 443))
            .is_none()
    );
    assert!(g.allows(&origin(Scheme::Http, "127.0.0.1", 8001)).is_some());
    assert!(g.allows(&origin(Scheme::Http, "127.0.0.1", 8002)).is_none());
    assert!(g.allows(&origin(Scheme::Http, "anything", 9000)).is_some());
    assert!(g.allows(&origin(Scheme::Https, "anything", 9000)).is_some());
}

#[test]
fn networks_and_ipv6_literals() {
    let g = grant(&[
        "http://10.0.0.0/8:*",
        "http://[::1]:8080",
        "https://[fd00::]/8",
    ]);
    assert!(g.allows(&origin(Scheme::Http, "10.2.3.4", 1)).is_some());
    assert!(g.allows(&origin(Scheme::Http, "11.0.0.1", 1)).is_none());
    assert!(g.allows(&origin(Scheme::Http, "::1", 8080)).is_some());
    assert!(g.allows(&origin(Scheme::Https, "fd12::1", 443)).is_some());
    assert!(g.allows(&origin(Scheme::Https, "fe80::1", 443)).is_none());
}

#[test]
fn bad_entries_are_refused_with_the_reason() {
    for (entry, reason) in [
        ("api.example.com", "scheme is missing"),
        ("ftp://example.com", "use http, https or *"),
        ("https://example.com/path", "without a path"),
        ("https://user:pw@example.com", "user name or password"),
        ("https://ex ample.com", "not a host name"),
        ("https://api.*.com", "not a host name"),
        ("https://example.com:99999", "not a number"),
        ("https://example.com:90..80", "empty"),
        ("https://10.0.0.0/33", "prefix length"),
        ("https://", "host is missing"),
        ("http://2130706433", "not a host name"),
        ("http://127.1", "not a host name"),
        ("http://-.-", "not a host name"),
        ("http://*.1:*", "not a host name"),
        ("http://example.com:+80", "not a number"),
    ] {
        let error = AllowedHosts::parse(&[entry.to_string()]).expect_err(entry);
        let text = format!("{error:#}");
        assert!(
            text.contains(reason) && text.contains(entry),
            "{entry}: {text}"
        );
    }
}

#[test]
fn a_wildcard_never_covers_ip_addresses() {
    // Refused at parse: a domain's last label is never all digits.
    for entry in ["http://*.0.0.1:*", "http://*.1:*"] {
        assert!(
            AllowedHosts::parse(&[entry.to_string()]).is_err(),
            "{entry}"
        );
    }
    // And no subdomain wildcard matches an address.
    let g = grant(&["http://*.example:*"]);
    assert!(g.allows(&origin(Scheme::Http, "a.example", 80)).is_some());
    assert!(g.allows(&origin(Scheme::Http, "::1", 80)).is_none());
}

#[test]
fn names_compare_without_case_or_trailing_dot() {
    let g = grant(&["https://API.Example.com."]);
    assert!(
        g.allows(&origin(Scheme::Https, "api.example.com", 443))
            .is_some()
    );
}
