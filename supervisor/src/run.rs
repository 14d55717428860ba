//! `run`: everything the supervisor starts, in order, and the loop that
//! reacts to signals, operator requests, snapshot changes and dying tasks
//! until shutdown.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agentcluster_agent::sys::steer::Steering;
use agentcluster_conf::{Agent, Fleet};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, api};
use crate::error::Error;
use crate::events::bus::FLUSH_TIMEOUT;
use crate::events::sinks::{journal, kvp, traps};
use crate::events::{Bus, EventKind, NewEvent, State};
use crate::fleet::capacity;
use crate::fleet::manager::{Asker, Manager, Ready, Reports, Share};
use crate::fleet::plan::{credentials, limits, listen_addresses};
use crate::fleet::stores::compile_stores_counted;
use crate::fleet::watch::watch_snapshots;
use crate::process::addresses::{self, HostAddresses};
use crate::process::bind;
use crate::process::holder::Holders;
use crate::process::launch::Agents;
use crate::process::spawner;
use crate::process::unit::{Settings, Shared};
use crate::progress::Progress;
use crate::{metrics, status, systemd};

/// How often the stores served are marked as used and the cache directory
/// is pruned (`cluster.cache_max_age` is at least this, so a store served
/// by another supervisor sharing the directory is never pruned).
const CACHE_UPKEEP: std::time::Duration = std::time::Duration::from_secs(3600);

/// What the world outside the supervisor asks of it while it runs, besides
/// the requests that come over the control socket. The binary turns
/// signals into these (SIGTERM/SIGINT: `shutdown`; SIGHUP: `reload`).
#[derive(Debug)]
pub struct Triggers {
    /// Cancelled to stop the fleet and return.
    pub shutdown: CancellationToken,
    /// Each message asks for one reload of the configuration.
    pub reload: mpsc::Receiver<()>,
    /// Where the start reports how far it has come, for a caller that
    /// shows it (nobody needs to listen).
    pub progress: watch::Sender<Progress>,
}

/// Runs the fleet until `triggers.shutdown` is cancelled. `on_ready` is
/// called once, when every active agent has either answered ready or
/// failed for good. Operator requests arrive on the control socket at
/// `control`.
///
/// Shutdown has one owner, this function: once the token is cancelled the
/// loop ends, the control socket stops answering (its event streams go on),
/// `supervisor-stopping` is published, every agent process is stopped
/// (each publishing `stopped`), the event bus is closed, and every sink —
/// KVP, notifications, journal, event streams — delivers every event it
/// still holds before its task ends, within `events::bus::FLUSH_TIMEOUT` (a sink that
/// runs out of time says so in the log).
pub async fn run(
    fleet: Fleet,
    control: PathBuf,
    triggers: Triggers,
    on_ready: impl FnOnce(&Ready),
) -> Result<(), Error> {
    // First what can fail because of the setup, before any agent starts.
    check_capacity(&fleet)?;
    let listener = control::bind(&control)?;
    let progress = triggers.progress.clone();
    let (fleet, compiled) = tokio::task::spawn_blocking(move || {
        let compiled = compile_stores_counted(&fleet, &mut |c| {
            progress.send_replace(Progress::Compiling {
                done: c.done,
                total: c.total,
                records: c.records,
            });
        });
        (fleet, compiled)
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?;
    let compiled = compiled?;
    // Then the listen addresses the host lacks (`cluster.addresses`),
    // before anything binds them; they are removed however the run ends.
    let addresses = HostAddresses::new(
        fleet
            .cluster
            .addresses
            .as_ref()
            .map(|a| (a.interface.as_str(), a.create)),
    );
    let wanted = listen_addresses(&fleet.agents, fleet.cluster.snmp.as_ref());
    let result = match addresses.ensure(wanted).await {
        Ok(added) => {
            let added = Added {
                addresses: addresses.clone(),
                now: added,
            };
            serve(fleet, compiled, listener, triggers, on_ready, added).await
        }
        Err(e) => Err(e.into()),
    };
    addresses.release().await;
    result
}

/// The listen addresses added to the host at the start, and the handle
/// that adds and removes more as reloads change the fleet.
struct Added {
    addresses: HostAddresses,
    /// Added by the start, sorted.
    now: Vec<IpAddr>,
}

/// The steering of agent processes' datagrams into one socket each
/// (`agentcluster_agent::sys::steer`), for a map of twice the fleet's
/// endpoints (a reload may add some); `None` with `cluster.steering:
/// false` or one agent per process, or where the program cannot be
/// attached (no `CAP_BPF` and `CAP_NET_ADMIN`, an older kernel), said
/// once: every device's socket then receives its own datagrams.
fn steer(fleet: &Fleet) -> Option<Steering> {
    // Only packed processes have steering sockets.
    if !fleet.cluster.steering || fleet.cluster.agents_per_process < 2 {
        return None;
    }
    let endpoints: usize = fleet.agents.iter().map(|a| a.listen.len()).sum();
    let entries = (endpoints * 2).clamp(1 << 16, 1 << 20).next_power_of_two() as u32;
    match Steering::attach(entries) {
        Ok(s) => {
            tracing::debug!(map = s.id(), entries, "steering attached");
            Some(s)
        }
        Err(e) => {
            tracing::info!(cause = %e, "datagrams are not steered: each device's socket receives its own");
            None
        }
    }
}

/// [`run`] once the stores are compiled and the host has every listen
/// address: binds, starts and supervises until shutdown.
async fn serve(
    fleet: Fleet,
    compiled: HashMap<PathBuf, PathBuf>,
    listener: control::ControlListener,
    triggers: Triggers,
    on_ready: impl FnOnce(&Ready),
    added: Added,
) -> Result<(), Error> {
    let Triggers {
        shutdown,
        reload: mut reload_requests,
        progress,
    } = triggers;
    let active: Vec<&Agent> = fleet.agents.iter().filter(|a| a.active).collect();
    progress.send_replace(Progress::Binding {
        endpoints: active.iter().map(|a| a.listen.len()).sum(),
    });
    // Before the holders start: they inherit the raised limit, and each
    // keeps as many sockets as it allows.
    raise_nofile_limit()?;
    let mut sockets = bind::Sockets::new(Holders::start()?);
    let binding = std::time::Instant::now();
    sockets.bind(active.iter().copied()).map_err(Error::Bind)?;
    tracing::debug!(
        endpoints = active.iter().map(|a| a.listen.len()).sum::<usize>(),
        ms = binding.elapsed().as_millis() as u64,
        "bound in the socket holders"
    );
    let snmp_sockets = match &fleet.cluster.snmp {
        Some(snmp) => Some(status::bind(&snmp.listen).map_err(Error::Bind)?),
        None => None,
    };
    let metrics_listener = match &fleet.cluster.metrics {
        Some(m) => Some(metrics::bind(m.listen).map_err(|cause| Error::Metrics {
            listen: m.listen,
            cause,
        })?),
        None => None,
    };
    let active = active.len();

    let c = &fleet.cluster;
    let steering = steer(&fleet);
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
        steer: steering.as_ref().map(Steering::map),
    });
    // Event numbers go on from the last run's, and above any a KVP pool
    // holds, so no number (and no KVP key) is used twice.
    let floor = fleet
        .events
        .kvp
        .as_ref()
        .map_or(0, |k| kvp::last_seq_in(&k.path).saturating_add(1));
    let bus = Bus::persistent(&c.node, &c.state_dir, floor)?;
    // The fleet's start burst stays whole in the ring: a slow event stream
    // catches up from it.
    bus.keep_for(fleet.agents.len());
    let (missing_tx, mut missing) = mpsc::unbounded_channel();
    let shared = Shared {
        launcher: Arc::new(Agents::new(spawner::Spawner::start()?, settings.clone())),
        tokens: Arc::new(Semaphore::new(c.start_tokens.max(1) as usize)),
        bus: bus.clone(),
        settings,
        missing_stores: missing_tx,
    };
    // The sinks (and the status agent) outlive the agents: they end once
    // the bus is closed, after the last event.
    let services = TaskTracker::new();
    if let Some(path) = journal::available() {
        services.spawn(journal::run(path, bus.clone(), bus.closed()));
    }
    if let Some(k) = fleet.events.kvp.clone() {
        services.spawn(kvp::run(k, bus.clone(), bus.closed()));
    }
    let token_count = c.start_tokens.max(1) as usize;
    let tokens = shared.tokens.clone();
    let traps = traps::Traps::start(
        &fleet.events.notify,
        &fleet.events.mib_root,
        &c.node,
        &c.state_dir,
        &bus,
    )
    .await
    .map_err(std::io::Error::from)?;
    let informs_pending = traps.informs_pending();
    services.spawn(traps.run(bus.closed()));
    let (snmp_status, snmp_status_rx) = watch::channel(Vec::new());
    let snmp_on = snmp_sockets.is_some();
    if let (Some(sockets), Some(snmp)) = (snmp_sockets, &fleet.cluster.snmp) {
        let settings = status::Settings {
            community: snmp.community.expose().to_string(),
            mib_root: fleet.events.mib_root.clone(),
            node: c.node.clone(),
        };
        let task = status::run(sockets, settings, snmp_status_rx, bus.closed());
        services.spawn(async move {
            if let Err(e) = task.await {
                tracing::warn!(cause = %e, "cluster.snmp");
            }
        });
    }
    let mut reason = format!(
        "{} agent{} configured, {active} active",
        fleet.agents.len(),
        if fleet.agents.len() == 1 { "" } else { "s" }
    );
    if let Some(a) = &fleet.cluster.addresses
        && !added.now.is_empty()
    {
        reason += &format!(
            "; added {} to {}: {}",
            agentcluster_conf::plural_es(added.now.len(), "listen address"),
            a.interface,
            addresses::list(&added.now)
        );
    }
    bus.publish(NewEvent {
        pid: Some(std::process::id()),
        reason,
        ..NewEvent::new(EventKind::SupervisorStarted, State::Running)
    });

    let (requests_tx, mut requests) = mpsc::channel::<api::Envelope>(64);
    let mut control_task = services.spawn(control::serve(
        listener,
        api::Handle::with_events(requests_tx.clone(), bus.clone()),
        shutdown.clone(),
    ));
    let (watch_tx, watch_rx) = watch::channel(Vec::new());
    let (changed_tx, mut changed) = mpsc::channel(4);
    let mut watcher = services.spawn(watch_snapshots(watch_rx, changed_tx, shutdown.clone()));
    let (dead_tx, mut dead) = mpsc::unbounded_channel();
    let (work_tx, mut work) = mpsc::unbounded_channel();
    let reports = Reports {
        dead: dead_tx,
        work: work_tx,
    };
    let mut manager = Manager::start(
        &fleet, &compiled, shared, sockets, limits_tx, watch_tx, reports,
    )?;
    manager.adopt_addresses(added.addresses);
    // A cluster node (`cluster.etcd`, no agents of its own) is given its
    // share of the fleet in etcd through `shares`.
    let (shares_tx, mut shares) = mpsc::channel::<Share>(16);
    let units_stopped = CancellationToken::new();
    // Faults injected by hand go to the node, which keeps them in etcd
    // and replays those of the agents it takes over.
    let (hand_tx, hand_rx) = mpsc::unbounded_channel();
    let node_task = start_node(
        &fleet,
        &bus,
        manager.roster(),
        shares_tx,
        Hand {
            faults: hand_rx,
            requests: api::Handle::with_events(requests_tx.clone(), bus.clone()),
        },
        &shutdown,
        &units_stopped,
    )
    .await?;
    if node_task.is_some() {
        manager.record_hand_faults(hand_tx);
    }
    // Scheduled faults reach the manager as an operator's do.
    services.spawn(crate::fleet::scenarios::run(
        manager.scenarios(),
        api::Handle::with_events(requests_tx.clone(), bus.clone()),
        shutdown.clone(),
    ));
    let fleet_interface = fleet
        .cluster
        .addresses
        .as_ref()
        .map(|a| a.interface.clone());
    drop((fleet, compiled));
    if let Some(listener) = metrics_listener {
        let sources = metrics::Sources {
            roster: manager.roster(),
            bus: bus.clone(),
            tokens,
            token_count,
            informs: informs_pending,
        };
        let task = metrics::serve(listener, sources, bus.closed());
        services.spawn(async move {
            if let Err(e) = task.await {
                tracing::warn!(cause = %e, "cluster.metrics");
            }
        });
    }

    // The initial start is over when every active unit is running or failed.
    let starting = |ready, failed| Progress::Starting {
        ready,
        failed,
        total: active,
    };
    progress.send_replace(starting(0, 0));
    tokio::select! {
        () = manager.started_counting(|ready, failed| {
            progress.send_replace(starting(ready, failed));
        }) => {}
        () = shutdown.cancelled() => {}
    }
    progress.send_replace(Progress::Started);
    if !shutdown.is_cancelled() {
        let mut ready = manager.ready();
        ready.added = added.now;
        ready.interface = fleet_interface;
        on_ready(&ready);
        systemd::ready(&manager.summary());
    }
    // systemd's watchdog is fed from this loop, so only while it turns; the
    // status line is refreshed at the same pace (or every 10 s).
    let mut beat = tokio::time::interval(
        systemd::watchdog_interval().unwrap_or(std::time::Duration::from_secs(10)),
    );
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snmp_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    snmp_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The cache directory's upkeep: at once, then every hour.
    let mut cache_tick = tokio::time::interval(CACHE_UPKEEP);
    cache_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure = None;
    let mut control_ended = false;
    // The loop only reacts: whatever is slow (reading the configuration,
    // compiling snapshots, waiting for processes to stop) runs elsewhere
    // and comes back as `work`.
    loop {
        tokio::select! {
            // Shutdown first: the control and watcher tasks end with it, and
            // that is not a failure.
            biased;
            () = shutdown.cancelled() => break,
            _ = beat.tick() => {
                systemd::watchdog_ping();
                systemd::status(&manager.summary());
            }
            _ = snmp_tick.tick(), if snmp_on => {
                let now = manager.status_list();
                snmp_status.send_if_modified(|cur| {
                    if *cur == now { false } else { *cur = now; true }
                });
            }
            Some(name) = dead.recv() => {
                // A supervision task died: a bug. Stop everything and exit
                // with an error, so an outer supervisor (systemd) restarts us.
                tracing::error!(unit = %name, "supervision task died; shutting down");
                failure = Some(Error::Agent { agent: name, cause: "supervision task died".into() });
                break;
            }
            _ = cache_tick.tick() => manager.tend_cache(),
            Some(w) = work.recv() => manager.on_work(w).await,
            Some(()) = reload_requests.recv() => manager.reload(Asker::Signal),
            Some((request, reply)) = requests.recv() => manager.handle(request, reply).await,
            Some(files) = changed.recv() => manager.snapshots_changed(files),
            Some(stores) = missing.recv() => manager.stores_missing(stores),
            Some(share) = shares.recv() => manager.share(share),
            // Our own long-lived tasks end only at shutdown; one that ends
            // earlier is a failure, never silence.
            r = &mut control_task => {
                control_ended = true;
                // The shutdown may come between this select's look at the
                // token and its look at the task, on another thread: a
                // task that ended *because of* it is no failure.
                if shutdown.is_cancelled() && matches!(r, Ok(Ok(()))) {
                    break;
                }
                let cause = match r {
                    Ok(Ok(())) => "ended".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::error!(%cause, "control socket task stopped; shutting down");
                failure = Some(Error::Io(std::io::Error::other(format!("control socket: {cause}"))));
                break;
            }
            r = &mut watcher => {
                if shutdown.is_cancelled() && matches!(r, Ok(())) {
                    break;
                }
                tracing::error!(cause = ?r.err(), "snapshot watcher stopped; shutting down");
                failure = Some(Error::Io(std::io::Error::other("the snapshot watcher stopped")));
                break;
            }
        }
    }
    // The services that end with the token (control socket, watcher) end
    // now, whatever ended the loop.
    shutdown.cancel();
    systemd::stopping();
    bus.publish(NewEvent {
        pid: Some(std::process::id()),
        reason: "shutdown requested".into(),
        ..NewEvent::new(EventKind::SupervisorStopping, State::Stopping)
    });
    manager.shutdown().await;
    // A node gives its owner keys up once its agents are stopped.
    units_stopped.cancel();
    if let Some(task) = node_task
        && tokio::time::timeout(FLUSH_TIMEOUT, task).await.is_err()
    {
        tracing::warn!(
            "cluster: the node did not release its keys in time; they expire with its lease"
        );
    }
    // Every event is published: the sinks deliver what they hold (each
    // within FLUSH_TIMEOUT, informs within their grace) and end; this
    // bound only catches a sink that would not.
    bus.close();
    services.close();
    let bound = 2 * FLUSH_TIMEOUT;
    if tokio::time::timeout(bound, services.wait()).await.is_err() {
        tracing::warn!(
            "the event sinks did not finish within {bound:?} of the shutdown: events they still held are lost"
        );
        control_ended = true;
    }
    if !control_ended {
        match control_task.await {
            Ok(Err(e)) => tracing::warn!(cause = %e, "control socket"),
            Err(e) => tracing::warn!(cause = %e, "control socket task"),
            Ok(Ok(())) => {}
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What a cluster node is given to carry faults injected by hand: the
/// faults as operators inject them, and where to inject those of the
/// agents it takes over.
struct Hand {
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    faults: mpsc::UnboundedReceiver<crate::fleet::manager::HandFault>,
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    requests: api::Handle,
}

/// Starts the cluster node when `fleet` is one (`cluster.etcd` and no
/// agents of its own): its task, which ends after `units_stopped`.
#[cfg(feature = "etcd")]
async fn start_node(
    fleet: &Fleet,
    bus: &crate::events::Bus,
    roster: tokio::sync::watch::Receiver<crate::fleet::manager::Roster>,
    shares: mpsc::Sender<Share>,
    hand: Hand,
    shutdown: &CancellationToken,
    units_stopped: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, Error> {
    let Some(etcd) = fleet.cluster.etcd.clone() else {
        return Ok(None);
    };
    if !fleet.agents.is_empty() {
        return Ok(None);
    }
    let serves = match &etcd.serves {
        Some(ranges) => ranges
            .iter()
            .map(|r| format!("{}/{}", r.addr, r.len))
            .collect(),
        None => addresses::host_ranges().await?,
    };
    let settings = crate::cluster::node::Settings {
        node: fleet.cluster.node.clone(),
        serves,
        etcd,
        base: fleet.clone(),
        roster: std::sync::Arc::new(move || node_roster(&roster.borrow())),
        capacity: crate::fleet::capacity::agents_that_fit(
            fleet,
            &crate::fleet::capacity::Host::probe(),
        ),
        requests: hand.requests,
    };
    Ok(Some(tokio::spawn(crate::cluster::node::run(
        settings,
        bus.clone(),
        shares,
        hand.faults,
        shutdown.clone(),
        units_stopped.clone(),
    ))))
}

/// Every agent of `roster` as a node's status key reports it.
#[cfg(feature = "etcd")]
fn node_roster(roster: &crate::fleet::manager::Roster) -> crate::cluster::status::Roster {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut entries = Vec::new();
    for m in roster.iter() {
        let status = m.status.borrow();
        // A running unit runs since then: the unix time of that instant.
        let since = status
            .running_since
            .map(|at| now.saturating_sub(at.elapsed().as_millis() as u64));
        for name in m.names.iter() {
            entries.push(crate::cluster::status::Entry {
                agent: name.clone(),
                state: status.state,
                pid: status.pid,
                restarts: status.restarts,
                since,
            });
        }
    }
    std::sync::Arc::new(entries)
}

/// Without etcd support a fleet is always its own.
#[cfg(not(feature = "etcd"))]
async fn start_node(
    _fleet: &Fleet,
    _bus: &crate::events::Bus,
    _roster: tokio::sync::watch::Receiver<crate::fleet::manager::Roster>,
    _shares: mpsc::Sender<Share>,
    _hand: Hand,
    _shutdown: &CancellationToken,
    _units_stopped: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, Error> {
    Ok(None)
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
