//! How a unit gets its process: [`Launch`] creates it and [`Proc`] is what
//! the unit holds of it — its pid, its exit, its channel, signals and its
//! /proc state. [`Agents`] is the real one (spawn helpers, our own binary,
//! the start message, and the stores opened here and handed over as
//! descriptors, at the start and with each swap); the unit tests drive
//! units with a fake.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use agentcluster_agent::channel::{self, AgentSpec, FromAgent, PROTOCOL, Start, Swap, ToAgent};
use agentcluster_agent::sys::steer::Map;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::process::holder::Held;
use crate::process::machine::{Exit, Sig};
use crate::process::spawner::{Child, Prepare, Spawner};
use crate::process::spec::{Settings, StoreSwap, UnitSpec};

/// A boxed future, as the object-safe traits below return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the channel of a process says, as its reader passes it on, tagged
/// with the generation of the process it came from.
#[derive(Debug)]
pub enum FromChannel {
    /// A message.
    Msg(FromAgent),
    /// The channel ended.
    Closed,
    /// The channel broke (a bad frame, an I/O error).
    Broken(String),
}

/// Creates the processes of units.
pub trait Launch: Send + Sync {
    /// Creates the process of `spec` (its `generation`-th start, with start
    /// token `token`), forwards what its channel says to `chan` tagged with
    /// `generation`, and sends it its start message. The handshake is over
    /// when a `ready` with `token` comes back on `chan`.
    fn launch<'a>(
        &'a self,
        spec: &'a UnitSpec,
        generation: u64,
        token: &'a str,
        chan: mpsc::Sender<(u64, FromChannel)>,
    ) -> BoxFuture<'a, Result<Box<dyn Proc>, String>>;
}

/// What /proc says of a process, for the watchdog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Stopped by a signal or a tracer (state `T` or `t`).
    pub stopped: bool,
    /// Resident memory, in bytes.
    pub rss: Option<u64>,
}

/// A process a unit holds.
pub trait Proc: Send {
    /// Its pid, while it is not reaped.
    fn id(&self) -> Option<u32>;
    /// Resolves when it has exited (and is reaped).
    fn wait(&mut self) -> BoxFuture<'_, Exit>;
    /// Sends a message that names no descriptor on its channel.
    fn send<'a>(&'a mut self, msg: &'a ToAgent) -> BoxFuture<'a, io::Result<()>>;
    /// Hands it new stores for some of its views: opens them and sends
    /// their descriptors with the swap. Its answer comes on the channel.
    fn swap<'a>(&'a mut self, swaps: &'a [StoreSwap]) -> BoxFuture<'a, io::Result<()>>;
    /// Signals it.
    fn signal(&self, sig: Sig);
    /// Its state in /proc, when it can be read.
    fn inspect(&self) -> Option<Inspection>;
}

/// The real launcher: agent processes of our own binary, created by the
/// spawn helpers, told their configuration in the start message.
pub struct Agents {
    spawner: Spawner,
    settings: Arc<Settings>,
}

impl Agents {
    /// A launcher that creates processes through `spawner`.
    pub fn new(spawner: Spawner, settings: Arc<Settings>) -> Agents {
        Agents { spawner, settings }
    }
}

impl Launch for Agents {
    fn launch<'a>(
        &'a self,
        spec: &'a UnitSpec,
        generation: u64,
        token: &'a str,
        chan: mpsc::Sender<(u64, FromChannel)>,
    ) -> BoxFuture<'a, Result<Box<dyn Proc>, String>> {
        Box::pin(async move {
            let p = self.spawn(spec, generation, token, chan).await?;
            Ok(Box::new(p) as Box<dyn Proc>)
        })
    }
}

impl Agents {
    /// Creates the process, starts its channel reader and sends the start
    /// message.
    async fn spawn(
        &self,
        spec: &UnitSpec,
        generation: u64,
        token: &str,
        chan_tx: mpsc::Sender<(u64, FromChannel)>,
    ) -> Result<AgentProcess, String> {
        let settings = &self.settings;
        // The stores first: one that cannot be opened fails the start
        // before a process exists.
        let mut stores = Handover::default();
        let views = spec
            .agents
            .iter()
            .map(|a| {
                a.stores
                    .iter()
                    .map(|p| stores.add(p))
                    .collect::<io::Result<Vec<usize>>>()
                    .map_err(|e| format!("agent {}: cannot open its store {e}", a.name))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let (ours, theirs) = StdUnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let mut sockets: Vec<Arc<Held>> = spec
            .agents
            .iter()
            .flat_map(|plan| plan.sockets.iter().cloned())
            .collect();
        let prepare = steer(spec, sockets.len(), settings.steer.as_ref());
        sockets.extend(spec.steering.iter().map(|s| s.socket.clone()));
        let title = format!("agentcluster: agent {}", spec.name);
        let child = self
            .spawner
            .spawn(title, OwnedFd::from(theirs), sockets, prepare, settings.creds)
            .await
            .map_err(|e| {
                let why = match settings.creds {
                    Some(c) if e.kind() == io::ErrorKind::PermissionDenied => {
                        crate::process::sys::exec_denied(self.spawner.program(), c)
                            .map(|w| format!(" ({w}: agents run as that account; install agentcluster where it can reach it)"))
                            .unwrap_or_default()
                    }
                    _ => String::new(),
                };
                format!("cannot create the agent process: {e}{why}")
            })?;
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stream = UnixStream::from_std(ours).map_err(|e| e.to_string())?;
        let (reader, writer) = stream.into_split();
        let mut reader = channel::Receiver::new(reader);
        tokio::spawn(async move {
            loop {
                let msg = match reader.recv::<FromAgent>().await {
                    Ok(Some((m, _))) => FromChannel::Msg(m),
                    Ok(None) => FromChannel::Closed,
                    Err(e) => FromChannel::Broken(e.to_string()),
                };
                let last = !matches!(msg, FromChannel::Msg(_));
                if chan_tx.send((generation, msg)).await.is_err() || last {
                    break;
                }
            }
        });
        let limits = *settings.limits.borrow();
        let start = ToAgent::Start(Start {
            protocol: PROTOCOL,
            token: token.to_string(),
            heartbeat_ms: settings.heartbeat.as_millis() as u64,
            stores: stores.paths.clone(),
            agents: spec
                .agents
                .iter()
                .zip(views)
                .map(|(a, stores)| {
                    // Every start is one snmpEngineBoots more (SNMPv3 agents).
                    let mut config = a.config.clone();
                    set_boots(&mut config, &settings.state_dir, &a.name)?;
                    config.max_message_size = limits.max_response_bytes;
                    Ok(AgentSpec {
                        name: a.name.clone(),
                        sockets: a.sockets.len(),
                        stores,
                        config,
                        notify: a.notify.clone(),
                        // The first process of this unit is the device's
                        // boot, and so is a reboot.
                        cold: generation == 1 || a.reboot_outage.is_some(),
                        engine_id: a.engine_id.clone(),
                        endpoints: a.endpoints.clone(),
                        unbound: a.unbound.to_vec(),
                        rate_limit: limits.rate_limit,
                        values: (*a.values).clone(),
                        animate: a.animate,
                        faults: a.faults.clone(),
                        reboot_outage_ms: a.reboot_outage.map_or(0, |d| d.as_millis() as u64),
                        reboot_from_ns: a.reboot_from_ns,
                    })
                })
                .collect::<Result<_, String>>()?,
            steering: spec.steering.len(),
        });
        // A failure here is a failed start; the child is killed on drop.
        if let Err(e) = channel::send(writer.as_ref(), &start, &stores.fds()).await {
            return Err(format!("cannot send the start message: {e}"));
        }
        // Our copies of the store descriptors close here; the process has
        // its own.
        Ok(AgentProcess { child, writer })
    }
}

/// The compiled stores a message hands over: each distinct file opened once
/// (read-only, close-on-exec) however many views serve it, in the order the
/// message names them.
#[derive(Debug, Default)]
struct Handover {
    paths: Vec<PathBuf>,
    files: Vec<File>,
    index: HashMap<PathBuf, usize>,
}

impl Handover {
    /// The index of store `path` in the message, opening it if it is new.
    /// The error names the path.
    fn add(&mut self, path: &Path) -> io::Result<usize> {
        if let Some(&i) = self.index.get(path) {
            return Ok(i);
        }
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let i = self.files.len();
        self.paths.push(path.to_owned());
        self.files.push(file);
        self.index.insert(path.to_owned(), i);
        Ok(i)
    }

    /// The descriptors to send, in the message's order.
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.files.iter().map(AsFd::as_fd).collect()
    }
}

/// Room in a steering socket's receive buffer: it takes the requests of
/// all of its process's devices (and keeps them while the process
/// restarts), where each device's own socket has 1 MiB.
const STEERING_BUFFER: usize = 16 << 20;

/// What a spawn of `spec` does with the copies of its sockets (its
/// agents' first, `steering_at` of them, then its steering sockets)
/// before passing them on: the steering sockets get a larger receive
/// buffer, and every endpoint of the agents is steered to the steering
/// socket of its address family, through `map` (kept across restarts: the
/// socket is the same; a reload's new socket replaces it). The entries
/// were reserved with the steering sockets ([`crate::process::bind::Steered`]);
/// should the kernel refuse one all the same, that is said once, and the
/// endpoints left have their own socket, or no answer.
fn steer(spec: &UnitSpec, steering_at: usize, map: Option<&Map>) -> Option<Prepare> {
    let map = map?.clone();
    let mut routes: Vec<(SocketAddr, usize)> = Vec::new();
    for (i, s) in spec.steering.iter().enumerate() {
        routes.extend(
            spec.agents
                .iter()
                .flat_map(|a| a.endpoints.iter())
                .filter(|e| crate::process::bind::steerable(s.ipv6, e))
                .map(|&e| (e, steering_at + i)),
        );
    }
    if routes.is_empty() {
        return None;
    }
    let name = spec.name.clone();
    Some(Box::new(move |fds: &[OwnedFd]| {
        for fd in fds.get(steering_at..).unwrap_or_default() {
            // Over net.core.rmem_max: CAP_NET_ADMIN, which steering needs
            // anyway.
            let _ = nix::sys::socket::setsockopt(
                fd,
                nix::sys::socket::sockopt::RcvBufForce,
                &STEERING_BUFFER,
            );
        }
        for (n, (to, i)) in routes.iter().enumerate() {
            let Some(fd) = fds.get(*i) else { continue };
            if let Err(e) = map.steer(*to, fd) {
                // Reserved, the entries fit: this is the kernel's refusal.
                tracing::warn!(unit = %name, steered = n, of = routes.len(), cause = %e, "not every endpoint is steered: those without a socket of their own are not answered");
                break;
            }
        }
    }))
}

/// A real agent process: watched through its pidfd, killed and reaped if
/// dropped while alive.
struct AgentProcess {
    child: Child,
    writer: OwnedWriteHalf,
}

impl Proc for AgentProcess {
    fn id(&self) -> Option<u32> {
        self.child.id()
    }

    fn wait(&mut self) -> BoxFuture<'_, Exit> {
        Box::pin(async move {
            match self.child.wait().await {
                Ok(status) => exit_of(status),
                Err(e) => {
                    tracing::error!(cause = %e, "cannot wait for an agent process");
                    Exit::Code(-1)
                }
            }
        })
    }

    fn send<'a>(&'a mut self, msg: &'a ToAgent) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { channel::send(self.writer.as_ref(), msg, &[]).await })
    }

    fn swap<'a>(&'a mut self, swaps: &'a [StoreSwap]) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let mut stores = Handover::default();
            let swaps = swaps
                .iter()
                .map(|s| {
                    Ok(Swap {
                        agent: s.agent,
                        view: s.view,
                        store: stores.add(&s.store)?,
                    })
                })
                .collect::<io::Result<Vec<Swap>>>()?;
            let msg = ToAgent::Swap {
                stores: stores.paths.clone(),
                swaps,
            };
            channel::send(self.writer.as_ref(), &msg, &stores.fds()).await
        })
    }

    fn signal(&self, sig: Sig) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let Some(pid) = self.child.id() else {
            return;
        };
        let pid = Pid::from_raw(pid as i32);
        match sig {
            Sig::Term => {
                let _ = kill(pid, Signal::SIGTERM);
                // A stopped process acts on SIGTERM only once continued.
                let _ = kill(pid, Signal::SIGCONT);
            }
            Sig::Kill => {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    fn inspect(&self) -> Option<Inspection> {
        inspect(&procfs::process::Process::new(self.child.id()? as i32).ok()?)
    }
}

/// What /proc says of `proc`, from one short read, as the watchdog asks
/// every heartbeat for every process: its state and resident set (the
/// count `status` shows as VmRSS, in pages) from /proc/PID/stat, not the
/// forty fields of /proc/PID/status. `status` reads its RSS column so
/// too.
pub(crate) fn inspect(proc: &procfs::process::Process) -> Option<Inspection> {
    let stat = proc.stat().ok()?;
    Some(Inspection {
        stopped: matches!(stat.state, 'T' | 't'),
        rss: Some(stat.rss * procfs::page_size()),
    })
}

/// Before each start of `agent`: one boot more, persisted in `state_dir`
/// (nothing to do for an agent without SNMPv3).
pub fn set_boots(
    config: &mut agentcluster_agent::responder::Config,
    state_dir: &std::path::Path,
    agent: &str,
) -> Result<(), String> {
    if let Some(v3) = &mut config.v3 {
        v3.engine_boots = agentcluster_agent::engine::next_boots(state_dir, agent)
            .map_err(|e| format!("agent {agent}: cannot count snmpEngineBoots: {e}"))?;
    }
    Ok(())
}

/// How a process ended, from its wait status.
pub fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(
            nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {s}")),
        ),
        (None, None) => Exit::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inspection_reads_the_resident_set_that_status_shows() {
        let me = procfs::process::Process::myself().unwrap();
        // Touch 8 MiB so that the resident set is well above noise.
        let touched = vec![1u8; 8 << 20];
        let seen = inspect(&me).unwrap();
        let vmrss = me.status().unwrap().vmrss.unwrap() * 1024;
        let rss = seen.rss.unwrap();
        assert!(!seen.stopped);
        assert!(rss >= 8 << 20, "{rss}");
        // Read a moment apart: the same count, give or take a little.
        assert!(rss.abs_diff(vmrss) < 1 << 20, "stat {rss} status {vmrss}");
        assert_eq!(
            touched.iter().map(|b| usize::from(*b)).sum::<usize>(),
            8 << 20
        );
    }

    #[test]
    fn a_store_is_opened_once_per_message_however_many_views_serve_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.store"), dir.path().join("b.store"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let mut stores = Handover::default();
        let views = [&a, &b, &a, &a].map(|p| stores.add(p).unwrap());
        assert_eq!(views, [0, 1, 0, 0]);
        assert_eq!(stores.paths, [a, b]);
        assert_eq!(stores.fds().len(), 2);
        let e = stores
            .add(&dir.path().join("gone.store"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gone.store") && e.contains("No such file"),
            "{e}"
        );
        assert_eq!(stores.fds().len(), 2);
    }
}
