//! The agent process (`agentcluster agent`): takes its control channel and
//! sockets from inherited descriptors, completes the start handshake (its
//! stores come as descriptors with the start message, and with each swap:
//! it opens no file by path), serves until told to stop, and exits at once
//! when the supervisor goes away.

use std::collections::{BTreeMap, HashMap};
use std::net::UdpSocket;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::data::store::Store;
use crate::data::values::Values;
use crate::notify::{COLD_START, WARM_START};
use crate::responder::{Counters, Drops, Responder};
use crate::runtime::channel::{
    self, AgentStats, CHANNEL_FD, FIRST_SOCKET_FD, FromAgent, PROTOCOL, Start, ToAgent,
};
use crate::runtime::faults::{
    Behaviour, Faults, IF_ADMIN_STATUS, IF_INDEX, IF_OPER_STATUS, LINK_DOWN, LINK_UP, Link,
    apply_links, link_values,
};
use crate::runtime::serve::{self, Shared, SharedBehaviour};
use crate::sys::adopt_fd;
use crate::wire::value::Value;

/// Whether this process was started as an agent process: its control
/// channel, a Unix stream socket, is on fd 3. Someone who types
/// `agentcluster agent` has none, and is told so instead of waiting.
pub fn started_by_supervisor() -> bool {
    crate::sys::is_unix_stream(CHANNEL_FD)
}

/// Runs the agent process; returns the process exit code.
pub fn main() -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentcluster agent: cannot start the runtime: {e}");
            return 2;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(cause = %e, "agent process failed");
            1
        }
    }
}

struct Served {
    name: String,
    responder: Shared,
    /// The device's faults, as its serving loop applies them.
    behaviour: SharedBehaviour,
    /// The device's own values as configured: a link's state goes over
    /// them.
    base_values: Values,
    /// The links a fault changed.
    links: BTreeMap<u32, Link>,
}

async fn run() -> Result<(), String> {
    let fd = adopt_fd(CHANNEL_FD).map_err(|e| format!("no control channel on fd 3: {e}"))?;
    let std_stream = StdUnixStream::from(fd);
    std_stream
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let stream = UnixStream::from_std(std_stream).map_err(|e| e.to_string())?;
    let (reader, writer) = stream.into_split();
    let mut reader = channel::Receiver::new(reader);

    let (mut start, store_fds) = match reader.recv::<ToAgent>().await {
        Ok(Some((ToAgent::Start(s), fds))) => (s, fds),
        Ok(Some(_)) => return Err("the first message was not a start".into()),
        Ok(None) => return Err("the supervisor closed the channel before the start".into()),
        Err(e) => return Err(format!("bad start message: {e}")),
    };
    let token = start.token.clone();
    let begun = Instant::now();
    let mut served = match build(&start, store_fds, begun) {
        Ok(s) => s,
        Err(reason) => {
            let msg = FromAgent::Failed {
                token,
                reason: reason.clone(),
            };
            let _ = channel::send(writer.as_ref(), &msg, &[]).await;
            return Err(reason);
        }
    };
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let outbox = serve::Outbox::spawn(&shutdown);
    let poller = serve::Poller::spawn(&mut tasks, &outbox, &shutdown)
        .map_err(|e| format!("cannot wait for the sockets: {e}"))?;
    let (endpoints_by_agent, steering) = take_sockets(&start)?;
    // The values are in the views' overlays now, and the faces are made:
    // neither list is kept.
    for spec in &mut start.agents {
        spec.values = Default::default();
        spec.unbound = Vec::new();
    }
    for (s, endpoints) in served.iter().zip(&endpoints_by_agent) {
        serve::serve_device(&poller, endpoints.clone(), &s.responder, &s.behaviour)
            .map_err(|e| format!("cannot serve the sockets of {}: {e}", s.name))?;
    }
    if !steering.is_empty() {
        let n = poller
            .steer(steering)
            .map_err(|e| format!("cannot serve the steering sockets: {e}"))?;
        tracing::debug!(devices = n, "serving the steering sockets");
    }
    channel::send(writer.as_ref(), &FromAgent::Ready { token }, &[])
        .await
        .map_err(|e| format!("cannot answer ready: {e}"))?;
    for (spec, endpoints) in start.agents.iter().zip(&endpoints_by_agent) {
        if !spec.notify.is_empty() {
            // A reboot's coldStart comes once the device answers again.
            let up = up_at(begun, spec.reboot_from_ns, spec.reboot_outage_ms);
            let local = local_engine(spec, up);
            let trap_oid = if spec.cold { COLD_START } else { WARM_START };
            let (spec, endpoints) = (spec.clone(), endpoints.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(up.into()).await;
                send_notifications(&spec, &endpoints, local, trap_oid, Vec::new()).await;
            });
        }
    }
    tracing::debug!(elapsed = ?begun.elapsed(), "ready");

    // One writer: heartbeats and swap results go through this queue.
    let (out_tx, mut out_rx) = mpsc::channel::<FromAgent>(16);
    let writer_task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if channel::send(writer.as_ref(), &msg, &[]).await.is_err() {
                    // The supervisor is gone.
                    shutdown.cancel();
                    break;
                }
            }
        })
    };
    let heartbeat = Duration::from_millis(start.heartbeat_ms.max(10));
    let stats: Vec<(String, Shared)> = served
        .iter()
        .map(|s| (s.name.clone(), s.responder.clone()))
        .collect();
    {
        let out_tx = out_tx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut said = Said::new(stats.len());
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let now = stats.iter().map(|(name, r)| (name, serve::counters(r)));
                let agents = said.news(now);
                if out_tx.send(FromAgent::Heartbeat { agents }).await.is_err() {
                    break;
                }
            }
        });
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    // Ctrl-C in a terminal reaches the whole process group: the supervisor
    // decides when agents stop, so SIGINT and SIGHUP are only noted.
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = term.recv() => break,
            _ = int.recv() => {}
            _ = hup.recv() => {}
            // Cancel-safe: a frame partly read stays for the next turn.
            msg = reader.recv::<ToAgent>() => match msg {
                Ok(Some((ToAgent::Stop, _))) => break,
                Ok(Some((ToAgent::Swap { stores, swaps }, fds))) => {
                    let result = apply_swaps(&served, &stores, fds, &swaps);
                    let msg = match result {
                        Ok(()) => FromAgent::Swapped { ok: true, reason: String::new() },
                        Err(reason) => FromAgent::Swapped { ok: false, reason },
                    };
                    let _ = out_tx.send(msg).await;
                }
                Ok(Some((ToAgent::Limits(limits), _))) => {
                    for s in &served {
                        let mut r = s.responder.lock().unwrap_or_else(PoisonError::into_inner);
                        r.set_max_message_size(limits.max_response_bytes);
                        r.set_rate_limit(limits.rate_limit);
                    }
                    tracing::debug!(?limits, "limits changed");
                }
                Ok(Some((ToAgent::Faults { agent, faults }, _))) => {
                    match (served.get_mut(agent), start.agents.get(agent), endpoints_by_agent.get(agent)) {
                        (Some(s), Some(spec), Some(endpoints)) => {
                            set_faults(s, spec, endpoints, &faults);
                        }
                        _ => tracing::warn!(agent, "faults for an agent this process does not serve"),
                    }
                    let _ = out_tx.send(FromAgent::Applied).await;
                }
                Ok(Some((ToAgent::Reboot { agent, boots, outage_ms, from_ns }, _))) => {
                    match (served.get_mut(agent), start.agents.get(agent), endpoints_by_agent.get(agent)) {
                        (Some(s), Some(spec), Some(endpoints)) => {
                            let up = up_at(Instant::now(), from_ns, outage_ms);
                            reboot(s, spec, endpoints, boots, up);
                        }
                        _ => tracing::warn!(agent, "a reboot of an agent this process does not serve"),
                    }
                    let _ = out_tx.send(FromAgent::Applied).await;
                }
                Ok(Some((ToAgent::Start(_), _))) => {
                    tracing::warn!("ignoring a second start message");
                }
                // EOF or a broken channel: the supervisor is gone. Exit at
                // once; PR_SET_PDEATHSIG is the backstop for this.
                Ok(None) | Err(_) => std::process::exit(0),
            },
        }
    }
    shutdown.cancel();
    let served = join_serving(&mut tasks).await;
    writer_task.abort();
    served
}

/// Waits for every serving loop to end: an error if one failed (it
/// stopped the process; the exit status must say so, for `restart:
/// on-failure`), the first such error.
async fn join_serving(tasks: &mut tokio::task::JoinSet<std::io::Result<()>>) -> Result<(), String> {
    let mut failed = None;
    while let Some(done) = tasks.join_next().await {
        let cause = match done {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => format!("serving a socket failed: {e}"),
            Err(e) => format!("a serving loop failed: {e}"),
        };
        failed.get_or_insert(cause);
    }
    failed.map_or(Ok(()), Err)
}

/// The device's engine as its notifications name it: snmpEngineBoots of
/// the start message, snmpEngineTime from `start`.
fn local_engine(spec: &channel::AgentSpec, start: Instant) -> crate::notify::LocalEngine {
    let boots = spec
        .config
        .v3
        .as_ref()
        .map_or(1, |v3| v3.engine_boots.max(1));
    crate::notify::LocalEngine {
        engine_id: spec.engine_id.clone(),
        boots,
        start,
    }
}

/// The agent's faults from now on: the serving loop's behaviour, and for
/// each link that went down or came up, its ifOperStatus and ifLastChange
/// (sysUpTime now) in the device's own values and a linkDown or linkUp to
/// its targets.
fn set_faults(
    s: &mut Served,
    spec: &channel::AgentSpec,
    endpoints: &[serve::Endpoint],
    faults: &Faults,
) {
    s.behaviour
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .set(faults);
    let mut r = s.responder.lock().unwrap_or_else(PoisonError::into_inner);
    let started = r.started();
    let ticks = (Instant::now()
        .saturating_duration_since(started)
        .as_millis()
        / 10) as u32;
    let (links, changes) = apply_links(&s.links, faults, ticks);
    if changes.is_empty() {
        return;
    }
    if let Err(e) = r.set_values(&link_values(&s.base_values, &links)) {
        tracing::warn!(agent = %s.name, cause = %e, "cannot serve the links' state");
    }
    s.links = links;
    let notes: Vec<_> = changes
        .into_iter()
        .map(|(index, down)| {
            let oid = |column: &[u32]| {
                let mut o = column.to_vec();
                o.push(index);
                o
            };
            let admin = r.recorded_integer(&oid(IF_ADMIN_STATUS)).unwrap_or(1);
            let varbinds = vec![
                (oid(IF_INDEX), Value::Integer(i64::from(index))),
                (oid(IF_ADMIN_STATUS), Value::Integer(admin)),
                (
                    oid(IF_OPER_STATUS),
                    Value::Integer(if down { 2 } else { 1 }),
                ),
            ];
            (if down { LINK_DOWN } else { LINK_UP }, varbinds)
        })
        .collect();
    drop(r);
    tracing::debug!(agent = %s.name, ?faults, "faults changed");
    if spec.notify.is_empty() {
        return;
    }
    let local = local_engine(spec, started);
    let (spec, endpoints) = (spec.clone(), endpoints.to_vec());
    tokio::spawn(async move {
        for (trap_oid, varbinds) in notes {
            send_notifications(&spec, &endpoints, local.clone(), trap_oid, varbinds).await;
        }
    });
}

/// When a rebooted device is up again: `outage_ms` after `from_ns` (the
/// supervisor's instant, [`crate::clock`]), or after `otherwise` when the
/// supervisor gave none.
fn up_at(otherwise: Instant, from_ns: u64, outage_ms: u64) -> Instant {
    let from = match from_ns {
        0 => otherwise,
        ns => crate::clock::instant_of(ns),
    };
    from + Duration::from_millis(outage_ms)
}

/// Reboots one agent of the process: unanswered until `up`, then
/// sysUpTime from 0 and snmpEngineBoots `boots`, its links that are down
/// down since the boot, and a coldStart.
fn reboot(
    s: &mut Served,
    spec: &channel::AgentSpec,
    endpoints: &[serve::Endpoint],
    boots: u32,
    up: Instant,
) {
    s.behaviour
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .deaf_until(up);
    {
        let mut r = s.responder.lock().unwrap_or_else(PoisonError::into_inner);
        r.reboot(up, boots);
        s.links.retain(|_, l| l.down);
        for l in s.links.values_mut() {
            l.changed = 0;
        }
        if let Err(e) = r.set_values(&link_values(&s.base_values, &s.links)) {
            tracing::warn!(agent = %s.name, cause = %e, "cannot serve the links' state");
        }
    }
    tracing::debug!(agent = %s.name, boots, outage = ?up.saturating_duration_since(Instant::now()), "reboot");
    if spec.notify.is_empty() {
        return;
    }
    let mut local = local_engine(spec, up);
    local.boots = boots.max(1);
    let (spec, endpoints) = (spec.clone(), endpoints.to_vec());
    tokio::spawn(async move {
        tokio::time::sleep_until(up.into()).await;
        send_notifications(&spec, &endpoints, local, COLD_START, Vec::new()).await;
    });
}

/// One notification of the device (`trap_oid` with `varbinds`) to each of
/// its targets, sent as a real device sends it: from the device's own
/// endpoint (its first one of the target's address family — the socket it
/// serves on, so the source address and port are the device's), with an
/// SNMPv1 Trap's agent-addr that endpoint's address (for one bound to
/// 0.0.0.0, the address the kernel sends to the target from), sysUpTime
/// counted from `local.start`. The serving loop hands an inform's
/// acknowledgement (and an SNMPv3 receiver's discovery Report) to the
/// sender. A device with no endpoint of the target's family sends from an
/// ephemeral port of that family instead. The coldStart or warmStart of a
/// start is one of these.
async fn send_notifications(
    spec: &channel::AgentSpec,
    endpoints: &[serve::Endpoint],
    local: crate::notify::LocalEngine,
    trap_oid: &[u32],
    varbinds: Vec<(crate::wire::value::Oid, Value)>,
) {
    use crate::notify::{Kind, Notification, Sender};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let what = match trap_oid {
        COLD_START => "coldStart".to_string(),
        WARM_START => "warmStart".to_string(),
        LINK_DOWN => "linkDown".to_string(),
        LINK_UP => "linkUp".to_string(),
        other => crate::wire::value::DisplayOid(other).to_string(),
    };
    for target in &spec.notify {
        let v6 = target.address.starts_with('[')
            || target
                .address
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.is_ipv6());
        let endpoint = endpoints.iter().find_map(|e| {
            let at = e.socket.local_addr().ok()?;
            (at.is_ipv6() == v6).then_some((e, at.ip()))
        });
        let (sender, ip) = match endpoint {
            Some((e, ip)) => (
                Ok(Sender::over(
                    e.socket.clone(),
                    e.replies.clone(),
                    local.clone(),
                )),
                ip,
            ),
            None => {
                let any: IpAddr = if v6 {
                    Ipv6Addr::UNSPECIFIED.into()
                } else {
                    Ipv4Addr::UNSPECIFIED.into()
                };
                (
                    Sender::bind(SocketAddr::new(any, 0), local.clone()).await,
                    any,
                )
            }
        };
        let to = tokio::net::lookup_host(&target.address)
            .await
            .ok()
            .and_then(|mut addrs| addrs.find(|a| a.is_ipv6() == v6));
        let n = Notification {
            trap_oid: trap_oid.to_vec(),
            uptime: (Instant::now()
                .saturating_duration_since(local.start)
                .as_millis()
                / 10) as u32,
            varbinds: varbinds.clone(),
            agent_addr: to.map_or([0; 4], |to| crate::notify::agent_addr(ip, to)),
        };
        let result = match sender {
            Ok(mut sender) => sender.send(target, &n).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) if target.kind == Kind::Inform => {
                tracing::debug!(agent = %spec.name, target = %target.address, "{what} inform acknowledged");
            }
            Ok(()) => {
                tracing::debug!(agent = %spec.name, target = %target.address, "{what} trap sent");
            }
            Err(e) => {
                let kind = if matches!(trap_oid, COLD_START | WARM_START) {
                    "start notification"
                } else {
                    "notification"
                };
                tracing::warn!(agent = %spec.name, target = %target.address, cause = %e, notification = %what, "{kind} not delivered");
            }
        }
    }
}

/// Maps the stores a message named from the descriptors that came with it
/// (the channel has checked that one came per store), then closes the
/// descriptors: the mappings stay. The paths only name the stores in
/// errors.
fn map_stores(names: &[PathBuf], fds: Vec<OwnedFd>) -> Result<Vec<Arc<Store>>, String> {
    names
        .iter()
        .zip(fds)
        .map(|(name, fd)| {
            Store::from_file(&std::fs::File::from(fd), name)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn build(start: &Start, fds: Vec<OwnedFd>, begun: Instant) -> Result<Vec<Served>, String> {
    if start.protocol != PROTOCOL {
        return Err(format!(
            "control protocol {} is not supported (this agent speaks {PROTOCOL})",
            start.protocol
        ));
    }
    let stores = map_stores(&start.stores, fds)?;
    let mut served = Vec::with_capacity(start.agents.len());
    for spec in &start.agents {
        let views = spec
            .stores
            .iter()
            .map(|&i| {
                stores
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("agent {}: no store #{i}", spec.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A reboot's device counts its uptime from the end of its outage.
        let up = up_at(begun, spec.reboot_from_ns, spec.reboot_outage_ms);
        let mut responder = Responder::new(spec.config.clone(), views, up);
        responder.set_rate_limit(spec.rate_limit);
        responder.set_notify_engine_id(spec.engine_id.clone());
        responder.set_animate(spec.animate.map(crate::data::animate::Animate::new));
        // Links down before this process are down since its start.
        let links: BTreeMap<u32, Link> = spec
            .faults
            .links_down
            .iter()
            .map(|&i| {
                (
                    i,
                    Link {
                        down: true,
                        changed: 0,
                    },
                )
            })
            .collect();
        if !spec.values.is_empty() || !links.is_empty() {
            responder
                .set_values(&link_values(&spec.values, &links))
                .map_err(|e| format!("agent {}: {e}", spec.name))?;
        }
        let mut behaviour = Behaviour::new(seed(&spec.name));
        behaviour.set(&spec.faults);
        if spec.reboot_outage_ms > 0 {
            behaviour.deaf_until(up);
        }
        served.push(Served {
            name: spec.name.clone(),
            responder: Arc::new(Mutex::new(responder)),
            behaviour: Arc::new(Mutex::new(behaviour)),
            base_values: spec.values.clone(),
            links,
        });
    }
    Ok(served)
}

/// A seed for an agent's loss and jitter: random per process.
fn seed(name: &str) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(name)
}

/// Each agent's inherited sockets, in order, as served endpoints; then
/// the steering sockets.
type Sockets = (Vec<Vec<serve::Endpoint>>, Vec<UdpSocket>);

fn take_sockets(start: &Start) -> Result<Sockets, String> {
    let mut fd = FIRST_SOCKET_FD;
    let mut out = Vec::with_capacity(start.agents.len());
    for spec in &start.agents {
        let mut endpoints = Vec::with_capacity(spec.sockets + spec.unbound.len());
        for _ in 0..spec.sockets {
            let socket = adopt_fd(fd)
                .map(UdpSocket::from)
                .and_then(serve::Endpoint::new)
                .map_err(|e| format!("agent {}: socket fd {fd}: {e}", spec.name))?;
            endpoints.push(socket);
            fd += 1;
        }
        out.push(endpoints);
    }
    add_faces(start, &mut out)?;
    let steering = (0..start.steering as i32)
        .map(|i| {
            adopt_fd(fd + i)
                .map(UdpSocket::from)
                .map_err(|e| format!("steering socket fd {}: {e}", fd + i))
        })
        .collect::<Result<_, String>>()?;
    Ok((out, steering))
}

/// Adds to each agent's endpoints those of its endpoints that have no
/// socket ([`channel::AgentSpec::unbound`]): a face of a socket of the
/// process bound to another address of the same port and family.
fn add_faces(start: &Start, endpoints: &mut [Vec<serve::Endpoint>]) -> Result<(), String> {
    if start.agents.iter().all(|a| a.unbound.is_empty()) {
        return Ok(());
    }
    let mut anchors: HashMap<(bool, u16), serve::Endpoint> = HashMap::new();
    for e in endpoints.iter().flatten() {
        if let Ok(at) = e.socket.local_addr()
            && !at.ip().is_unspecified()
        {
            anchors
                .entry((at.is_ipv6(), at.port()))
                .or_insert_with(|| e.clone());
        }
    }
    for (spec, endpoints) in start.agents.iter().zip(endpoints) {
        for &at in &spec.unbound {
            let anchor = anchors.get(&(at.is_ipv6(), at.port())).ok_or_else(|| {
                format!(
                    "agent {}: endpoint {at} has no socket, and none of the process's is at its port",
                    spec.name
                )
            })?;
            let face = serve::Endpoint::face(anchor, at)
                .map_err(|e| format!("agent {}: endpoint {at}: {e}", spec.name))?;
            endpoints.push(face);
        }
    }
    Ok(())
}

fn apply_swaps(
    served: &[Served],
    names: &[PathBuf],
    fds: Vec<OwnedFd>,
    swaps: &[channel::Swap],
) -> Result<(), String> {
    // Map everything first, so a bad store changes nothing.
    let stores = map_stores(names, fds)?;
    let mut mapped = Vec::with_capacity(swaps.len());
    for s in swaps {
        let agent = served
            .get(s.agent)
            .ok_or_else(|| format!("no agent #{}", s.agent))?;
        let store = stores
            .get(s.store)
            .ok_or_else(|| format!("no store #{}", s.store))?;
        mapped.push((agent, s.view, store.clone()));
    }
    for (agent, view, store) in mapped {
        let mut r = agent
            .responder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !r.swap_store(view, store) {
            return Err(format!("agent {} has no view #{view}", agent.name));
        }
    }
    Ok(())
}

/// What a process's last heartbeat said of each of its agents' counters.
/// A heartbeat carries the agents whose counters moved since (every agent
/// in the first): a quiet packed process costs the supervisor a few bytes
/// a heartbeat instead of a record of each of its devices, and one asked
/// by a load costs it the devices that load asked.
struct Said(Vec<Option<(u64, u64, Drops)>>);

impl Said {
    /// Nothing said yet of `agents` agents.
    fn new(agents: usize) -> Said {
        Said(vec![None; agents])
    }

    /// The stats of the next heartbeat, from each agent's name and
    /// counters now (in the start message's order), noted as said.
    fn news<'a>(&mut self, now: impl Iterator<Item = (&'a String, Counters)>) -> Vec<AgentStats> {
        let mut news = Vec::new();
        for (said, (name, c)) in self.0.iter_mut().zip(now) {
            let counts = Some((c.requests, c.dropped, c.drops));
            if *said != counts {
                *said = counts;
                news.push(AgentStats {
                    name: name.clone(),
                    requests: c.requests,
                    dropped: c.dropped,
                    drops: c.drops,
                });
            }
        }
        news
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::notify::testutil::{local, note};
    use crate::notify::{Kind, NotifyUser, Sender, Target, Version};
    use crate::responder::{Config, Outcome};
    use crate::wire::ber::Frame;
    use crate::wire::value::Value;

    #[tokio::test]
    async fn a_v3_inform_discovers_the_receiver_and_reports_a_refusal() {
        // Our responder is a fine receiver for the USM part: it answers the
        // discovery probe and reports unknown users, so a v3 inform to it
        // is refused with usmStatsUnknownUserNames after discovery.
        let engine = vec![0x80, 0, 0x1f, 0x88, 5, 7, 7, 7];
        let config = Config {
            communities: vec![],
            max_varbinds: 10,
            max_message_size: 1500,
            v3: Some(crate::security::v3::V3Config {
                engine_id: engine.clone(),
                engine_boots: 4,
                users: vec![],
                contexts: vec![],
            }),
        };
        let record = crate::data::snapshot::Record {
            oid: vec![1, 3, 6, 1, 2, 1, 1, 5, 0],
            value: Value::OctetString(b"x".to_vec()),
            variation: None,
            line: 1,
        };
        let store =
            std::sync::Arc::new(crate::data::store::Store::from_records(&[record]).unwrap());
        let mut responder = Responder::new(config, vec![store], Instant::now());
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            let mut frame = Frame::default();
            loop {
                let (len, peer) = server.recv_from(&mut buf).await.unwrap();
                if responder.handle(&buf[..len], Instant::now(), &mut frame) == Outcome::Reply {
                    server.send_to(frame.as_slice(), peer).await.unwrap();
                }
            }
        });
        let mut s = Sender::bind("127.0.0.1:0".parse().unwrap(), local())
            .await
            .unwrap();
        let t = Target {
            address: addr.to_string(),
            version: Version::V3,
            kind: Kind::Inform,
            community: vec![],
            user: Some(NotifyUser {
                name: b"ops".to_vec(),
                auth: Some((crate::security::usm::AuthProtocol::Sha1, "authpass1".into())),
                privacy: None,
            }),
            retries: 1,
            timeout: Duration::from_millis(500),
        };
        let e = s.send(&t, &note()).await.unwrap_err();
        assert!(e.to_string().contains("usmStatsUnknownUserNames"), "{e}");
        assert_eq!(s.peer(&addr), Some((&engine[..], 4)));
        serve.abort();
    }

    #[tokio::test]
    async fn a_failed_serving_loop_fails_the_process() {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async { Ok(()) });
        tasks.spawn(async { Err(std::io::Error::other("socket gone")) });
        tasks.spawn(async { Ok(()) });
        let failed = join_serving(&mut tasks).await.unwrap_err();
        assert!(failed.contains("socket gone"), "{failed}");
        assert!(tasks.is_empty());
        // Loops that ended because the process was stopped: a clean exit.
        tasks.spawn(async { Ok(()) });
        assert_eq!(join_serving(&mut tasks).await, Ok(()));
    }

    #[test]
    fn a_heartbeat_names_the_agents_whose_counters_moved() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let counts = |requests: [u64; 3], dropped_b: u64| {
            let names = &names;
            (0..3).map(move |i| {
                let mut c = Counters {
                    requests: requests[i],
                    ..Counters::default()
                };
                if i == 1 {
                    for _ in 0..dropped_b {
                        c.drops.add(crate::responder::Drop::BadCommunity);
                    }
                    c.dropped = dropped_b;
                }
                (&names[i], c)
            })
        };
        let named = |news: Vec<AgentStats>| -> Vec<(String, u64, u64)> {
            news.into_iter()
                .map(|s| (s.name, s.requests, s.dropped))
                .collect()
        };
        let mut said = Said::new(3);
        // The first heartbeat names every agent, asked or not.
        let all = [("a", 0, 0), ("b", 0, 0), ("c", 5, 0)].map(|(n, r, d)| (n.to_string(), r, d));
        assert_eq!(named(said.news(counts([0, 0, 5], 0))), all);
        // Nothing moved: none.
        assert_eq!(named(said.news(counts([0, 0, 5], 0))), []);
        // A request to a, a drop at b: those two, in order.
        assert_eq!(
            named(said.news(counts([1, 0, 5], 1))),
            [("a".to_string(), 1, 0), ("b".to_string(), 0, 1)]
        );
        assert_eq!(named(said.news(counts([1, 0, 5], 1))), []);
        // A drop moves an agent even when its total of drops would not
        // tell (the reasons differ): here only the reason's count does.
        let mut moved = counts([1, 0, 5], 1).collect::<Vec<_>>();
        moved[1].1.drops = crate::responder::Drops::default();
        moved[1].1.drops.add(crate::responder::Drop::Parse);
        assert_eq!(
            named(said.news(moved.into_iter())),
            [("b".to_string(), 0, 1)]
        );
    }
}
