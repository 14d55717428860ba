//! The notification originator: SNMPv1 Trap, SNMPv2c Trap/Inform and
//! SNMPv3 Trap/Inform with USM. [`encode`] builds and opens messages (pure,
//! byte-tested); [`sender::Sender`] puts them on the wire, with engine
//! discovery of an inform receiver, retries and a timeout per attempt,
//! from a socket of its own or from a device's serving socket, whose
//! serving loop hands it the answers ([`replies`]).
//!
//! A notification is described the SNMPv2 way (snmpTrapOID.0 and varbinds,
//! RFC 3416 §4.2.6); an SNMPv1 Trap is derived from it per RFC 3584 §3.2.
//!
//! Depends on `crate::security` (USM keys, Report kinds) and `crate::wire`
//! (BER, the SNMPv3 message format); the supervisor and the agent process
//! (a device's own coldStart/warmStart) use it.

pub mod encode;
pub mod replies;
pub mod sender;
#[cfg(test)]
pub(crate) mod testutil;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::security::usm::{AuthProtocol, PrivProtocol};
use crate::wire::value::{Oid, Value};

pub use replies::Replies;
pub use sender::{LocalEngine, Sender};

/// sysUpTime.0
pub(crate) const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
/// snmpTrapOID.0
pub(crate) const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
/// snmpTrapEnterprise.0
pub(crate) const SNMP_TRAP_ENTERPRISE: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 3, 0];
/// snmpTraps: the generic traps are its children 1..=6 (RFC 3418).
pub(crate) const SNMP_TRAPS: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5];
/// coldStart: sent on an agent's first start.
pub const COLD_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 1];
/// warmStart: sent when an agent restarts.
pub const WARM_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 2];

/// One notification, SNMPv2 style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// snmpTrapOID.0: what happened.
    pub trap_oid: Oid,
    /// sysUpTime.0 of the sender, in hundredths of a second.
    pub uptime: u32,
    /// The varbinds after sysUpTime.0 and snmpTrapOID.0.
    pub varbinds: Vec<(Oid, Value)>,
    /// SNMPv1 only: agent-addr of the Trap-PDU.
    pub agent_addr: [u8; 4],
}

/// SNMP version of a notification target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// SNMPv1: a Trap-PDU derived per RFC 3584.
    V1,
    /// SNMPv2c: community-based.
    V2c,
    /// SNMPv3 with USM.
    V3,
}

/// Trap (unconfirmed) or Inform (acknowledged, retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Sent once, never acknowledged.
    Trap,
    /// Acknowledged by a Response; retried until then.
    Inform,
}

/// A USM user for notifications. Passwords, because an inform's keys are
/// localized to the receiver's engine ID, learnt only by discovery (Ku is
/// computed once per password, see `crate::security::usm::keys::ku`). `Debug`
/// never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyUser {
    /// usmUserName.
    pub name: Vec<u8>,
    /// The authentication protocol and password; `None`: noAuthNoPriv.
    #[serde(default)]
    pub auth: Option<(AuthProtocol, String)>,
    /// The privacy protocol and password; needs `auth`.
    #[serde(default)]
    pub privacy: Option<(PrivProtocol, String)>,
}

impl fmt::Debug for NotifyUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyUser")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("auth", &self.auth.as_ref().map(|(p, _)| p))
            .field("privacy", &self.privacy.as_ref().map(|(p, _)| p))
            .finish()
    }
}

/// Where and how a notification goes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `host:port`, resolved at send time.
    pub address: String,
    /// The SNMP version the target speaks.
    pub version: Version,
    /// Trap or Inform.
    pub kind: Kind,
    /// SNMPv1/v2c.
    #[serde(default)]
    pub community: Vec<u8>,
    /// SNMPv3.
    #[serde(default)]
    pub user: Option<NotifyUser>,
    /// Informs: resends after the first attempt.
    #[serde(default)]
    pub retries: u32,
    /// Informs: how long each attempt waits for the acknowledgement.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("address", &self.address)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("community", &"***")
            .field("user", &self.user)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a notification was not delivered (or, for a trap, not sent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The target's address does not resolve (to an address of the
    /// socket's family).
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// Sending or receiving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An inform was not acknowledged.
    #[error("no acknowledgement from {target} after {attempts} attempts")]
    Timeout {
        /// The target's address.
        target: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The receiver answered with an error or a Report: resending cannot
    /// help.
    #[error("{target} refused the notification: {reason}")]
    Refused {
        /// The target's address.
        target: String,
        /// The error-status or the Report's counter.
        reason: String,
    },
    /// The target cannot be served as configured (the address, and why).
    #[error("target {0}: {1}")]
    Config(String, String),
}

/// The agent-addr of an SNMPv1 Trap sent from `local` to `to` (RFC 1157
/// §4.1.6: the address of the object that generates the trap): `local`'s
/// IPv4 address; for an unspecified one (a socket bound to every address)
/// the address the kernel sends to `to` from, learnt by connecting a
/// throwaway UDP socket (nothing is sent); 0.0.0.0 when there is none (an
/// IPv6 source or target, no route).
pub fn agent_addr(local: IpAddr, to: SocketAddr) -> [u8; 4] {
    match (local, to) {
        (IpAddr::V4(ip), _) if !ip.is_unspecified() => ip.octets(),
        (IpAddr::V4(_), SocketAddr::V4(to)) => std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                s.connect(to)?;
                s.local_addr()
            })
            .map(|a| match a.ip() {
                IpAddr::V4(ip) => ip.octets(),
                IpAddr::V6(_) => [0; 4],
            })
            .unwrap_or([0; 4]),
        _ => [0; 4],
    }
}

/// The SNMPv1 Trap-PDU fields of a notification (RFC 3584 §3.2):
/// (enterprise, generic-trap, specific-trap).
pub fn v1_trap_fields(n: &Notification) -> (Oid, i64, i64) {
    if let Some((last, parent)) = n.trap_oid.split_last()
        && parent == SNMP_TRAPS
        && (1..=6).contains(last)
    {
        // A generic trap: the enterprise is snmpTrapEnterprise.0 when given.
        let enterprise = n
            .varbinds
            .iter()
            .find_map(|(o, v)| match v {
                Value::ObjectId(e) if o == SNMP_TRAP_ENTERPRISE => Some(e.clone()),
                _ => None,
            })
            .unwrap_or_else(|| SNMP_TRAPS.to_vec());
        return (enterprise, i64::from(*last) - 1, 0);
    }
    match n.trap_oid.split_last() {
        Some((last, parent)) => {
            // enterprise.0.specific → enterprise
            let enterprise = match parent.split_last() {
                Some((0, e)) => e.to_vec(),
                _ => parent.to_vec(),
            };
            (enterprise, 6, i64::from(*last))
        }
        None => (SNMP_TRAPS.to_vec(), 6, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(trap: &[u32], vbs: Vec<(Oid, Value)>) -> Notification {
        Notification {
            trap_oid: trap.to_vec(),
            uptime: 5,
            varbinds: vbs,
            agent_addr: [127, 0, 0, 1],
        }
    }

    #[test]
    fn v2_to_v1_trap_fields_follow_rfc_3584() {
        assert_eq!(
            v1_trap_fields(&n(COLD_START, vec![])),
            (SNMP_TRAPS.to_vec(), 0, 0)
        );
        // linkDown with snmpTrapEnterprise
        let ent = vec![1, 3, 6, 1, 4, 1, 9];
        assert_eq!(
            v1_trap_fields(&n(
                &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3],
                vec![(SNMP_TRAP_ENTERPRISE.to_vec(), Value::ObjectId(ent.clone()))]
            )),
            (ent, 2, 0)
        );
        // enterprise-specific, with and without the .0 arc
        assert_eq!(
            v1_trap_fields(&n(&[1, 3, 6, 1, 4, 1, 8072, 0, 17], vec![])),
            (vec![1, 3, 6, 1, 4, 1, 8072], 6, 17)
        );
        assert_eq!(
            v1_trap_fields(&n(&[1, 3, 6, 1, 4, 1, 8072, 4, 2], vec![])),
            (vec![1, 3, 6, 1, 4, 1, 8072, 4], 6, 2)
        );
    }

    #[test]
    fn the_agent_addr_is_the_source_or_what_the_kernel_would_send_from() {
        let to: SocketAddr = "127.0.0.1:162".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(agent_addr(ip("192.0.2.7"), to), [192, 0, 2, 7]);
        assert_eq!(agent_addr(ip("0.0.0.0"), to), [127, 0, 0, 1]);
        assert_eq!(agent_addr(ip("::1"), to), [0; 4]);
        assert_eq!(
            agent_addr(ip("0.0.0.0"), "[::1]:162".parse().unwrap()),
            [0; 4]
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let t = Target {
            address: "127.0.0.1:162".into(),
            version: Version::V3,
            kind: Kind::Inform,
            community: b"secret-community".to_vec(),
            user: Some(NotifyUser {
                name: b"ops".to_vec(),
                auth: Some((AuthProtocol::Sha256, "secret-password".into())),
                privacy: Some((PrivProtocol::Aes128, "secret-password".into())),
            }),
            retries: 1,
            timeout: Duration::from_secs(1),
        };
        let text = format!("{t:?}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("Sha256"));
    }
}
