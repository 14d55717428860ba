//! Faults injected by hand (`agentcluster fault` on a node), kept in etcd
//! so that they move with their agent: `PREFIX/faults/AGENT` (no lease: it
//! outlives the node that wrote it) holds the last request of each place
//! of the device's faults, with the wall time it was made and the one it
//! ends, and the time of the last `clear`. The node serving the agent
//! writes it; a node that takes the agent over gives back what has not
//! ended and what no scenario's later fault replaced, and gives back no
//! scenario's fault that a later request by hand replaced or cleared
//! ([`crate::fleet::scenarios::in_progress`]). Pure: the node
//! ([`super::node`]) does the I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentcluster_conf::Fault;
use serde::{Deserialize, Serialize};

use crate::fleet::manager::HandFault;
use crate::fleet::scenarios::HandEvent;

/// The value of `PREFIX/faults/AGENT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandFaults {
    /// The revision of the pushed fleet they were injected under: a new
    /// push starts the devices afresh, and the faults of an older one are
    /// not replayed.
    pub revision: i64,
    /// The requests, oldest first: the last one of each kind (of each
    /// interface for link faults, `link-up` included), as a later one
    /// replaces an earlier; those that have ended too (they ended a
    /// scenario's fault of their place).
    pub faults: Vec<Entry>,
    /// When the last `clear` was made (unix ms): it ended every fault
    /// before it, a scenario's too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_ms: Option<u64>,
}

/// One fault request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `hang`, `loss`, `latency`, `link-down`, `link-up`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
    /// When it ends (unix ms); `None`: when cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// When it was made (unix ms).
    #[serde(default)]
    pub at_ms: u64,
}

impl Entry {
    /// What a later request replaces: its kind, and for link faults the
    /// interface (a `link-up` of an interface ends its `link-down`).
    fn slot(&self) -> (&str, Option<&str>) {
        match self.kind.as_str() {
            "link-down" | "link-up" => ("link", self.arg.as_deref()),
            k => (k, None),
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What an agent's key becomes after `fault`, injected under fleet
/// revision `revision` (a key of another push is started afresh): `None`
/// when it would hold nothing (nothing to write). A `reboot` is not kept
/// (it is over once the device is up); `clear` leaves only its time.
pub fn record(
    current: Option<&HandFaults>,
    fault: &HandFault,
    revision: i64,
) -> Option<HandFaults> {
    let now_ms = unix_ms(fault.at);
    let current = current.filter(|c| c.revision == revision);
    let mut faults: Vec<Entry> = current.map(|c| c.faults.clone()).unwrap_or_default();
    let mut cleared_ms = current.and_then(|c| c.cleared_ms);
    match fault.kind.as_str() {
        "clear" => {
            faults.clear();
            cleared_ms = Some(now_ms);
        }
        "reboot" => {}
        _ => {
            let entry = Entry {
                kind: fault.kind.clone(),
                arg: fault.arg.clone(),
                until_ms: fault.for_ms.map(|ms| now_ms.saturating_add(ms)),
                at_ms: now_ms,
            };
            faults.retain(|e| e.slot() != entry.slot());
            faults.push(entry);
        }
    }
    (!faults.is_empty() || cleared_ms.is_some()).then_some(HandFaults {
        revision,
        faults,
        cleared_ms,
    })
}

/// The requests of `key` as events on the time axis of the scenarios of
/// fleet revision `revision`, pushed at `zero`, oldest first: nothing
/// from another revision, nor what does not parse (a key written by hand).
pub fn events(key: &HandFaults, revision: i64, zero: SystemTime) -> Vec<HandEvent> {
    if key.revision != revision {
        return Vec::new();
    }
    let zero_ms = unix_ms(zero);
    let from_zero = |ms: u64| Duration::from_millis(ms.saturating_sub(zero_ms));
    let clear = key.cleared_ms.map(|ms| HandEvent {
        at: from_zero(ms),
        fault: Fault::Clear,
        ends: None,
    });
    let mut events: Vec<HandEvent> = clear
        .into_iter()
        .chain(key.faults.iter().filter_map(|e| {
            Some(HandEvent {
                at: from_zero(e.at_ms),
                fault: Fault::parse(&e.kind, e.arg.as_deref()).ok()?,
                ends: e.until_ms.map(from_zero),
            })
        }))
        .collect();
    events.sort_by_key(|e| e.at);
    events
}

/// Whether an agent's key is of no use any more under fleet revision
/// `revision`: it was kept under an earlier push (a later push starts the
/// devices afresh, and an agent removed from the fleet is in no later
/// push). A key of a later push than `revision` is not: this node has not
/// seen that push. A key of this push is kept whole, what has ended too:
/// it says which scenario faults ended by hand.
pub fn dead(key: &HandFaults, revision: i64) -> bool {
    key.revision < revision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hand(kind: &str, arg: Option<&str>, for_ms: Option<u64>, at_ms: u64) -> HandFault {
        HandFault {
            agents: vec!["a".into()],
            kind: kind.into(),
            arg: arg.map(String::from),
            for_ms,
            at: UNIX_EPOCH + Duration::from_millis(at_ms),
        }
    }

    #[test]
    fn a_later_fault_of_a_place_replaces_the_earlier_and_clear_leaves_its_time() {
        let k = record(None, &hand("loss", Some("10"), None, 1_000), 7).unwrap();
        let k = record(Some(&k), &hand("hang", None, Some(60_000), 2_000), 7).unwrap();
        let k = record(Some(&k), &hand("loss", Some("50"), None, 3_000), 7).unwrap();
        let k = record(Some(&k), &hand("link-down", Some("2"), None, 4_000), 7).unwrap();
        let k = record(Some(&k), &hand("link-down", Some("3"), None, 5_000), 7).unwrap();
        let k = record(Some(&k), &hand("link-up", Some("2"), None, 6_000), 7).unwrap();
        let kinds: Vec<(&str, Option<&str>, u64)> = k
            .faults
            .iter()
            .map(|e| (e.kind.as_str(), e.arg.as_deref(), e.at_ms))
            .collect();
        assert_eq!(
            kinds,
            [
                ("hang", None, 2_000),
                ("loss", Some("50"), 3_000),
                ("link-down", Some("3"), 5_000),
                ("link-up", Some("2"), 6_000)
            ]
        );
        assert_eq!(k.faults[0].until_ms, Some(62_000));
        assert_eq!(k.cleared_ms, None);
        // A reboot is not kept; what has ended stays (it ended a place).
        assert_eq!(
            record(Some(&k), &hand("reboot", None, None, 7_000), 7),
            Some(k.clone())
        );
        let later = record(Some(&k), &hand("latency", Some("5ms"), None, 70_000), 7).unwrap();
        assert!(later.faults.iter().any(|e| e.kind == "hang"));
        // clear leaves only its time; what follows it is kept after it.
        let cleared = record(Some(&k), &hand("clear", None, None, 8_000), 7).unwrap();
        assert_eq!((cleared.faults.len(), cleared.cleared_ms), (0, Some(8_000)));
        let after = record(Some(&cleared), &hand("hang", None, None, 9_000), 7).unwrap();
        assert_eq!((after.faults.len(), after.cleared_ms), (1, Some(8_000)));
        // Another push's requests are forgotten; nothing to keep, no key.
        let pushed = record(Some(&k), &hand("latency", Some("5ms"), None, 9_000), 8).unwrap();
        assert_eq!((pushed.faults.len(), pushed.revision), (1, 8));
        assert_eq!(
            record(Some(&k), &hand("reboot", None, None, 9_000), 8),
            None
        );
    }

    #[test]
    fn the_requests_of_this_push_are_events_from_its_time_zero() {
        let k = record(None, &hand("hang", None, Some(60_000), 11_000), 7).unwrap();
        let k = record(Some(&k), &hand("clear", None, None, 12_000), 7).unwrap();
        let k = record(Some(&k), &hand("link-down", Some("2"), None, 13_000), 7).unwrap();
        let k = record(Some(&k), &hand("loss", Some("10"), Some(5_000), 14_000), 7).unwrap();
        let zero = UNIX_EPOCH + Duration::from_secs(10);
        let s = Duration::from_secs;
        assert_eq!(
            events(&k, 7, zero),
            [
                HandEvent {
                    at: s(2),
                    fault: Fault::Clear,
                    ends: None
                },
                HandEvent {
                    at: s(3),
                    fault: Fault::LinkDown(2),
                    ends: None
                },
                HandEvent {
                    at: s(4),
                    fault: Fault::Loss(10),
                    ends: Some(s(9))
                },
            ]
        );
        assert!(events(&k, 8, zero).is_empty(), "another push");
        // Only a key of an earlier push is of no use any more.
        assert!(!dead(&k, 7) && !dead(&k, 6) && dead(&k, 8));
    }
}
