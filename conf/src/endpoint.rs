//! UDP endpoints: parsing `ip:port` / `[v6]:port` and `host:port` targets,
//! and finding endpoints that two owners would both bind.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error("`{0}` has no port: write `ip:port` or `[ipv6]:port`")]
    NoPort(String),
    #[error("`{0}`: port out of range 0..65535")]
    BadPort(String),
    #[error("`{0}` is not an IP address with a port (`127.0.0.1:161`, `[::1]:161`)")]
    BadAddress(String),
    #[error("`{0}` is not `host:port` (`127.0.0.1:162`, `[::1]:162`, `nms.example:162`)")]
    BadTarget(String),
}

/// A listen endpoint: an IP literal (not a host name: we bind it) and a port.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, EndpointError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if s.parse::<IpAddr>().is_ok() || (s.starts_with('[') && s.ends_with(']')) {
        return Err(EndpointError::NoPort(s.to_string()));
    }
    // Tell a bad port from a bad address.
    if let Some((host, port)) = s.rsplit_once(':') {
        let host_ok = host.parse::<std::net::Ipv4Addr>().is_ok()
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
        if host_ok && port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() {
            return Err(EndpointError::BadPort(s.to_string()));
        }
    }
    Err(EndpointError::BadAddress(s.to_string()))
}

/// A notification target: `ip:port`, `[v6]:port` or `hostname:port`, port
/// 1..=65535. Kept as text so a host name resolves when sending.
pub(crate) fn check_target(s: &str) -> Result<(), EndpointError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return if a.port() == 0 {
            Err(EndpointError::BadPort(s.to_string()))
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(EndpointError::NoPort(s.to_string()));
    };
    if host.starts_with('[') || host.contains(':') {
        // A bracketed or bare IPv6 that did not parse as a socket address.
        return Err(EndpointError::BadTarget(s.to_string()));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => {
            return Err(EndpointError::BadPort(s.to_string()));
        }
        _ => return Err(EndpointError::BadTarget(s.to_string())),
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(EndpointError::BadTarget(s.to_string()));
    }
    Ok(())
}

/// Which address family a wildcard covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    V4,
    V6,
}

fn family(a: &SocketAddr) -> Family {
    match a {
        SocketAddr::V4(_) => Family::V4,
        SocketAddr::V6(_) => Family::V6,
    }
}

/// Endpoints bound so far, by owner, to find the ones two owners would share:
/// the same address and port, or a wildcard (`0.0.0.0:P`, `[::]:P`) and any
/// address of its family on the same port. Port 0 (any free port) never
/// clashes.
#[derive(Debug)]
pub(crate) struct Bindings<O> {
    exact: HashMap<SocketAddr, O>,
    /// Per family and port: the wildcard's owner, if any.
    wildcard: HashMap<(Family, u16), (SocketAddr, O)>,
    /// Per family and port: the first specific address's owner.
    any_specific: HashMap<(Family, u16), (SocketAddr, O)>,
}

impl<O> Default for Bindings<O> {
    fn default() -> Self {
        Bindings {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any_specific: HashMap::new(),
        }
    }
}

impl<O: Clone> Bindings<O> {
    #[cfg(test)]
    pub fn new() -> Self {
        Bindings {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any_specific: HashMap::new(),
        }
    }

    /// Records `addr` for `owner`, or returns the earlier endpoint and owner
    /// it clashes with (then nothing is recorded).
    pub fn bind(&mut self, addr: SocketAddr, owner: O) -> Result<(), (SocketAddr, O)> {
        if addr.port() == 0 {
            return Ok(());
        }
        if let Some(o) = self.exact.get(&addr) {
            return Err((addr, o.clone()));
        }
        let key = (family(&addr), addr.port());
        if let Some((a, o)) = self.wildcard.get(&key) {
            return Err((*a, o.clone()));
        }
        if addr.ip().is_unspecified() {
            if let Some((a, o)) = self.any_specific.get(&key) {
                return Err((*a, o.clone()));
            }
            self.wildcard.insert(key, (addr, owner.clone()));
        } else {
            self.any_specific
                .entry(key)
                .or_insert((addr, owner.clone()));
        }
        self.exact.insert(addr, owner);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        parse_listen(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn listen_forms() {
        assert_eq!(sa("127.0.0.1:161").port(), 161);
        assert_eq!(sa("[::1]:10161").port(), 10161);
        assert!(matches!(
            parse_listen("127.0.0.1"),
            Err(EndpointError::NoPort(_))
        ));
        assert!(matches!(
            parse_listen("[::1]"),
            Err(EndpointError::NoPort(_))
        ));
        assert!(matches!(
            parse_listen("127.0.0.1:65536"),
            Err(EndpointError::BadPort(_))
        ));
        assert!(matches!(
            parse_listen("[::1]:70000"),
            Err(EndpointError::BadPort(_))
        ));
        assert!(matches!(
            parse_listen("localhost:161"),
            Err(EndpointError::BadAddress(_))
        ));
        assert!(matches!(
            parse_listen("300.1.1.1:161"),
            Err(EndpointError::BadAddress(_))
        ));
    }

    #[test]
    fn targets() {
        for ok in ["127.0.0.1:162", "[::1]:162", "host.example:162", "nms:1162"] {
            assert_eq!(check_target(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "host.example",
            "host:0",
            "host:99999",
            "[::1]",
            "::1:162",
            "bad host:162",
            ":162",
        ] {
            assert!(check_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clashes() {
        let mut b = Bindings::new();
        assert!(b.bind(sa("127.0.0.1:161"), "a").is_ok());
        assert!(b.bind(sa("127.0.0.2:161"), "b").is_ok());
        assert_eq!(
            b.bind(sa("127.0.0.1:161"), "c"),
            Err((sa("127.0.0.1:161"), "a"))
        );
        assert_eq!(
            b.bind(sa("0.0.0.0:161"), "d"),
            Err((sa("127.0.0.1:161"), "a"))
        );
        assert!(b.bind(sa("0.0.0.0:162"), "e").is_ok());
        assert_eq!(
            b.bind(sa("10.0.0.1:162"), "f"),
            Err((sa("0.0.0.0:162"), "e"))
        );
        // IPv6 is its own family.
        assert!(b.bind(sa("[::1]:161"), "g").is_ok());
        assert_eq!(b.bind(sa("[::]:161"), "h"), Err((sa("[::1]:161"), "g")));
        assert!(b.bind(sa("[::]:163"), "i").is_ok());
        assert_eq!(b.bind(sa("[fe80::1]:163"), "j"), Err((sa("[::]:163"), "i")));
        // Port 0 never clashes.
        assert!(b.bind(sa("127.0.0.1:0"), "k").is_ok());
        assert!(b.bind(sa("127.0.0.1:0"), "l").is_ok());
    }
}
