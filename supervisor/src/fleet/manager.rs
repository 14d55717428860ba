//! The manager: the running units (agent processes) of the fleet, kept in
//! line with the configuration — initial start, operator requests,
//! reloads, snapshot swaps and shutdown.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use agentcluster_agent::{responder, store};
use agentcluster_conf::{Agent, Fleet};
use tokio::sync::{mpsc, watch};

use crate::control::api::{AgentStatus, ErrorKind, Request, Response};
use crate::control::filter;
use crate::error::Error;
use crate::events::NewEvent;
use crate::events::targets;
use crate::fleet::plan::{self, limits};
use crate::fleet::v3;
use crate::process::bind;
use crate::process::machine::State;
use crate::process::unit::{self, AgentPlan, Shared, UnitSpec};
use crate::run::{Ready, ReadyAgent};

/// Compiles every distinct snapshot of the fleet once. Returns, for each
/// source file, the compiled store file.
pub fn compile_stores(fleet: &Fleet) -> Result<HashMap<PathBuf, PathBuf>, Error> {
    let mut stores = HashMap::new();
    for agent in &fleet.agents {
        for path in agent.snapshots() {
            if stores.contains_key(path) {
                continue;
            }
            let compiled = store::compile(path, &fleet.cluster.cache_dir)?;
            for w in &compiled.warnings {
                tracing::warn!("{w}");
            }
            tracing::debug!(
                snapshot = %path.display(),
                records = compiled.records,
                built = compiled.built,
                "store ready"
            );
            stores.insert(path.clone(), compiled.store_path);
        }
    }
    Ok(stores)
}

/// One agent process under supervision, as the manager sees it.
struct Unit {
    name: String,
    agents: Vec<Agent>,
    active: bool,
    /// Snapshot source of each view, per agent.
    sources: Vec<Vec<PathBuf>>,
    /// Compiled store served for each view, per agent.
    stores: Vec<Vec<PathBuf>>,
    tx: mpsc::Sender<unit::Command>,
    status: watch::Receiver<unit::Status>,
    task: tokio::task::JoinHandle<()>,
}

/// What one agent's process is given, with the snapshot sources behind it.
struct Planned {
    config: responder::Config,
    sources: Vec<PathBuf>,
    stores: Vec<PathBuf>,
    notify: Vec<agentcluster_agent::notify::Target>,
    engine_id: Vec<u8>,
}

pub struct Manager {
    /// `events` of the configuration (notification targets).
    events: agentcluster_conf::Events,
    /// The configuration file, re-read by `reload`.
    source: PathBuf,
    /// `cluster` as started (node, cache_dir, agents_per_process…): reload
    /// names the keys that changed since and that only a new supervisor
    /// applies.
    cluster: agentcluster_conf::Cluster,
    /// The limits every agent process applies, changed by reload.
    limits: watch::Sender<agentcluster_agent::channel::Limits>,
    shared: Shared,
    units: Vec<Unit>,
    /// Every bound endpoint. Sockets outlive agent restarts and reloads
    /// that keep the endpoint.
    sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Tells the snapshot watcher what to watch.
    watch_files: watch::Sender<Vec<PathBuf>>,
    /// Names of units whose supervision task ended by a panic.
    dead: mpsc::UnboundedReceiver<String>,
    dead_tx: mpsc::UnboundedSender<String>,
}

/// Groups agents into processes: active ones by `per`, inactive ones alone.
fn group(agents: &[Agent], per: usize) -> Vec<(Vec<Agent>, bool)> {
    let mut out = Vec::new();
    let mut group: Vec<Agent> = Vec::new();
    for agent in agents {
        if !agent.active {
            out.push((vec![agent.clone()], false));
            continue;
        }
        group.push(agent.clone());
        if group.len() == per.max(1) {
            out.push((std::mem::take(&mut group), true));
        }
    }
    if !group.is_empty() {
        out.push((group, true));
    }
    out
}

/// The `cluster` keys that changed between `old` and `new` and that a
/// reload does not apply (the limits are applied; `max_varbinds` and
/// `memory_max` are part of each agent's settings, which reload compares).
fn unapplied_cluster_keys(
    old: &agentcluster_conf::Cluster,
    new: &agentcluster_conf::Cluster,
) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut note = |differs: bool, key: &'static str| {
        if differs {
            keys.push(key);
        }
    };
    note(old.node != new.node, "node");
    note(old.state_dir != new.state_dir, "state_dir");
    note(old.cache_dir != new.cache_dir, "cache_dir");
    note(old.control_socket != new.control_socket, "control_socket");
    note(old.start_tokens != new.start_tokens, "start_tokens");
    note(old.start_timeout != new.start_timeout, "start_timeout");
    note(old.heartbeat != new.heartbeat, "heartbeat");
    note(old.inactive_after != new.inactive_after, "inactive_after");
    note(old.stop_timeout != new.stop_timeout, "stop_timeout");
    note(
        old.agents_per_process != new.agents_per_process,
        "agents_per_process",
    );
    note(old.restart != new.restart, "restart");
    note(old.probe != new.probe, "probe");
    note(old.snmp != new.snmp, "snmp");
    note(old.etcd != new.etcd, "etcd");
    note(old.user != new.user, "user");
    note(old.group != new.group, "group");
    keys
}

impl Manager {
    /// Starts a unit for every agent process of `fleet` (each starts its
    /// process in the background) and tells the watcher what to watch.
    pub fn start(
        fleet: &Fleet,
        compiled: &HashMap<PathBuf, PathBuf>,
        shared: Shared,
        sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
        limits: watch::Sender<agentcluster_agent::channel::Limits>,
        watch_files: watch::Sender<Vec<PathBuf>>,
    ) -> Result<Manager, Error> {
        let (dead_tx, dead) = mpsc::unbounded_channel();
        let mut manager = Manager {
            events: fleet.events.clone(),
            source: fleet.source.clone(),
            cluster: fleet.cluster.clone(),
            limits,
            shared,
            units: Vec::new(),
            sockets,
            watch_files,
            dead,
            dead_tx,
        };
        for (agents, active) in group(&fleet.agents, manager.per_process()) {
            manager.add_unit(agents, compiled, active)?;
        }
        manager.update_watch();
        Ok(manager)
    }

    /// Resolves when every active unit is running or has failed for good:
    /// the end of the initial start.
    pub async fn started(&mut self) {
        for u in &mut self.units {
            let _ = u
                .status
                .wait_for(|s| matches!(s.state, State::Running | State::Failed | State::Inactive))
                .await;
        }
    }

    /// The name of a unit whose supervision task died (a bug), when one does.
    pub async fn next_dead(&mut self) -> Option<String> {
        self.dead.recv().await
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
                        .filter_map(|e| self.sockets.get(e).cloned())
                        .collect(),
                    stores: p.stores.clone(),
                    config: p.config.clone(),
                    notify: p.notify.clone(),
                    engine_id: p.engine_id.clone(),
                })
                .collect(),
            active,
            memory_max: agents.iter().filter_map(|a| a.memory_max).min(),
        };
        let (tx, rx) = mpsc::channel(16);
        let (status_tx, status_rx) = watch::channel(unit::Status {
            state: if active {
                State::Stopped
            } else {
                State::Inactive
            },
            pid: None,
            restarts: 0,
            running_since: None,
            requests: vec![0; agents.len()],
        });
        let inner = tokio::spawn(unit::run(spec, self.shared.clone(), rx, status_tx));
        let dead = self.dead_tx.clone();
        let unit_name = name.clone();
        // Watches the supervision task itself: one that dies is noticed.
        let task = tokio::spawn(async move {
            if let Err(e) = inner.await
                && e.is_panic()
            {
                let _ = dead.send(unit_name);
            }
        });
        self.units.push(Unit {
            name,
            sources: plans.iter().map(|p| p.sources.clone()).collect(),
            stores: plans.into_iter().map(|p| p.stores).collect(),
            agents,
            active,
            tx,
            status: status_rx,
            task,
        });
        Ok(())
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
        let mut errors = Vec::new();
        for a in agents {
            for &e in &a.listen {
                if self.sockets.contains_key(&e) {
                    continue;
                }
                match bind::bind_udp(e) {
                    Ok(s) => {
                        self.sockets.insert(e, Arc::new(s));
                    }
                    Err(cause) => errors.push(bind::BindError {
                        agent: a.name.clone(),
                        endpoint: e,
                        cause,
                    }),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Recompiles changed snapshots and swaps them into the running agents
    /// that serve them. Returns how many processes got new stores.
    pub async fn refresh_snapshots(&mut self, files: &[PathBuf]) -> usize {
        let mut compiled: HashMap<PathBuf, PathBuf> = HashMap::new();
        for f in files {
            match store::compile(f, &self.cluster.cache_dir) {
                Ok(c) => {
                    compiled.insert(f.clone(), c.store_path);
                }
                Err(e) => {
                    // A broken edit keeps the old data served.
                    tracing::error!(snapshot = %f.display(), cause = %e, "snapshot not reloaded");
                }
            }
        }
        self.refresh_with(&compiled, files).await
    }

    /// Re-reads the configuration: changed agents restart, new ones start,
    /// removed ones stop, unchanged ones keep running (same pid); changed
    /// snapshots are swapped in without a restart.
    pub async fn reload(&mut self) -> Response {
        let fleet = match agentcluster_conf::load(&self.source) {
            Ok(l) => l.fleet,
            Err(problems) => {
                let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                return Response::Error {
                    kind: ErrorKind::Config,
                    message: format!("configuration not reloaded:\n{}", text.join("\n")),
                };
            }
        };
        let compiled = match compile_stores(&fleet) {
            Ok(c) => c,
            Err(e) => {
                return Response::Error {
                    kind: ErrorKind::Config,
                    message: format!("configuration not reloaded: {e}"),
                };
            }
        };
        self.events = fleet.events.clone();
        // The limits apply to running agents at once; other cluster keys
        // only to a new supervisor.
        let new_limits = limits(&fleet.cluster);
        let limits_changed = self.limits.send_if_modified(|l| {
            let changed = *l != new_limits;
            *l = new_limits;
            changed
        });
        let unapplied = unapplied_cluster_keys(&self.cluster, &fleet.cluster);
        if !unapplied.is_empty() {
            tracing::warn!(
                keys = %unapplied.join(", "),
                "changed cluster settings take effect when the supervisor restarts"
            );
        }
        let wanted = group(&fleet.agents, self.per_process());
        let mut keep = vec![false; self.units.len()];
        let mut new_groups = Vec::new();
        for (agents, active) in wanted {
            match self
                .units
                .iter()
                .position(|u| u.agents == agents && u.active == active)
            {
                Some(i) => keep[i] = true,
                None => new_groups.push((agents, active)),
            }
        }
        let old_names: Vec<String> = self
            .units
            .iter()
            .flat_map(|u| u.agents.iter().map(|a| a.name.clone()))
            .collect();
        // Stop what goes away or changes, all at once, then wait.
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for (u, k) in self.units.drain(..).zip(keep) {
            if k { kept.push(u) } else { gone.push(u) }
        }
        self.units = kept;
        for u in &gone {
            let _ = u.tx.send(unit::Command::Shutdown).await;
        }
        let mut stopped_names = Vec::new();
        for u in gone {
            let _ = u.task.await;
            stopped_names.extend(u.agents.iter().map(|a| a.name.clone()));
        }
        // Release endpoints nobody uses any more; bind the new ones.
        let used: std::collections::HashSet<SocketAddr> = self
            .units
            .iter()
            .flat_map(|u| u.agents.iter().flat_map(|a| a.listen.iter().copied()))
            .chain(
                new_groups
                    .iter()
                    .filter(|(_, active)| *active)
                    .flat_map(|(g, _)| g.iter().flat_map(|a| a.listen.iter().copied())),
            )
            .collect();
        self.sockets.retain(|e, _| used.contains(e));
        let mut problems = Vec::new();
        let mut changed = Vec::new();
        let mut added = Vec::new();
        for (agents, active) in new_groups {
            if active && let Err(errors) = self.bind_missing(&agents) {
                problems.extend(errors.iter().map(|e| e.to_string()));
                continue;
            }
            if let Err(e) = self.add_unit(agents.clone(), &compiled, active) {
                problems.push(e.to_string());
                continue;
            }
            for a in &agents {
                if old_names.contains(&a.name) {
                    changed.push(a.name.clone());
                } else {
                    added.push(a.name.clone());
                }
            }
        }
        let removed: Vec<String> = stopped_names
            .into_iter()
            .filter(|n| !changed.contains(n) && !added.contains(n))
            .collect();
        for (names, why) in [
            (&changed, "changed"),
            (&added, "added"),
            (&removed, "removed"),
        ] {
            for name in names {
                self.shared.bus.publish(NewEvent {
                    agent: name.clone(),
                    event: "config-changed".into(),
                    state: if why == "removed" {
                        "stopped".into()
                    } else {
                        "starting".into()
                    },
                    reason: format!("reload: agent {why}"),
                    ..NewEvent::default()
                });
            }
        }
        // Snapshots whose content changed under unchanged agents.
        let changed_files: Vec<PathBuf> = self
            .units
            .iter()
            .flat_map(|u| u.sources.iter().flatten())
            .filter(|src| compiled.contains_key(*src))
            .cloned()
            .collect();
        let swapped = self.refresh_with(&compiled, &changed_files).await;
        self.update_watch();
        let mut message = format!(
            "reloaded: {} changed, {} added, {} removed, {} swapped to new snapshot data",
            changed.len(),
            added.len(),
            removed.len(),
            swapped
        );
        if limits_changed {
            message += "; cluster limits (max_response_bytes, rate_limit) applied to every agent";
        }
        if !unapplied.is_empty() {
            message += &format!(
                "; changed cluster settings take effect when the supervisor restarts: {}",
                unapplied.join(", ")
            );
        }
        if !problems.is_empty() {
            message += &format!("; not started:\n{}", problems.join("\n"));
        }
        let mut agents = changed;
        agents.extend(added);
        agents.extend(removed);
        Response::Done { agents, message }
    }

    /// Swaps compiled stores of `files` into the running agents that serve
    /// them, where they differ from what is served.
    async fn refresh_with(
        &mut self,
        compiled: &HashMap<PathBuf, PathBuf>,
        files: &[PathBuf],
    ) -> usize {
        let mut touched = 0;
        for u in &mut self.units {
            let mut swaps = Vec::new();
            for (ai, (sources, stores)) in u.sources.iter().zip(u.stores.iter_mut()).enumerate() {
                for (vi, (src, cur)) in sources.iter().zip(stores.iter_mut()).enumerate() {
                    if files.contains(src)
                        && let Some(new) = compiled.get(src)
                        && new != cur
                    {
                        *cur = new.clone();
                        swaps.push(agentcluster_agent::channel::Swap {
                            agent: ai,
                            view: vi,
                            store: new.clone(),
                        });
                    }
                }
            }
            if !swaps.is_empty() {
                touched += 1;
                let _ = u.tx.send(unit::Command::Swap(swaps)).await;
            }
        }
        touched
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
                    state: s.state.as_str().into(),
                    pid: s.pid,
                    endpoints: a.listen.iter().map(|e| e.to_string()).collect(),
                    restarts: s.restarts,
                    uptime_ms: s
                        .running_since
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    rss_bytes: None,
                    requests: s.requests.get(i).copied().unwrap_or(0),
                    process: u.name.clone(),
                });
            }
        }
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents
    }

    fn status(&self) -> Response {
        let mut agents = self.status_list();
        // RSS per process, read once for the agents that share it.
        let mut rss: HashMap<u32, Option<u64>> = HashMap::new();
        for a in &mut agents {
            a.rss_bytes = a.pid.and_then(|pid| {
                *rss.entry(pid).or_insert_with(|| {
                    let p = procfs::process::Process::new(pid as i32).ok()?;
                    p.status().ok()?.vmrss.map(|kb| kb * 1024)
                })
            });
        }
        Response::Status {
            node: self.cluster.node.clone(),
            agents,
        }
    }

    /// Units with an agent matching any of `names` (globs), and the matched
    /// agent names; an error names the patterns that matched nothing.
    fn select(&self, names: &[String]) -> Result<(Vec<usize>, Vec<String>), Response> {
        let mut units = Vec::new();
        let mut agents = Vec::new();
        let mut unmatched = Vec::new();
        for name in names {
            let pattern = glob::Pattern::new(name).map_err(|e| Response::Error {
                kind: ErrorKind::BadRequest,
                message: format!("bad pattern {name:?}: {e}"),
            })?;
            let mut hit = false;
            for (i, u) in self.units.iter().enumerate() {
                for a in &u.agents {
                    if pattern.matches(&a.name) {
                        hit = true;
                        if !units.contains(&i) {
                            units.push(i);
                        }
                        if !agents.contains(&a.name) {
                            agents.push(a.name.clone());
                        }
                    }
                }
            }
            if !hit {
                unmatched.push(name.clone());
            }
        }
        if !unmatched.is_empty() || names.is_empty() {
            return Err(Response::Error {
                kind: ErrorKind::UnknownAgent,
                message: if names.is_empty() {
                    "name at least one agent".into()
                } else {
                    format!("no agent matches {}", unmatched.join(", "))
                },
            });
        }
        Ok((units, agents))
    }

    pub async fn handle(&mut self, request: Request) -> Response {
        let (names, verb) = match request {
            Request::Status => return self.status(),
            Request::Reload => return self.reload().await,
            Request::Events { since, filter, .. } => {
                return filter::events_response(&self.shared.bus, since, filter.as_deref());
            }
            Request::Start { names } => (names, Verb::Start),
            Request::Stop { names } => (names, Verb::Stop),
            Request::Restart { names } => (names, Verb::Restart),
        };
        let (units, agents) = match self.select(&names) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let mut problems = Vec::new();
        for i in units {
            if matches!(verb, Verb::Start | Verb::Restart) && !self.units[i].active {
                // An inactive agent has no sockets yet: bind them, and run
                // it as an active one from now on.
                if let Err(e) = self.activate(i) {
                    problems.push(e);
                    continue;
                }
            }
            let cmd = match verb {
                Verb::Start => unit::Command::Start,
                Verb::Stop => unit::Command::Stop,
                Verb::Restart => unit::Command::Restart,
            };
            if let Some(u) = self.units.get(i) {
                let _ = u.tx.send(cmd).await;
            }
        }
        if !problems.is_empty() {
            return Response::Error {
                kind: ErrorKind::Internal,
                message: problems.join("\n"),
            };
        }
        Response::Done {
            message: format!("{} requested for {} agent(s)", verb.as_str(), agents.len()),
            agents,
        }
    }

    /// Binds an inactive unit's endpoints and replaces its (idle) task with
    /// an active one.
    fn activate(&mut self, i: usize) -> Result<(), String> {
        let agents = self.units[i].agents.clone();
        self.bind_missing(&agents).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let compiled: HashMap<PathBuf, PathBuf> = self.units[i]
            .sources
            .iter()
            .flatten()
            .cloned()
            .zip(self.units[i].stores.iter().flatten().cloned())
            .collect();
        let old = self.units.remove(i);
        old.task.abort();
        let mut agents = agents;
        for a in &mut agents {
            a.active = true;
        }
        self.add_unit(agents, &compiled, false)
            .map_err(|e| e.to_string())?;
        // Keep the unit's place, and mark it active for later reloads.
        if let Some(mut u) = self.units.pop() {
            u.active = true;
            self.units.insert(i, u);
        }
        Ok(())
    }

    /// Stops every agent process in parallel and waits for all of them.
    pub async fn shutdown(self) {
        for u in &self.units {
            let _ = u.tx.send(unit::Command::Shutdown).await;
        }
        for u in self.units {
            let _ = u.task.await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}
