//! Endpoint binding. Every agent's endpoints are bound before any agent
//! process starts, by the socket holders ([`crate::process::holder`]) that
//! keep them, so a port clash is a startup error naming the agent and the
//! endpoint, the sockets outlive an agent's restart, and the supervisor
//! holds none of them ([`Sockets`]).

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use agentcluster_agent::sys::steer::Map;
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
    /// The map entries of the family's endpoints, reserved while the
    /// process's spec lives (its endpoints without a socket of their own
    /// must all be steered); `None`: not reserved, so every endpoint keeps
    /// its socket.
    pub room: Option<Arc<agentcluster_agent::sys::steer::Reserved>>,
}

/// Whether `endpoint` is steered to its process's steering socket of
/// family `ipv6`: it is of that family, at a specific address.
pub fn steerable(ipv6: bool, endpoint: &SocketAddr) -> bool {
    endpoint.is_ipv6() == ipv6 && !endpoint.ip().is_unspecified()
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
        self.bind_endpoints(wanted)
    }

    /// Binds `wanted` (each endpoint with its agent's name), none bound
    /// yet, as [`Sockets::bind`] says.
    fn bind_endpoints(&mut self, wanted: Vec<(&str, SocketAddr)>) -> Result<(), Vec<BindError>> {
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
    fn steering<'a>(
        &self,
        endpoints: impl Iterator<Item = &'a SocketAddr> + Clone,
    ) -> Vec<Steered> {
        let mut out = Vec::new();
        for ipv6 in [false, true] {
            let mut of_family = endpoints.clone().filter(|e| steerable(ipv6, e));
            let (Some(&first), Some(_)) = (of_family.next(), of_family.next()) else {
                continue;
            };
            let mut at = first;
            at.set_port(0);
            match self.holders.bind(&[at]).pop() {
                Some(Ok(socket)) => out.push(Steered {
                    ipv6,
                    socket,
                    room: None,
                }),
                Some(Err(e)) => {
                    tracing::info!(address = %at, cause = %e, "no steering socket: each endpoint's own socket receives its requests");
                }
                None => {}
            }
        }
        out
    }

    /// [`Sockets::steering`] for an agent process of `endpoints`, steered
    /// through `map`, and the endpoints that need no socket of their own
    /// (their sockets are released): for each steering socket, if the map
    /// has room reserved for every endpoint of its family, all of them but
    /// the first of each port, through whose socket the others send. The
    /// kernel then finds no socket bound at their addresses before it runs
    /// the steering program (see [`agentcluster_agent::sys::steer`]).
    pub fn steer_process(
        &mut self,
        endpoints: &[SocketAddr],
        map: &Map,
        name: &str,
    ) -> (Vec<Steered>, HashSet<SocketAddr>) {
        let mut steering = self.steering(endpoints.iter());
        let mut unbound = HashSet::new();
        steering.retain_mut(|s| {
            let of_family: Vec<SocketAddr> = endpoints
                .iter()
                .copied()
                .filter(|e| steerable(s.ipv6, e))
                .collect();
            let Some(room) = map.reserve(of_family.len()) else {
                tracing::info!(unit = %name, endpoints = of_family.len(), "the steering map is full: these endpoints are not steered, each socket receives its own");
                return false;
            };
            s.room = Some(Arc::new(room));
            let mut anchored = HashSet::new();
            for e in of_family {
                if e.port() == 0 || !self.bound.contains_key(&e) {
                    continue;
                }
                if anchored.insert(e.port()) {
                    continue;
                }
                self.release(&e);
                unbound.insert(e);
            }
            true
        });
        (steering, unbound)
    }

    /// The socket of `endpoint`, if bound.
    pub fn get(&self, endpoint: &SocketAddr) -> Option<Arc<Held>> {
        self.bound.get(endpoint).cloned()
    }

    /// Closes `endpoint`'s socket (once no process spec holds it), which
    /// its device no longer needs: its requests are steered. A later
    /// [`Sockets::bind`] binds it again.
    pub fn release(&mut self, endpoint: &SocketAddr) {
        self.bound.remove(endpoint);
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
    fn a_steered_process_keeps_one_socket_per_port_if_the_map_has_room() {
        use agentcluster_agent::sys::steer::Steering;
        let (small, large) = match (Steering::attach(4), Steering::attach(64)) {
            (Ok(s), Ok(l)) => (s, l),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("skipped: cannot attach a BPF program here: {e}");
                return;
            }
        };
        let holders = Holders::in_threads(100);
        let mut sockets = Sockets::new(holders);
        // Four devices at one port, one at another port: five endpoints.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = probe.local_addr().unwrap().port();
        drop(probe);
        let q = p.wrapping_add(1).max(1024);
        let at = |host: u8, port: u16| SocketAddr::from(([127, 31, 0, host], port));
        let endpoints = [at(1, p), at(2, p), at(3, p), at(4, p), at(5, q)];
        if let Err(e) = sockets.bind_endpoints(endpoints.iter().map(|&e| ("d", e)).collect()) {
            eprintln!("skipped: the test's ports are taken: {e:?}");
            return;
        }
        // No room for five in a map of four: nothing is steered, every
        // endpoint keeps its socket.
        let (steering, unbound) = sockets.steer_process(&endpoints, &small.map(), "small");
        assert!(steering.is_empty() && unbound.is_empty());
        assert!(endpoints.iter().all(|e| sockets.get(e).is_some()));
        // Room: the first of each port keeps its socket, the others not.
        let (steering, unbound) = sockets.steer_process(&endpoints, &large.map(), "large");
        assert_eq!(steering.len(), 1);
        assert!(steering[0].room.is_some());
        let mut unbound: Vec<_> = unbound.into_iter().collect();
        unbound.sort();
        assert_eq!(unbound, endpoints[1..4]);
        for e in &endpoints {
            assert_eq!(sockets.get(e).is_some(), !unbound.contains(e), "{e}");
        }
        // The reservation holds the room until the spec goes.
        assert!(large.map().reserve(64 - 5 + 1).is_none());
        drop(steering);
        assert!(large.map().reserve(64).is_some());
    }

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
