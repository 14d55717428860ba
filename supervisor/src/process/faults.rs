//! The faults of one device as the supervisor keeps them: which are active,
//! until when, and what each operator request or expiry changes. Pure (the
//! clock is passed in); the unit turns the changes into events and into the
//! message that tells the agent process ([`DeviceFaults::to_agent`]).
//! Faults are state of the device, not of its process: the unit keeps them
//! across restarts of the process and sends them with every start.

use std::time::{Duration, Instant};

use agentcluster_agent::faults::Faults;
use agentcluster_conf::{Fault, format_duration};

/// One active fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    /// What it is (never `LinkUp` or `Clear`).
    pub fault: Fault,
    /// When it expires by itself (`--for`, `for:`, a reboot's outage).
    pub until: Option<Instant>,
}

/// Why a fault ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its time was up.
    Expired,
    /// `clear`.
    Cleared,
    /// `link-up` of its interface.
    LinkUp,
    /// A fault of the same kind (and interface) took its place.
    Replaced,
}

impl Ended {
    /// For the event's reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Expired => "expired",
            Ended::Cleared => "cleared",
            Ended::LinkUp => "link up",
            Ended::Replaced => "replaced",
        }
    }
}

/// What a request or an expiry changed, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A fault began, for this long if it expires by itself.
    Injected(Fault, Option<Duration>),
    /// A fault ended.
    Cleared(Fault, Ended),
}

impl Change {
    /// The event's reason: the fault as `KIND [ARG]`, then how long or
    /// why it ended.
    pub fn reason(&self) -> String {
        match self {
            // A reboot's outage is part of it, not a duration of its own.
            Change::Injected(f, None) | Change::Injected(f @ Fault::Reboot(_), _) => f.to_string(),
            Change::Injected(f, Some(d)) => format!("{f}, for {}", format_duration(*d)),
            Change::Cleared(f @ Fault::Reboot(_), Ended::Expired) => format!("{f}, up again"),
            Change::Cleared(f, why) => format!("{f}, {}", why.as_str()),
        }
    }
}

/// Every active fault of one device, in the order they began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFaults {
    active: Vec<Active>,
}

/// Whether two faults occupy the same place (one replaces the other).
fn same_place(a: Fault, b: Fault) -> bool {
    match (a, b) {
        (Fault::LinkDown(x), Fault::LinkDown(y)) => x == y,
        _ => a.kind() == b.kind(),
    }
}

impl DeviceFaults {
    /// Applies `fault` at `now`, expiring after `duration` if given.
    pub fn apply(&mut self, fault: Fault, duration: Option<Duration>, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        match fault {
            Fault::Clear => {
                for a in self.active.drain(..) {
                    changes.push(Change::Cleared(a.fault, Ended::Cleared));
                }
            }
            Fault::LinkUp(i) => {
                let down = Fault::LinkDown(i);
                if let Some(at) = self.active.iter().position(|a| a.fault == down) {
                    self.active.remove(at);
                    changes.push(Change::Cleared(down, Ended::LinkUp));
                }
            }
            _ => {
                if let Some(at) = self.active.iter().position(|a| same_place(a.fault, fault)) {
                    let old = self.active.remove(at);
                    changes.push(Change::Cleared(old.fault, Ended::Replaced));
                }
                self.active.push(Active {
                    fault,
                    until: duration.map(|d| now + d),
                });
                changes.push(Change::Injected(fault, duration));
            }
        }
        changes
    }

    /// Removes the faults whose time is up at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        self.active.retain(|a| {
            let over = a.until.is_some_and(|t| t <= now);
            if over {
                changes.push(Change::Cleared(a.fault, Ended::Expired));
            }
            !over
        });
        changes
    }

    /// When the next fault expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.active.iter().filter_map(|a| a.until).min()
    }

    /// The active faults.
    pub fn active(&self) -> &[Active] {
        &self.active
    }

    /// What the agent process applies (a reboot is carried out apart: it
    /// is a restart, not a standing behaviour).
    pub fn to_agent(&self) -> Faults {
        let mut f = Faults::default();
        for a in &self.active {
            match a.fault {
                Fault::Hang => f.hang = true,
                Fault::Loss(p) => f.loss_percent = p,
                Fault::Latency { base, jitter } => {
                    f.latency_ms = Some((base.as_millis() as u64, jitter.as_millis() as u64));
                }
                Fault::LinkDown(i) => f.links_down.push(i),
                Fault::Reboot(_) | Fault::LinkUp(_) | Fault::Clear => {}
            }
        }
        f.links_down.sort_unstable();
        f
    }
}

/// Active faults for `status`: `KIND [ARG]`, with the time left when they
/// expire (`hang (12s left)`).
pub fn describe(active: &[Active], now: Instant) -> Vec<String> {
    active
        .iter()
        .map(|a| match a.until {
            Some(t) => format!(
                "{} ({} left)",
                a.fault,
                format_duration(round_up(t.saturating_duration_since(now)))
            ),
            None => a.fault.to_string(),
        })
        .collect()
}

/// To the next whole second (a countdown that shows `0s` is gone).
fn round_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn faults_replace_their_kind_and_links_are_per_interface() {
        let t0 = Instant::now();
        let mut d = DeviceFaults::default();
        assert_eq!(
            d.apply(Fault::Hang, None, t0),
            vec![Change::Injected(Fault::Hang, None)]
        );
        d.apply(Fault::LinkDown(3), None, t0);
        d.apply(Fault::LinkDown(5), Some(secs(10)), t0);
        d.apply(Fault::Loss(20), None, t0);
        assert_eq!(
            d.apply(Fault::Loss(50), None, t0),
            vec![
                Change::Cleared(Fault::Loss(20), Ended::Replaced),
                Change::Injected(Fault::Loss(50), None)
            ]
        );
        let f = d.to_agent();
        assert!(f.hang);
        assert_eq!((f.loss_percent, f.links_down.clone()), (50, vec![3, 5]));
        assert_eq!(
            d.apply(Fault::LinkUp(3), None, t0),
            vec![Change::Cleared(Fault::LinkDown(3), Ended::LinkUp)]
        );
        assert_eq!(d.apply(Fault::LinkUp(3), None, t0), vec![], "already up");
        assert_eq!(d.to_agent().links_down, vec![5]);
        assert_eq!(
            describe(d.active(), t0 + Duration::from_millis(2500)),
            vec!["hang", "link-down 5 (8s left)", "loss 50%"]
        );
        let cleared = d.apply(Fault::Clear, None, t0);
        assert_eq!(cleared.len(), 3);
        assert!(
            cleared
                .iter()
                .all(|c| matches!(c, Change::Cleared(_, Ended::Cleared)))
        );
        assert!(d.to_agent().is_empty() && d.active().is_empty());
    }

    #[test]
    fn faults_expire_at_their_time_and_not_before() {
        let t0 = Instant::now();
        let mut d = DeviceFaults::default();
        d.apply(Fault::Hang, Some(secs(5)), t0);
        d.apply(
            Fault::Latency {
                base: Duration::from_millis(200),
                jitter: Duration::ZERO,
            },
            Some(secs(2)),
            t0,
        );
        d.apply(Fault::LinkDown(1), None, t0);
        assert_eq!(d.next_expiry(), Some(t0 + secs(2)));
        assert_eq!(d.expire(t0 + secs(1)), vec![]);
        let gone = d.expire(t0 + secs(2));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].reason(), "latency 200ms, expired");
        assert_eq!(d.next_expiry(), Some(t0 + secs(5)));
        assert_eq!(
            d.expire(t0 + secs(9)),
            vec![Change::Cleared(Fault::Hang, Ended::Expired)]
        );
        assert_eq!(d.next_expiry(), None, "the link stays down");
        assert_eq!(d.to_agent().links_down, vec![1]);
        assert_eq!(
            Change::Injected(Fault::LinkDown(2), Some(secs(10))).reason(),
            "link-down 2, for 10s"
        );
    }
}
