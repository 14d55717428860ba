//! Faults injected by hand (`agentcluster fault` on a node), kept in etcd
//! so that they move with their agent: `PREFIX/faults/AGENT` (no lease: it
//! outlives the node that wrote it) holds the device's faults as requests
//! to replay, each with the wall time it ends. The node serving the agent
//! writes it; a node that takes the agent over replays what has not ended.
//! Pure: the node ([`super::node`]) does the I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fleet::manager::HandFault;

/// The value of `PREFIX/faults/AGENT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandFaults {
    /// The revision of the pushed fleet they were injected under: a new
    /// push starts the devices afresh, and the faults of an older one are
    /// not replayed.
    pub revision: i64,
    /// The requests, oldest first: at most one per kind (one per
    /// interface for link faults), as a later one replaces an earlier.
    pub faults: Vec<Entry>,
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

    fn over(&self, now_ms: u64) -> bool {
        self.until_ms.is_some_and(|u| u <= now_ms)
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What an agent's key becomes after `fault`, injected under fleet
/// revision `revision`: `None` when it holds nothing any more (delete
/// it). A `reboot` is not kept (it is over once the device is up).
pub fn record(
    current: Option<&HandFaults>,
    fault: &HandFault,
    revision: i64,
) -> Option<HandFaults> {
    let now_ms = unix_ms(fault.at);
    let mut faults: Vec<Entry> = current
        .filter(|c| c.revision == revision)
        .map(|c| {
            c.faults
                .iter()
                .filter(|e| !e.over(now_ms))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    match fault.kind.as_str() {
        "clear" => faults.clear(),
        "reboot" => {}
        _ => {
            let entry = Entry {
                kind: fault.kind.clone(),
                arg: fault.arg.clone(),
                until_ms: fault.for_ms.map(|ms| now_ms.saturating_add(ms)),
            };
            faults.retain(|e| e.slot() != entry.slot());
            // A link that comes up is no fault to keep.
            if entry.kind != "link-up" {
                faults.push(entry);
            }
        }
    }
    (!faults.is_empty()).then_some(HandFaults { revision, faults })
}

/// The requests that give a device taken over its faults again at `now`,
/// under fleet revision `revision`: (kind, arg, time left). Nothing from
/// another revision, nothing that has ended.
pub fn replay(
    key: &HandFaults,
    revision: i64,
    now: SystemTime,
) -> Vec<(String, Option<String>, Option<Duration>)> {
    if key.revision != revision {
        return Vec::new();
    }
    let now_ms = unix_ms(now);
    key.faults
        .iter()
        .filter(|e| !e.over(now_ms))
        .map(|e| {
            let left = e.until_ms.map(|u| Duration::from_millis(u - now_ms));
            (e.kind.clone(), e.arg.clone(), left)
        })
        .collect()
}

/// Whether an agent's key holds nothing to replay any more under fleet
/// revision `revision` at `now`: every fault in it has ended, or it was
/// kept under an earlier push (a later push starts the devices afresh,
/// and an agent removed from the fleet is in no later push). A key of a
/// later push than `revision` is not: this node has not seen that push.
pub fn dead(key: &HandFaults, revision: i64, now: SystemTime) -> bool {
    let now_ms = unix_ms(now);
    key.revision < revision || key.faults.iter().all(|e| e.over(now_ms))
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
    fn a_later_fault_of_a_kind_replaces_the_earlier_and_clear_ends_all() {
        let k = record(None, &hand("loss", Some("10"), None, 1_000), 7).unwrap();
        let k = record(Some(&k), &hand("hang", None, Some(60_000), 2_000), 7).unwrap();
        let k = record(Some(&k), &hand("loss", Some("50"), None, 3_000), 7).unwrap();
        let k = record(Some(&k), &hand("link-down", Some("2"), None, 4_000), 7).unwrap();
        let k = record(Some(&k), &hand("link-down", Some("3"), None, 5_000), 7).unwrap();
        let k = record(Some(&k), &hand("link-up", Some("2"), None, 6_000), 7).unwrap();
        let kinds: Vec<(&str, Option<&str>)> = k
            .faults
            .iter()
            .map(|e| (e.kind.as_str(), e.arg.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("hang", None),
                ("loss", Some("50")),
                ("link-down", Some("3"))
            ]
        );
        assert_eq!(k.faults[0].until_ms, Some(62_000));
        // A reboot is not kept; clear leaves nothing: the key goes.
        assert_eq!(
            record(Some(&k), &hand("reboot", None, None, 7_000), 7),
            Some(k.clone())
        );
        assert_eq!(record(Some(&k), &hand("clear", None, None, 8_000), 7), None);
        // What has ended is dropped; another push's faults are forgotten.
        let later = record(Some(&k), &hand("latency", Some("5ms"), None, 70_000), 7).unwrap();
        assert!(later.faults.iter().all(|e| e.kind != "hang"));
        let pushed = record(Some(&k), &hand("latency", Some("5ms"), None, 9_000), 8).unwrap();
        assert_eq!(pushed.faults.len(), 1);
        assert_eq!(pushed.revision, 8);
    }

    #[test]
    fn a_replay_gives_what_is_left_of_this_push() {
        let k = record(None, &hand("hang", None, Some(60_000), 1_000), 7).unwrap();
        let k = record(Some(&k), &hand("loss", Some("10"), None, 2_000), 7).unwrap();
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(
            replay(&k, 7, at(41_000)),
            [
                ("hang".to_string(), None, Some(Duration::from_secs(20))),
                ("loss".to_string(), Some("10".to_string()), None)
            ]
        );
        assert_eq!(replay(&k, 7, at(61_000)).len(), 1, "the hang is over");
        assert!(replay(&k, 8, at(41_000)).is_empty(), "another push");
    }

    #[test]
    fn a_key_is_dead_once_everything_in_it_ended_or_a_later_push_came() {
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        let hang = record(None, &hand("hang", None, Some(60_000), 1_000), 7).unwrap();
        assert!(!dead(&hang, 7, at(60_999)));
        assert!(dead(&hang, 7, at(61_000)), "the hang is over");
        assert!(dead(&hang, 8, at(2_000)), "an earlier push's");
        assert!(!dead(&hang, 6, at(2_000)), "a push this node has not seen");
        let both = record(Some(&hang), &hand("loss", Some("10"), None, 2_000), 7).unwrap();
        assert!(!dead(&both, 7, at(99_000)), "the loss lasts until cleared");
        assert!(dead(&both, 8, at(99_000)));
    }
}
