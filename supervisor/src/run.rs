//! `run`: everything the supervisor starts, in order, and the loop that
//! reacts to signals, operator requests, snapshot changes and dying tasks
//! until shutdown.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

use agentcluster_conf::{Agent, Fleet};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::control::api::Response;
use crate::control::{self, api};
use crate::error::Error;
use crate::events::sinks::{journal, kvp, traps};
use crate::events::{Bus, NewEvent};
use crate::fleet::capacity;
use crate::fleet::manager::{Manager, compile_stores};
use crate::fleet::plan::{credentials, limits};
use crate::fleet::watch::watch_snapshots;
use crate::process::bind;
use crate::process::spawner;
use crate::process::unit::{Settings, Shared};
use crate::{status, systemd};

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
        Some(snmp) => Some(status::bind(&snmp.listen).map_err(Error::Bind)?),
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
        let settings = status::Settings {
            community: snmp.community.expose().to_string(),
            mib_root: fleet.events.mib_root.clone(),
            node: c.node.clone(),
        };
        snmp_task = Some(tokio::spawn(status::run(
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
    let mut manager = Manager::start(&fleet, &compiled, shared, sockets, limits_tx, watch_tx)?;

    // The initial start is over when every active unit is running or failed.
    let started = manager.started();
    tokio::select! {
        _ = started => {}
        _ = shutdown.cancelled() => {}
    }
    if !shutdown.is_cancelled() {
        on_ready(&manager.ready());
        systemd::ready(&manager.summary());
    }
    // systemd's watchdog is fed from this loop, so only while it turns; the
    // status line is refreshed at the same pace (or every 10 s).
    let mut beat = tokio::time::interval(
        systemd::watchdog_interval().unwrap_or(std::time::Duration::from_secs(10)),
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
                systemd::watchdog_ping();
                systemd::status(&manager.summary());
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
            Some(name) = manager.next_dead() => {
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

    systemd::stopping();
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
