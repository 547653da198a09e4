//! Which addresses a fetch made on a user's behalf may reach: public ones only.
//!
//! The host applies [`refusal`] to the address it is about to connect to (after DNS, so a name that
//! resolves to loopback is caught, and on every redirect hop, since each hop is a new request); the
//! ingest function applies [`check_url`] to every URL before asking for it, which catches literal
//! addresses in any spelling the URL standard accepts (`2130706433`, `0177.0.0.1`, `[::1]`) and the
//! names that are never public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public address, or `None` when it is.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4),
        IpAddr::V6(v6) => v6_refusal(v6),
    }
}

fn v4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let why = match (a, b, c) {
        (0, _, _) => "an unspecified address (0.0.0.0/8)",
        (127, _, _) => "a loopback address",
        (10, _, _) => "a private address (10.0.0.0/8)",
        (172, 16..=31, _) => "a private address (172.16.0.0/12)",
        (192, 168, _) => "a private address (192.168.0.0/16)",
        (169, 254, _) => "a link-local address (169.254.0.0/16, cloud metadata)",
        (100, 64..=127, _) => "a shared (CGNAT) address (100.64.0.0/10)",
        (192, 0, 0) => "an IETF protocol address (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address (198.18.0.0/15)",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address (240.0.0.0/4)",
        _ => return None,
    };
    Some(why)
}

fn v6_refusal(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("an unspecified address (::)");
    }
    if ip.is_loopback() {
        return Some("a loopback address (::1)");
    }
    // Addresses that carry an IPv4 address are judged by it: mapped (::ffff:a.b.c.d), NAT64
    // (64:ff9b::/96) and 6to4 (2002::/16).
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_refusal(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_refusal(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return v4_refusal(embedded_v4(s[1], s[2]));
    }
    let why = match s[0] {
        0x0000 => "an IPv4-compatible or reserved IPv6 address (::/96)",
        x if x & 0xfe00 == 0xfc00 => "a unique-local address (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "a link-local address (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "a site-local address (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "a multicast address (ff00::/8)",
        0x2001 if s[1] == 0x0db8 => "a documentation address (2001:db8::/32)",
        _ => return None,
    };
    Some(why)
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// A URL a fetch may be asked for, parsed as browsers parse it (the WHATWG URL standard).
///
/// Refused: schemes other than http and https, credentials in the URL, a literal address that is not
/// public, and names that never are (`localhost` and its subdomains, `*.spin.internal`, which on a
/// Spin host reaches the application's own components, and `*.local`, `*.internal`).
pub fn check_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "only http and https URLs are fetched, not {other}:"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL to fetch must not carry credentials".into());
    }
    match url.host() {
        None => return Err(format!("`{text}` names no host")),
        Some(url::Host::Ipv4(ip)) => {
            if let Some(why) = v4_refusal(ip) {
                return Err(format!("{ip} is {why}: only public addresses are fetched"));
            }
        }
        Some(url::Host::Ipv6(ip)) => {
            if let Some(why) = v6_refusal(ip) {
                return Err(format!("{ip} is {why}: only public addresses are fetched"));
            }
        }
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            let private = ["localhost", "local", "internal", "localdomain", "home.arpa"]
                .iter()
                .any(|suffix| name == *suffix || name.ends_with(&format!(".{suffix}")));
            if private || !name.contains('.') {
                return Err(format!(
                    "{name} is not a public host name: only public addresses are fetched"
                ));
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refusal(ip).is_some(), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(refusal(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn urls_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://[::1]:6333/collections",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://localhost:5984/",
            "http://db.localhost/",
            "http://ingest.spin.internal/v1/projects/p/jobs",
            "http://printer.local/",
            "http://intranet/",
            "ftp://example.com/file",
            "file:///etc/passwd",
            "https://user:secret@example.com/",
        ] {
            assert!(check_url(url).is_err(), "{url} must be refused");
        }
        let ok = check_url("https://docs.example.com/guide/#intro").unwrap();
        assert_eq!(ok.host_str(), Some("docs.example.com"));
    }
}
