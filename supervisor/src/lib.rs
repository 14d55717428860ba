//! The agentcluster supervisor: compiles the fleet's snapshots, binds every
//! endpoint, starts one agent process per agent (or per group), watches and
//! restarts them, answers operator requests, and owns shutdown.
//!
//! I/O and signals enter at [`run`]; the decisions live in [`machine`].

pub mod api;
pub mod bind;
pub mod capacity;
pub mod control;
pub mod event;
pub mod filter;
pub mod fleet;
pub mod journal;
pub mod kvp;
pub mod machine;
pub mod notify;
pub mod notifyconf;
pub mod snmpagent;
pub mod spawner;
pub mod sys;
pub mod traps;
pub mod unit;
pub mod v3conf;
pub mod watcher;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use agentcluster_agent::{responder, store};
use agentcluster_conf::{Agent, Fleet};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::api::{AgentStatus, ErrorKind, Request, Response};
use crate::event::{Bus, NewEvent};
use crate::machine::State;
use crate::unit::{AgentPlan, Settings, Shared, UnitSpec};

/// Why the supervisor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot compile snapshot: {0}")]
    Store(#[from] store::StoreError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Bind(Vec<bind::BindError>),
    #[error("agent {agent}: {cause}")]
    Agent { agent: String, cause: String },
    #[error("control socket: {0}")]
    Control(#[from] control::ControlError),
    /// The host cannot carry the fleet: each way, with its arithmetic.
    #[error("{}", .0.join("\n"))]
    Capacity(Vec<String>),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What `run` tells its caller once the initial start is over.
#[derive(Debug, Clone)]
pub struct Ready {
    pub agents: Vec<ReadyAgent>,
    /// Active agents that could not be started.
    pub failed: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ReadyAgent {
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
}

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

struct Manager {
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

/// Runs the fleet until `shutdown` is cancelled. `on_ready` is called once,
/// when every active agent has either answered ready or failed for good.
/// Operator requests arrive on the control socket at `control`.
pub async fn run(
    fleet: Fleet,
    control: PathBuf,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Ready),
) -> Result<(), Error> {
    // First what can fail because of the setup, before any agent starts.
    check_capacity(&fleet)?;
    let listener = control::bind(&control)?;
    let compiled = compile_stores(&fleet)?;
    let active: Vec<&Agent> = fleet.agents.iter().filter(|a| a.active).collect();
    let bound = bind::bind_all(&active).map_err(Error::Bind)?;
    let snmp_sockets = match &fleet.cluster.snmp {
        Some(snmp) => Some(snmpagent::bind(&snmp.listen).map_err(Error::Bind)?),
        None => None,
    };
    let sockets: HashMap<SocketAddr, Arc<UdpSocket>> = active
        .iter()
        .zip(bound)
        .flat_map(|(a, s)| a.listen.iter().copied().zip(s.into_iter().map(Arc::new)))
        .collect();

    let c = &fleet.cluster;
    let (limits_tx, limits_rx) = watch::channel(limits(c));
    let settings = Arc::new(Settings {
        heartbeat: c.heartbeat,
        inactive_after: c.inactive_after,
        start_timeout: c.start_timeout,
        stop_timeout: c.stop_timeout,
        restart: c.restart.clone(),
        creds: credentials(c.user.as_deref(), c.group.as_deref())?,
        state_dir: c.state_dir.clone(),
        probe: c.probe.clone(),
        limits: limits_rx,
    });
    raise_nofile_limit()?;
    let bus = Bus::new(&c.node);
    let shared = Shared {
        spawner: spawner::Spawner::start()?,
        tokens: Arc::new(Semaphore::new(c.start_tokens.max(1) as usize)),
        bus: bus.clone(),
        settings,
    };
    // Sinks outlive the shutdown of the agents, so the last events reach them.
    let sinks = CancellationToken::new();
    let mut sink_tasks = Vec::new();
    if let Some(path) = journal::available() {
        sink_tasks.push(tokio::spawn(journal::run(path, bus.clone(), sinks.clone())));
    }
    if let Some(k) = fleet.events.kvp.clone() {
        sink_tasks.push(tokio::spawn(kvp::run(k, bus.clone(), sinks.clone())));
    }
    let traps = traps::Traps::start(
        &fleet.events.notify,
        &fleet.events.mib_root,
        &c.node,
        &c.state_dir,
        &bus,
    )
    .await
    .map_err(std::io::Error::from)?;
    sink_tasks.push(tokio::spawn(traps.run(sinks.clone())));
    let (snmp_status, snmp_status_rx) = watch::channel(Vec::new());
    let mut snmp_task = None;
    if let (Some(sockets), Some(snmp)) = (snmp_sockets, &fleet.cluster.snmp) {
        let settings = snmpagent::Settings {
            community: snmp.community.expose().to_string(),
            mib_root: fleet.events.mib_root.clone(),
            node: c.node.clone(),
        };
        snmp_task = Some(tokio::spawn(snmpagent::run(
            sockets,
            settings,
            snmp_status_rx,
            sinks.clone(),
        )));
    }
    bus.publish(NewEvent {
        event: "supervisor-started".into(),
        pid: Some(std::process::id()),
        state: "running".into(),
        reason: format!(
            "{} agents configured, {} active",
            fleet.agents.len(),
            active.len()
        ),
        ..NewEvent::default()
    });

    let (requests_tx, mut requests) = mpsc::channel::<api::Envelope>(64);
    let mut control_task = tokio::spawn(control::serve(
        listener,
        api::Handle::with_events(requests_tx, bus.clone()),
        shutdown.clone(),
    ));
    let (watch_tx, watch_rx) = watch::channel(Vec::new());
    let (changed_tx, mut changed) = mpsc::channel(4);
    let mut watcher = tokio::spawn(watch_snapshots(watch_rx, changed_tx, shutdown.clone()));
    let (dead_tx, dead_rx) = mpsc::unbounded_channel();
    let mut manager = Manager {
        events: fleet.events.clone(),
        source: fleet.source.clone(),
        cluster: c.clone(),
        limits: limits_tx,
        shared,
        units: Vec::new(),
        sockets,
        watch_files: watch_tx,
        dead: dead_rx,
        dead_tx,
    };
    for (agents, active) in group(&fleet.agents, manager.per_process()) {
        manager.add_unit(agents, &compiled, active)?;
    }
    manager.update_watch();

    // The initial start is over when every active unit is running or failed.
    let started = async {
        for u in &mut manager.units {
            let _ = u
                .status
                .wait_for(|s| matches!(s.state, State::Running | State::Failed | State::Inactive))
                .await;
        }
    };
    tokio::select! {
        _ = started => {}
        _ = shutdown.cancelled() => {}
    }
    if !shutdown.is_cancelled() {
        on_ready(&manager.ready());
        notify::ready(&manager.summary());
    }
    // systemd's watchdog is fed from this loop, so only while it turns; the
    // status line is refreshed at the same pace (or every 10 s).
    let mut beat = tokio::time::interval(
        notify::watchdog_interval().unwrap_or(std::time::Duration::from_secs(10)),
    );
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut snmp_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    snmp_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let snmp_on = snmp_task.is_some();
    let mut failure = None;
    loop {
        tokio::select! {
            // Shutdown first: the control and watcher tasks end with it, and
            // that is not a failure.
            biased;
            _ = shutdown.cancelled() => break,
            _ = beat.tick() => {
                notify::watchdog_ping();
                notify::status(&manager.summary());
            }
            _ = snmp_tick.tick(), if snmp_on => {
                let now = manager.status_list();
                snmp_status.send_if_modified(|cur| {
                    if *cur == now { false } else { *cur = now; true }
                });
            }
            _ = hup.recv() => {
                match manager.reload().await {
                    Response::Done { message, .. } => tracing::info!("SIGHUP: {message}"),
                    Response::Error { message, .. } => tracing::error!("SIGHUP: {message}"),
                    _ => {}
                }
            }
            Some(name) = manager.dead.recv() => {
                // A supervision task died: a bug. Stop everything and exit
                // with an error, so an outer supervisor (systemd) restarts us.
                tracing::error!(unit = %name, "supervision task died; shutting down");
                failure = Some(Error::Agent { agent: name, cause: "supervision task died".into() });
                shutdown.cancel();
                break;
            }
            Some((request, reply)) = requests.recv() => {
                let response = manager.handle(request).await;
                let _ = reply.send(response);
            }
            Some(files) = changed.recv() => {
                let n = manager.refresh_snapshots(&files).await;
                tracing::info!(files = files.len(), processes = n, "snapshots changed");
            }
            // Our own long-lived tasks end only at shutdown; one that ends
            // earlier is a failure, never silence.
            r = &mut control_task => {
                let cause = match r {
                    Ok(Ok(())) => "ended".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::error!(%cause, "control socket task stopped; shutting down");
                failure = Some(Error::Io(std::io::Error::other(format!("control socket: {cause}"))));
                shutdown.cancel();
                break;
            }
            r = &mut watcher => {
                tracing::error!(cause = ?r.err(), "snapshot watcher stopped; shutting down");
                failure = Some(Error::Io(std::io::Error::other("the snapshot watcher stopped")));
                shutdown.cancel();
                break;
            }
        }
    }

    notify::stopping();
    bus.publish(NewEvent {
        event: "supervisor-stopping".into(),
        pid: Some(std::process::id()),
        state: "stopping".into(),
        reason: "shutdown requested".into(),
        ..NewEvent::default()
    });
    manager.shutdown().await;
    if !control_task.is_finished() || failure.is_none() {
        match control_task.await {
            Ok(Err(e)) => tracing::warn!(cause = %e, "control socket"),
            Err(e) if !e.is_cancelled() => tracing::warn!(cause = %e, "control socket task"),
            _ => {}
        }
    }
    if !watcher.is_finished() {
        let _ = watcher.await;
    }
    sinks.cancel();
    for t in sink_tasks {
        let _ = t.await;
    }
    if let Some(t) = snmp_task {
        match t.await {
            Ok(Err(e)) => tracing::warn!(cause = %e, "cluster.snmp"),
            Err(e) => tracing::warn!(cause = %e, "cluster.snmp task"),
            _ => {}
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The account agent processes run as: `cluster.user`/`group`; as root with
/// none configured, `nobody` (agents never run as root).
fn credentials(user: Option<&str>, group: Option<&str>) -> Result<Option<sys::Credentials>, Error> {
    let root = nix::unistd::geteuid().is_root();
    let user = match (user, root) {
        (Some(u), _) => Some(u),
        (None, true) => Some("nobody"),
        (None, false) => None,
    };
    let Some(user) = user else {
        if group.is_some() {
            tracing::warn!(
                "cluster.group without cluster.user is ignored when not running as root"
            );
        }
        return Ok(None);
    };
    let (uid, primary) = agentcluster_conf::resolve_user(user).ok_or_else(|| Error::Agent {
        agent: String::new(),
        cause: format!("cluster.user {user:?}: no such user"),
    })?;
    let gid = match group {
        Some(g) => agentcluster_conf::resolve_group(g).ok_or_else(|| Error::Agent {
            agent: String::new(),
            cause: format!("cluster.group {g:?}: no such group"),
        })?,
        None => primary,
    };
    if !root {
        if uid == nix::unistd::getuid().as_raw() {
            return Ok(None);
        }
        return Err(Error::Agent {
            agent: String::new(),
            cause: format!("cluster.user {user:?} needs the supervisor to run as root"),
        });
    }
    tracing::info!(user, uid, gid, "agent processes drop to this account");
    Ok(Some(sys::Credentials { uid, gid }))
}

/// The limits of `cluster` as agent processes apply them.
fn limits(cluster: &agentcluster_conf::Cluster) -> agentcluster_agent::channel::Limits {
    agentcluster_agent::channel::Limits {
        max_response_bytes: cluster.max_response_bytes as usize,
        rate_limit: cluster
            .rate_limit
            .map(|r| agentcluster_agent::ratelimit::RateLimit {
                per_second: r.per_source,
                burst: r.burst,
            }),
    }
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

/// Fails with the arithmetic when this host cannot carry the fleet
/// (memory, tasks, open files), before anything is started.
fn check_capacity(fleet: &Fleet) -> Result<(), Error> {
    let (problems, summary) = capacity::check(fleet);
    if !problems.is_empty() {
        return Err(Error::Capacity(problems));
    }
    tracing::debug!("{summary}");
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit ([`check_capacity`]
/// has made sure the fleet fits under it).
fn raise_nofile_limit() -> Result<(), Error> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
        tracing::debug!(from = soft, to = hard, "raised RLIMIT_NOFILE");
    }
    Ok(())
}

/// Runs the snapshot watcher, restarting it whenever the set of files
/// changes (after a reload).
async fn watch_snapshots(
    mut files: watch::Receiver<Vec<PathBuf>>,
    changed: mpsc::Sender<Vec<PathBuf>>,
    shutdown: CancellationToken,
) {
    loop {
        let list = files.borrow_and_update().clone();
        let round = shutdown.child_token();
        let task = tokio::spawn(watcher::watch(list, changed.clone(), round.clone()));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            r = files.changed() => {
                if r.is_err() {
                    round.cancel();
                    let _ = task.await;
                    return;
                }
            }
        }
        round.cancel();
        if let Ok(Err(e)) = task.await {
            tracing::warn!(cause = %e, "snapshot watcher stopped");
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

impl Manager {
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
                let (config, sources) = fleet::plan(a, node).map_err(|cause| Error::Agent {
                    agent: a.name.clone(),
                    cause,
                })?;
                let stores = fleet::store_files(&a.name, &sources, compiled).map_err(|cause| {
                    Error::Agent {
                        agent: a.name.clone(),
                        cause,
                    }
                })?;
                Ok(Planned {
                    config,
                    sources,
                    stores,
                    notify: notifyconf::agent_targets(a, events),
                    engine_id: v3conf::engine_id(a, node),
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
    async fn refresh_snapshots(&mut self, files: &[PathBuf]) -> usize {
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
    async fn reload(&mut self) -> Response {
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
    fn summary(&self) -> String {
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

    fn ready(&self) -> Ready {
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
    fn status_list(&self) -> Vec<AgentStatus> {
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

    async fn handle(&mut self, request: Request) -> Response {
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
    async fn shutdown(self) {
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

/// A one-shot request, for callers inside the process (tests, signals).
pub async fn call(tx: &mpsc::Sender<api::Envelope>, request: Request) -> Option<Response> {
    let (reply, rx) = oneshot::channel();
    tx.send((request, reply)).await.ok()?;
    rx.await.ok()
}
