//! The manager: the running units (agent processes) of the fleet, kept in
//! line with the configuration — the initial start, operator requests
//! ([`requests`]), reloads and snapshot swaps ([`changes`]), and the stop
//! of every unit at shutdown.
//!
//! It runs on the supervisor's loop and never blocks it: reading the
//! configuration and compiling stores run on the blocking pool, and units
//! that stop are waited for by a task of their own; each sends its result
//! back as [`Work`].

mod changes;
mod requests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use agentcluster_agent::responder;
use agentcluster_conf::{Agent, Fleet};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::api::AgentStatus;
use crate::error::Error;
use crate::events::targets;
use crate::fleet::capacity::Demand;
use crate::fleet::plan;
use crate::fleet::reload::group;
use crate::fleet::scenarios::ByHand;
use crate::fleet::v3;
use crate::process::addresses::HostAddresses;
use crate::process::bind;
use crate::process::machine::State;
use crate::process::unit::{self, AgentPlan, Shared, UnitSpec};

pub use changes::{Asker, Share, Work};

/// What `run` tells its caller once the initial start is over.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Agents that serve.
    pub agents: Vec<ReadyAgent>,
    /// Active agents that could not be started.
    pub failed: Vec<String>,
    /// Listen addresses the host lacked and that the start added to
    /// `interface` (`cluster.addresses`); they are removed at shutdown.
    pub added: Vec<IpAddr>,
    /// The interface of `cluster.addresses`, if set.
    pub interface: Option<String>,
}

/// An agent that serves, and where.
#[derive(Debug, Clone)]
pub struct ReadyAgent {
    /// Its name.
    pub name: String,
    /// The endpoints it answers on.
    pub endpoints: Vec<SocketAddr>,
}

/// One agent process as the metrics read it: its agents' names and its
/// live status.
#[derive(Debug, Clone)]
pub struct Member {
    /// The names of its agents, in the order of the status's vectors.
    pub names: Arc<[String]>,
    /// Its status, as its unit last published it.
    pub status: watch::Receiver<unit::Status>,
}

/// Every agent process of the fleet; replaced whenever the set of units
/// changes (start, reload, an inactive agent started), so a reader takes
/// each unit's status when it reads, without asking the loop.
pub type Roster = Arc<Vec<Member>>;

/// One agent process under supervision, as the manager sees it.
struct Unit {
    name: String,
    /// Its agents' names, shared with the [`Roster`].
    names: Arc<[String]>,
    agents: Vec<Agent>,
    active: bool,
    /// Snapshot source of each view, per agent.
    sources: Vec<Vec<PathBuf>>,
    /// Compiled store served for each view, per agent.
    stores: Vec<Vec<PathBuf>>,
    tx: mpsc::Sender<unit::Command>,
    status: watch::Receiver<unit::Status>,
    /// Cancelled to stop the unit for good (its process, then its task).
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// What one agent's process is given, with the snapshot sources behind it.
struct Planned {
    config: responder::Config,
    sources: Vec<PathBuf>,
    stores: Vec<PathBuf>,
    notify: Vec<agentcluster_agent::notify::Target>,
    engine_id: Vec<u8>,
    values: Arc<agentcluster_agent::values::Values>,
    animate: Option<u64>,
}

/// Where the manager reports what happens outside the loop.
#[derive(Clone)]
pub struct Reports {
    /// Names of units whose supervision task ended by a panic (a bug).
    pub dead: mpsc::UnboundedSender<String>,
    /// Results of work done off the loop.
    pub work: mpsc::UnboundedSender<Work>,
}

/// The units of the fleet and what they need.
pub struct Manager {
    /// `events` of the configuration (notification targets).
    events: agentcluster_conf::Events,
    /// The configuration file, re-read by a reload.
    source: PathBuf,
    /// `cluster` as started (node, cache_dir, agents_per_process…): a reload
    /// names the keys that changed since and that only a new supervisor
    /// applies.
    cluster: agentcluster_conf::Cluster,
    /// The limits every agent process applies, changed by reload.
    limits: watch::Sender<agentcluster_agent::channel::Limits>,
    shared: Shared,
    units: Vec<Unit>,
    /// Every bound endpoint, kept by the socket holders.
    sockets: bind::Sockets,
    /// Tells the snapshot watcher what to watch.
    watch_files: watch::Sender<Vec<PathBuf>>,
    reports: Reports,
    /// Parent of every unit's stop token: cancelled once, at shutdown.
    units_stop: CancellationToken,
    /// Every unit task, and the waits for units a reload stops.
    tasks: TaskTracker,
    /// The reload in progress and the requests waiting for the next one.
    reload: changes::ReloadState,
    /// `cluster.snapshot_max_loss` of the configuration loaded last (a
    /// reload applies it).
    snapshot_max_loss: u8,
    /// The units as the metrics read them.
    roster: watch::Sender<Roster>,
    /// The listen addresses added to the host (`cluster.addresses`): a
    /// reload adds those of new agents and removes those nobody uses.
    addresses: HostAddresses,
    /// The scenarios and the agents they pick from, for the scenarios'
    /// task; a reload that changes either replaces them.
    scenarios: watch::Sender<crate::fleet::scenarios::Plan>,
    /// Each agent's unit, by name: built when a request names agents
    /// exactly, dropped whenever the set of units changes.
    by_name: Option<HashMap<String, usize>>,
    /// Whether a compiled store has ifOperStatus.N (link faults), by
    /// store file and N: a store file's content never changes.
    interfaces: HashMap<(PathBuf, u32), bool>,
    /// A cluster node's share: the fleet a reload applies instead of
    /// re-reading `source` (see [`Manager::share`]).
    given: Option<Fleet>,
    /// The time zero of the share's scenarios (the wall time of the push),
    /// and what was done by hand to its agents under that push.
    given_push: Option<(std::time::SystemTime, ByHand)>,
    /// The newest lease epoch fenced: its shares are refused.
    fenced: Option<u64>,
    /// What the fleet that runs asks of the host, which a reload frees.
    running: Demand,
    /// On a cluster node: where the faults injected by hand go, to be
    /// kept in etcd.
    hand_faults: Option<mpsc::UnboundedSender<HandFault>>,
}

/// A fault an operator injected on a cluster node (`agentcluster fault`,
/// not a scenario's): the node keeps it in etcd, so that it moves with
/// its agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandFault {
    /// The agents it was applied to.
    pub agents: Vec<String>,
    /// Its kind and argument, as the request spelled them.
    pub kind: String,
    pub arg: Option<String>,
    /// It ends by itself after this many milliseconds.
    pub for_ms: Option<u64>,
    /// When it was injected.
    pub at: std::time::SystemTime,
}

/// What a fleet's scenarios' plan is made of: its scenarios and every
/// agent's name.
type Scenarios = (Arc<Vec<agentcluster_conf::Scenario>>, Arc<[String]>);

fn scenarios_of(fleet: &Fleet) -> Scenarios {
    (
        Arc::new(fleet.scenarios.clone()),
        fleet.agents.iter().map(|a| a.name.clone()).collect(),
    )
}

/// The scenarios' plan of `fleet`: from now, or on a cluster node from
/// `zero`, the push, with what was done by `hand`
/// ([`crate::fleet::scenarios::Plan::pushed`], `first` plan of that push
/// or not, following a plan of agents `before`).
fn scenario_plan(
    (scenarios, agents): Scenarios,
    zero: Option<(std::time::SystemTime, &ByHand)>,
    first: bool,
    before: &[String],
) -> crate::fleet::scenarios::Plan {
    use crate::fleet::scenarios::Plan;
    match zero {
        Some((zero, hand)) => Plan::pushed(scenarios, agents, zero, first, before, hand.clone()),
        None => Plan::now(scenarios, agents),
    }
}

impl Manager {
    /// Starts a unit for every agent process of `fleet` (each starts its
    /// process in the background) and tells the watcher what to watch.
    pub fn start(
        fleet: &Fleet,
        compiled: &HashMap<PathBuf, PathBuf>,
        shared: Shared,
        sockets: bind::Sockets,
        limits: watch::Sender<agentcluster_agent::channel::Limits>,
        watch_files: watch::Sender<Vec<PathBuf>>,
        reports: Reports,
    ) -> Result<Manager, Error> {
        let mut manager = Manager {
            events: fleet.events.clone(),
            source: fleet.source.clone(),
            cluster: fleet.cluster.clone(),
            limits,
            shared,
            units: Vec::new(),
            sockets,
            watch_files,
            reports,
            units_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            reload: changes::ReloadState::default(),
            snapshot_max_loss: fleet.cluster.snapshot_max_loss,
            roster: watch::Sender::new(Roster::default()),
            addresses: HostAddresses::default(),
            scenarios: watch::Sender::new(scenario_plan(scenarios_of(fleet), None, true, &[])),
            by_name: None,
            interfaces: HashMap::new(),
            given: None,
            given_push: None,
            fenced: None,
            running: Demand::of(fleet),
            hand_faults: None,
        };
        for (agents, active) in group(&fleet.agents, manager.per_process()) {
            manager.add_unit(agents, compiled, active)?;
        }
        manager.update_watch();
        manager.update_roster();
        Ok(manager)
    }

    /// Resolves when every active unit is running or has failed for good:
    /// the end of the initial start.
    #[cfg(test)]
    pub async fn started(&mut self) {
        self.started_counting(|_, _| {}).await;
    }

    /// [`Manager::started`], telling `counted` the agents running and
    /// failed so far each time a unit's start ends (in the order they
    /// end).
    pub async fn started_counting(&mut self, mut counted: impl FnMut(usize, usize)) {
        let mut starts = tokio::task::JoinSet::new();
        for u in &self.units {
            let mut status = u.status.clone();
            let agents = u.agents.len();
            starts.spawn(async move {
                let state = status
                    .wait_for(|s| {
                        matches!(s.state, State::Running | State::Failed | State::Inactive)
                    })
                    .await
                    .map(|s| s.state)
                    .ok();
                (state, agents)
            });
        }
        let (mut running, mut failed) = (0, 0);
        while let Some(end) = starts.join_next().await {
            match end {
                Ok((Some(State::Running), n)) => running += n,
                Ok((Some(State::Failed), n)) => failed += n,
                _ => continue,
            }
            counted(running, failed);
        }
    }

    /// Stops every agent process in parallel and waits for all of them
    /// (and for the units a reload was still stopping).
    pub async fn shutdown(self) {
        self.units_stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Agents per process, as started.
    fn per_process(&self) -> usize {
        self.cluster.agents_per_process.max(1) as usize
    }

    /// Each agent's responder configuration, view sources and compiled
    /// stores.
    fn plan_all(
        node: &str,
        events: &agentcluster_conf::Events,
        agents: &[Agent],
        compiled: &HashMap<PathBuf, PathBuf>,
    ) -> Result<Vec<Planned>, Error> {
        agents
            .iter()
            .map(|a| {
                let (config, sources) = plan::plan(a, node).map_err(|cause| Error::Agent {
                    agent: a.name.clone(),
                    cause,
                })?;
                let stores = plan::store_files(&a.name, &sources, compiled).map_err(|cause| {
                    Error::Agent {
                        agent: a.name.clone(),
                        cause,
                    }
                })?;
                Ok(Planned {
                    config,
                    sources,
                    stores,
                    notify: targets::agent_targets(a, events),
                    engine_id: v3::engine_id(a, node),
                    values: Arc::new(plan::values(a)),
                    animate: plan::animate(a),
                })
            })
            .collect()
    }

    fn add_unit(
        &mut self,
        agents: Vec<Agent>,
        compiled: &HashMap<PathBuf, PathBuf>,
        active: bool,
    ) -> Result<(), Error> {
        let plans = Self::plan_all(&self.cluster.node, &self.events, &agents, compiled)?;
        let name = match agents.as_slice() {
            [one] => one.name.clone(),
            [first, rest @ ..] => format!("{}+{}", first.name, rest.len()),
            [] => return Ok(()),
        };
        let (steering, unbound) = match &self.shared.settings.steer {
            Some(map) if active => {
                let endpoints: Vec<SocketAddr> = agents
                    .iter()
                    .flat_map(|a| a.listen.iter().copied())
                    .collect();
                self.sockets.steer_process(&endpoints, map, &name)
            }
            _ => Default::default(),
        };
        let spec = UnitSpec {
            name: name.clone(),
            agents: agents
                .iter()
                .zip(&plans)
                .map(|(a, p)| AgentPlan {
                    name: a.name.clone(),
                    endpoints: a.listen.clone(),
                    sockets: a
                        .listen
                        .iter()
                        .filter_map(|e| self.sockets.get(e))
                        .collect(),
                    unbound: a
                        .listen
                        .iter()
                        .copied()
                        .filter(|e| unbound.contains(e))
                        .collect(),
                    stores: p.stores.clone(),
                    config: p.config.clone(),
                    notify: p.notify.clone(),
                    engine_id: p.engine_id.clone(),
                    values: p.values.clone(),
                    animate: p.animate,
                    faults: Default::default(),
                    reboot_outage: None,
                    reboot_from_ns: 0,
                })
                .collect(),
            active,
            memory_max: agents.iter().filter_map(|a| a.memory_max).min(),
            steering,
        };
        let (tx, rx) = mpsc::channel(16);
        let (status_tx, status_rx) = watch::channel(unit::Status::new(
            if active {
                State::Stopped
            } else {
                State::Inactive
            },
            agents.len(),
        ));
        let stop = self.units_stop.child_token();
        let inner = tokio::spawn(unit::run(
            spec,
            self.shared.clone(),
            rx,
            stop.clone(),
            status_tx,
        ));
        let dead = self.reports.dead.clone();
        let unit_name = name.clone();
        // Watches the supervision task itself: one that dies is noticed.
        let task = self.tasks.spawn(async move {
            if let Err(e) = inner.await
                && e.is_panic()
            {
                let _ = dead.send(unit_name);
            }
        });
        self.units.push(Unit {
            name,
            names: agents.iter().map(|a| a.name.clone()).collect(),
            sources: plans.iter().map(|p| p.sources.clone()).collect(),
            stores: plans.into_iter().map(|p| p.stores).collect(),
            agents,
            active,
            tx,
            status: status_rx,
            stop,
            task,
        });
        Ok(())
    }

    /// The units as they are now and each time they change.
    pub fn roster(&self) -> watch::Receiver<Roster> {
        self.roster.subscribe()
    }

    /// Tells the metrics which units there are now.
    fn update_roster(&mut self) {
        self.by_name = None;
        let members = self
            .units
            .iter()
            .map(|u| Member {
                names: u.names.clone(),
                status: u.status.clone(),
            })
            .collect();
        self.roster.send_replace(Arc::new(members));
    }

    /// The scenarios' plan as it is now and as reloads change it.
    pub fn scenarios(&self) -> watch::Receiver<crate::fleet::scenarios::Plan> {
        self.scenarios.subscribe()
    }

    /// A reload started the units of its fleet (`scenarios`): a new plan
    /// for the scenarios' task when its scenarios or its agents changed
    /// (the schedule then starts afresh), or, on a cluster node, when the
    /// fleet was pushed again (a new time zero). A node's plan counts from
    /// the push, and a new plan of the same push goes on where the
    /// schedule is, with the faults in progress of the agents that moved
    /// in. After the units start, so that each fault finds its agent.
    fn replan(&mut self, scenarios: Scenarios) {
        let pushed = self.given_push.as_ref().map(|(zero, hand)| (*zero, hand));
        self.scenarios.send_if_modified(|old| {
            let first = old.zero != pushed.map(|(zero, _)| zero);
            let plan = scenario_plan(scenarios, pushed, first, &old.agents);
            let same = *old.scenarios == *plan.scenarios
                && old.agents == plan.agents
                && old.zero == plan.zero;
            if !same {
                *old = plan;
            }
            !same
        });
    }

    /// On a cluster node: the faults injected by hand are told to `to`,
    /// which keeps them in etcd.
    pub fn record_hand_faults(&mut self, to: mpsc::UnboundedSender<HandFault>) {
        self.hand_faults = Some(to);
    }

    /// Takes over the listen addresses the start added, so that reloads
    /// keep them in line with the agents.
    pub fn adopt_addresses(&mut self, addresses: HostAddresses) {
        self.addresses = addresses;
    }

    /// Tells the watcher about the snapshot files in use now.
    fn update_watch(&self) {
        let mut files: Vec<PathBuf> = self
            .units
            .iter()
            .flat_map(|u| u.sources.iter().flatten().cloned())
            .collect();
        files.sort();
        files.dedup();
        self.watch_files.send_if_modified(|old| {
            if *old == files {
                false
            } else {
                *old = files;
                true
            }
        });
    }

    /// Binds the endpoints of `agents` that are not bound yet.
    fn bind_missing(&mut self, agents: &[Agent]) -> Result<(), Vec<bind::BindError>> {
        self.sockets.bind(agents)
    }

    /// "N/M agents running, K failed", for systemd's status line.
    pub fn summary(&self) -> String {
        let (mut running, mut total, mut failed) = (0, 0, 0);
        for u in &self.units {
            let state = u.status.borrow().state;
            let n = u.agents.len();
            total += n;
            match state {
                State::Running => running += n,
                State::Failed => failed += n,
                _ => {}
            }
        }
        format!("{running}/{total} agents running, {failed} failed")
    }

    pub fn ready(&self) -> Ready {
        let mut ready = Ready {
            agents: Vec::new(),
            failed: Vec::new(),
            added: Vec::new(),
            interface: None,
        };
        for u in &self.units {
            let state = u.status.borrow().state;
            for a in &u.agents {
                match state {
                    State::Running => ready.agents.push(ReadyAgent {
                        name: a.name.clone(),
                        endpoints: a.listen.clone(),
                    }),
                    State::Inactive => {}
                    _ => ready.failed.push(a.name.clone()),
                }
            }
        }
        ready
    }

    /// The agents as `status` shows them, without RSS (no /proc reads).
    pub fn status_list(&self) -> Vec<AgentStatus> {
        let now = Instant::now();
        let mut agents = Vec::new();
        for u in &self.units {
            let s = u.status.borrow().clone();
            for (i, a) in u.agents.iter().enumerate() {
                agents.push(AgentStatus {
                    name: a.name.clone(),
                    state: s.state,
                    pid: s.pid,
                    endpoints: a.listen.iter().map(|e| e.to_string()).collect(),
                    restarts: s.restarts,
                    uptime_ms: s
                        .running_since
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    rss_bytes: None,
                    requests: s.requests.get(i).copied().unwrap_or(0),
                    process: u.name.clone(),
                    faults: s
                        .faults
                        .get(i)
                        .map(|f| crate::process::faults::describe(f, now))
                        .unwrap_or_default(),
                });
            }
        }
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents
    }
}

#[cfg(test)]
mod tests;
