//! Endpoint binding. Every agent's endpoints are bound before any agent
//! process starts, by the socket holders ([`crate::process::holder`]) that
//! keep them, so a port clash is a startup error naming the agent and the
//! endpoint, the sockets outlive an agent's restart, and the supervisor
//! holds none of them ([`Sockets`]).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use agentcluster_conf::Agent;
use socket2::{Domain, Protocol, Socket, Type};

use crate::process::holder::{Held, Holders};

/// An endpoint that could not be bound.
#[derive(Debug, thiserror::Error)]
pub struct BindError {
    pub agent: String,
    pub endpoint: SocketAddr,
    pub cause: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let BindError {
            agent,
            endpoint,
            cause,
        } = self;
        write!(f, "agent {agent}: cannot listen on udp {endpoint}: ")?;
        if cause.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
            // The one bind error whose cure is outside the configuration.
            write!(
                f,
                "{} is not an address of this host ({cause}): add it to an interface, or set cluster.addresses to have it added",
                endpoint.ip()
            )
        } else {
            write!(f, "{cause}{}", hint(cause, endpoint))
        }
    }
}

/// What to do about the usual bind failures (docs/troubleshooting.md).
fn hint(cause: &std::io::Error, endpoint: &SocketAddr) -> String {
    use std::io::ErrorKind;
    match cause.kind() {
        ErrorKind::AddrInUse => format!(
            "; another process holds this port (see which with `ss -ulpn 'sport = :{}'`; \
             on port 161 it is often snmpd: `systemctl stop snmpd`)",
            endpoint.port()
        ),
        ErrorKind::PermissionDenied if endpoint.port() < 1024 => {
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE \
             (run the systemd unit, or choose a port of 1024 or more)"
                .to_string()
        }
        _ => String::new(),
    }
}

/// Binds one UDP endpoint. IPv6 sockets are v6-only, so `[::]:161` and
/// `0.0.0.0:161` can both be configured.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Room for bursts: requests wait here while an agent is busy.
    let _ = socket.set_recv_buffer_size(1 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A steering socket of an agent process ([`agentcluster_agent::sys::steer`]):
/// the datagrams to its agents' endpoints of one address family go there.
#[derive(Debug, Clone)]
pub struct Steered {
    pub ipv6: bool,
    pub socket: Arc<Held>,
}

/// Every bound endpoint of the fleet, kept by the socket holders. Sockets
/// outlive agent restarts and reloads that keep the endpoint.
#[derive(Debug)]
pub struct Sockets {
    holders: Holders,
    bound: HashMap<SocketAddr, Arc<Held>>,
}

impl Sockets {
    /// No endpoint bound yet; `holders` will keep them.
    pub fn new(holders: Holders) -> Sockets {
        Sockets {
            holders,
            bound: HashMap::new(),
        }
    }

    /// Binds the endpoints of `agents` that are not bound yet; on failure
    /// reports *all* endpoints that failed (those that were bound stay).
    pub fn bind<'a>(
        &mut self,
        agents: impl IntoIterator<Item = &'a Agent>,
    ) -> Result<(), Vec<BindError>> {
        let mut wanted: Vec<(&str, SocketAddr)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for a in agents {
            for &e in &a.listen {
                if !self.bound.contains_key(&e) && seen.insert(e) {
                    wanted.push((&a.name, e));
                }
            }
        }
        let endpoints: Vec<SocketAddr> = wanted.iter().map(|&(_, e)| e).collect();
        let mut errors = Vec::new();
        for ((agent, endpoint), result) in wanted.into_iter().zip(self.holders.bind(&endpoints)) {
            match result {
                Ok(held) => {
                    self.bound.insert(endpoint, held);
                }
                Err(cause) => errors.push(BindError {
                    agent: agent.to_string(),
                    endpoint,
                    cause,
                }),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Steering sockets for an agent process of `endpoints`, kept by the
    /// socket holders: one per address family of which it has two
    /// endpoints or more at a specific address (one endpoint gains nothing
    /// from it), bound to the first of them on a port of the kernel's
    /// choice. A socket that cannot be bound is left out, said once: its
    /// endpoints are served from their own sockets.
    pub fn steering<'a>(
        &self,
        endpoints: impl Iterator<Item = &'a SocketAddr> + Clone,
    ) -> Vec<Steered> {
        let mut out = Vec::new();
        for ipv6 in [false, true] {
            let mut of_family = endpoints
                .clone()
                .filter(|e| e.is_ipv6() == ipv6 && !e.ip().is_unspecified());
            let (Some(&first), Some(_)) = (of_family.next(), of_family.next()) else {
                continue;
            };
            let mut at = first;
            at.set_port(0);
            match self.holders.bind(&[at]).pop() {
                Some(Ok(socket)) => out.push(Steered { ipv6, socket }),
                Some(Err(e)) => {
                    tracing::info!(address = %at, cause = %e, "no steering socket: each endpoint's own socket receives its requests");
                }
                None => {}
            }
        }
        out
    }

    /// The socket of `endpoint`, if bound.
    pub fn get(&self, endpoint: &SocketAddr) -> Option<Arc<Held>> {
        self.bound.get(endpoint).cloned()
    }

    /// Keeps only the endpoints `keep` says yes to; the others are closed
    /// once no process spec holds them any more.
    pub fn retain(&mut self, mut keep: impl FnMut(&SocketAddr) -> bool) {
        self.bound.retain(|e, _| keep(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_not_on_the_host_says_what_to_do() {
        // 192.0.2.0/24 is for documentation: on no host.
        let endpoint: SocketAddr = "192.0.2.1:161".parse().unwrap();
        let cause = bind_udp(endpoint).unwrap_err();
        let e = BindError {
            agent: "printer-3".into(),
            endpoint,
            cause,
        };
        assert_eq!(
            e.to_string(),
            "agent printer-3: cannot listen on udp 192.0.2.1:161: 192.0.2.1 is not an address of this host (Cannot assign requested address (os error 99)): add it to an interface, or set cluster.addresses to have it added"
        );
        let other = BindError {
            agent: "a".into(),
            endpoint,
            cause: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        assert_eq!(
            other.to_string(),
            "agent a: cannot listen on udp 192.0.2.1:161: Address already in use (os error 98); \
             another process holds this port (see which with `ss -ulpn 'sport = :161'`; \
             on port 161 it is often snmpd: `systemctl stop snmpd`)"
        );
    }
}
