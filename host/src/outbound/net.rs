//! Which addresses `block_private_networks` keeps a handler from dialling.
//!
//! The check is made on each address a request is about to connect to, after DNS, so a
//! granted name that resolves to a private address is refused as well as a literal one.
//! An IPv6 address that carries an IPv4 address is judged as that IPv4 address:
//! IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated
//! (`::ffff:0:a.b.c.d`, RFC 7915), NAT64 (`64:ff9b::/96`, RFC 6052) and 6to4 (`2002::/16`,
//! RFC 3056); the local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215), Teredo and the rest
//! of `2001::/23` (IETF protocol assignments, RFC 2928) and the discard prefix `100::/64`
//! (RFC 6666) are refused whole. Sources: RFC 1918 (private IPv4), RFC 6598 (shared address space),
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
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        "IETF protocol assignments (192.0.0.0/24)"
    } else if a == 192 && b == 88 && ip.octets()[2] == 99 {
        "6to4 relay anycast (192.88.99.0/24)"
    } else {
        return None;
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let first = s[0];
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
    } else if first == 0x2001 && s[1] == 0x0db8 {
        "documentation (RFC 3849)"
    } else if first == 0x2001 && s[1] < 0x0200 {
        "IETF protocol assignments, Teredo included (2001::/23)"
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        "local-use NAT64 (64:ff9b:1::/48)"
    } else if first == 0x0100 && s[1..4].iter().all(|x| *x == 0) {
        "discard-only (100::/64)"
    } else {
        return None;
    })
}

/// The IPv4 address an IPv6 address carries (see the module doc), if any.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let last32 = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6].iter().all(|x| *x == 0) && !(s[6] == 0 && s[7] <= 1);
    let translated = s[..4].iter().all(|x| *x == 0) && s[4] == 0xffff && s[5] == 0;
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0);
    if compatible || translated || nat64 {
        return Some(last32());
    }
    // 6to4: 2002:AABB:CCDD::/48 carries A.B.C.D.
    (s[0] == 0x2002)
        .then(|| Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
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
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::a00:1",
            "::ffff:0:127.0.0.1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "100::1",
            "192.0.0.8",
            "192.88.99.1",
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
