//! The async shell around one agent process's [`Machine`]: it turns child
//! exits, channel messages, timers, watchdog findings and operator commands
//! into machine inputs, and the machine's actions into syscalls. It reacts to
//! events; the only periodic work is the watchdog check every `heartbeat`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentcluster_agent::channel::{AgentStats, FromAgent, ToAgent};
use agentcluster_agent::responder::Drops;
use agentcluster_agent::xorshift::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::events::{Bus, NewEvent};
use crate::process::faults::{Active, Change, DeviceFaults};
use crate::process::launch::{FromChannel, Launch, Proc};
use crate::process::machine::{Action, EventKind, Exit, Fault, Input, Machine, State, Timer};

pub use crate::process::spec::{AgentPlan, Settings, StoreSwap, UnitSpec};

/// What every unit shares.
#[derive(Clone)]
pub struct Shared {
    /// Creates the units' processes.
    pub launcher: Arc<dyn Launch>,
    /// The start tokens: a process holds one from its spawn to its ready
    /// (or failure, or stop).
    pub tokens: Arc<Semaphore>,
    pub bus: Bus,
    pub settings: Arc<Settings>,
    /// Where a unit says which of its stores are gone from the cache
    /// directory, when a start could not open them: the manager compiles
    /// them again.
    pub missing_stores: mpsc::UnboundedSender<Vec<PathBuf>>,
}

/// Commands from the manager.
#[derive(Debug)]
pub enum Command {
    Start,
    Stop,
    Restart,
    /// Serve these stores from now on (snapshots recompiled).
    Swap(Vec<StoreSwap>),
    /// A fault for some of the unit's agents (`fault`, a scenario).
    Fault {
        /// Indexes of the agents in the unit.
        agents: Vec<usize>,
        /// The fault (or `clear`, `link-up`).
        fault: agentcluster_conf::Fault,
        /// It expires after this long.
        duration: Option<Duration>,
        /// Told once the unit's process has applied it (at once when it
        /// has no process or nothing changed; dropped when the process
        /// ends first: its next start has it).
        applied: Option<oneshot::Sender<()>>,
    },
}

/// What `status` shows of a unit.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub running_since: Option<Instant>,
    /// Requests answered per agent, from the last heartbeat.
    pub requests: Vec<u64>,
    /// What each agent served over every process of the unit (the metrics'
    /// counters, which an agent's restart does not reset).
    pub totals: Vec<Tally>,
    /// From the last spawn to its ready, once a process was ready.
    pub start_latency: Option<Duration>,
    /// Each agent's active faults.
    pub faults: Vec<Vec<Active>>,
}

impl Status {
    /// A unit of `agents` agents in `state`, before its first process.
    pub fn new(state: State, agents: usize) -> Status {
        Status {
            state,
            pid: None,
            restarts: 0,
            running_since: None,
            requests: vec![0; agents],
            totals: vec![Tally::default(); agents],
            start_latency: None,
            faults: vec![Vec::new(); agents],
        }
    }
}

/// What one agent has served, from heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests answered.
    pub requests: u64,
    /// Datagrams dropped, by reason.
    pub drops: Drops,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.requests = self.requests.wrapping_add(other.requests);
        self.drops.add_all(&other.drops);
    }
}

/// Per agent of a unit: what its current process has served (from its
/// last heartbeat), and what the unit's earlier processes had.
#[derive(Debug)]
struct Served {
    now: Vec<Tally>,
    before: Vec<Tally>,
    /// The counts changed since the status last showed them.
    news: bool,
}

impl Served {
    fn new(agents: usize) -> Served {
        Served {
            now: vec![Tally::default(); agents],
            before: vec![Tally::default(); agents],
            news: true,
        }
    }

    /// A new process starts from zero; what the last one had is kept.
    fn new_process(&mut self) {
        self.news = true;
        for (before, now) in self.before.iter_mut().zip(&mut self.now) {
            before.add(now);
            *now = Tally::default();
        }
    }

    /// A heartbeat's counters: those of the agents it names (in `plan`'s
    /// order, as the process sends them; an agent not named keeps its
    /// counters).
    fn heard(&mut self, plan: &[AgentPlan], stats: &[AgentStats]) {
        // One walk over both lists; a name out of order is looked for
        // from the start.
        let mut at = 0;
        for s in stats {
            let found = (at..plan.len())
                .chain(0..at)
                .find(|&i| plan[i].name == s.name);
            if let Some(i) = found {
                self.now[i] = Tally {
                    requests: s.requests,
                    drops: s.drops,
                };
                self.news = true;
                at = i + 1;
            }
        }
    }

    fn totals(&self) -> Vec<Tally> {
        self.before
            .iter()
            .zip(&self.now)
            .map(|(b, n)| {
                let mut t = *b;
                t.add(n);
                t
            })
            .collect()
    }
}

/// The clock: tokio's, so that tests can pause and advance it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

struct Process {
    proc: Box<dyn Proc>,
    token: String,
    /// Channel messages carry the generation of the process they came from;
    /// those of an earlier process are ignored.
    generation: u64,
    /// Faults and reboot messages sent to it, and how many it applied
    /// (it answers each, in order).
    sent: u64,
    applied: u64,
    /// Who waits for the message of each number to be applied.
    waiting: Vec<(u64, oneshot::Sender<()>)>,
    /// Swaps sent to it and not answered yet.
    swaps_unanswered: u32,
}

impl Process {
    /// One more faults or reboot message applied.
    fn applied(&mut self) {
        self.applied += 1;
        let applied = self.applied;
        let (done, waiting) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(n, _)| *n <= applied);
        self.waiting = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }
}

/// Runs one unit until `stop` is cancelled (or the command sender is
/// dropped) and its process is gone.
pub async fn run(
    mut spec: UnitSpec,
    shared: Shared,
    mut commands: mpsc::Receiver<Command>,
    stop: CancellationToken,
    status: watch::Sender<Status>,
) {
    let settings = shared.settings.clone();
    let mut machine = Machine::new(
        settings.restart.clone(),
        settings.start_timeout,
        settings.stop_timeout,
        spec.active,
    );
    let mut rng = jitter_rng();
    let mut process: Option<Process> = None;
    let (chan_tx, mut chan_rx) = mpsc::channel::<(u64, FromChannel)>(64);
    let mut generation = 0u64;
    let mut timers: HashMap<Timer, Instant> = HashMap::new();
    let mut waiting_for_token = false;
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut last_heartbeat = now();
    let mut served = Served::new(spec.agents.len());
    let mut spawned_at: Option<Instant> = None;
    let mut start_latency: Option<Duration> = None;
    let mut shutting_down = false;
    // A process ended with a swap unanswered (or a swap found it gone):
    // its successor's ready says the new stores are served.
    let mut swap_owed = false;
    let mut watchdog = tokio::time::interval(settings.heartbeat);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (probe_tx, mut probe_rx) = mpsc::channel::<(u32, String)>(4);
    let mut limits = settings.limits.clone();
    limits.borrow_and_update();
    let mut faults = vec![DeviceFaults::default(); spec.agents.len()];
    let prober = settings.probe.clone().and_then(|p| {
        let (target, community, v1) = probe_target(&spec)?;
        Some(tokio::spawn(probe_loop(
            p,
            target,
            community,
            v1,
            status.subscribe(),
            probe_tx,
        )))
    });

    if spec.active {
        let actions = machine.handle(Input::Start, now(), rng.unit());
        waiting_for_token |= apply(&spec, &shared, &machine, &mut process, &mut timers, actions);
    }
    loop {
        publish_status(&status, &machine, &mut served, start_latency, &faults);
        if shutting_down && !machine.state().has_process() && process.is_none() {
            break;
        }
        let next_timer = timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(t, at)| (*t, *at));
        let next_expiry = faults.iter().filter_map(DeviceFaults::next_expiry).min();
        let input: Option<Input> = tokio::select! {
            () = stop.cancelled(), if !shutting_down => {
                shutting_down = true;
                Some(Input::Stop)
            }
            cmd = commands.recv(), if !shutting_down => match cmd {
                Some(Command::Start) => Some(Input::Start),
                Some(Command::Stop) => Some(Input::Stop),
                Some(Command::Restart) => Some(Input::Restart),
                Some(Command::Swap(swaps)) => {
                    // Later starts serve the new stores too.
                    for sw in &swaps {
                        if let Some(slot) = spec
                            .agents
                            .get_mut(sw.agent)
                            .and_then(|a| a.stores.get_mut(sw.view))
                        {
                            *slot = sw.store.clone();
                        }
                    }
                    // A process that is still starting reads this after
                    // its start message, which named the old stores.
                    if let Some(p) = process.as_mut() {
                        match p.proc.swap(&swaps).await {
                            Ok(()) => p.swaps_unanswered += 1,
                            // The process is gone (its exit is on the way):
                            // its restart serves the new stores.
                            Err(e) if gone(&e) => {
                                tracing::debug!(unit = %spec.name, cause = %e, "swap for a process that ended");
                                swap_owed = true;
                            }
                            Err(e) => {
                                tracing::warn!(unit = %spec.name, cause = %e, "cannot send swap");
                                swapped(&spec, &shared, &machine, Err(e.to_string()));
                            }
                        }
                    }
                    None
                }
                Some(Command::Fault { agents, fault, duration, applied }) => {
                    let sent = process.as_ref().map(|p| p.sent);
                    let mut f = Faulting {
                        spec: &mut spec,
                        shared: &shared,
                        machine: &machine,
                        process: &mut process,
                        faults: &mut faults,
                    };
                    let input = f.inject(&agents, fault, duration).await;
                    if let Some(tx) = applied {
                        match process.as_mut() {
                            Some(p) if Some(p.sent) != sent => p.waiting.push((p.sent, tx)),
                            _ => {
                                let _ = tx.send(());
                            }
                        }
                    }
                    input
                }
                None => {
                    shutting_down = true;
                    Some(Input::Stop)
                }
            },
            _ = sleep_until(next_expiry), if next_expiry.is_some() => {
                let mut f = Faulting {
                    spec: &mut spec,
                    shared: &shared,
                    machine: &machine,
                    process: &mut process,
                    faults: &mut faults,
                };
                f.expire().await;
                None
            }
            Ok(()) = limits.changed() => {
                let msg = ToAgent::Limits(*limits.borrow_and_update());
                if let Some(p) = process.as_mut()
                    && let Err(e) = p.proc.send(&msg).await
                {
                    tracing::warn!(unit = %spec.name, cause = %e, "cannot send limits");
                }
                None
            }
            exit = wait(&mut process) => {
                swap_owed |= process.take().is_some_and(|p| p.swaps_unanswered > 0);
                Some(Input::Exited(exit))
            }
            Some((g, msg)) = chan_rx.recv() => match (process.as_mut(), msg) {
                // Messages of an earlier process count for nothing.
                (Some(p), _) if p.generation != g => None,
                (None, _) => None,
                (Some(p), FromChannel::Msg(FromAgent::Swapped { ok, reason })) => {
                    p.swaps_unanswered = p.swaps_unanswered.saturating_sub(1);
                    let result = if ok { Ok(SwapVia::Process) } else { Err(reason) };
                    swapped(&spec, &shared, &machine, result);
                    None
                }
                (Some(p), FromChannel::Msg(FromAgent::Applied)) => {
                    p.applied();
                    None
                }
                (Some(_), msg) => {
                    on_channel(msg, &mut process, &machine, &mut last_heartbeat, &mut served, &spec)
                }
            },
            _ = sleep_until(next_timer.map(|(_, at)| at)) => {
                next_timer.map(|(t, _)| {
                    timers.remove(&t);
                    Input::Timer(t)
                })
            }
            p = shared.tokens.clone().acquire_owned(), if waiting_for_token => {
                waiting_for_token = false;
                permit = p.ok();
                generation += 1;
                last_heartbeat = now();
                served.new_process();
                spawned_at = Some(now());
                let spawned = spawn(&spec, &shared, generation, chan_tx.clone()).await;
                // A reboot is this one start.
                for a in &mut spec.agents {
                    a.reboot_outage = None;
                    a.reboot_from_ns = 0;
                }
                Some(match spawned {
                    Ok(p) => {
                        let pid = p.proc.id().unwrap_or(0);
                        process = Some(p);
                        Input::Spawned { pid }
                    }
                    Err(e) => {
                        let missing = missing_stores(&spec);
                        if missing.is_empty() {
                            Input::SpawnFailed(e)
                        } else {
                            let _ = shared.missing_stores.send(missing);
                            Input::SpawnFailed(format!("{e}; compiling it again"))
                        }
                    }
                })
            }
            _ = watchdog.tick() => check(&machine, process.as_ref(), last_heartbeat, &settings, spec.memory_max),
            Some((pid, why)) = probe_rx.recv() => {
                // The probe asks the unit's first agent: while that device
                // has faults (hang, loss, latency, a reboot's outage), its
                // silence is on purpose, not a dead process.
                let on_purpose = faults.first().is_some_and(|f| !f.active().is_empty());
                (machine.state() == State::Running && machine.pid() == Some(pid) && !on_purpose)
                    .then_some(Input::Fault(Fault::ProbeFailed(why)))
            }
        };
        let Some(input) = input else { continue };
        let ready = matches!(input, Input::Ready);
        let actions = machine.handle(input, now(), rng.unit());
        if ready && machine.state() == State::Running {
            start_latency = spawned_at.map(|t| now().saturating_duration_since(t));
        }
        if apply(&spec, &shared, &machine, &mut process, &mut timers, actions) {
            // A start at once after a spawn that failed: the token of that
            // start goes back before this one waits for its own (with one
            // token, it would wait for itself).
            drop(permit.take());
            waiting_for_token = true;
        }
        // The swap's process ended before it answered: this one started
        // from the new stores (said after its ready).
        if ready && machine.state() == State::Running && std::mem::take(&mut swap_owed) {
            swapped(&spec, &shared, &machine, Ok(SwapVia::Restart));
        }
        if machine.state() != State::Starting {
            // The start token returns to the pool on ready, failure or stop.
            drop(permit.take());
            waiting_for_token = false;
        }
    }
    if let Some(p) = prober {
        p.abort();
    }
    publish_status(&status, &machine, &mut served, start_latency, &faults);
}

/// Where and how to probe a unit: its first agent's first endpoint (an
/// unspecified address is probed on loopback) with its first v1/v2c
/// community. `None` for agents that speak only SNMPv3.
fn probe_target(spec: &UnitSpec) -> Option<(SocketAddr, Vec<u8>, bool)> {
    let agent = spec.agents.first()?;
    let mut target = *agent.endpoints.first()?;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let c = agent.config.communities.first()?;
    Some((target, c.community.clone(), !c.v2c))
}

/// Every `interval`, while the unit runs, one GET of sysUpTime.0; a missing
/// or wrong answer within `timeout` is reported with the pid it concerned.
async fn probe_loop(
    probe: agentcluster_conf::Probe,
    target: SocketAddr,
    community: Vec<u8>,
    v1: bool,
    status: watch::Receiver<Status>,
    failed: mpsc::Sender<(u32, String)>,
) {
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut id: i32 = 1;
    let mut tick = tokio::time::interval(probe.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (state, pid) = {
            let s = status.borrow();
            (s.state, s.pid)
        };
        let (State::Running, Some(pid)) = (state, pid) else {
            continue;
        };
        id = id.wrapping_add(1).max(1);
        let result = async {
            let sock = tokio::net::UdpSocket::bind(bind)
                .await
                .map_err(|e| e.to_string())?;
            sock.connect(target).await.map_err(|e| e.to_string())?;
            let req = agentcluster_agent::probe::request(&community, v1, id);
            sock.send(&req).await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
                if agentcluster_agent::probe::answers(&buf[..n], id) {
                    return Ok(());
                }
            }
        };
        let why = match tokio::time::timeout(probe.timeout, result).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => format!(
                "no answer from {target} within {}",
                agentcluster_conf::format_duration(probe.timeout)
            ),
        };
        if failed.send((pid, why)).await.is_err() {
            return;
        }
    }
}

/// Brings the unit's status up to date, telling its watchers only when
/// something in it changed: a heartbeat that brought no new counts and a
/// check that found the process well (each unit has them every
/// `heartbeat`, and a host may have thousands of units) rebuild nothing.
fn publish_status(
    status: &watch::Sender<Status>,
    machine: &Machine,
    served: &mut Served,
    start_latency: Option<Duration>,
    faults: &[DeviceFaults],
) {
    status.send_if_modified(|s| {
        let now = (
            machine.state(),
            machine.pid(),
            machine.restarts(),
            machine.running_since(),
            start_latency,
        );
        let mut changed = (s.state, s.pid, s.restarts, s.running_since, s.start_latency) != now;
        (s.state, s.pid, s.restarts, s.running_since, s.start_latency) = now;
        if std::mem::take(&mut served.news) {
            s.requests.clear();
            s.requests.extend(served.now.iter().map(|t| t.requests));
            s.totals = served.totals();
            changed = true;
        }
        if s.faults.len() != faults.len() {
            s.faults.resize(faults.len(), Vec::new());
            changed = true;
        }
        for (shown, f) in s.faults.iter_mut().zip(faults) {
            if shown.as_slice() != f.active() {
                *shown = f.active().to_vec();
                changed = true;
            }
        }
        changed
    });
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn wait(process: &mut Option<Process>) -> Exit {
    match process.as_mut() {
        Some(p) => p.proc.wait().await,
        None => std::future::pending().await,
    }
}

/// The watchdog check, every `heartbeat`.
fn check(
    machine: &Machine,
    process: Option<&Process>,
    last_heartbeat: Instant,
    settings: &Settings,
    memory_max: Option<u64>,
) -> Option<Input> {
    if machine.state() != State::Running {
        return None;
    }
    if now().saturating_duration_since(last_heartbeat) > settings.inactive_after {
        return Some(Input::Fault(Fault::NoHeartbeat));
    }
    let seen = process?.proc.inspect()?;
    if seen.stopped {
        return Some(Input::Fault(Fault::ProcessStopped));
    }
    if let Some(limit) = memory_max
        && let Some(rss) = seen.rss
        && rss > limit
    {
        return Some(Input::Fault(Fault::MemoryOver { rss, limit }));
    }
    None
}

fn on_channel(
    msg: FromChannel,
    process: &mut Option<Process>,
    machine: &Machine,
    last_heartbeat: &mut Instant,
    served: &mut Served,
    spec: &UnitSpec,
) -> Option<Input> {
    let starting = machine.state() == State::Starting;
    match msg {
        FromChannel::Msg(FromAgent::Ready { token }) if starting => {
            // Fail closed: only the token of this start counts.
            if process.as_ref().is_some_and(|p| p.token == token) {
                *last_heartbeat = now();
                Some(Input::Ready)
            } else {
                Some(Input::StartFailed("ready with a wrong start token".into()))
            }
        }
        FromChannel::Msg(FromAgent::Failed { reason, .. }) if starting => {
            Some(Input::StartFailed(reason))
        }
        FromChannel::Msg(FromAgent::Heartbeat { agents }) => {
            *last_heartbeat = now();
            served.heard(&spec.agents, &agents);
            None
        }
        FromChannel::Msg(_) => None,
        FromChannel::Closed if starting => Some(Input::StartFailed(
            "the control channel closed before ready".into(),
        )),
        FromChannel::Broken(why) if starting => {
            Some(Input::StartFailed(format!("broken control channel: {why}")))
        }
        // A running agent's channel ends with its process; the exit follows.
        FromChannel::Closed | FromChannel::Broken(_) => None,
    }
}

/// How a process came to serve swapped stores.
enum SwapVia {
    /// It swapped them in.
    Process,
    /// The process the swap was for ended first; its successor started
    /// from them.
    Restart,
}

/// Whether a send on the control channel failed because the process ended.
fn gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::NotConnected
    )
}

/// The end of a swap: one `data-reloaded` per agent of the process, saying
/// whether its process serves the new stores.
fn swapped(spec: &UnitSpec, shared: &Shared, machine: &Machine, result: Result<SwapVia, String>) {
    for plan in &spec.agents {
        shared.bus.publish(NewEvent {
            agent: plan.name.clone(),
            pid: machine.pid(),
            restarts: machine.restarts(),
            reason: match &result {
                Ok(SwapVia::Process) => "snapshot recompiled and swapped in".into(),
                Ok(SwapVia::Restart) => "snapshot recompiled and served since the restart".into(),
                Err(why) => format!("snapshot swap failed: {why}"),
            },
            ..NewEvent::new(EventKind::DataReloaded, machine.state())
        });
    }
}

/// What a fault request or an expiry works on: the unit's faults, and what
/// tells the process and the event bus about them.
struct Faulting<'a> {
    spec: &'a mut UnitSpec,
    shared: &'a Shared,
    machine: &'a Machine,
    process: &'a mut Option<Process>,
    faults: &'a mut [DeviceFaults],
}

impl Faulting<'_> {
    /// Applies `fault` to the unit's agents `agents`: publishes what
    /// changed and tells the process. A reboot of a running agent restarts
    /// its process when it has one of its own (the machine input returned),
    /// or reboots it inside its process; an agent that does not run is
    /// left alone.
    async fn inject(
        &mut self,
        agents: &[usize],
        fault: agentcluster_conf::Fault,
        duration: Option<Duration>,
    ) -> Option<Input> {
        use agentcluster_conf::Fault;
        let mut input = None;
        for &i in agents {
            let Some(name) = self.spec.agents.get(i).map(|a| a.name.clone()) else {
                continue;
            };
            if let Fault::Reboot(outage) = fault {
                if self.machine.state() != State::Running {
                    tracing::info!(agent = %name, state = %self.machine.state(), "not running: no reboot");
                    continue;
                }
                // The device is up again when the fault ends: the agent
                // process counts the outage from this same instant (read
                // first: the fault ends no earlier than the device is up).
                let from_ns = agentcluster_agent::clock::monotonic_ns();
                let changes = self.faults[i].apply(fault, Some(outage), now());
                self.publish(&name, &changes);
                if self.spec.agents.len() == 1 {
                    self.spec.agents[i].reboot_outage = Some(outage);
                    self.spec.agents[i].reboot_from_ns = from_ns;
                    input = Some(Input::Restart);
                } else {
                    self.reboot_inside(i, outage, from_ns).await;
                }
                continue;
            }
            let changes = self.faults[i].apply(fault, duration, now());
            self.publish(&name, &changes);
            if !changes.is_empty() {
                self.tell(i).await;
            }
        }
        input
    }

    /// Ends the faults whose time is up.
    async fn expire(&mut self) {
        let at = now();
        for i in 0..self.faults.len() {
            let changes = self.faults[i].expire(at);
            if changes.is_empty() {
                continue;
            }
            let name = self.spec.agents[i].name.clone();
            self.publish(&name, &changes);
            self.tell(i).await;
        }
    }

    /// Agent `i`'s faults go to its process (and to its later starts).
    async fn tell(&mut self, i: usize) {
        let faults = self.faults[i].to_agent();
        if self.spec.agents[i].faults == faults {
            return;
        }
        self.spec.agents[i].faults = faults.clone();
        if let Some(p) = self.process.as_mut() {
            let msg = ToAgent::Faults { agent: i, faults };
            match p.proc.send(&msg).await {
                Ok(()) => p.sent += 1,
                Err(e) => tracing::warn!(unit = %self.spec.name, cause = %e, "cannot send faults"),
            }
        }
    }

    /// Reboots agent `i` inside the process it shares: one snmpEngineBoots
    /// more, counted and kept as a start's are.
    async fn reboot_inside(&mut self, i: usize, outage: Duration, from_ns: u64) {
        let plan = &self.spec.agents[i];
        let boots = match &plan.config.v3 {
            Some(_) => {
                match agentcluster_agent::engine::next_boots(
                    &self.shared.settings.state_dir,
                    &plan.name,
                ) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(agent = %plan.name, cause = %e, "cannot count snmpEngineBoots");
                        plan.config.v3.as_ref().map_or(1, |v| v.engine_boots + 1)
                    }
                }
            }
            None => 1,
        };
        if let Some(p) = self.process.as_mut() {
            let msg = ToAgent::Reboot {
                agent: i,
                boots,
                outage_ms: outage.as_millis() as u64,
                from_ns,
            };
            match p.proc.send(&msg).await {
                Ok(()) => p.sent += 1,
                Err(e) => {
                    tracing::warn!(unit = %self.spec.name, cause = %e, "cannot send a reboot")
                }
            }
        }
    }

    fn publish(&self, agent: &str, changes: &[Change]) {
        for c in changes {
            let kind = match c {
                Change::Injected(..) => EventKind::FaultInjected,
                Change::Cleared(..) => EventKind::FaultCleared,
            };
            self.shared.bus.publish(NewEvent {
                agent: agent.to_string(),
                pid: self.machine.pid(),
                restarts: self.machine.restarts(),
                reason: c.reason(),
                ..NewEvent::new(kind, self.machine.state())
            });
        }
    }
}

/// Carries out actions; returns whether a spawn now waits for a token.
fn apply(
    spec: &UnitSpec,
    shared: &Shared,
    machine: &Machine,
    process: &mut Option<Process>,
    timers: &mut HashMap<Timer, Instant>,
    actions: Vec<Action>,
) -> bool {
    let mut spawn = false;
    for action in actions {
        match action {
            Action::Spawn => spawn = true,
            Action::Signal(sig) => {
                if let Some(p) = process.as_ref() {
                    p.proc.signal(sig);
                }
            }
            Action::SetTimer(t, at) => {
                timers.insert(t, at);
            }
            Action::CancelTimer(t) => {
                timers.remove(&t);
            }
            Action::Emit {
                kind,
                reason,
                pid,
                exit,
            } => {
                let (exit_code, signal) = match &exit {
                    Some(Exit::Code(c)) => (Some(*c), None),
                    Some(Exit::Signal(s)) => (None, Some(s.clone())),
                    None => (None, None),
                };
                for plan in &spec.agents {
                    shared.bus.publish(NewEvent {
                        agent: plan.name.clone(),
                        event: kind,
                        pid,
                        exit_code,
                        signal: signal.clone(),
                        restarts: machine.restarts(),
                        state: machine.state(),
                        reason: reason.clone(),
                    });
                }
            }
        }
    }
    spawn
}

/// Creates the process through the launcher, with a fresh start token.
async fn spawn(
    spec: &UnitSpec,
    shared: &Shared,
    generation: u64,
    chan_tx: mpsc::Sender<(u64, FromChannel)>,
) -> Result<Process, String> {
    let token = start_token();
    let proc = shared
        .launcher
        .launch(spec, generation, &token, chan_tx)
        .await?;
    Ok(Process {
        proc,
        token,
        generation,
        sent: 0,
        applied: 0,
        waiting: Vec::new(),
        swaps_unanswered: 0,
    })
}

/// The stores of `spec` that are gone (deleted from the cache directory by
/// hand, say), each once.
fn missing_stores(spec: &UnitSpec) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = Vec::new();
    for store in spec.agents.iter().flat_map(|a| &a.stores) {
        if !missing.contains(store) && !store.exists() {
            missing.push(store.clone());
        }
    }
    missing
}

/// A start token: 128 random bits, hex.
fn start_token() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Uniqueness is what matters; fall back to time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = (t ^ u128::from(std::process::id()) << 64).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Jitter source, seeded from the OS.
fn jitter_rng() -> Rng {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    Rng::new(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests;
