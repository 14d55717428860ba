//! What faults an agent has at a point of its scenarios' time, as if it
//! had run all along: what a cluster node gives back to an agent that
//! moves in (the scenarios' task the scenarios' faults, the node those
//! injected by hand). Pure.

use std::time::{Duration, Instant};

use agentcluster_conf::{Fault, Scenario, When};

use super::{first_from, offset};
use crate::process::faults::DeviceFaults;

/// A fault request an operator made of one agent by hand, on the time
/// axis of the scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandEvent {
    /// When, from time zero (the push).
    pub at: Duration,
    /// What: a fault, or `clear`, or `link-up`.
    pub fault: Fault,
    /// When it ends by itself, from time zero; `None`: when cleared.
    pub ends: Option<Duration>,
}

/// Where a fault an agent has comes from ([`in_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The scenario of this index.
    Scenario(usize),
    /// The hand event of this index.
    Hand(usize),
}

/// The offset of the last occurrence of `s` on agent `name` due before
/// `skip` after time zero; `None` when none is.
fn last_before(s: &Scenario, name: &str, skip: Duration) -> Option<Duration> {
    // The one before the first due from `skip` on, or the only one of `at`.
    let k = match (first_from(s, name, skip), s.when) {
        (Some((k, _)), _) => k.checked_sub(1)?,
        (None, When::At(_)) => 0,
        (None, When::Every(_)) => return None,
    };
    offset(s, name, k).filter(|d| *d < skip)
}

/// The faults that the scenarios `matching` (indexes into `scenarios`, the
/// ones whose `agents` match `name`) and the requests `hand` made by hand
/// leave agent `name` with `skip` after time zero, as the agent's faults
/// would be had it run all along: each with where it comes from and its
/// end from time zero (`None`: until cleared).
///
/// They are replayed in time order (for a tie: the scenarios in file order,
/// as they fire, then the requests by hand) on a device's faults as the
/// unit keeps them ([`DeviceFaults`]): a fault's place holds the last
/// fault injected there (one per kind, one per interface for
/// `link-down`) until its `for` is over; `clear` empties every place and
/// `link-up` its interface's. So only each scenario's last occurrence
/// before `skip` can matter. A `reboot` is not given again.
pub fn in_progress(
    scenarios: &[Scenario],
    matching: &[usize],
    name: &str,
    skip: Duration,
    hand: &[HandEvent],
) -> Vec<(Origin, Option<Duration>)> {
    let mut events: Vec<(Duration, u8, usize, Fault, Option<Duration>)> = matching
        .iter()
        .filter_map(|&si| {
            let s = &scenarios[si];
            let at = last_before(s, name, skip)?;
            Some((
                at,
                0,
                si,
                s.fault,
                s.duration.and_then(|d| at.checked_add(d)),
            ))
        })
        .chain(
            hand.iter()
                .enumerate()
                .filter(|(_, h)| h.at < skip)
                .map(|(i, h)| (h.at, 1, i, h.fault, h.ends)),
        )
        .collect();
    events.sort_unstable_by_key(|&(at, by, i, ..)| (at, by, i));
    // The device's faults as the unit keeps them, on a clock whose zero
    // is the scenarios' time zero.
    let zero = Instant::now();
    let mut device = DeviceFaults::default();
    for &(at, _, _, fault, ends) in &events {
        if !matches!(fault, Fault::Reboot(_)) {
            device.apply(fault, ends.map(|e| e.saturating_sub(at)), zero + at);
        }
    }
    device.expire(zero + skip);
    // Each fault held came from the last request of its place, the last
    // one that asked for it.
    device
        .active()
        .iter()
        .filter_map(|a| {
            let &(_, by, i, ..) = events.iter().rev().find(|e| e.3 == a.fault)?;
            let origin = if by == 0 {
                Origin::Scenario(i)
            } else {
                Origin::Hand(i)
            };
            Some((origin, a.until.map(|u| u.saturating_duration_since(zero))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an agent moving in gets is what its scenarios' last
    /// occurrences left, replayed in order: a later fault of a place
    /// replaces the earlier, `link-up` ends its interface's `link-down`,
    /// `clear` ends everything before it (file order within one instant),
    /// a `for` that is over ends its fault, a reboot is not given again,
    /// and scenarios that do not match the agent do not count.
    #[test]
    fn an_agent_moving_in_gets_what_its_scenarios_last_left() {
        let at = |fault: Fault, secs: u64, lasts: Option<u64>| Scenario {
            agents: "*".into(),
            fault,
            when: When::At(Duration::from_secs(secs)),
            duration: lasts.map(Duration::from_secs),
            jitter: Duration::ZERO,
            seed: 0,
        };
        let every = |fault: Fault, secs: u64, lasts: Option<u64>| Scenario {
            when: When::Every(Duration::from_secs(secs)),
            ..at(fault, secs, lasts)
        };
        let latency = Fault::Latency {
            base: Duration::from_millis(5),
            jitter: Duration::ZERO,
        };
        let scenarios = [
            at(Fault::Loss(10), 5, None),               // 0
            at(Fault::LinkDown(2), 10, None),           // 1
            every(Fault::LinkDown(3), 20, None),        // 2: 20, 40, …
            at(Fault::LinkUp(2), 30, None),             // 3
            every(Fault::Hang, 10, Some(2)),            // 4: 10–12, 20–22, …
            at(Fault::Clear, 50, None),                 // 5
            at(latency, 50, None),                      // 6: after the clear
            at(Fault::Reboot(Duration::ZERO), 8, None), // 7
            every(Fault::Loss(50), 100, Some(1)),       // 8: 100–101, …
            at(Fault::Hang, 1, None),                   // 9: left out below
        ];
        let mut all = Vec::new();
        crate::fleet::scenarios::Matcher::new(&scenarios).matching("sw-1", &mut all);
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // As if scenario 9 did not match sw-1.
        let matching: Vec<usize> = (0..9).collect();
        let left = |secs: u64| {
            by_scenario(in_progress(
                &scenarios,
                &matching,
                "sw-1",
                Duration::from_secs(secs),
                &[],
            ))
        };
        let s = |n: u64| Some(Duration::from_secs(n));
        assert_eq!(left(5), []);
        assert_eq!(left(9), [(0, None)]);
        assert_eq!(left(11), [(0, None), (1, None), (4, s(12))]);
        assert_eq!(left(13), [(0, None), (1, None)]);
        assert_eq!(left(31), [(0, None), (2, None), (4, s(32))]);
        assert_eq!(left(55), [(6, None)]);
        assert_eq!(
            left(100),
            [(6, None), (2, None)],
            "the hang of 90 s is over"
        );
        assert_eq!(left(101), [(6, None), (2, None), (4, s(102))]);
        assert_eq!(left(100_000), [(6, None), (2, None)]);
        // A loss of its own place replaces the earlier loss for its `for`,
        // and then there is none.
        let two = [
            at(Fault::Loss(10), 5, None),
            at(Fault::Loss(50), 6, Some(4)),
        ];
        let both = [0, 1];
        let left = |secs| {
            by_scenario(in_progress(
                &two,
                &both,
                "sw-1",
                Duration::from_secs(secs),
                &[],
            ))
        };
        assert_eq!(left(7), [(1, s(10))]);
        assert_eq!(left(11), []);
    }

    /// [`in_progress`] of scenarios only: (scenario, end).
    fn by_scenario(held: Vec<(Origin, Option<Duration>)>) -> Vec<(usize, Option<Duration>)> {
        held.into_iter()
            .map(|(origin, ends)| match origin {
                Origin::Scenario(si) => (si, ends),
                Origin::Hand(i) => panic!("no request by hand was made: {i}"),
            })
            .collect()
    }

    /// Requests by hand count with the scenarios' occurrences, in time
    /// order: a later one of a place replaces a scenario's fault, `clear`
    /// and `link-up` by hand end them, and a scenario's later fault
    /// replaces one by hand.
    #[test]
    fn requests_by_hand_and_scenarios_replace_each_other_in_time_order() {
        let at = |fault: Fault, secs: u64| Scenario {
            agents: "*".into(),
            fault,
            when: When::At(Duration::from_secs(secs)),
            duration: None,
            jitter: Duration::ZERO,
            seed: 0,
        };
        let scenarios = [
            at(Fault::LinkDown(2), 10),
            at(Fault::Loss(10), 10),
            at(Fault::Hang, 30),
        ];
        let s = Duration::from_secs;
        let by_hand = |fault: Fault, secs: u64, ends: Option<u64>| HandEvent {
            at: s(secs),
            fault,
            ends: ends.map(s),
        };
        let latency = Fault::Latency {
            base: Duration::from_millis(5),
            jitter: Duration::ZERO,
        };
        let hand = [
            by_hand(latency, 5, None),
            by_hand(Fault::Loss(50), 20, None),
            by_hand(Fault::LinkUp(2), 25, None),
        ];
        let all = [0, 1, 2];
        let left = |hand: &[HandEvent], secs| in_progress(&scenarios, &all, "sw-0", s(secs), hand);
        assert_eq!(
            left(&hand, 40),
            [
                (Origin::Hand(0), None),
                (Origin::Hand(1), None),
                (Origin::Scenario(2), None)
            ]
        );
        // Before the requests, the scenarios' faults.
        assert_eq!(
            left(&hand, 15),
            [
                (Origin::Hand(0), None),
                (Origin::Scenario(0), None),
                (Origin::Scenario(1), None)
            ]
        );
        // A clear by hand ends everything before it.
        let cleared = [
            by_hand(Fault::Loss(50), 20, None),
            by_hand(Fault::Clear, 35, None),
        ];
        assert_eq!(left(&cleared, 40), []);
        // A scenario's later hang replaces the hang by hand.
        let hang = [by_hand(Fault::Hang, 12, Some(112))];
        assert_eq!(
            left(&hang, 40),
            [
                (Origin::Scenario(0), None),
                (Origin::Scenario(1), None),
                (Origin::Scenario(2), None)
            ]
        );
        assert_eq!(
            left(&hang, 20),
            [
                (Origin::Scenario(0), None),
                (Origin::Scenario(1), None),
                (Origin::Hand(0), Some(s(112)))
            ]
        );
    }
}
