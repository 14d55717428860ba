//! The closed set of lifecycle event kinds, and every spelling the outside
//! world knows each one by: its name (events, the stream, KVP keys, the
//! `events.notify[].events` filter), its journal `MESSAGE_ID` and syslog
//! priority, and its AGENTCLUSTER-MIB notification number. No other table
//! of kinds exists; a kind is listed here once it is emitted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One kind of lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An agent process is being created.
    Starting,
    /// An agent process answered its start token: it serves.
    Ready,
    /// An agent process failed its start (error, timeout, exit).
    StartFailed,
    /// A running agent process exited or was killed.
    Died,
    /// A running agent process stopped answering (heartbeat, /proc state,
    /// memory, probe).
    Unresponsive,
    /// An agent process is restarted after a failure (after its backoff).
    Restarting,
    /// Too many restarts within the window: no more restarts.
    Failed,
    /// An agent process was stopped on request (operator, reload, shutdown).
    Stopped,
    /// A reload changed, added or removed an agent.
    ConfigChanged,
    /// New snapshot data was swapped into a running agent process.
    DataReloaded,
    /// The supervisor started.
    SupervisorStarted,
    /// The supervisor is shutting down.
    SupervisorStopping,
    /// A sink could not deliver some events.
    EventsDropped,
    /// A reload was refused and changed nothing: a snapshot that does not
    /// parse, is empty or lost too many records (the old data stays
    /// served), or a configuration that does not load.
    ReloadFailed,
    /// A fault was injected into a running device (operator `fault`, a
    /// scenario).
    FaultInjected,
    /// A device's fault ended: cleared, expired, or a reboot is over.
    FaultCleared,
    /// Another node joined the fleet shared through etcd.
    NodeJoined,
    /// Another node left the fleet shared through etcd (stopped, or its
    /// lease expired).
    NodeLeft,
    /// Agents were assigned to this node: it holds their owner keys and
    /// serves them (one event per batch, with the count and names).
    Assigned,
    /// Agents were released by this node: stopped, and their owner keys
    /// deleted or about to expire (one event per batch).
    Released,
}

impl EventKind {
    /// Every kind, in the order of their notification numbers' first use.
    pub const ALL: [EventKind; 20] = [
        EventKind::Starting,
        EventKind::Ready,
        EventKind::StartFailed,
        EventKind::Died,
        EventKind::Unresponsive,
        EventKind::Restarting,
        EventKind::Failed,
        EventKind::Stopped,
        EventKind::ConfigChanged,
        EventKind::DataReloaded,
        EventKind::SupervisorStarted,
        EventKind::SupervisorStopping,
        EventKind::EventsDropped,
        EventKind::ReloadFailed,
        EventKind::FaultInjected,
        EventKind::FaultCleared,
        EventKind::NodeJoined,
        EventKind::NodeLeft,
        EventKind::Assigned,
        EventKind::Released,
    ];

    /// The kind's name, as events carry it (`start-failed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Starting => "starting",
            EventKind::Ready => "ready",
            EventKind::StartFailed => "start-failed",
            EventKind::Died => "died",
            EventKind::Unresponsive => "unresponsive",
            EventKind::Restarting => "restarting",
            EventKind::Failed => "failed",
            EventKind::Stopped => "stopped",
            EventKind::ConfigChanged => "config-changed",
            EventKind::DataReloaded => "data-reloaded",
            EventKind::SupervisorStarted => "supervisor-started",
            EventKind::SupervisorStopping => "supervisor-stopping",
            EventKind::EventsDropped => "events-dropped",
            EventKind::ReloadFailed => "reload-failed",
            EventKind::FaultInjected => "fault-injected",
            EventKind::FaultCleared => "fault-cleared",
            EventKind::NodeJoined => "node-joined",
            EventKind::NodeLeft => "node-left",
            EventKind::Assigned => "assigned",
            EventKind::Released => "released",
        }
    }

    /// Every kind's name.
    pub fn names() -> impl Iterator<Item = &'static str> {
        EventKind::ALL.into_iter().map(EventKind::as_str)
    }

    /// The journal's `MESSAGE_ID` of the kind (stable: users filter on it
    /// with `journalctl MESSAGE_ID=…`).
    pub const fn message_id(self) -> &'static str {
        match self {
            EventKind::Starting => "8d3c5b8e0b2f4f7e9a3e1f0c7d6b5a41",
            EventKind::Ready => "2f6a1c0e9d8b4c7a8e5f3b2a1d0c9e42",
            EventKind::StartFailed => "b7e4d2c1a0f94e8d9c6b5a4f3e2d1c43",
            EventKind::Died => "c1d2e3f4a5b64c7d8e9fa0b1c2d3e444",
            EventKind::Unresponsive => "d4c3b2a1f0e94d8c7b6a5f4e3d2c1b45",
            EventKind::Restarting => "e5f6a7b8c9d04e1f2a3b4c5d6e7f8a46",
            EventKind::Failed => "f0e1d2c3b4a54968778695a4b3c2d147",
            EventKind::Stopped => "0a1b2c3d4e5f46a7b8c9d0e1f2a3b448",
            EventKind::ConfigChanged => "1b2c3d4e5f6a47b8c9d0e1f2a3b4c549",
            EventKind::DataReloaded => "2c3d4e5f6a7b48c9d0e1f2a3b4c5d64a",
            EventKind::SupervisorStarted => "3d4e5f6a7b8c49d0e1f2a3b4c5d6e74b",
            EventKind::SupervisorStopping => "4e5f6a7b8c9d40e1f2a3b4c5d6e7f84c",
            EventKind::EventsDropped => "6a7b8c9d0e1f42a3b4c5d6e7f8a9b04e",
            EventKind::ReloadFailed => "a2219cfa2c7f4afd92db9c606e0764d3",
            EventKind::FaultInjected => "5b0e7c2a9d1f4e3b8a6c4d2e1f0a9b51",
            EventKind::FaultCleared => "7c1f8d3b0e2a4f5c9b7d5e3f2a1b0c52",
            EventKind::NodeJoined => "9e4a2b7c1d3f45e68a0b9c8d7e6f5a53",
            EventKind::NodeLeft => "a8b7c6d5e4f34a2b9c1d0e8f7a6b5c54",
            EventKind::Assigned => "b3c4d5e6f7a84b9c8d0e1f2a3b4c5d55",
            EventKind::Released => "c6d7e8f9a0b14c2d9e3f4a5b6c7d8e56",
        }
    }

    /// The syslog priority of the kind (3 err, 4 warning, 5 notice, 6 info).
    pub const fn priority(self) -> u8 {
        match self {
            EventKind::Died
            | EventKind::Failed
            | EventKind::StartFailed
            | EventKind::ReloadFailed => 3,
            EventKind::Unresponsive | EventKind::EventsDropped => 4,
            EventKind::Restarting
            | EventKind::ConfigChanged
            | EventKind::Stopped
            | EventKind::SupervisorStopping
            | EventKind::FaultInjected
            | EventKind::NodeJoined
            | EventKind::NodeLeft
            | EventKind::Released => 5,
            EventKind::Starting
            | EventKind::Ready
            | EventKind::DataReloaded
            | EventKind::SupervisorStarted
            | EventKind::FaultCleared
            | EventKind::Assigned => 6,
        }
    }

    /// The AGENTCLUSTER-MIB notification number: the notification is
    /// `mib_root.0.N` (see `mibs/AGENTCLUSTER-MIB.txt`).
    pub const fn notification_number(self) -> u32 {
        match self {
            EventKind::Ready => 1,
            EventKind::Stopped => 2,
            EventKind::Died => 3,
            EventKind::Unresponsive => 4,
            EventKind::Restarting => 5,
            EventKind::Failed => 6,
            EventKind::ConfigChanged => 7,
            EventKind::SupervisorStarted => 8,
            EventKind::SupervisorStopping => 9,
            EventKind::StartFailed => 10,
            EventKind::DataReloaded => 11,
            EventKind::Starting => 12,
            EventKind::EventsDropped => 13,
            EventKind::ReloadFailed => 14,
            EventKind::FaultInjected => 15,
            EventKind::FaultCleared => 16,
            EventKind::NodeJoined => 17,
            EventKind::NodeLeft => 18,
            EventKind::Assigned => 19,
            EventKind::Released => 20,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no event kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind `{0}`")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<EventKind, UnknownEventKind> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_parse_back_and_serialize_as_themselves() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("dide".parse::<EventKind>().is_err());
    }

    #[test]
    fn every_spelling_is_distinct_per_kind() {
        let n = EventKind::ALL.len();
        let names: HashSet<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        let ids: HashSet<_> = EventKind::ALL.iter().map(|k| k.message_id()).collect();
        let numbers: HashSet<_> = EventKind::ALL
            .iter()
            .map(|k| k.notification_number())
            .collect();
        assert_eq!((names.len(), ids.len(), numbers.len()), (n, n, n));
        // MESSAGE_IDs are 128-bit ids in lowercase hex, as journald wants.
        assert!(ids.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
        // Notification numbers are dense from 1, as the MIB defines them.
        assert_eq!(numbers, (1..=n as u32).collect());
    }
}
