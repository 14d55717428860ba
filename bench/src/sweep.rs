//! "Does every one of them answer?": one checked GET to each of many
//! endpoints, a window of requests in flight, resent after a timeout until
//! each has answered or the deadline passes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::{socket_for, transient};
use crate::snmp::{self, Expect, Failure, Request, Scratch, Security};

/// Who answered a sweep; the body of a `sweep` record.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// Endpoints asked.
    pub targets: usize,
    /// Endpoints that answered correctly.
    pub answered: usize,
    /// Endpoints whose answer failed a check (each counted once).
    pub wrong: usize,
    /// Requests sent, resends included.
    pub sends: u64,
    /// Wall time of the sweep.
    pub seconds: f64,
    /// The first few failed answers, described.
    pub samples: Vec<String>,
    /// A few endpoints that never answered.
    pub silent: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight(Instant),
    Answered,
    Wrong,
}

/// Sweeps `targets`. Request-id `i + 1` goes to target `i`, so an answer to
/// an earlier attempt still counts, and an answer from the wrong address is
/// caught.
pub fn sweep(
    targets: &[SocketAddr],
    sec: &mut Security,
    req: &Request,
    expect: &Expect,
    inflight: usize,
    timeout: Duration,
    deadline: Duration,
) -> std::io::Result<Sweep> {
    sweep_each(targets, sec, req, |_| expect, inflight, timeout, deadline)
}

/// [`sweep`], each target's answer checked against its own expectation
/// (`expect(i)` for target `i`: a device's own sysName).
pub fn sweep_each<'e>(
    targets: &[SocketAddr],
    sec: &mut Security,
    req: &Request,
    expect: impl Fn(usize) -> &'e Expect,
    inflight: usize,
    timeout: Duration,
    deadline: Duration,
) -> std::io::Result<Sweep> {
    let start = Instant::now();
    let stop = start + deadline;
    let sock = socket_for(targets)?;
    let connected = targets.len() == 1;
    sock.set_read_timeout(Some(Duration::from_millis(1)))?;
    let mut state = vec![State::Waiting; targets.len()];
    let mut next = 0usize; // next never-sent target
    let mut busy = 0usize;
    let mut done = 0usize;
    let (mut sends, mut answered, mut wrong) = (0u64, 0usize, 0usize);
    let mut samples = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut msg = Vec::with_capacity(1500);
    let mut scratch = Scratch::default();
    let mut retry: std::collections::VecDeque<usize> = Default::default();
    let mut next_scan = start;

    while done < targets.len() && Instant::now() < stop {
        // Fill the window: resends first, then fresh targets.
        while busy < inflight.max(1) {
            let i = match retry.pop_front() {
                Some(i) => i,
                None if next < targets.len() => {
                    next += 1;
                    next - 1
                }
                None => break,
            };
            snmp::encode(sec, req, (i + 1) as i32, &mut msg, &mut scratch);
            let r = if connected {
                sock.send(&msg)
            } else {
                sock.send_to(&msg, targets[i])
            };
            match r {
                Ok(_) => {}
                Err(e) if transient(&e) => {
                    retry.push_front(i);
                    break;
                }
                Err(e) => return Err(e),
            }
            sends += 1;
            state[i] = State::InFlight(Instant::now());
            busy += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, src)) => {
                let verdict = snmp::decode(sec, &buf[..n], &mut scratch.plain).and_then(|p| {
                    let i = usize::try_from(p.rid - 1)
                        .ok()
                        .filter(|i| *i < targets.len())
                        .ok_or(Failure::RequestId(p.rid))?;
                    if !connected && src != targets[i] {
                        return Err(Failure::Source(format!(
                            "{src} answered for {}",
                            targets[i]
                        )));
                    }
                    snmp::check(req, expect(i), &p).map(|_| i)
                });
                match verdict {
                    Ok(i) => {
                        if let State::InFlight(_) = state[i] {
                            busy -= 1;
                        }
                        if matches!(state[i], State::InFlight(_) | State::Waiting) {
                            state[i] = State::Answered;
                            answered += 1;
                            done += 1;
                            retry.retain(|r| *r != i);
                        }
                    }
                    Err(f) => {
                        if samples.len() < 5 {
                            samples.push(format!("{src}: {f}"));
                        }
                        // Attribute it to its endpoint when possible.
                        if let Some(i) = targets.iter().position(|t| *t == src)
                            && matches!(state[i], State::InFlight(_) | State::Waiting)
                        {
                            if let State::InFlight(_) = state[i] {
                                busy -= 1;
                            }
                            state[i] = State::Wrong;
                            wrong += 1;
                            done += 1;
                            retry.retain(|r| *r != i);
                        }
                    }
                }
            }
            Err(e) if transient(&e) => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now < next_scan {
            continue;
        }
        next_scan = now + Duration::from_millis(1);
        for (i, s) in state.iter_mut().enumerate() {
            if let State::InFlight(t) = *s
                && now.duration_since(t) >= timeout
            {
                *s = State::Waiting;
                busy -= 1;
                retry.push_back(i);
            }
        }
    }
    let silent = state
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, State::Waiting | State::InFlight(_)))
        .take(5)
        .map(|(i, _)| targets[i].to_string())
        .collect();
    Ok(Sweep {
        targets: targets.len(),
        answered,
        wrong,
        sends,
        seconds: start.elapsed().as_secs_f64(),
        samples,
        silent,
    })
}
