//! The load generator's engine: one thread, one UDP socket, a fixed window
//! of requests in flight. Each answer is matched to its request by
//! request-id (scrambled, so a responder that answers `rid+1` matches
//! nothing), checked, timed, and replaced by the next request at once.
//! Bounded by a request count and by a duration; timeouts are swept every
//! millisecond. Optionally a request that times out is sent again (same
//! request-id, same expected answer) up to `retries` times, and new
//! requests are paced to a rate.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::mmsg::Batch;
use crate::snmp::{self, Expect, Failure, Request, Scratch, Security};

/// How long one `recv` may block before timeouts are swept.
const POLL: Duration = Duration::from_millis(1);
/// Most datagrams per `sendmmsg`/`recvmmsg`.
const MAX_BATCH: usize = 64;
/// Failure descriptions kept for the report.
const SAMPLES: usize = 5;

/// Request-ids are a bijection of (slot, generation) on 31 bits.
const MASK: u32 = 0x7fff_ffff;
const MUL: u32 = 0x2545_f491;
const XOR: u32 = 0x5bd1_e995 & MASK;
const MUL_INV: u32 = {
    // Newton's iteration for the inverse of an odd number mod 2^32.
    let mut inv = MUL;
    let mut i = 0;
    while i < 5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(MUL.wrapping_mul(inv)));
        i += 1;
    }
    inv
};

fn scramble(n: u32) -> i32 {
    ((n.wrapping_mul(MUL) & MASK) ^ XOR) as i32
}

fn unscramble(rid: i64) -> Option<u32> {
    let r = u32::try_from(rid).ok().filter(|r| *r <= MASK)?;
    Some((r ^ XOR).wrapping_mul(MUL_INV) & MASK)
}

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Agents to load, in turn (one address family).
    pub targets: Vec<SocketAddr>,
    /// Requests in flight at once (1..=65536).
    pub inflight: usize,
    /// Most requests sent after the warm-up.
    pub count: Option<u64>,
    /// Longest sending time after the warm-up.
    pub duration: Option<Duration>,
    /// Sending before measuring starts: answers to requests sent in it are
    /// not counted.
    pub warmup: Duration,
    /// How long each try of a request waits for its answer.
    pub timeout: Duration,
    /// Tries after the first, on timeout: a request is a timeout only when
    /// all `1 + retries` tries went unanswered (a manager's retry budget).
    pub retries: u32,
    /// Most new requests per second (retransmissions not counted); `None`:
    /// as fast as the window allows. A steady load for tests that must not
    /// saturate the machine.
    pub rate: Option<f64>,
    /// Any datagram completes the oldest request (for the echo responder).
    pub expect_any: bool,
    /// Most datagrams per send or receive system call.
    pub batch: usize,
    /// Send unconnected even to a single target, as to many: two loads
    /// compared (one target against many) then cost the generator alike,
    /// where a connected socket would spare the one-target load a route
    /// lookup per datagram.
    pub unconnected: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u32,
    busy: bool,
    measured: bool,
    target: u32,
    /// The last try.
    sent: Instant,
    /// The first try: latency runs from here.
    first: Instant,
    /// Retransmissions of this request so far.
    tries: u32,
}

/// The measurements of one run; the body of a `load` record, so its field
/// names are keys the report reads.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Outcome {
    /// Requests sent, warm-up included (retransmissions not counted).
    pub sent: u64,
    /// Measured requests answered correctly.
    pub ok: u64,
    /// Measured answers that failed a check.
    pub failed: u64,
    /// `failed` by [`Failure::kind`].
    pub failures: BTreeMap<&'static str, u64>,
    /// The first few failures, described.
    pub samples: Vec<String>,
    /// Requests left unanswered after every try.
    pub timeouts: u64,
    /// Requests sent again after a timeout (one per retransmission).
    pub retransmits: u64,
    /// Requests answered after at least one retransmission.
    pub answered_after_retry: u64,
    /// Answers to requests that had already timed out (or duplicates).
    pub late: u64,
    /// Variable-bindings in the `ok` answers.
    pub varbinds: u64,
    /// From the end of the warm-up to the last good answer.
    pub seconds: f64,
    /// `ok` over `seconds`.
    pub requests_per_s: f64,
    /// `varbinds` over `seconds`.
    pub varbinds_per_s: f64,
    /// Median latency of good answers, from the first try, in µs.
    pub p50_us: f64,
    /// 99th percentile latency, in µs.
    pub p99_us: f64,
    /// Longest latency, in µs.
    pub max_us: f64,
    /// CPU time of this process (user + system) over wall time, in percent.
    pub client_cpu_pct: f64,
    #[serde(skip)]
    latencies_ns: Vec<u32>,
}

impl Outcome {
    fn fail(&mut self, f: &Failure, measured: bool) {
        if !measured {
            return;
        }
        self.failed += 1;
        *self.failures.entry(f.kind()).or_default() += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(f.to_string());
        }
    }

    fn finish(&mut self, seconds: f64) {
        self.seconds = seconds;
        if seconds > 0.0 {
            self.requests_per_s = self.ok as f64 / seconds;
            self.varbinds_per_s = self.varbinds as f64 / seconds;
        }
        self.latencies_ns.sort_unstable();
        let pick = |q: f64| -> f64 {
            let l = &self.latencies_ns;
            if l.is_empty() {
                return 0.0;
            }
            let i = ((l.len() as f64 - 1.0) * q).round() as usize;
            f64::from(l[i.min(l.len() - 1)]) / 1000.0
        };
        self.p50_us = pick(0.5);
        self.p99_us = pick(0.99);
        self.max_us = pick(1.0);
    }
}

/// A socket of the targets' address family (connected when there is one
/// target, so the kernel filters other senders and skips a route lookup).
pub fn socket_for(targets: &[SocketAddr]) -> io::Result<UdpSocket> {
    socket(targets, targets.len() == 1)
}

/// A socket of the targets' address family, connected to the first with
/// `connect`. Unconnected IPv4 sockets send with the don't-fragment bit
/// ([`agentcluster_agent::sys::dont_fragment`]: no IP ID drawn from the
/// kernel's table hashed by destination, a cache miss per datagram when
/// each goes to another address); requests are far smaller than any MTU.
fn socket(targets: &[SocketAddr], connect: bool) -> io::Result<UdpSocket> {
    let first = targets
        .first()
        .ok_or_else(|| io::Error::other("no target"))?;
    if targets.iter().any(|t| t.is_ipv4() != first.is_ipv4()) {
        return Err(io::Error::other(
            "targets mix IPv4 and IPv6; run one generator per family",
        ));
    }
    let sock = if first.is_ipv4() {
        UdpSocket::bind("0.0.0.0:0")?
    } else {
        UdpSocket::bind("[::]:0")?
    };
    if connect {
        sock.connect(first)?;
    } else if first.is_ipv4() {
        agentcluster_agent::sys::dont_fragment(&sock);
    }
    Ok(sock)
}

/// Runs a plan. `sec` wraps the messages, `req` is what every request
/// asks, `expect` what every answer must contain.
pub fn run(plan: &Plan, sec: &mut Security, req: &Request, expect: &Expect) -> io::Result<Outcome> {
    let inflight = plan.inflight.clamp(1, 1 << 16);
    let gens = (MASK / inflight as u32).max(2);
    let connected = plan.targets.len() == 1 && !plan.unconnected;
    let sock = socket(&plan.targets, connected)?;
    sock.set_read_timeout(Some(POLL))?;
    let mut batch = Batch::new(inflight.min(plan.batch.clamp(1, MAX_BATCH)));

    let cpu0 = cpu_time();
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let stop_at = plan.duration.map(|d| measure_from + d);
    let mut slots = vec![
        Slot {
            generation: 0,
            busy: false,
            measured: false,
            target: 0,
            sent: start,
            first: start,
            tries: 0,
        };
        inflight
    ];
    let mut free: Vec<usize> = (0..inflight).rev().collect();
    let mut pending: Vec<usize> = Vec::with_capacity(MAX_BATCH);
    // Timed-out requests waiting to be sent again (slot, generation),
    // oldest first.
    let mut resend: VecDeque<(usize, u32)> = VecDeque::new();
    let mut busy = 0usize;
    let mut out = Outcome {
        latencies_ns: Vec::with_capacity(1 << 16),
        ..Outcome::default()
    };
    let mut measured_sent = 0u64;
    let mut next_target = 0usize;
    let mut next_sweep = start + POLL;
    let mut last_done = measure_from;
    let mut scratch = Scratch::default();

    loop {
        let now = Instant::now();
        if !resend.is_empty() {
            send_again(
                &sock,
                &mut batch,
                &mut resend,
                &mut slots,
                (plan, connected, inflight as u32),
                (&mut *sec, req, &mut scratch),
                &mut out,
            )?;
        }
        let sending = stop_at.is_none_or(|s| now < s)
            && plan
                .count
                .is_none_or(|c| measured_sent < c || now < measure_from);
        if sending {
            // Encode a request into every free slot, a batch at a time,
            // each batch sent with one system call.
            let mut budget = plan
                .count
                .filter(|_| now >= measure_from)
                .map_or(u64::MAX, |c| c - measured_sent);
            if let Some(rate) = plan.rate {
                let due = (rate * now.duration_since(start).as_secs_f64()) as u64 + 1;
                budget = budget.min(due.saturating_sub(out.sent));
            }
            while budget > 0 && !free.is_empty() {
                while budget > 0 && batch.tx_room() {
                    let Some(s) = free.pop() else { break };
                    let slot = &mut slots[s];
                    slot.generation = (slot.generation + 1) % gens;
                    let rid = scramble(slot.generation * inflight as u32 + s as u32);
                    let t = next_target;
                    next_target = (next_target + 1) % plan.targets.len();
                    slot.target = t as u32;
                    let to = (!connected).then(|| plan.targets[t]);
                    snmp::encode(sec, req, rid, batch.push(to), &mut scratch);
                    pending.push(s);
                    budget -= 1;
                }
                let n = match batch.flush(&sock) {
                    Ok(n) => n,
                    // Out of buffers or an ICMP error surfaced: the slots
                    // go back and are tried again after the next receive.
                    Err(e) if transient(&e) => 0,
                    Err(e) => return Err(e),
                };
                let unsent = n < pending.len();
                for (k, s) in pending.drain(..).enumerate() {
                    if k >= n {
                        free.push(s);
                        continue;
                    }
                    let slot = &mut slots[s];
                    slot.busy = true;
                    slot.sent = now;
                    slot.first = now;
                    slot.tries = 0;
                    slot.measured = now >= measure_from;
                    busy += 1;
                    out.sent += 1;
                    if slot.measured {
                        measured_sent += 1;
                    }
                }
                if unsent {
                    break;
                }
            }
        } else if busy == 0 {
            break;
        }

        match batch.recv(&sock) {
            Ok(_) => {
                let done = Instant::now();
                for i in 0..batch.got.len() {
                    let src = batch.got[i].1;
                    let datagram = batch.datagram(i);
                    if plan.expect_any {
                        // Complete the oldest request in flight.
                        if let Some(s) = (0..inflight)
                            .filter(|i| slots[*i].busy)
                            .min_by_key(|i| slots[*i].sent)
                        {
                            slots[s].busy = false;
                            complete(&slots[s], &mut out, done, 1, &mut last_done);
                            free.push(s);
                            busy -= 1;
                        } else {
                            out.late += 1;
                        }
                        continue;
                    }
                    let pdu = match snmp::decode(sec, datagram, &mut scratch.plain) {
                        Ok(p) => p,
                        Err(f) => {
                            out.fail(&f, done >= measure_from);
                            continue;
                        }
                    };
                    let Some(id) = unscramble(pdu.rid) else {
                        out.fail(&Failure::RequestId(pdu.rid), done >= measure_from);
                        continue;
                    };
                    let s = (id % inflight as u32) as usize;
                    let g = id / inflight as u32;
                    let slot = &mut slots[s];
                    if g != slot.generation || !slot.busy {
                        if g <= slot.generation {
                            out.late += 1;
                        } else {
                            out.fail(&Failure::RequestId(pdu.rid), done >= measure_from);
                        }
                        continue;
                    }
                    let measured = slot.measured;
                    slot.busy = false;
                    free.push(s);
                    busy -= 1;
                    let sent_to = plan.targets[slot.target as usize];
                    if !connected && src != Some(sent_to) {
                        let f = Failure::Source(format!(
                            "{} answered a request sent to {sent_to}",
                            src.map_or_else(|| "an unknown address".into(), |a| a.to_string())
                        ));
                        out.fail(&f, measured);
                        continue;
                    }
                    match snmp::check(req, expect, &pdu) {
                        Ok(vbs) => complete(slot, &mut out, done, vbs as u64, &mut last_done),
                        Err(f) => out.fail(&f, measured),
                    }
                }
            }
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }

        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + POLL;
            for (s, slot) in slots.iter_mut().enumerate() {
                if slot.busy && now.duration_since(slot.sent) >= plan.timeout {
                    if slot.tries < plan.retries {
                        // Stays busy; `sent` restarts its clock until the
                        // retransmission goes out.
                        slot.tries += 1;
                        slot.sent = now;
                        resend.push_back((s, slot.generation));
                        continue;
                    }
                    slot.busy = false;
                    free.push(s);
                    busy -= 1;
                    if slot.measured {
                        out.timeouts += 1;
                    }
                }
            }
        }
    }

    let wall = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    out.client_cpu_pct = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    out.finish(
        last_done
            .saturating_duration_since(measure_from)
            .as_secs_f64(),
    );
    Ok(out)
}

/// Sends the timed-out requests of `queue` again, each with its request-id
/// unchanged (so an answer to any try completes it), a batch at a time;
/// what the socket does not take stays queued.
fn send_again(
    sock: &UdpSocket,
    batch: &mut Batch,
    queue: &mut VecDeque<(usize, u32)>,
    slots: &mut [Slot],
    (plan, connected, inflight): (&Plan, bool, u32),
    (sec, req, scratch): (&mut Security, &Request, &mut Scratch),
    out: &mut Outcome,
) -> io::Result<()> {
    let mut taken: Vec<(usize, u32)> = Vec::with_capacity(MAX_BATCH);
    while !queue.is_empty() {
        while batch.tx_room() {
            let Some((s, generation)) = queue.pop_front() else {
                break;
            };
            let slot = &slots[s];
            if !slot.busy || slot.generation != generation {
                // Answered while it waited for room in the socket.
                continue;
            }
            let rid = scramble(slot.generation * inflight + s as u32);
            let to = (!connected).then(|| plan.targets[slot.target as usize]);
            snmp::encode(sec, req, rid, batch.push(to), scratch);
            taken.push((s, generation));
        }
        let n = match batch.flush(sock) {
            Ok(n) => n,
            Err(e) if transient(&e) => 0,
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        for &(s, _) in &taken[..n] {
            slots[s].sent = now;
            out.retransmits += 1;
        }
        let unsent = n < taken.len();
        for &t in taken[n..].iter().rev() {
            queue.push_front(t);
        }
        taken.clear();
        if unsent {
            break;
        }
    }
    Ok(())
}

/// Counts a good answer to a request first sent at `slot.first`.
fn complete(slot: &Slot, out: &mut Outcome, done: Instant, vbs: u64, last: &mut Instant) {
    if !slot.measured {
        return;
    }
    out.ok += 1;
    out.varbinds += vbs;
    if slot.tries > 0 {
        out.answered_after_retry += 1;
    }
    let ns = done.duration_since(slot.first).as_nanos();
    out.latencies_ns.push(u32::try_from(ns).unwrap_or(u32::MAX));
    if done > *last {
        *last = done;
    }
}

/// Errors that concern one datagram or one peer, not the socket.
pub fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    ) || e.raw_os_error() == Some(nix::libc::ENOBUFS)
}

/// User + system CPU time of this process.
pub fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_a_bijection() {
        for n in [0u32, 1, 2, 63, 64, 1_000_000, MASK] {
            let rid = scramble(n);
            assert!(rid >= 0);
            assert_eq!(unscramble(i64::from(rid)), Some(n));
        }
        assert_eq!(MUL.wrapping_mul(MUL_INV), 1);
        // Neighbouring ids are far apart, so rid+1 matches no slot.
        let a = unscramble(i64::from(scramble(5)) + 1).unwrap();
        assert!(a > 1_000_000, "{a}");
        assert_eq!(unscramble(-1), None);
    }
}
