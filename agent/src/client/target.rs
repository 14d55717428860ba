//! A device's address as net-snmp's tools take it: `host`, `host:port`,
//! `udp:host:port`, `udp6:[addr]:port`, `[addr]:port`; port 161 unless
//! given.

use std::net::{SocketAddr, ToSocketAddrs};

/// The SNMP port.
const DEFAULT_PORT: u16 = 161;

/// Where a device listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// A name or an address (an IPv6 one without brackets).
    pub host: String,
    /// The UDP port.
    pub port: u16,
    /// `udp6:` asks for IPv6, `udp:` for IPv4; neither: whatever the name
    /// resolves to first.
    pub ipv6: Option<bool>,
}

impl Transport {
    /// Reads net-snmp's transport specification.
    pub fn parse(spec: &str) -> Result<Transport, String> {
        let bad = |why: &str| format!("{spec:?}: {why}");
        let lower = spec.to_ascii_lowercase();
        let (ipv6, rest) = if lower.starts_with("udp6:") || lower.starts_with("udpv6:") {
            (Some(true), &spec[spec.find(':').map_or(0, |i| i + 1)..])
        } else if lower.starts_with("udp:") {
            (Some(false), &spec[4..])
        } else if let Some((scheme, _)) = lower.split_once(':').filter(|(s, _)| {
            [
                "tcp", "tcp6", "tcpv6", "unix", "ipx", "aal5pvc", "dtlsudp", "tls", "tlstcp",
            ]
            .contains(s)
        }) {
            return Err(bad(&format!(
                "the {scheme} transport is not supported; use udp or udp6"
            )));
        } else {
            (None, spec)
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("an unclosed '['"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("':' after ']'"))?),
                ),
            }
        } else if ipv6 == Some(true) && rest.matches(':').count() > 1 {
            // udp6:::1 — a bare IPv6 address, no port.
            (rest, None)
        } else if rest.matches(':').count() > 1 {
            return Err(bad("an IPv6 address needs brackets: udp6:[ADDR]:PORT"));
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port must be 1-65535"))?,
        };
        Ok(Transport {
            host: host.to_string(),
            port,
            ipv6: ipv6.or_else(|| host.contains(':').then_some(true)),
        })
    }

    /// The first address the host resolves to, of the family asked for.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        addrs
            .into_iter()
            .find(|a| self.ipv6.is_none_or(|v6| a.is_ipv6() == v6))
            .ok_or_else(|| {
                format!(
                    "{} has no {} address",
                    self.host,
                    if self.ipv6 == Some(true) {
                        "IPv6"
                    } else {
                        "IPv4"
                    }
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16, ipv6: Option<bool>) -> Transport {
        Transport {
            host: host.into(),
            port,
            ipv6,
        }
    }

    #[test]
    fn net_snmp_transport_specifications() {
        let ok = |s: &str| Transport::parse(s).unwrap();
        assert_eq!(ok("router1"), t("router1", 161, None));
        assert_eq!(ok("10.0.0.1:1161"), t("10.0.0.1", 1161, None));
        assert_eq!(ok("udp:10.0.0.1:1161"), t("10.0.0.1", 1161, Some(false)));
        assert_eq!(ok("UDP:host"), t("host", 161, Some(false)));
        assert_eq!(ok("udp6:[::1]:1161"), t("::1", 1161, Some(true)));
        assert_eq!(ok("udp6:[fe80::1]"), t("fe80::1", 161, Some(true)));
        assert_eq!(ok("udp6:::1"), t("::1", 161, Some(true)));
        assert_eq!(ok("[::1]:162"), t("::1", 162, Some(true)));
        for bad in [
            "",
            "udp:",
            "host:0",
            "host:x",
            "host:70000",
            "::1",
            "[::1",
            "[::1]x",
            "tcp:host:161",
        ] {
            assert!(Transport::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_resolves_in_the_family_asked() {
        let a = ok_resolve("udp:127.0.0.1:9");
        assert_eq!(a, "127.0.0.1:9".parse().unwrap());
        assert!(
            Transport::parse("udp6:127.0.0.1")
                .unwrap()
                .resolve()
                .is_err()
        );
    }

    fn ok_resolve(s: &str) -> SocketAddr {
        Transport::parse(s).unwrap().resolve().unwrap()
    }
}
