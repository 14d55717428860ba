//! A fake launcher for the tests of units and of the manager: each launch
//! is handed to the test, which plays the process — answers ready (or
//! not), sends heartbeats, exits — and sees the signals and messages the
//! unit sends it. No process is created, so tests run on tokio's paused
//! clock.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentcluster_agent::channel::{AgentStats, FromAgent, ToAgent};
use agentcluster_conf::Restart;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::events::Bus;
use crate::process::launch::{BoxFuture, FromChannel, Inspection, Launch, Proc};
use crate::process::machine::{Exit, Sig};
use crate::process::unit::{Settings, Shared, StoreSwap, UnitSpec};

/// What a fake process does when it is sent SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTerm {
    /// Exits, killed by SIGTERM.
    Exit,
    /// Ignores it (only SIGKILL ends it).
    Ignore,
}

/// One process the unit under test asked for: the test plays it.
pub struct Launched {
    /// The unit's name.
    pub unit: String,
    pub generation: u64,
    pub pid: u32,
    token: String,
    chan: mpsc::Sender<(u64, FromChannel)>,
    exit: mpsc::UnboundedSender<Exit>,
    /// Signals the unit sent, in order.
    pub signals: mpsc::UnboundedReceiver<Sig>,
    /// What the unit sent on the channel (after the start), in order.
    pub sent: mpsc::UnboundedReceiver<Sent>,
    /// What /proc says of it.
    pub proc_state: Arc<Mutex<Inspection>>,
    /// Each agent's faults, as its start message carries them.
    pub faults: Vec<agentcluster_agent::faults::Faults>,
    /// Each agent's reboot outage, when the start is a reboot.
    pub reboot: Vec<Option<Duration>>,
    /// Each agent's stores, as its start names them.
    pub stores: Vec<Vec<std::path::PathBuf>>,
}

impl Launched {
    async fn say(&self, msg: FromChannel) {
        let _ = self.chan.send((self.generation, msg)).await;
    }

    /// Answers the start with its token.
    pub async fn ready(&self) {
        let token = self.token.clone();
        self.say(FromChannel::Msg(FromAgent::Ready { token })).await;
    }

    /// Answers the start with another token.
    pub async fn ready_with(&self, token: &str) {
        let token = token.to_string();
        self.say(FromChannel::Msg(FromAgent::Ready { token })).await;
    }

    /// A heartbeat with no counters.
    pub async fn heartbeat(&self) {
        let agents = Vec::new();
        self.say(FromChannel::Msg(FromAgent::Heartbeat { agents }))
            .await;
    }

    /// A heartbeat with these agents' counters.
    pub async fn heartbeat_with(&self, agents: Vec<AgentStats>) {
        self.say(FromChannel::Msg(FromAgent::Heartbeat { agents }))
            .await;
    }

    /// Says a faults or reboot message was applied.
    pub async fn applied(&self) {
        self.say(FromChannel::Msg(FromAgent::Applied)).await;
    }

    /// Answers a swap.
    pub async fn swapped(&self) {
        let (ok, reason) = (true, String::new());
        self.say(FromChannel::Msg(FromAgent::Swapped { ok, reason }))
            .await;
    }

    /// The process is gone but its exit is not seen yet: what the unit
    /// sends it fails with a broken pipe.
    pub fn hang_up(&mut self) {
        self.sent.close();
    }

    /// The process exits.
    pub fn exit(&self, exit: Exit) {
        let _ = self.exit.send(exit);
    }
}

/// What a unit sent a fake process.
#[derive(Debug)]
pub enum Sent {
    /// A message without descriptors.
    Msg(ToAgent),
    /// New stores for some views.
    Swap(Vec<StoreSwap>),
}

/// The fake launcher: every launch goes to the receiver [`Fake::new`]
/// returns.
pub struct Fake {
    launches: mpsc::UnboundedSender<Launched>,
    on_term: OnTerm,
    next_pid: AtomicU32,
}

impl Fake {
    /// A fake whose processes do `on_term` on SIGTERM.
    pub fn new(on_term: OnTerm) -> (Arc<Fake>, mpsc::UnboundedReceiver<Launched>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let fake = Fake {
            launches: tx,
            on_term,
            next_pid: AtomicU32::new(1000),
        };
        (Arc::new(fake), rx)
    }
}

struct FakeProc {
    pid: u32,
    alive: bool,
    on_term: OnTerm,
    exit_tx: mpsc::UnboundedSender<Exit>,
    exit: mpsc::UnboundedReceiver<Exit>,
    signals: mpsc::UnboundedSender<Sig>,
    sent: mpsc::UnboundedSender<Sent>,
    proc_state: Arc<Mutex<Inspection>>,
}

impl Launch for Fake {
    fn launch<'a>(
        &'a self,
        spec: &'a UnitSpec,
        generation: u64,
        token: &'a str,
        chan: mpsc::Sender<(u64, FromChannel)>,
    ) -> BoxFuture<'a, Result<Box<dyn Proc>, String>> {
        Box::pin(async move {
            // As the real launcher, which opens every store to hand it over.
            if let Some(gone) = spec
                .agents
                .iter()
                .flat_map(|a| &a.stores)
                .find(|s| !s.exists())
            {
                return Err(format!("{}: No such file or directory", gone.display()));
            }
            let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
            let (exit_tx, exit) = mpsc::unbounded_channel();
            let (signals_tx, signals) = mpsc::unbounded_channel();
            let (sent_tx, sent) = mpsc::unbounded_channel();
            let proc_state = Arc::new(Mutex::new(Inspection::default()));
            let launched = Launched {
                unit: spec.name.clone(),
                generation,
                pid,
                token: token.to_string(),
                chan,
                exit: exit_tx.clone(),
                signals,
                sent,
                proc_state: proc_state.clone(),
                faults: spec.agents.iter().map(|a| a.faults.clone()).collect(),
                reboot: spec.agents.iter().map(|a| a.reboot_outage).collect(),
                stores: spec.agents.iter().map(|a| a.stores.clone()).collect(),
            };
            self.launches
                .send(launched)
                .map_err(|_| "the test is gone".to_string())?;
            Ok(Box::new(FakeProc {
                pid,
                alive: true,
                on_term: self.on_term,
                exit_tx,
                exit,
                signals: signals_tx,
                sent: sent_tx,
                proc_state,
            }) as Box<dyn Proc>)
        })
    }
}

impl Proc for FakeProc {
    fn id(&self) -> Option<u32> {
        self.alive.then_some(self.pid)
    }

    fn wait(&mut self) -> BoxFuture<'_, Exit> {
        Box::pin(async move {
            let exit = match self.exit.recv().await {
                Some(e) => e,
                None => std::future::pending().await,
            };
            self.alive = false;
            exit
        })
    }

    fn send<'a>(&'a mut self, msg: &'a ToAgent) -> BoxFuture<'a, io::Result<()>> {
        let r = self
            .sent
            .send(Sent::Msg(msg.clone()))
            .map_err(|_| io::ErrorKind::BrokenPipe.into());
        Box::pin(async move { r })
    }

    fn swap<'a>(&'a mut self, swaps: &'a [StoreSwap]) -> BoxFuture<'a, io::Result<()>> {
        let r = self
            .sent
            .send(Sent::Swap(swaps.to_vec()))
            .map_err(|_| io::ErrorKind::BrokenPipe.into());
        Box::pin(async move { r })
    }

    fn signal(&self, sig: Sig) {
        let _ = self.signals.send(sig);
        match (sig, self.on_term) {
            (Sig::Kill, _) => {
                let _ = self.exit_tx.send(Exit::Signal("SIGKILL".into()));
            }
            (Sig::Term, OnTerm::Exit) => {
                let _ = self.exit_tx.send(Exit::Signal("SIGTERM".into()));
            }
            (Sig::Term, OnTerm::Ignore) => {}
        }
    }

    fn inspect(&self) -> Option<Inspection> {
        self.alive
            .then(|| *self.proc_state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Settings for units under test: heartbeat 1 s, unresponsive after 5 s,
/// start timeout 10 s, stop timeout 5 s, restarts always with backoff
/// 100 ms..30 s, at most 10 in 60 s.
pub fn settings() -> Settings {
    let (_, limits) = watch::channel(agentcluster_agent::channel::Limits {
        max_response_bytes: 65_507,
        rate_limit: None,
    });
    Settings {
        heartbeat: Duration::from_secs(1),
        inactive_after: Duration::from_secs(5),
        start_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(5),
        restart: Restart {
            policy: agentcluster_conf::RestartPolicy::Always,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_restarts: 10,
            window: Duration::from_secs(60),
        },
        creds: None,
        limits,
        probe: None,
        state_dir: std::env::temp_dir(),
        steer: None,
    }
}

/// What units under test share: the fake launcher, `tokens` start tokens
/// and `bus`.
pub fn shared(fake: Arc<Fake>, tokens: usize, bus: &Bus) -> Shared {
    Shared {
        launcher: fake,
        tokens: Arc::new(Semaphore::new(tokens)),
        bus: bus.clone(),
        settings: Arc::new(settings()),
        missing_stores: mpsc::unbounded_channel().0,
    }
}
