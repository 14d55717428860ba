//! The supervision decisions for one agent process, as a pure state machine:
//! `(state, input, now) -> actions`. No processes, no clock, no randomness
//! of its own: the shell ([`crate::process::unit`]) feeds it inputs and carries out
//! the actions, and the tests drive it with a fake clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use agentcluster_conf::{Restart, RestartPolicy, format_duration};

pub use crate::events::{EventKind, State};

/// How a process ended: never an invented exit code for a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// The signal's name, e.g. `SIGKILL`.
    Signal(String),
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => write!(f, "killed by {s}"),
        }
    }
}

/// Why a running process is judged broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No heartbeat for `inactive_after`.
    NoHeartbeat,
    /// /proc says stopped (`T`) or traced.
    ProcessStopped,
    MemoryOver {
        rss: u64,
        limit: u64,
    },
    ProbeFailed(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::NoHeartbeat => f.write_str("no heartbeat"),
            Fault::ProcessStopped => f.write_str("process is stopped (state T)"),
            Fault::MemoryOver { rss, limit } => {
                write!(f, "memory {rss} bytes over the limit of {limit}")
            }
            Fault::ProbeFailed(why) => write!(f, "SNMP probe failed: {why}"),
        }
    }
}

/// What happens to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Start it (initial start, operator `start`, config change).
    Start,
    /// Stop it and keep it stopped (operator `stop`, removal, shutdown).
    Stop,
    /// Stop it if running, then start it at once (operator `restart`).
    Restart,
    /// The process exists.
    Spawned {
        pid: u32,
    },
    /// The process could not be created.
    SpawnFailed(String),
    /// The handshake completed.
    Ready,
    /// The agent answered `failed`, or the handshake broke (EOF, garbage,
    /// wrong token).
    StartFailed(String),
    Exited(Exit),
    Fault(Fault),
    /// A timer set by [`Action::SetTimer`] fired.
    Timer(Timer),
}

/// The machine's timers; at most one of each is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// `start_timeout` after spawning.
    StartTimeout,
    /// `stop_timeout` after SIGTERM.
    StopTimeout,
    /// The restart delay.
    Backoff,
}

/// Signals the machine sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Take a start token, create the process and start the handshake.
    Spawn,
    Signal(Sig),
    SetTimer(Timer, Instant),
    CancelTimer(Timer),
    /// Publish an event about the agent process.
    Emit {
        kind: EventKind,
        reason: String,
        /// The process it concerns: the new one (`starting`, `ready`), the
        /// one being stopped for a fault or a failed start, the one that
        /// ended (`died`, and what follows from its end in the same step:
        /// `restarting`, `failed`, `stopped`); `None` when there is none.
        pid: Option<u32>,
        /// How that process ended, when the event follows from its end.
        exit: Option<Exit>,
    },
}

/// The supervision state of one agent process.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    policy: Restart,
    start_timeout: Duration,
    stop_timeout: Duration,
    /// Failures since the last stable run; drives the backoff.
    consecutive_failures: u32,
    /// When recent restarts happened, for `max_restarts` within `window`.
    restart_times: VecDeque<Instant>,
    /// Total restarts (shown by `status`).
    restarts: u32,
    /// After a stop, start again (operator `restart`, or a fault).
    restart_after_stop: bool,
    /// The process in a stop is being stopped because it failed.
    stopping_for_fault: bool,
    pid: Option<u32>,
    running_since: Option<Instant>,
    /// Why the pending start happens, for its `starting` event.
    start_reason: String,
    /// The pid of the process that ended last (for `died` events).
    last_pid: Option<u32>,
}

/// A run at least this long resets the backoff (the next failure restarts
/// at once).
fn stable_after(policy: &Restart) -> Duration {
    policy.window.min(Duration::from_secs(10))
}

impl Machine {
    pub fn new(
        policy: Restart,
        start_timeout: Duration,
        stop_timeout: Duration,
        active: bool,
    ) -> Machine {
        Machine {
            state: if active {
                State::Stopped
            } else {
                State::Inactive
            },
            policy,
            start_timeout,
            stop_timeout,
            consecutive_failures: 0,
            restart_times: VecDeque::new(),
            restarts: 0,
            restart_after_stop: false,
            stopping_for_fault: false,
            pid: None,
            running_since: None,
            start_reason: String::new(),
            last_pid: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn running_since(&self) -> Option<Instant> {
        self.running_since
    }

    /// Feeds one input. `jitter` in `[0, 1)` spreads backoff delays (the
    /// shell passes a random number; tests pass a constant).
    pub fn handle(&mut self, input: Input, now: Instant, jitter: f64) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, input) {
            // --- operator requests ---
            (State::Inactive | State::Stopped | State::Failed, Input::Start | Input::Restart) => {
                self.consecutive_failures = 0;
                self.restart_times.clear();
                self.spawn(now, &mut out, "start requested");
            }
            (State::Backoff, Input::Start | Input::Restart) => {
                out.push(Action::CancelTimer(Timer::Backoff));
                self.spawn(now, &mut out, "start requested");
            }
            (
                State::Starting | State::Running | State::Unresponsive | State::Stopping,
                Input::Start,
            ) => {}
            // Not spawned yet (waiting for a start token): nothing to stop.
            (State::Starting, Input::Restart) if self.pid.is_none() => {}
            (State::Starting, Input::Stop) if self.pid.is_none() => {
                out.push(Action::CancelTimer(Timer::StartTimeout));
                self.enter_stopped(&mut out, "stop requested", None);
            }
            (State::Starting | State::Running | State::Unresponsive, Input::Restart) => {
                self.restart_after_stop = true;
                self.stopping_for_fault = false;
                self.begin_stop(now, &mut out);
            }
            (State::Stopping, Input::Restart) => self.restart_after_stop = true,
            (State::Starting | State::Running | State::Unresponsive, Input::Stop) => {
                self.restart_after_stop = false;
                self.stopping_for_fault = false;
                self.begin_stop(now, &mut out);
            }
            (State::Stopping, Input::Stop) => self.restart_after_stop = false,
            (State::Backoff, Input::Stop) => {
                out.push(Action::CancelTimer(Timer::Backoff));
                self.enter_stopped(&mut out, "stop requested", None);
            }
            (State::Failed, Input::Stop) => self.enter_stopped(&mut out, "stop requested", None),
            (State::Inactive | State::Stopped, Input::Stop) => {}

            // --- the process ---
            // The start timeout runs from the spawn, not from the wait for
            // a start token.
            (State::Starting, Input::Spawned { pid }) => {
                self.pid = Some(pid);
                out.push(emit(EventKind::Starting, &self.start_reason, self.pid));
                out.push(Action::SetTimer(
                    Timer::StartTimeout,
                    now + self.start_timeout,
                ));
            }
            (State::Starting, Input::SpawnFailed(why)) => {
                out.push(Action::CancelTimer(Timer::StartTimeout));
                out.push(emit(EventKind::StartFailed, &why, None));
                self.pid = None;
                self.after_failure(now, jitter, &mut out, why, None);
            }
            (State::Starting, Input::Ready) => {
                out.push(Action::CancelTimer(Timer::StartTimeout));
                self.state = State::Running;
                self.running_since = Some(now);
                out.push(emit(EventKind::Ready, "handshake complete", self.pid));
            }
            (State::Starting, Input::StartFailed(why)) => {
                out.push(Action::CancelTimer(Timer::StartTimeout));
                out.push(emit(EventKind::StartFailed, &why, self.pid));
                self.stopping_for_fault = true;
                self.restart_after_stop = true;
                self.begin_stop(now, &mut out);
            }
            (State::Starting, Input::Timer(Timer::StartTimeout)) => {
                let why = format!("no ready within {}", format_duration(self.start_timeout));
                out.push(emit(EventKind::StartFailed, &why, self.pid));
                // A process that cannot finish its handshake gets no grace.
                self.state = State::Stopping;
                self.stopping_for_fault = true;
                self.restart_after_stop = true;
                out.push(Action::Signal(Sig::Kill));
            }
            (State::Running | State::Unresponsive, Input::Fault(fault)) => {
                if self.state == State::Running {
                    out.push(emit(EventKind::Unresponsive, &fault.to_string(), self.pid));
                }
                self.stopping_for_fault = true;
                self.restart_after_stop = true;
                self.begin_stop(now, &mut out);
                self.state = State::Unresponsive;
            }
            (State::Starting | State::Running | State::Unresponsive, Input::Exited(exit)) => {
                out.push(Action::CancelTimer(Timer::StartTimeout));
                out.push(Action::CancelTimer(Timer::StopTimeout));
                let was_starting = self.state == State::Starting;
                let stable = self.running_since.is_some_and(|t| {
                    now.saturating_duration_since(t) >= stable_after(&self.policy)
                });
                if stable {
                    self.consecutive_failures = 0;
                }
                self.last_pid = self.pid.take().or(self.last_pid);
                self.running_since = None;
                let reason = exit.to_string();
                let ended = Some((self.last_pid, &exit));
                out.push(emit_ended(
                    if was_starting {
                        EventKind::StartFailed
                    } else {
                        EventKind::Died
                    },
                    &reason,
                    ended,
                ));
                let wanted = match self.policy.policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !exit.success() || self.stopping_for_fault,
                    RestartPolicy::Never => false,
                };
                self.stopping_for_fault = false;
                if wanted {
                    self.after_failure(now, jitter, &mut out, reason, ended);
                } else if exit.success() {
                    self.enter_stopped(&mut out, &reason, ended);
                } else {
                    self.enter_failed(&mut out, &reason, ended);
                }
            }
            // Unresponsive is a stop for a fault, shown as such.
            (State::Stopping | State::Unresponsive, Input::Timer(Timer::StopTimeout)) => {
                out.push(Action::Signal(Sig::Kill));
            }
            (State::Stopping, Input::Exited(exit)) => {
                out.push(Action::CancelTimer(Timer::StopTimeout));
                let stable = self.running_since.is_some_and(|t| {
                    now.saturating_duration_since(t) >= stable_after(&self.policy)
                });
                self.last_pid = self.pid.take().or(self.last_pid);
                self.running_since = None;
                let reason = exit.to_string();
                let ended = Some((self.last_pid, &exit));
                if self.stopping_for_fault {
                    self.stopping_for_fault = false;
                    self.restart_after_stop = false;
                    if stable {
                        self.consecutive_failures = 0;
                    }
                    out.push(emit_ended(EventKind::Died, &reason, ended));
                    if self.policy.policy == RestartPolicy::Never {
                        self.enter_failed(&mut out, &reason, ended);
                    } else {
                        self.after_failure(now, jitter, &mut out, reason, ended);
                    }
                } else if self.restart_after_stop {
                    self.restart_after_stop = false;
                    self.consecutive_failures = 0;
                    self.count_restart(now);
                    out.push(emit_ended(
                        EventKind::Restarting,
                        "restart requested",
                        ended,
                    ));
                    self.spawn(now, &mut out, "restart requested");
                } else {
                    self.enter_stopped(&mut out, &reason, ended);
                }
            }
            (State::Backoff, Input::Timer(Timer::Backoff)) => {
                self.spawn(now, &mut out, "backoff elapsed");
            }
            // Late or irrelevant inputs: a heartbeat timer after the process
            // left, a ready after a kill… nothing to do.
            _ => {}
        }
        out
    }

    /// Asks for a process. The `starting` event follows when it exists (with
    /// its pid): waiting for a start token is not starting yet.
    fn spawn(&mut self, _now: Instant, out: &mut Vec<Action>, why: &str) {
        self.state = State::Starting;
        self.pid = None;
        self.running_since = None;
        self.start_reason = why.to_string();
        out.push(Action::Spawn);
    }

    fn begin_stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::CancelTimer(Timer::StartTimeout));
        self.state = State::Stopping;
        out.push(Action::Signal(Sig::Term));
        out.push(Action::SetTimer(
            Timer::StopTimeout,
            now + self.stop_timeout,
        ));
    }

    fn count_restart(&mut self, now: Instant) {
        self.restarts += 1;
        self.restart_times.push_back(now);
        while self
            .restart_times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.policy.window)
        {
            self.restart_times.pop_front();
        }
    }

    /// After a failure that the policy wants restarted: at once the first
    /// time after a stable run, then exponential backoff with jitter; more
    /// than `max_restarts` within `window` → failed. `ended`: the process
    /// whose end this is, and how it ended (none for a spawn that failed).
    fn after_failure(
        &mut self,
        now: Instant,
        jitter: f64,
        out: &mut Vec<Action>,
        reason: String,
        ended: Ended,
    ) {
        if self.policy.policy == RestartPolicy::Never {
            self.enter_failed(out, &reason, ended);
            return;
        }
        self.count_restart(now);
        if self.restart_times.len() > self.policy.max_restarts as usize {
            let why = format!(
                "{} restarts within {} (max_restarts {}); last: {reason}",
                self.restart_times.len(),
                format_duration(self.policy.window),
                self.policy.max_restarts
            );
            self.enter_failed(out, &why, ended);
            return;
        }
        self.consecutive_failures += 1;
        let delay = self.backoff(jitter);
        out.push(emit_ended(
            EventKind::Restarting,
            &if delay.is_zero() {
                format!("{reason}; restarting at once")
            } else {
                format!("{reason}; restarting in {}", format_duration(delay))
            },
            ended,
        ));
        if delay.is_zero() {
            self.spawn(now, out, "restart after failure");
        } else {
            self.state = State::Backoff;
            out.push(Action::SetTimer(Timer::Backoff, now + delay));
        }
    }

    /// The delay before restart number `consecutive_failures` (1-based).
    fn backoff(&self, jitter: f64) -> Duration {
        if self.consecutive_failures <= 1 {
            return Duration::ZERO;
        }
        let exp = (self.consecutive_failures - 2).min(30);
        let base = self
            .policy
            .backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.policy.backoff_max);
        // Full delay at jitter 0, half of it at jitter → 1, never under the
        // minimum.
        base.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 0.999_999))
            .max(self.policy.backoff_min)
    }

    fn enter_failed(&mut self, out: &mut Vec<Action>, why: &str, ended: Ended) {
        self.state = State::Failed;
        out.push(emit_ended(EventKind::Failed, why, ended));
    }

    fn enter_stopped(&mut self, out: &mut Vec<Action>, why: &str, ended: Ended) {
        self.state = State::Stopped;
        self.restart_after_stop = false;
        out.push(emit_ended(EventKind::Stopped, why, ended));
    }
}

/// The process whose end a step follows from, and how it ended.
type Ended<'a> = Option<(Option<u32>, &'a Exit)>;

/// An event about process `pid` (if any) that did not end.
fn emit(kind: EventKind, reason: &str, pid: Option<u32>) -> Action {
    Action::Emit {
        kind,
        reason: reason.to_string(),
        pid,
        exit: None,
    }
}

/// An event that follows from the end of a process (`ended`), or from no
/// process at all (`None`).
fn emit_ended(kind: EventKind, reason: &str, ended: Ended) -> Action {
    Action::Emit {
        kind,
        reason: reason.to_string(),
        pid: ended.and_then(|(pid, _)| pid),
        exit: ended.map(|(_, exit)| exit.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(policy: RestartPolicy) -> Restart {
        Restart {
            policy,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_restarts: 10,
            window: Duration::from_secs(60),
        }
    }

    struct Clock(Instant);
    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn machine(p: RestartPolicy) -> Machine {
        Machine::new(
            policy(p),
            Duration::from_secs(10),
            Duration::from_secs(5),
            true,
        )
    }

    fn kinds(actions: &[Action]) -> Vec<EventKind> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect()
    }

    fn start_running(m: &mut Machine, c: &Clock, at: u64) {
        let a = m.handle(Input::Start, c.at(at), 0.0);
        assert!(a.contains(&Action::Spawn));
        let a = m.handle(Input::Spawned { pid: 42 }, c.at(at), 0.0);
        assert_eq!(kinds(&a), [EventKind::Starting]);
        let a = m.handle(Input::Ready, c.at(at + 1), 0.0);
        assert_eq!(kinds(&a), [EventKind::Ready]);
        assert_eq!(m.state(), State::Running);
    }

    fn spawn_delay(actions: &[Action], now: Instant) -> Option<Duration> {
        actions.iter().find_map(|a| match a {
            Action::SetTimer(Timer::Backoff, at) => Some(*at - now),
            _ => None,
        })
    }

    #[test]
    fn start_handshake_and_ready() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        let a = m.handle(Input::Start, c.at(0), 0.0);
        assert_eq!(a, vec![Action::Spawn]);
        let a = m.handle(Input::Spawned { pid: 7 }, c.at(1), 0.0);
        assert_eq!(
            a,
            [
                emit(EventKind::Starting, "start requested", Some(7)),
                Action::SetTimer(Timer::StartTimeout, c.at(10_001))
            ]
        );
        assert_eq!(m.pid(), Some(7));
        let a = m.handle(Input::Ready, c.at(5), 0.0);
        assert_eq!(a[0], Action::CancelTimer(Timer::StartTimeout));
        assert_eq!(m.state(), State::Running);
        assert_eq!(m.running_since(), Some(c.at(5)));
    }

    #[test]
    fn first_restart_after_a_stable_run_is_immediate_then_backoff_grows() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        start_running(&mut m, &c, 0);
        // dies after a stable minute: restarted at once
        let t = 60_000;
        let a = m.handle(Input::Exited(Exit::Signal("SIGKILL".into())), c.at(t), 0.0);
        assert_eq!(kinds(&a), [EventKind::Died, EventKind::Restarting]);
        assert!(a.contains(&Action::Spawn));
        assert_eq!(m.state(), State::Starting);
        m.handle(Input::Ready, c.at(t + 1), 0.0);
        // dies again at once: 100 ms, then 200, 400 … (jitter 0 = full delay)
        let mut now = t + 2;
        for expected in [100u64, 200, 400, 800] {
            let a = m.handle(Input::Exited(Exit::Code(3)), c.at(now), 0.0);
            assert_eq!(m.state(), State::Backoff);
            assert_eq!(
                spawn_delay(&a, c.at(now)),
                Some(Duration::from_millis(expected))
            );
            now += expected;
            let a = m.handle(Input::Timer(Timer::Backoff), c.at(now), 0.0);
            assert!(a.contains(&Action::Spawn));
            m.handle(Input::Ready, c.at(now), 0.0);
        }
        assert_eq!(m.restarts(), 5);
    }

    /// What the `restarting` and `failed` reasons say, for people: an
    /// immediate restart is `at once` (not `in 0ns`), a delay a humane
    /// duration (not `1.234567891s`).
    #[test]
    fn restart_reasons_read_well() {
        let reasons = |a: &[Action]| -> Vec<String> {
            a.iter()
                .filter_map(|x| match x {
                    Action::Emit {
                        kind: EventKind::Restarting | EventKind::Failed,
                        reason,
                        ..
                    } => Some(reason.clone()),
                    _ => None,
                })
                .collect()
        };
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        start_running(&mut m, &c, 0);
        let a = m.handle(Input::Exited(Exit::Code(3)), c.at(60_000), 0.0);
        assert_eq!(reasons(&a), ["exited with code 3; restarting at once"]);
        m.handle(Input::Ready, c.at(60_001), 0.0);
        let a = m.handle(Input::Exited(Exit::Code(3)), c.at(60_002), 0.0);
        assert_eq!(reasons(&a), ["exited with code 3; restarting in 100ms"]);
        m.handle(Input::Timer(Timer::Backoff), c.at(60_102), 0.0);
        m.handle(Input::Ready, c.at(60_103), 0.0);
        // 200 ms less a jitter of 6.17 %: 187.654… ms.
        let a = m.handle(Input::Exited(Exit::Code(3)), c.at(60_104), 0.123_456_7);
        let shown = reasons(&a);
        assert_eq!(shown.len(), 1, "{shown:?}");
        let delay = spawn_delay(&a, c.at(60_104)).unwrap();
        assert_eq!(
            shown[0],
            format!(
                "exited with code 3; restarting in {}",
                format_duration(delay)
            )
        );
        assert_eq!(shown[0], "exited with code 3; restarting in 188ms");
    }

    #[test]
    fn jitter_shortens_delays_but_never_below_the_minimum() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        start_running(&mut m, &c, 0);
        m.handle(Input::Exited(Exit::Code(1)), c.at(10), 0.0);
        m.handle(Input::Ready, c.at(11), 0.0);
        m.handle(Input::Exited(Exit::Code(1)), c.at(12), 0.0);
        m.handle(Input::Timer(Timer::Backoff), c.at(200), 0.0);
        m.handle(Input::Ready, c.at(201), 0.0);
        let a = m.handle(Input::Exited(Exit::Code(1)), c.at(202), 0.99);
        let d = spawn_delay(&a, c.at(202)).unwrap();
        assert!(
            d >= Duration::from_millis(100) && d < Duration::from_millis(200),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_is_capped_at_the_maximum() {
        let mut p = policy(RestartPolicy::Always);
        p.max_restarts = 1000;
        p.window = Duration::from_secs(1);
        let mut m = Machine::new(p, Duration::from_secs(10), Duration::from_secs(5), true);
        let c = Clock(Instant::now());
        start_running(&mut m, &c, 0);
        let mut now = 1;
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            let a = m.handle(Input::Exited(Exit::Code(1)), c.at(now), 0.0);
            if let Some(d) = spawn_delay(&a, c.at(now)) {
                last = d;
                now += d.as_millis() as u64;
                m.handle(Input::Timer(Timer::Backoff), c.at(now), 0.0);
            }
            m.handle(Input::Ready, c.at(now), 0.0);
        }
        assert_eq!(last, Duration::from_secs(30));
    }

    #[test]
    fn too_many_restarts_in_the_window_fail_until_an_operator_acts() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        start_running(&mut m, &c, 0);
        let mut now = 1;
        let mut failed = None;
        for i in 0..20 {
            let a = m.handle(Input::Exited(Exit::Code(1)), c.at(now), 0.0);
            if m.state() == State::Failed {
                assert!(kinds(&a).contains(&EventKind::Failed));
                failed = Some(i);
                break;
            }
            if let Some(d) = spawn_delay(&a, c.at(now)) {
                now += d.as_millis() as u64;
                m.handle(Input::Timer(Timer::Backoff), c.at(now), 0.0);
            }
            m.handle(Input::Ready, c.at(now), 0.0);
            now += 1;
        }
        // restarts 1..=10 allowed, the 11th within the window fails
        assert_eq!(failed, Some(10));
        // no timer brings it back…
        assert!(
            m.handle(Input::Timer(Timer::Backoff), c.at(now + 100_000), 0.0)
                .is_empty()
        );
        assert_eq!(m.state(), State::Failed);
        // … an operator start does
        let a = m.handle(Input::Start, c.at(now + 100_001), 0.0);
        assert!(a.contains(&Action::Spawn));
    }

    #[test]
    fn policies_on_failure_and_never() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::OnFailure);
        start_running(&mut m, &c, 0);
        let a = m.handle(Input::Exited(Exit::Code(0)), c.at(10), 0.0);
        assert_eq!(kinds(&a), [EventKind::Died, EventKind::Stopped]);
        assert_eq!(m.state(), State::Stopped);
        start_running(&mut m, &c, 20);
        m.handle(Input::Exited(Exit::Signal("SIGSEGV".into())), c.at(30), 0.0);
        assert_eq!(m.state(), State::Starting);

        let mut m = machine(RestartPolicy::Never);
        start_running(&mut m, &c, 0);
        let a = m.handle(Input::Exited(Exit::Code(2)), c.at(10), 0.0);
        assert_eq!(kinds(&a), [EventKind::Died, EventKind::Failed]);
        assert!(!a.contains(&Action::Spawn));
    }

    #[test]
    fn a_fault_stops_with_grace_then_kills_then_restarts() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        start_running(&mut m, &c, 0);
        let a = m.handle(Input::Fault(Fault::NoHeartbeat), c.at(60_000), 0.0);
        assert_eq!(kinds(&a), [EventKind::Unresponsive]);
        assert!(a.contains(&Action::Signal(Sig::Term)));
        assert!(a.contains(&Action::SetTimer(Timer::StopTimeout, c.at(65_000))));
        assert_eq!(m.state(), State::Unresponsive);
        let a = m.handle(Input::Timer(Timer::StopTimeout), c.at(65_000), 0.0);
        assert_eq!(a, [Action::Signal(Sig::Kill)]);
        let a = m.handle(
            Input::Exited(Exit::Signal("SIGKILL".into())),
            c.at(65_001),
            0.0,
        );
        assert_eq!(kinds(&a), [EventKind::Died, EventKind::Restarting]);
    }

    #[test]
    fn start_timeout_kills_and_counts_as_a_failure() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        m.handle(Input::Start, c.at(0), 0.0);
        m.handle(Input::Spawned { pid: 9 }, c.at(1), 0.0);
        let a = m.handle(Input::Timer(Timer::StartTimeout), c.at(10_000), 0.0);
        assert_eq!(kinds(&a), [EventKind::StartFailed]);
        assert_eq!(a.last(), Some(&Action::Signal(Sig::Kill)));
        let a = m.handle(
            Input::Exited(Exit::Signal("SIGKILL".into())),
            c.at(10_001),
            0.0,
        );
        assert!(kinds(&a).contains(&EventKind::Restarting));
        assert!(a.contains(&Action::Spawn));
    }

    #[test]
    fn a_failed_handshake_is_never_taken_for_ready() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        m.handle(Input::Start, c.at(0), 0.0);
        let a = m.handle(Input::StartFailed("channel closed".into()), c.at(5), 0.0);
        assert_eq!(kinds(&a), [EventKind::StartFailed]);
        assert_eq!(m.state(), State::Stopping);
        // a late "ready" changes nothing
        assert!(m.handle(Input::Ready, c.at(6), 0.0).is_empty());
        assert_eq!(m.state(), State::Stopping);
    }

    #[test]
    fn operator_stop_and_restart() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        start_running(&mut m, &c, 0);
        let a = m.handle(Input::Restart, c.at(100), 0.0);
        assert!(a.contains(&Action::Signal(Sig::Term)));
        let a = m.handle(Input::Exited(Exit::Code(0)), c.at(120), 0.0);
        assert_eq!(kinds(&a), [EventKind::Restarting]);
        m.handle(Input::Ready, c.at(130), 0.0);
        let a = m.handle(Input::Stop, c.at(200), 0.0);
        assert!(a.contains(&Action::Signal(Sig::Term)));
        let a = m.handle(
            Input::Exited(Exit::Signal("SIGTERM".into())),
            c.at(210),
            0.0,
        );
        assert_eq!(kinds(&a), [EventKind::Stopped]);
        assert_eq!(m.state(), State::Stopped);
        // stopped stays stopped
        assert!(
            m.handle(Input::Timer(Timer::Backoff), c.at(300), 0.0)
                .is_empty()
        );
    }

    /// Each event's process and exit: (kind, pid, exit).
    fn emitted(actions: &[Action]) -> Vec<(EventKind, Option<u32>, Option<Exit>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit {
                    kind, pid, exit, ..
                } => Some((*kind, *pid, exit.clone())),
                _ => None,
            })
            .collect()
    }

    /// An event that follows from a process's end names that process and
    /// how it ended, as its text does: `died`, and the `restarting`,
    /// `failed` or `stopped` of the same step.
    #[test]
    fn events_after_an_exit_carry_its_pid_and_exit() {
        let c = Clock(Instant::now());
        let sigterm = Exit::Signal("SIGTERM".into());
        let mut m = machine(RestartPolicy::Always);
        start_running(&mut m, &c, 0);
        // Stopped by an operator: `stopped` names the process and its end.
        m.handle(Input::Stop, c.at(10), 0.0);
        let a = m.handle(Input::Exited(sigterm.clone()), c.at(20), 0.0);
        assert_eq!(
            emitted(&a),
            [(EventKind::Stopped, Some(42), Some(sigterm.clone()))]
        );
        // Restarted by an operator: `restarting` names the old process.
        start_running(&mut m, &c, 30);
        m.handle(Input::Restart, c.at(40), 0.0);
        let a = m.handle(Input::Exited(Exit::Code(0)), c.at(50), 0.0);
        assert_eq!(
            emitted(&a),
            [(EventKind::Restarting, Some(42), Some(Exit::Code(0)))]
        );
        // Dead: `died` and `restarting` both name it.
        let a = m.handle(Input::Spawned { pid: 43 }, c.at(60), 0.0);
        assert_eq!(emitted(&a), [(EventKind::Starting, Some(43), None)]);
        m.handle(Input::Ready, c.at(61), 0.0);
        let killed = Exit::Signal("SIGKILL".into());
        let a = m.handle(Input::Exited(killed.clone()), c.at(70), 0.0);
        assert_eq!(
            emitted(&a),
            [
                (EventKind::Died, Some(43), Some(killed.clone())),
                (EventKind::Restarting, Some(43), Some(killed.clone()))
            ]
        );
        // A process that could not be created: no pid, no exit.
        let a = m.handle(Input::SpawnFailed("ENOMEM".into()), c.at(80), 0.0);
        assert_eq!(
            emitted(&a),
            [
                (EventKind::StartFailed, None, None),
                (EventKind::Restarting, None, None)
            ]
        );
        // Exit 0 under on-failure: `stopped` names it; `failed` under never.
        let mut m = machine(RestartPolicy::OnFailure);
        start_running(&mut m, &c, 0);
        let a = m.handle(Input::Exited(Exit::Code(0)), c.at(10), 0.0);
        assert_eq!(
            emitted(&a),
            [
                (EventKind::Died, Some(42), Some(Exit::Code(0))),
                (EventKind::Stopped, Some(42), Some(Exit::Code(0)))
            ]
        );
        let mut m = machine(RestartPolicy::Never);
        start_running(&mut m, &c, 0);
        let a = m.handle(Input::Exited(Exit::Code(3)), c.at(10), 0.0);
        assert_eq!(
            emitted(&a)[1],
            (EventKind::Failed, Some(42), Some(Exit::Code(3)))
        );
        // Stopped with no process: nothing to name.
        let a = m.handle(Input::Stop, c.at(20), 0.0);
        assert_eq!(emitted(&a), [(EventKind::Stopped, None, None)]);
    }

    #[test]
    fn stop_while_waiting_for_a_start_token() {
        let c = Clock(Instant::now());
        let mut m = machine(RestartPolicy::Always);
        m.handle(Input::Start, c.at(0), 0.0);
        assert!(m.handle(Input::Restart, c.at(1), 0.0).is_empty());
        let a = m.handle(Input::Stop, c.at(2), 0.0);
        assert_eq!(kinds(&a), [EventKind::Stopped]);
        assert!(!a.iter().any(|x| matches!(x, Action::Signal(_))));
        assert_eq!(m.state(), State::Stopped);
    }

    #[test]
    fn inactive_agents_never_start_on_their_own() {
        let c = Clock(Instant::now());
        let mut m = Machine::new(
            policy(RestartPolicy::Always),
            Duration::from_secs(10),
            Duration::from_secs(5),
            false,
        );
        assert_eq!(m.state(), State::Inactive);
        assert!(
            m.handle(Input::Timer(Timer::Backoff), c.at(1), 0.0)
                .is_empty()
        );
        assert!(m.handle(Input::Stop, c.at(1), 0.0).is_empty());
    }
}
