//! Who runs beside whom. libtest runs the tests of this one binary on
//! parallel threads (as many as the machine has cores, two in CI). A test
//! that loads the machine — the chaos run under a 2,000 req/s load that
//! must lose no request, the crash tests' `kill -9` loops, fleets of
//! hundreds of agents, the 27,000-object walks and the SNMPv3 matrices of
//! dozens of clients at once — or whose timing cannot take a loaded machine
//! (an inform that must be acknowledged within 200 ms) runs alone: it takes
//! [`alone`] first thing. Every other test that starts a process holds a
//! light slot while it runs: [`Process::spawn`] takes one by itself, so
//! every fleet, supervisor, snmptrapd and follower holds one, and a test
//! that loads the machine with one-shot commands only (the capacity check
//! of 120,000 agents) takes [`light`]. Light tests run beside each other,
//! never beside one that runs alone, whose load would starve their timers
//! (heartbeats of 100 ms, retries of 1 s); and the tests that run alone
//! never run beside each other. Tests of a few milliseconds that start no
//! process (parsers, `check` of a small file) need no slot.
//!
//! It is one process-wide `RwLock`: a light slot is a shared hold, [`alone`]
//! an exclusive one. The standard library's lock prefers writers, so a test
//! waiting to run alone is not starved by a stream of light ones. A test
//! takes the lock once, on its own thread: further slots it takes (a fleet,
//! then a snmptrapd) only count, so they cannot queue behind a test waiting
//! to run alone, which would deadlock. That is also why [`alone`] comes
//! before anything that takes a light slot, and why the threads a test
//! spawns take none (they start no [`Process`]).
//!
//! [`Process::spawn`]: super::Process::spawn
//! [`Process`]: super::Process

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// The guard is only held: dropping it gives the lock back.
enum Held {
    Light {
        _guard: RwLockReadGuard<'static, ()>,
    },
    Alone {
        _guard: RwLockWriteGuard<'static, ()>,
    },
}

thread_local! {
    /// What this test's thread holds, and how many of its slots share it.
    static HELD: RefCell<Option<(Held, usize)>> = const { RefCell::new(None) };
}

/// A test's place on the machine, given back when the last slot its thread
/// holds is dropped. Bound to the thread that took it.
#[must_use = "the slot is given back when dropped"]
pub struct Slot {
    _thread_bound: PhantomData<*const ()>,
}

/// A place beside other light tests (never beside one that runs alone).
pub fn light() -> Slot {
    take(false)
}

/// The whole machine, for a test whose load would starve any other, or
/// whose timing cannot take a loaded machine.
pub fn alone() -> Slot {
    take(true)
}

fn take(alone: bool) -> Slot {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        match held.as_mut() {
            Some((h, n)) => {
                assert!(
                    !alone || matches!(h, Held::Alone { .. }),
                    "a test takes alone() first, before it starts any process"
                );
                *n += 1;
            }
            None => {
                let h = if alone {
                    Held::Alone {
                        _guard: MACHINE.write().unwrap_or_else(PoisonError::into_inner),
                    }
                } else {
                    Held::Light {
                        _guard: MACHINE.read().unwrap_or_else(PoisonError::into_inner),
                    }
                };
                *held = Some((h, 1));
            }
        }
    });
    Slot {
        _thread_bound: PhantomData,
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some((_, n)) = held.as_mut() {
                *n -= 1;
                if *n == 0 {
                    *held = None;
                }
            }
        });
    }
}
