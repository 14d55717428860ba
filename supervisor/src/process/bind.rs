//! Endpoint binding. The supervisor binds every agent's sockets itself, so a
//! port clash is a startup error naming the agent and the endpoint, and
//! (with agent processes) the sockets outlive an agent's restart.

use std::net::{SocketAddr, UdpSocket};

use agentcluster_conf::Agent;
use socket2::{Domain, Protocol, Socket, Type};

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

/// Binds every endpoint of every agent; on failure reports *all* endpoints
/// that failed (and closes the ones that were bound).
pub fn bind_all(agents: &[&Agent]) -> Result<Vec<Vec<UdpSocket>>, Vec<BindError>> {
    let mut out = Vec::with_capacity(agents.len());
    let mut errors = Vec::new();
    for agent in agents {
        let mut sockets = Vec::with_capacity(agent.listen.len());
        for &endpoint in &agent.listen {
            match bind_udp(endpoint) {
                Ok(s) => sockets.push(s),
                Err(cause) => errors.push(BindError {
                    agent: agent.name.clone(),
                    endpoint,
                    cause,
                }),
            }
        }
        out.push(sockets);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
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
