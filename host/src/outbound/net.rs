//! Which addresses `block_private_networks` keeps a handler from dialling.
//!
//! The check is made on each address a request is about to connect to, after DNS, so a
//! granted name that resolves to a private address is refused as well as a literal one.
//! An IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible IPv6 address is judged as its
//! IPv4 address. Sources: RFC 1918 (private IPv4), RFC 6598 (shared address space),
//! RFC 3927 and RFC 4291 §2.5.6 (link-local), RFC 4193 (unique local IPv6), RFC 5737
//! and RFC 3849 (documentation), RFC 1122 (this network, loopback), RFC 6890 (the
//! special-purpose registry these come from).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public address, or `None` when it is one.
pub fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_kind(ip),
        IpAddr::V6(ip) => match embedded_v4(ip) {
            Some(v4) => v4_kind(v4),
            None => v6_kind(ip),
        },
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private (RFC 1918)"
    } else if ip.is_link_local() {
        "link-local"
    } else if ip.is_unspecified() || a == 0 {
        "this network (0.0.0.0/8)"
    } else if a == 100 && (64..128).contains(&b) {
        "shared address space (RFC 6598)"
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        "broadcast, multicast or reserved"
    } else if ip.is_documentation() {
        "documentation (RFC 5737)"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking (RFC 2544)"
    } else {
        return None;
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_unique_local() {
        "unique local (RFC 4193)"
    } else if ip.is_unicast_link_local() || first & 0xffc0 == 0xfec0 {
        "link-local or site-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        "documentation (RFC 3849)"
    } else {
        return None;
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:0:0/96`) or IPv4-compatible
/// (`::/96`, deprecated but still routed by some stacks) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let compatible = s[..6].iter().all(|x| *x == 0) && !(s[6] == 0 && s[7] <= 1);
    compatible.then(|| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_mapped_addresses_are_named() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = private.parse().expect(private);
            assert!(private_kind(ip).is_some(), "{private} should be refused");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let ip: IpAddr = public.parse().expect(public);
            assert_eq!(private_kind(ip), None, "{public} is public");
        }
    }
}
