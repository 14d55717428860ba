//! Who runs beside whom. libtest runs the tests of this one binary on
//! parallel threads (as many as the machine has cores, two in CI).
//!
//! - A test that loads the machine — the chaos run under a 2,000 req/s load
//!   that must lose no request, fleets of hundreds of agents, the
//!   27,000-object walk — or whose timing cannot take a loaded machine (an
//!   inform that must be acknowledged within 200 ms) runs alone: it takes
//!   [`alone`] first thing.
//! - Some groups of tests run beside each other only, as they did when each
//!   group was a test binary of its own, and beside nothing else: they take
//!   [`alone_among`] with the group's name. The crash tests (their load is
//!   restart churn and pauses, their checks are about what survives
//!   `kill -9`, not about time), and the SNMPv3 client matrices and walk.
//! - Every other test that starts a process holds a light slot while it
//!   runs: [`Process::spawn`] takes one by itself, so every fleet,
//!   supervisor, snmptrapd and follower holds one; a test that loads the
//!   machine with one-shot commands only (the capacity check of 120,000
//!   agents) takes [`light`]. Light tests run beside each other, never beside
//!   one of the above, whose load would starve their timers (heartbeats of
//!   100 ms, retries of 1 s). Tests of a few milliseconds that start no
//!   process need no slot.
//!
//! One process-wide lock: light holds are shared; a test running alone
//! excludes every other; siblings exclude every test but each other. A test
//! waiting to run alone (or among its siblings) keeps new light tests from
//! starting, so a stream of light tests cannot starve it. A test takes its
//! place once, on its own thread: further slots it takes (a fleet, then a
//! snmptrapd) only count, so they cannot queue behind a waiting test and
//! deadlock. That is also why [`alone`] comes before anything that takes a
//! light slot, and why the threads a test spawns take none (they start no
//! [`Process`]).
//!
//! [`Process::spawn`]: super::Process::spawn
//! [`Process`]: super::Process

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// What a test asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Light,
    /// Beside no other test (`None`) or beside the tests of one group only.
    Alone(Option<&'static str>),
}

/// Who runs now.
#[derive(Default)]
struct Machine {
    light: usize,
    /// The group running alone (`Some(None)`: one test, alone), and how
    /// many of its tests run.
    alone: Option<(Option<&'static str>, usize)>,
    /// Tests waiting to run alone or among their siblings.
    waiting: usize,
}

static MACHINE: Mutex<Machine> = Mutex::new(Machine {
    light: 0,
    alone: None,
    waiting: 0,
});
static CHANGED: Condvar = Condvar::new();

fn machine() -> MutexGuard<'static, Machine> {
    MACHINE.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The place this test's thread holds, and how many of its slots share
    /// it.
    static HELD: RefCell<Option<(Place, usize)>> = const { RefCell::new(None) };
}

/// A test's place on the machine, given back when the last slot its thread
/// holds is dropped. Bound to the thread that took it.
#[must_use = "the slot is given back when dropped"]
pub struct Slot {
    _thread_bound: PhantomData<*const ()>,
}

/// A place beside other light tests (never beside one that runs alone).
pub fn light() -> Slot {
    take(Place::Light)
}

/// The whole machine, for a test whose load would starve any other, or
/// whose timing cannot take a loaded machine.
pub fn alone() -> Slot {
    take(Place::Alone(None))
}

/// The machine shared with the tests of `group` only.
pub fn alone_among(group: &'static str) -> Slot {
    take(Place::Alone(Some(group)))
}

fn take(place: Place) -> Slot {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if let Some((had, n)) = held.as_mut() {
            assert!(
                place == Place::Light || place == *had,
                "a test takes {place:?} first, before it starts any process (it holds {had:?})"
            );
            *n += 1;
        } else {
            enter(place);
            *held = Some((place, 1));
        }
    });
    Slot {
        _thread_bound: PhantomData,
    }
}

/// Waits until `place` may be taken, and takes it.
fn enter(place: Place) {
    let mut m = machine();
    match place {
        Place::Light => {
            while m.alone.is_some() || m.waiting > 0 {
                m = CHANGED.wait(m).unwrap_or_else(PoisonError::into_inner);
            }
            m.light += 1;
        }
        Place::Alone(group) => {
            m.waiting += 1;
            let joinable = |m: &Machine| match m.alone {
                None => m.light == 0,
                Some((running, _)) => group.is_some() && running == group,
            };
            while !joinable(&m) {
                m = CHANGED.wait(m).unwrap_or_else(PoisonError::into_inner);
            }
            m.waiting -= 1;
            let n = m.alone.map_or(0, |(_, n)| n);
            m.alone = Some((group, n + 1));
        }
    }
}

/// Gives `place` back.
fn leave(place: Place) {
    let mut m = machine();
    match place {
        Place::Light => m.light -= 1,
        Place::Alone(_) => {
            m.alone = match m.alone {
                Some((group, n)) if n > 1 => Some((group, n - 1)),
                _ => None,
            };
        }
    }
    CHANGED.notify_all();
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some((place, n)) = held.as_mut() {
                *n -= 1;
                if *n == 0 {
                    leave(*place);
                    *held = None;
                }
            }
        });
    }
}
