//! The client's address behind proxies, and `ip_override` normalisation.
//!
//! `X-Forwarded-For` and `Forwarded` are believed only when the connection comes from a
//! configured trusted proxy; then the chain is read from the right, skipping trusted proxies, and
//! the first untrusted address is the client. `Forwarded` wins over `X-Forwarded-For`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use serde::{Deserialize, Deserializer};

/// An address or a CIDR range (`10.0.0.0/8`, `192.168.1.7`, `fd00::/8`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?,
        );
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0–{max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Debug for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the first untrusted
/// address of the forwarding chain, read from the right.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    for ip in chain.into_iter().rev() {
        if !is_trusted(ip) {
            return ip;
        }
    }
    peer
}

/// Addresses from `Forwarded: for=…` (if present) or `X-Forwarded-For`, left to right.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<IpAddr> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| normalise_ip(v.trim().trim_matches('"')))
                    .flatten()
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| normalise_ip(v.trim()))
        .collect()
}

/// What an event's `ip_override` text becomes: `Some(address)` when it names an address in a
/// form to normalise (with a port, in brackets, with spaces around it), `None` when it stays as
/// it is — already a bare address, or nothing [`normalise_ip`] reads as one.
///
/// Text without `:`, without `[` and without spaces at its ends is left without parsing it: it
/// can only be a bare IPv4 address or no address at all (a port needs `:`, brackets `[`, IPv6
/// `:`). That is every GA4 hit's override, the client's IPv4 address the source wrote itself.
pub fn ip_override_to_normalise(text: &str) -> Option<IpAddr> {
    let plain = !text.bytes().any(|b| b == b':' || b == b'[') && text.trim().len() == text.len();
    if plain || text.parse::<IpAddr>().is_ok() {
        return None;
    }
    normalise_ip(text)
}

/// Parses an address that may carry a port or brackets: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
/// `[::1]:80`, `[2001:db8::1]`.
pub fn normalise_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        let r: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(r.contains(ip("10.1.2.3")));
        assert!(r.contains(ip("::ffff:10.1.2.3")));
        assert!(!r.contains(ip("11.0.0.1")));
        let single: IpRange = "127.0.0.1".parse().unwrap();
        assert!(single.contains(ip("127.0.0.1")) && !single.contains(ip("127.0.0.2")));
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("nope".parse::<IpRange>().is_err());
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.0.0.2"),
        );
        assert_eq!(
            client_addr(ip("10.0.0.1"), &headers, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_addr(ip("192.0.2.1"), &headers, &trusted),
            ip("192.0.2.1"),
            "an untrusted peer's header is ignored"
        );
        headers.insert(
            "forwarded",
            HeaderValue::from_static("for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3"),
        );
        assert_eq!(
            client_addr(ip("10.0.0.1"), &headers, &trusted),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn addresses_with_ports_are_normalised() {
        assert_eq!(normalise_ip("1.2.3.4:5678"), Some(ip("1.2.3.4")));
        assert_eq!(normalise_ip("[::1]:80"), Some(ip("::1")));
        assert_eq!(normalise_ip("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(normalise_ip("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(normalise_ip("not an ip"), None);
    }

    /// The fast path decides as the parse does: every text gets what parsing it first (and
    /// normalising what does not parse) gives.
    #[test]
    fn ip_override_normalisation_matches_parsing_every_text() {
        let reference = |text: &str| match text.parse::<IpAddr>() {
            Ok(_) => None,
            Err(_) => normalise_ip(text),
        };
        for text in [
            "203.0.113.7",
            "1.2.3.4:5678",
            " 1.2.3.4",
            "1.2.3.4 ",
            "1.2.3.4\u{a0}",
            "\u{2003}1.2.3.4",
            "[1.2.3.4]",
            "[1.2.3.4]:80",
            "[::1]:80",
            "[2001:db8::1]",
            "::1",
            "2001:db8::2",
            "::ffff:192.0.2.1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "",
            " ",
            "garbage",
            "host:80",
            "1.2.3.4:99999",
            "[",
            "]",
        ] {
            assert_eq!(ip_override_to_normalise(text), reference(text), "{text:?}");
        }
        assert_eq!(
            ip_override_to_normalise("1.2.3.4:5678"),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(ip_override_to_normalise("[1.2.3.4]"), Some(ip("1.2.3.4")));
        assert_eq!(ip_override_to_normalise(" 1.2.3.4"), Some(ip("1.2.3.4")));
    }
}
