//! Where a process's serving thread runs: it leaves a CPU it shares with
//! the task that sends it its requests, one datagram at a time.
//!
//! A packed process asleep while a load walks the other processes' devices
//! is woken by the datagrams of the next walk, in the softirq of the task
//! that sends them. With every CPU busy at that moment (the process that
//! served the walk so far still answers its last requests), the scheduler
//! places it on the sender's CPU, and there they stay: each answer wakes
//! the sender, each request the server, and the one woken takes the CPU
//! from the other at once, so the two trade one CPU a datagram at a time
//! (a context switch each) while the CPU the previous process leaves sits
//! idle. Nothing moves them: the CPU that goes idle finds one runnable
//! task at a time on the other, and a task that has just run is not taken
//! from the CPU it ran on. A single process kept busy for long is balanced
//! away from its sender early; each of a fleet's processes, woken for a few
//! milliseconds at a time, is not. (A scheduler trace of the spread load
//! of `bench/run`, two vCPUs with the load generator on the same host: the
//! machine was idle a fifth of the time, and two thirds of that idle time
//! fell in such spells.)
//!
//! The serving thread notices it from its context switches: dozens in a
//! millisecond of serving (a switch per datagram or two), where a thread
//! with a CPU of its own is switched out only when it runs out of
//! requests. It then moves itself to another CPU its affinity allows
//! (allowing every CPU but this one for a moment, which migrates it, then
//! all of them again); from there each wake-up of the sender finds the
//! sender's own CPU idle and stays on it, and the two serve in parallel.
//! A thread allowed one CPU only (a pinned fleet) never moves, and a
//! thread moves at most once in [`MOVE_EVERY`]. A thread asked that often
//! one request at a time by a sender on another CPU moves too, for
//! nothing but a migration's cost (tens of microseconds) at most 20 times
//! a second: the kernel does not say which task woke it, and a datagram's
//! receiving CPU (`SO_INCOMING_CPU`) is kept for connected sockets only.
//! Two tasks that trade a CPU a batch at a time (a few switches a
//! millisecond) are not told apart from a thread serving alone: they
//! stay until the scheduler balances them.

use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::unistd::Pid;

/// Least serving time between two looks at the thread's context switches.
const LOOK_EVERY: Duration = Duration::from_millis(1);
/// Longest span a look compares: the switches of a longer one (a process
/// woken after a sleep) say nothing of now, they only start the next span.
const SPAN_AT_MOST: Duration = Duration::from_millis(10);
/// Context switches per millisecond of a span that say the CPU is traded
/// with the sender a datagram at a time (a switch every 10–30 µs): a
/// thread serving alone under load is switched a few times a millisecond
/// at most (once per batch it drains).
const TRADED_PER_MS: i64 = 32;
/// Least time between two moves: if every CPU is shared, moving does not
/// help, and the thread must not keep trying.
const MOVE_EVERY: Duration = Duration::from_millis(50);

/// One serving thread's record of its context switches and moves.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// When the current span started, and the thread's context switches
    /// then (`None` until the first look).
    since: Option<(Instant, i64)>,
    moved: Option<Instant>,
}

impl Placement {
    /// Called by the serving thread after each round it served: it moves
    /// to another CPU if it traded its own with another task lately, a
    /// datagram at a time. True if it moved.
    pub(crate) fn served(&mut self) -> bool {
        let now = Instant::now();
        if self
            .since
            .is_some_and(|(start, _)| now.duration_since(start) < LOOK_EVERY)
        {
            return false;
        }
        let Some(switches) = context_switches() else {
            return false;
        };
        if !self.should_move(now, switches) {
            return false;
        }
        let moved = move_away();
        // The switches of the move are not the sender's.
        if let Some(switches) = context_switches() {
            self.since = Some((Instant::now(), switches));
        }
        moved
    }

    /// Whether a thread that had made `switches` context switches at `now`
    /// should move (then it counts as moved), starting the next span.
    fn should_move(&mut self, now: Instant, switches: i64) -> bool {
        let Some((start, then)) = self.since.replace((now, switches)) else {
            return false;
        };
        let span = now.duration_since(start);
        // TRADED_PER_MS or more a millisecond, in nanoseconds to stay exact.
        let traded = (LOOK_EVERY..=SPAN_AT_MOST).contains(&span)
            && i128::from(switches - then) * 1_000_000
                >= i128::from(TRADED_PER_MS) * span.as_nanos() as i128;
        if !traded
            || self
                .moved
                .is_some_and(|m| now.duration_since(m) < MOVE_EVERY)
        {
            return false;
        }
        self.moved = Some(now);
        true
    }
}

/// The calling thread's context switches so far, voluntary (it waited)
/// and involuntary (it was preempted).
fn context_switches() -> Option<i64> {
    getrusage(UsageWho::RUSAGE_THREAD)
        .ok()
        .map(|u| u.voluntary_context_switches() + u.involuntary_context_switches())
}

/// Moves the calling thread to another CPU its affinity allows, keeping
/// that affinity: false if it allows this CPU only, or the move failed.
fn move_away() -> bool {
    let this_thread = Pid::from_raw(0);
    let (Ok(allowed), Ok(here)) = (sched_getaffinity(this_thread), sched_getcpu()) else {
        return false;
    };
    let mut elsewhere = allowed;
    if elsewhere.unset(here).is_err() || cpus(&elsewhere).is_empty() {
        return false;
    }
    // Allowing every CPU but this one migrates the thread at once.
    let moved = sched_setaffinity(this_thread, &elsewhere).is_ok();
    if sched_setaffinity(this_thread, &allowed).is_err() {
        tracing::warn!("could not restore the serving thread's CPU affinity");
    }
    moved && sched_getcpu().is_ok_and(|now| now != here)
}

/// The CPUs in `set`.
fn cpus(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_thread_switched_32_times_a_millisecond_moves_at_most_once_in_a_while() {
        let t0 = Instant::now();
        let mut p = Placement::default();
        assert!(!p.should_move(t0, 100), "the first look only starts a span");
        assert!(!p.should_move(t0 + ms(2), 100 + 63), "one switch short");
        assert!(p.should_move(t0 + ms(4), 163 + 64));
        // Moved: not again before MOVE_EVERY, however many switches.
        let at = t0 + ms(4);
        assert!(!p.should_move(at + ms(2), 1_000));
        assert!(!p.should_move(at + MOVE_EVERY - ms(1), 2_000));
        assert!(p.should_move(at + MOVE_EVERY + ms(1), 2_000 + 64));
    }

    #[test]
    fn a_span_says_something_from_a_millisecond_to_ten() {
        let t0 = Instant::now();
        let mut p = Placement::default();
        assert!(!p.should_move(t0, 0));
        assert!(
            !p.should_move(t0 + Duration::from_micros(500), 1_000),
            "shorter than a look"
        );
        // Woken after a sleep: the span is too long to say anything; the
        // next one starts there.
        let mut r = Placement::default();
        assert!(!r.should_move(t0, 0));
        assert!(!r.should_move(t0 + SPAN_AT_MOST + ms(1), 10_000));
        assert!(r.should_move(t0 + SPAN_AT_MOST + ms(2), 10_000 + 32));
    }

    fn only(cpu: usize) -> CpuSet {
        let mut set = CpuSet::new();
        set.set(cpu).expect("cpu in range");
        set
    }

    fn pin(set: &CpuSet) {
        sched_setaffinity(Pid::from_raw(0), set).expect("set the affinity");
    }

    /// On a thread of its own, placed on CPU `cpu` and then allowed
    /// `allowed`: serves 300 requests of a sender pinned to the same CPU,
    /// one in flight (the two trade the CPU a datagram at a time), looking
    /// after the first and the last. Whether it moved, the CPU it ran on
    /// right before the last look and right after, and its affinity at the
    /// end.
    fn trade_and_look(cpu: usize, allowed: CpuSet) -> (bool, usize, usize, Vec<usize>) {
        std::thread::spawn(move || {
            pin(&only(cpu));
            pin(&allowed);
            let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = server.local_addr().expect("addr");
            let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let from = client.local_addr().expect("addr");
            let asking = std::thread::spawn(move || {
                pin(&only(cpu));
                let mut b = [0u8; 8];
                for _ in 0..300 {
                    client.send_to(b"get", to).expect("send");
                    client.recv(&mut b).expect("answer");
                }
            });
            let mut p = Placement::default();
            let mut b = [0u8; 8];
            let (mut before, mut after) = (cpu, cpu);
            let mut moved = false;
            for i in 0..300 {
                server.recv(&mut b).expect("request");
                server.send_to(b"ok", from).expect("answer");
                if i == 0 {
                    assert!(!p.served(), "the first look only starts a span");
                } else if i == 299 {
                    before = sched_getcpu().expect("cpu");
                    moved = p.served();
                    after = sched_getcpu().expect("cpu");
                }
            }
            asking.join().expect("the sender");
            let affinity = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
            (moved, before, after, cpus(&affinity))
        })
        .join()
        .expect("the serving thread panicked")
    }

    #[test]
    fn a_thread_trading_its_cpu_with_its_sender_moves_to_another_and_keeps_its_affinity() {
        let all = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
        if cpus(&all).len() < 2 {
            eprintln!("skipped: this process may run on one CPU only");
            return;
        }
        let cpu = cpus(&all)[0];
        // A busy machine may stretch the trade past the longest span, or
        // the scheduler move the thread itself: a few tries.
        let mut tries = Vec::new();
        for _ in 0..5 {
            let (moved, before, after, affinity) = trade_and_look(cpu, all);
            assert_eq!(affinity, cpus(&all), "the affinity is kept");
            if moved {
                assert_ne!(before, after, "moved, but still on CPU {after}");
                return;
            }
            tries.push(before);
        }
        panic!("never moved in five tries (on CPUs {tries:?} at the look)");
    }

    #[test]
    fn a_thread_allowed_one_cpu_stays_on_it() {
        let cpu = sched_getcpu().expect("cpu");
        let (moved, before, after, affinity) = trade_and_look(cpu, only(cpu));
        assert!(!moved);
        assert_eq!((before, after), (cpu, cpu));
        assert_eq!(affinity, vec![cpu]);
    }

    #[test]
    fn a_thread_with_a_cpu_of_its_own_stays() {
        let moved = std::thread::spawn(|| {
            let mut p = Placement::default();
            assert!(!p.served());
            // Busy for 3 ms without waiting: a switch or two at most.
            let start = Instant::now();
            while start.elapsed() < ms(3) {
                std::hint::spin_loop();
            }
            p.served()
        })
        .join()
        .expect("the test thread panicked");
        assert!(!moved);
    }
}
