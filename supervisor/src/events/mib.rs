//! How events and states appear in AGENTCLUSTER-MIB
//! (`mibs/AGENTCLUSTER-MIB.txt`): the notification of an event
//! (`mib_root.0.N`, N its kind's number) with its acNotify varbinds, and
//! the DisplayString limit of its texts. The notification sink sends them;
//! the status agent uses the same numbering for states.

use agentcluster_agent::notify::Notification;
use agentcluster_agent::value::{Oid, Value};

use crate::events::Event;

/// DisplayString's limit, in octets: the longest text of a varbind.
pub const TEXT_MAX: usize = 255;

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The OID of instance `.0` of acNotify object `n` (1 = name … 9 = seq).
pub fn notify_object(mib_root: &[u32], n: u32) -> Oid {
    let mut oid = mib_root.to_vec();
    oid.extend_from_slice(&[1, 1, n, 0]);
    oid
}

/// The notification for `e`. `uptime` is the supervisor's sysUpTime when
/// the event happened.
pub fn notification(mib_root: &[u32], e: &Event, uptime: u32) -> Notification {
    let number = e.event.notification_number();
    let mut trap_oid = mib_root.to_vec();
    trap_oid.extend_from_slice(&[0, number]);
    let text = |s: &str| Value::OctetString(cut(s, TEXT_MAX).as_bytes().to_vec());
    let mut varbinds = vec![
        (notify_object(mib_root, 1), text(&e.agent)),
        (
            notify_object(mib_root, 2),
            Value::Gauge32(e.pid.unwrap_or(0)),
        ),
        (notify_object(mib_root, 3), Value::Integer(e.state.number())),
    ];
    varbinds.extend([
        (notify_object(mib_root, 4), Value::Gauge32(e.restarts)),
        (
            notify_object(mib_root, 5),
            Value::Integer(e.exit_code.map_or(-1, i64::from)),
        ),
        (
            notify_object(mib_root, 6),
            text(e.signal.as_deref().unwrap_or("")),
        ),
        (notify_object(mib_root, 7), text(&e.reason)),
        (notify_object(mib_root, 8), text(&e.node)),
        (
            notify_object(mib_root, 9),
            Value::Gauge32((e.seq & u64::from(u32::MAX)) as u32),
        ),
    ]);
    Notification {
        trap_oid,
        uptime,
        varbinds,
        agent_addr: [0, 0, 0, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::testutil::died;
    use crate::events::{EventKind, State};
    use agentcluster_conf::DEFAULT_MIB_ROOT;

    const ROOT: &[u32] = DEFAULT_MIB_ROOT;

    fn oid(tail: &[u32]) -> Oid {
        let mut o = ROOT.to_vec();
        o.extend_from_slice(tail);
        o
    }

    #[test]
    fn a_died_event_is_agent_died_with_every_object() {
        let n = notification(ROOT, &died(), 777);
        assert_eq!(n.trap_oid, oid(&[0, 3]));
        assert_eq!(n.uptime, 777);
        let text = |s: &str| Value::OctetString(s.as_bytes().to_vec());
        assert_eq!(
            n.varbinds,
            vec![
                (oid(&[1, 1, 1, 0]), text("core-sw-1")),
                (oid(&[1, 1, 2, 0]), Value::Gauge32(4242)),
                (oid(&[1, 1, 3, 0]), Value::Integer(6)),
                (oid(&[1, 1, 4, 0]), Value::Gauge32(3)),
                (oid(&[1, 1, 5, 0]), Value::Integer(-1)),
                (oid(&[1, 1, 6, 0]), text("SIGKILL")),
                (oid(&[1, 1, 7, 0]), text("killed by SIGKILL")),
                (oid(&[1, 1, 8, 0]), text("lab-a")),
                (oid(&[1, 1, 9, 0]), Value::Gauge32(42)),
            ]
        );
        // An SNMPv1 Trap of it: enterprise = the MIB root, specific 3.
        assert_eq!(
            agentcluster_agent::notify::v1_trap_fields(&n),
            (ROOT.to_vec(), 6, 3)
        );
    }

    #[test]
    fn every_event_kind_has_its_number_and_absent_values_their_none() {
        let kinds = [
            ("ready", 1),
            ("stopped", 2),
            ("died", 3),
            ("unresponsive", 4),
            ("restarting", 5),
            ("failed", 6),
            ("config-changed", 7),
            ("supervisor-started", 8),
            ("supervisor-stopping", 9),
            ("start-failed", 10),
            ("data-reloaded", 11),
            ("starting", 12),
            ("events-dropped", 13),
            ("reload-failed", 14),
            ("fault-injected", 15),
            ("fault-cleared", 16),
            ("node-joined", 17),
            ("node-left", 18),
            ("assigned", 19),
            ("released", 20),
        ];
        for (kind, n) in kinds {
            let e = Event {
                event: kind.parse().unwrap(),
                ..died()
            };
            assert_eq!(notification(ROOT, &e, 0).trap_oid, oid(&[0, n]), "{kind}");
        }
        assert_eq!(
            kinds.len(),
            EventKind::ALL.len(),
            "every kind has a notification"
        );
        let e = Event {
            pid: None,
            exit_code: Some(3),
            signal: None,
            state: State::Stopped,
            seq: u64::from(u32::MAX) + 5,
            ..died()
        };
        let n = notification(ROOT, &e, 0);
        let get = |i: u32| n.varbinds.iter().find(|(o, _)| *o == oid(&[1, 1, i, 0]));
        assert_eq!(get(2).map(|v| &v.1), Some(&Value::Gauge32(0)));
        assert_eq!(get(3).map(|v| &v.1), Some(&Value::Integer(8)));
        assert_eq!(get(5).map(|v| &v.1), Some(&Value::Integer(3)));
        assert_eq!(get(6).map(|v| &v.1), Some(&Value::OctetString(vec![])));
        assert_eq!(get(9).map(|v| &v.1), Some(&Value::Gauge32(4)));
        let other_root = [1, 3, 6, 1, 4, 1, 99999];
        let n = notification(&other_root, &died(), 0);
        assert_eq!(n.trap_oid, [1, 3, 6, 1, 4, 1, 99999, 0, 3]);
        assert!(n.varbinds.iter().all(|(o, _)| o.starts_with(&other_root)));
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries() {
        let reason = "é".repeat(200); // 400 bytes
        let e = Event {
            reason: reason.clone(),
            ..died()
        };
        let n = notification(ROOT, &e, 0);
        let Some((_, Value::OctetString(sent))) =
            n.varbinds.iter().find(|(o, _)| *o == oid(&[1, 1, 7, 0]))
        else {
            panic!("no reason")
        };
        assert_eq!(sent.len(), 254);
        assert_eq!(std::str::from_utf8(sent).unwrap(), "é".repeat(127));
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("aé", 2), "a");
    }
}
