//! A device's faults as its agent process carries them out. The supervisor
//! owns the faults (they are state of the device, not of the process) and
//! sends each agent's whole set ([`Faults`]) in the start message and on
//! every change; here they become what the serving loop does with each
//! request ([`Behaviour`]: hang, loss, latency, a reboot's outage) and the
//! device's own values for its links ([`link_values`]: ifOperStatus and
//! ifLastChange in the overlay of `values:`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::data::values::{ValueSpec, Values};
use crate::util::xorshift::Rng;

/// ifOperStatus (IF-MIB ifTable column 8).
pub const IF_OPER_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
/// ifAdminStatus (column 7).
pub const IF_ADMIN_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 7];
/// ifLastChange (column 9).
pub const IF_LAST_CHANGE: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 9];
/// ifIndex (column 1).
pub const IF_INDEX: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 1];
/// linkDown (SNMPv2-MIB snmpTraps 3).
pub const LINK_DOWN: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3];
/// linkUp (snmpTraps 4).
pub const LINK_UP: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 4];

/// The faults active on one device, as the supervisor sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// No answers at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hang: bool,
    /// Requests dropped at random with this probability, in percent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub loss_percent: u8,
    /// Each answer delayed by `(mean, jitter)` milliseconds, uniformly
    /// within mean ± jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<(u64, u64)>,
    /// The interfaces (ifIndex) whose link is down, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links_down: Vec<u32>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Faults {
    /// No fault: the device behaves as its snapshot says.
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }
}

/// What becomes of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Answer it at once.
    Answer,
    /// Answer it after this delay.
    Delay(Duration),
    /// No answer (hang, loss, a reboot's outage).
    Drop,
}

/// What the serving loop of one agent asks before each request.
#[derive(Debug)]
pub struct Behaviour {
    faults: Faults,
    /// A reboot's outage: unanswered until then.
    deaf_until: Option<Instant>,
    rng: Rng,
}

impl Behaviour {
    /// A device without faults; `seed` drives its loss and jitter.
    pub fn new(seed: u64) -> Behaviour {
        Behaviour {
            faults: Faults::default(),
            deaf_until: None,
            rng: Rng::new(seed | 1),
        }
    }

    /// The faults from now on.
    pub fn set(&mut self, faults: &Faults) {
        self.faults = faults.clone();
    }

    /// Unanswered until `until` (a reboot).
    pub fn deaf_until(&mut self, until: Instant) {
        self.deaf_until = Some(until);
    }

    /// Whether anything may change a request's fate (one check per batch
    /// when the device is healthy).
    pub fn active(&self) -> bool {
        self.deaf_until.is_some() || !self.faults.is_empty()
    }

    /// The fate of a request received at `now`.
    pub fn fate(&mut self, now: Instant) -> Fate {
        if let Some(until) = self.deaf_until {
            if now < until {
                return Fate::Drop;
            }
            self.deaf_until = None;
        }
        let f = &self.faults;
        if f.hang {
            return Fate::Drop;
        }
        if f.loss_percent > 0 && self.rng.below(100) < u64::from(f.loss_percent) {
            return Fate::Drop;
        }
        match f.latency_ms {
            Some((mean, jitter)) if mean > 0 || jitter > 0 => {
                let jitter = jitter.min(mean);
                let ms = mean - jitter + self.rng.below(2 * jitter + 1);
                Fate::Delay(Duration::from_millis(ms))
            }
            _ => Fate::Answer,
        }
    }
}

/// The state of one link a fault changed: down or up again, and the
/// sysUpTime (hundredths of a second) of that change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// ifOperStatus is down(2).
    pub down: bool,
    /// ifLastChange.
    pub changed: u32,
}

/// The device's own values with its links' state over them: for each link
/// a fault changed, ifOperStatus (down(2) or up(1)) and ifLastChange. They
/// come after the configured values, so they win over them.
pub fn link_values(base: &Values, links: &BTreeMap<u32, Link>) -> Values {
    let mut values = base.clone();
    for (&index, link) in links {
        let oid = |column: &[u32]| {
            let mut o = column.to_vec();
            o.push(index);
            o
        };
        values.entries.push(ValueSpec {
            oid: oid(IF_OPER_STATUS),
            kind: Some("2".into()),
            value: if link.down { "2" } else { "1" }.into(),
        });
        values.entries.push(ValueSpec {
            oid: oid(IF_LAST_CHANGE),
            kind: Some("67".into()),
            value: link.changed.to_string(),
        });
    }
    values
}

/// The links after `faults` at sysUpTime `now_ticks`: a link that goes down
/// or comes up gets its change time; the others keep theirs. The second
/// value lists the changes `(ifIndex, down)`, for the notifications.
pub fn apply_links(
    links: &BTreeMap<u32, Link>,
    faults: &Faults,
    now_ticks: u32,
) -> (BTreeMap<u32, Link>, Vec<(u32, bool)>) {
    let mut next = links.clone();
    let mut changes = Vec::new();
    for &index in &faults.links_down {
        if !links.get(&index).is_some_and(|l| l.down) {
            next.insert(
                index,
                Link {
                    down: true,
                    changed: now_ticks,
                },
            );
            changes.push((index, true));
        }
    }
    for (&index, link) in links {
        if link.down && !faults.links_down.contains(&index) {
            next.insert(
                index,
                Link {
                    down: false,
                    changed: now_ticks,
                },
            );
            changes.push((index, false));
        }
    }
    (next, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hang_and_a_reboot_drop_everything_and_latency_stays_in_its_band() {
        let now = Instant::now();
        let mut b = Behaviour::new(7);
        assert!(!b.active());
        assert_eq!(b.fate(now), Fate::Answer);
        b.deaf_until(now + Duration::from_secs(2));
        assert_eq!(b.fate(now + Duration::from_secs(1)), Fate::Drop);
        assert_eq!(b.fate(now + Duration::from_secs(2)), Fate::Answer);
        assert!(!b.active(), "the outage is over");
        b.set(&Faults {
            hang: true,
            ..Faults::default()
        });
        assert!((0..100).all(|_| b.fate(now) == Fate::Drop));
        b.set(&Faults {
            latency_ms: Some((200, 50)),
            ..Faults::default()
        });
        for _ in 0..1000 {
            match b.fate(now) {
                Fate::Delay(d) => assert!((150..=250).contains(&d.as_millis()), "{d:?}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn loss_drops_about_its_share() {
        let now = Instant::now();
        let mut b = Behaviour::new(42);
        b.set(&Faults {
            loss_percent: 30,
            ..Faults::default()
        });
        let dropped = (0..10_000).filter(|_| b.fate(now) == Fate::Drop).count();
        assert!((2_700..3_300).contains(&dropped), "{dropped}");
        b.set(&Faults {
            loss_percent: 100,
            ..Faults::default()
        });
        assert!((0..100).all(|_| b.fate(now) == Fate::Drop));
    }

    #[test]
    fn links_change_once_and_keep_their_change_time() {
        let down = |l: &[u32]| Faults {
            links_down: l.to_vec(),
            ..Faults::default()
        };
        let (links, changes) = apply_links(&BTreeMap::new(), &down(&[3]), 100);
        assert_eq!(changes, vec![(3, true)]);
        // The same faults again change nothing.
        let (links, changes) = apply_links(&links, &down(&[3, 5]), 200);
        assert_eq!(changes, vec![(5, true)]);
        assert_eq!(links[&3].changed, 100);
        let (links, changes) = apply_links(&links, &down(&[5]), 300);
        assert_eq!(changes, vec![(3, false)]);
        assert_eq!(
            links[&3],
            Link {
                down: false,
                changed: 300
            }
        );
        let values = link_values(&Values::default(), &links);
        let mut oper3 = IF_OPER_STATUS.to_vec();
        oper3.push(3);
        let v = values.entries.iter().find(|v| v.oid == oper3).unwrap();
        assert_eq!(v.value, "1");
        assert_eq!(values.entries.len(), 4);
    }
}
