//! A node: this supervisor's part in a fleet shared through etcd
//! (docs/scale-out.md). It holds a lease and its membership key, lists and
//! watches the prefix, and serves the agents rendezvous hashing gives it
//! once it holds their owner keys, through the manager's reload path
//! ([`Share`]). Its lease deadline is tracked locally: when keepalives
//! fail it stops every agent before the lease can expire, so two nodes
//! never answer for one device.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agentcluster_conf::{Agent, Etcd, Fleet};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use futures_util::FutureExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::fleet::Pushed;
use super::hand::{self, HandFaults};
use super::keys::Keys;
use super::rendezvous::Member;
use super::share::{Holder, plan};
use crate::control::api::Response;
use crate::events::{Bus, EventKind, NewEvent, State};
use crate::fleet::manager::{HandFault, Share};
use crate::fleet::scenarios::{self, HandEvent, Origin};

/// Most operations in one transaction (etcd's default `--max-txn-ops`).
const TXN_OPS: usize = 128;

/// Longest wait between two attempts to reach etcd.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Most agent names one `assigned` or `released` event lists (the count
/// is always complete).
const NAMES_SHOWN: usize = 20;

/// How long before its lease could expire a node whose keepalives go
/// unanswered stops its agents (at most; a third of the lease if that is
/// shorter).
const FENCE_MARGIN: Duration = Duration::from_secs(1);

/// Longest pause between joining and the first plan, for the nodes that
/// start at the same time to see each other (see [`Node::settle`]).
const SETTLE: Duration = Duration::from_secs(1);

/// snmpEngineBoots reserved in etcd at a time per agent: a node boots an
/// agent at most this many times before it must reserve more.
const BOOTS_BLOCK: u32 = 1000;

/// How often a node looks whether an agent it serves has used half of its
/// reserved boots (restarts count them up), and sweeps the faults keys
/// of an earlier push.
const UPKEEP: Duration = Duration::from_secs(10);

/// What the node needs to know about itself.
pub struct Settings {
    /// Where etcd is and how this node takes part.
    pub etcd: Etcd,
    /// Its name (`cluster.node`, or `run --node`).
    pub node: String,
    /// The address ranges it can bind (`cluster.etcd.serves`, else the
    /// host's addresses).
    pub serves: Vec<String>,
    /// The node's own configuration: its `cluster` and `events` are what
    /// the agents of its share run with.
    pub base: Fleet,
    /// Every agent this node runs, as its status key reports them
    /// (`PREFIX/status/NODE`): read at most once a second, when events
    /// say something changed.
    pub roster: Arc<dyn Fn() -> super::status::Roster + Send + Sync>,
    /// How many agents this host carries under the node's own settings
    /// (`fleet::capacity::agents_that_fit`), written in its membership key.
    pub capacity: u64,
    /// The supervisor's requests: the faults injected by hand of the
    /// agents this node takes over are replayed through it.
    pub requests: crate::control::api::Handle,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("etcd", &self.etcd)
            .field("node", &self.node)
            .field("serves", &self.serves)
            .finish_non_exhaustive()
    }
}

/// Why a session (one lease) ended.
enum End {
    /// The supervisor is shutting down.
    Shutdown,
    /// The lease is lost or about to be: why.
    Lost(String),
}

/// The pushed fleet as a node loaded it.
struct Loaded {
    /// The fleet, checked as `run` would.
    fleet: Arc<Fleet>,
    /// The revision it was written at.
    revision: i64,
    /// When it was pushed (or, for a value that does not say, was first
    /// read here): the time zero of its scenarios.
    zero: SystemTime,
}

/// The node's state across sessions.
struct Node {
    settings: Settings,
    keys: Keys,
    bus: Bus,
    shares: mpsc::Sender<Share>,
    ttl: Duration,
    /// One per lease granted; a fence refuses shares of its epoch.
    epoch: u64,
    /// The lease of the current session.
    lease: i64,
    /// The pushed fleet, loaded.
    fleet: Option<Loaded>,
    members: BTreeMap<String, Member>,
    owners: HashMap<String, Holder>,
    /// The agents the manager serves now.
    serving: BTreeSet<String>,
    /// The revision of the fleet those agents were given at.
    fleet_served: Option<i64>,
    /// The top of the snmpEngineBoots reserved for each SNMPv3 agent this
    /// lease holds.
    boots: HashMap<String, u32>,
    /// How many agents no node had room for at the last plan.
    full: usize,
    /// Faults injected by hand on this node, to keep in etcd.
    hand_rx: mpsc::UnboundedReceiver<HandFault>,
    /// Every agent's faults injected by hand, as etcd holds them.
    hand: HashMap<String, Kept>,
}

/// An agent's faults key as this node last saw it.
struct Kept {
    faults: HandFaults,
    /// Its modification revision in etcd; 0 while this node's own write
    /// of it has not come back through the watch.
    mod_revision: i64,
}

/// Runs the node until `shutdown`; then, once `stopped` says the agents
/// are stopped, revokes its lease (its membership and owner keys go with
/// it) so the other nodes take its agents at once.
pub async fn run(
    settings: Settings,
    bus: Bus,
    shares: mpsc::Sender<Share>,
    hand_rx: mpsc::UnboundedReceiver<HandFault>,
    shutdown: CancellationToken,
    stopped: CancellationToken,
) {
    let ttl = settings.etcd.lease_ttl.max(Duration::from_secs(1));
    let mut node = Node {
        keys: Keys::new(&settings.etcd.prefix),
        settings,
        bus,
        shares,
        ttl,
        epoch: 0,
        lease: 0,
        fleet: None,
        members: BTreeMap::new(),
        owners: HashMap::new(),
        serving: BTreeSet::new(),
        fleet_served: None,
        boots: HashMap::new(),
        full: 0,
        hand_rx,
        hand: HashMap::new(),
    };
    let mut backoff = Duration::from_millis(200);
    let mut client: Option<Client> = None;
    loop {
        let c = match client.clone() {
            Some(c) => c,
            None => match super::connect(&node.settings.etcd).await {
                Ok(c) => {
                    client = Some(c.clone());
                    c
                }
                Err(e) => {
                    tracing::warn!(cause = %e, retry_in = ?backoff, "cluster: etcd unreachable");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let began = Instant::now();
        match node.session(c, &shutdown).await {
            End::Shutdown => break,
            End::Lost(why) => {
                // A session that lasted starts the backoff over.
                if began.elapsed() >= ttl {
                    backoff = Duration::from_millis(200);
                }
                tracing::warn!(node = %node.settings.node, "cluster: {why}; serving nothing until a new lease");
                node.fence(&why).await;
                if let Some(c) = client.as_mut() {
                    node.revoke(c).await;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    // Shutdown: the manager stops every agent; the keys go after.
    let serving = std::mem::take(&mut node.serving);
    node.released(&serving.into_iter().collect::<Vec<_>>(), "shutdown");
    let _ = timeout(Duration::from_secs(30), stopped.cancelled()).await;
    if let Some(mut c) = client {
        node.revoke(&mut c).await;
    }
}

/// Keeps the node's status key: `publisher` writes `roster()` whenever an
/// event of the bus says the agents changed (coalesced, at most once a
/// second), until `stop`.
async fn publish_status(
    publisher: super::status::Publisher,
    bus: Bus,
    roster: Arc<dyn Fn() -> super::status::Roster + Send + Sync>,
    stop: CancellationToken,
) {
    let (changed, changes) = watch::channel(0u64);
    // Counted as each event is published (quick, never waits); the tap is
    // dropped at the first event after the publisher has ended.
    let counting = stop.clone();
    bus.tap(Box::new(move |_| {
        changed.send_modify(|n| *n += 1);
        !counting.is_cancelled()
    }));
    publisher.run_with(changes, |_| roster(), stop).await;
}

impl Node {
    /// How long one request may take: a third of the lease, so that a
    /// stuck request never outlives it.
    fn op_timeout(&self) -> Duration {
        self.ttl / 3
    }

    /// How long a node that joined waits for the others that start with
    /// it before it lists and plans: a third of the lease, at most
    /// [`SETTLE`].
    fn settle(&self) -> Duration {
        (self.ttl / 3).min(SETTLE)
    }

    /// One lease: registers, lists, watches and serves until the lease is
    /// lost or the supervisor stops.
    async fn session(&mut self, mut client: Client, shutdown: &CancellationToken) -> End {
        let sent = Instant::now();
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let grant = match timeout(self.op_timeout(), client.lease_grant(ttl_secs, None)).await {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => return End::Lost(format!("cannot get a lease: {e}")),
            Err(_) => return End::Lost("cannot get a lease: etcd does not answer".into()),
        };
        self.lease = grant.id();
        self.epoch += 1;
        let (deadline_tx, deadline_rx) = watch::channel(sent + self.ttl);
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_alive(
            client.clone(),
            self.lease,
            self.ttl,
            deadline_tx,
            lost.clone(),
        ));
        // Stopping the agents takes a moment: they are stopped this long
        // before the lease could expire (a third of it for short leases),
        // and a keepalive that is merely slow — etcd revoking a dead
        // node's thousands of keys — does not stop them.
        let margin = (self.ttl / 3).min(FENCE_MARGIN);
        // The fence runs in a task of its own: work of the node's own
        // (a reconcile of thousands of agents) never delays it, and it
        // stops the agents itself, without waiting for this task.
        let fenced = CancellationToken::new();
        let fence = tokio::spawn(fence(
            deadline_rx,
            margin,
            self.shares.clone(),
            self.epoch,
            fenced.clone(),
        ));
        // The status key, bound to this lease: written now, then as the
        // agents change (`status --cluster` reads it).
        let publishing = CancellationToken::new();
        let publisher = tokio::spawn(publish_status(
            super::status::Publisher {
                client: client.clone(),
                keys: self.keys.clone(),
                node: self.settings.node.clone(),
                pid: std::process::id(),
                lease: self.lease,
            },
            self.bus.clone(),
            self.settings.roster.clone(),
            publishing.clone(),
        ));
        let end = tokio::select! {
            end = self.serve(&mut client) => end,
            () = fenced.cancelled() => End::Lost(format!(
                "no keepalive answered for {:?}: stopping every agent before lease {:x} expires",
                self.ttl - margin, self.lease
            )),
            () = lost.cancelled() => End::Lost(format!("lease {:x} expired", self.lease)),
            () = shutdown.cancelled() => End::Shutdown,
        };
        keeper.abort();
        fence.abort();
        publishing.cancel();
        publisher.abort();
        end
    }

    /// Registers, then lists and watches until the watch cannot go on
    /// (only a lost lease or the supervisor's shutdown end a session).
    async fn serve(&mut self, client: &mut Client) -> End {
        if let Err(why) = self.register(client).await {
            return End::Lost(why);
        }
        tracing::info!(node = %self.settings.node, lease = %format!("{:x}", self.lease), "cluster: joined");
        // Nodes started together (a lab's hosts booting, several nodes of
        // one host) see each other before their first plan: without this
        // pause the first to list would take every agent, start them all,
        // and then hand two thirds of them on.
        tokio::time::sleep(self.settle()).await;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.list_and_watch(client).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(why) => {
                    tracing::warn!(retry_in = ?backoff, "cluster: {why}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Writes the membership key, bound to the lease.
    async fn register(&self, client: &mut Client) -> Result<(), String> {
        let member = Member {
            node: self.settings.node.clone(),
            serves: self.settings.serves.clone(),
            pid: std::process::id(),
            capacity: Some(self.settings.capacity),
        };
        let value = serde_json::to_vec(&member)
            .map_err(|e| format!("cannot encode the membership: {e}"))?;
        let put = client.put(
            self.keys.node(&self.settings.node),
            value,
            Some(PutOptions::new().with_lease(self.lease)),
        );
        match timeout(self.op_timeout(), put).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot register: {e}")),
            Err(_) => Err("cannot register: etcd does not answer".into()),
        }
    }

    /// Lists the prefix, reconciles, then watches from the list's
    /// revision plus one and reconciles after each change, until the
    /// watch ends (compaction, cancel, a broken stream): `Ok` asks for a
    /// new list.
    async fn list_and_watch(&mut self, client: &mut Client) -> Result<(), String> {
        let got = timeout(
            self.op_timeout(),
            client.get(self.keys.all(), Some(GetOptions::new().with_prefix())),
        )
        .await
        .map_err(|_| "cannot list the prefix: etcd does not answer".to_string())?
        .map_err(|e| format!("cannot list the prefix: {e}"))?;
        let revision = got.header().map_or(0, |h| h.revision());
        self.members.clear();
        self.hand.clear();
        self.owners.clear();
        let mut fleet = None;
        for kv in got.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if key == self.keys.fleet() {
                fleet = Some((kv.value().to_vec(), kv.mod_revision()));
            } else {
                self.put_key(&key, kv);
            }
        }
        match fleet {
            Some((value, rev)) => self.fleet_changed(&value, rev).await,
            None => self.fleet = None,
        }
        let mut stream: WatchStream = timeout(
            self.op_timeout(),
            client.watch(
                self.keys.all(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            ),
        )
        .await
        .map_err(|_| "cannot watch the prefix: etcd does not answer".to_string())?
        .map_err(|e| format!("cannot watch the prefix: {e}"))?;
        self.reconcile(client).await;
        let mut upkeep = tokio::time::interval(UPKEEP);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        upkeep.tick().await;
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                _ = upkeep.tick() => {
                    self.top_up_boots(client).await;
                    self.sweep_hand(client).await;
                    continue;
                }
                Some(fault) = self.hand_rx.recv() => {
                    self.record_hand(client, &fault).await;
                    continue;
                }
            };
            let message = message.map_err(|e| format!("the watch broke: {e}"))?;
            let Some(first) = message else {
                return Err("the watch ended".into());
            };
            // Everything the stream holds already is applied before one
            // reconcile: a burst of writes (another node's thousands of
            // owner keys) costs one plan, not one per transaction.
            let mut batch = vec![first];
            while let Some(more) = stream.message().now_or_never() {
                match more.map_err(|e| format!("the watch broke: {e}"))? {
                    Some(r) => batch.push(r),
                    None => return Err("the watch ended".into()),
                }
            }
            let mut changed = false;
            for resp in batch {
                if resp.canceled() || resp.compact_revision() > 0 {
                    tracing::warn!(
                        compact_revision = resp.compact_revision(),
                        reason = %resp.cancel_reason(),
                        "cluster: watch cancelled (compaction past its revision); re-listing"
                    );
                    return Ok(());
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    changed = true;
                    match ev.event_type() {
                        EventType::Put if key == self.keys.fleet() => {
                            let value = kv.value().to_vec();
                            self.fleet_changed(&value, kv.mod_revision()).await;
                        }
                        EventType::Put => self.put_key(&key, kv),
                        EventType::Delete => self.delete_key(&key),
                    }
                }
            }
            if changed {
                self.reconcile(client).await;
            }
        }
    }

    /// A membership, owner or faults key as etcd holds it now.
    fn put_key(&mut self, key: &str, kv: &KeyValue) {
        let (value, lease) = (kv.value(), kv.lease());
        if let Some(node) = key.strip_prefix(&self.keys.nodes()) {
            match serde_json::from_slice::<Member>(value) {
                Ok(m) => {
                    if !self.members.contains_key(node) && node != self.settings.node {
                        self.publish_node(EventKind::NodeJoined, node, &m);
                    }
                    self.members.insert(node.to_string(), m);
                }
                Err(e) => {
                    tracing::warn!(%key, cause = %e, "cluster: not a membership key; ignored")
                }
            }
        } else if let Some(agent) = key.strip_prefix(&self.keys.owners()) {
            self.owners.insert(
                agent.to_string(),
                Holder {
                    node: String::from_utf8_lossy(value).into_owned(),
                    lease,
                },
            );
        } else if let Some(agent) = key.strip_prefix(&self.keys.faults()) {
            match serde_json::from_slice::<HandFaults>(value) {
                Ok(faults) => {
                    let kept = Kept {
                        faults,
                        mod_revision: kv.mod_revision(),
                    };
                    self.hand.insert(agent.to_string(), kept);
                }
                Err(e) => tracing::warn!(%key, cause = %e, "cluster: not a faults key; ignored"),
            }
        }
    }

    fn delete_key(&mut self, key: &str) {
        if let Some(node) = key.strip_prefix(&self.keys.nodes()) {
            if let Some(m) = self.members.remove(node)
                && node != self.settings.node
            {
                self.publish_node(EventKind::NodeLeft, node, &m);
            }
        } else if let Some(agent) = key.strip_prefix(&self.keys.owners()) {
            self.owners.remove(agent);
        } else if let Some(agent) = key.strip_prefix(&self.keys.faults()) {
            self.hand.remove(agent);
        } else if key == self.keys.fleet() {
            self.fleet = None;
        }
    }

    fn publish_node(&self, kind: EventKind, node: &str, m: &Member) {
        let verb = if kind == EventKind::NodeJoined {
            "joined"
        } else {
            "left"
        };
        self.bus.publish(NewEvent {
            reason: format!(
                "node {node} {verb} (pid {}, serves {})",
                m.pid,
                m.serves.join(", ")
            ),
            pid: Some(std::process::id()),
            ..NewEvent::new(kind, State::Running)
        });
    }

    /// A fleet pushed at `revision`: loaded and checked (off the loop) as
    /// `run` would; one that does not load is logged and the one served
    /// stays.
    async fn fleet_changed(&mut self, value: &[u8], revision: i64) {
        if self.fleet.as_ref().is_some_and(|f| f.revision == revision) {
            return;
        }
        let key = self.keys.fleet();
        let loaded = match Pushed::decode(&key, value) {
            Ok(pushed) => {
                let zero = pushed.pushed_at().unwrap_or_else(SystemTime::now);
                tokio::task::spawn_blocking(move || pushed.load())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map(|fleet| (fleet, zero))
            }
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok((fleet, zero)) => {
                tracing::info!(
                    revision,
                    agents = fleet.agents.len(),
                    "cluster: fleet loaded from {key}"
                );
                self.fleet = Some(Loaded {
                    fleet: Arc::new(fleet),
                    revision,
                    zero,
                });
            }
            Err(why) => {
                tracing::error!(
                    revision,
                    "cluster: the fleet at {key} does not load; keeping the one served: {why}"
                );
                self.bus.publish(NewEvent {
                    pid: Some(std::process::id()),
                    reason: format!(
                        "the fleet at {key} (revision {revision}) does not load: {why}"
                    ),
                    ..NewEvent::new(EventKind::ReloadFailed, State::Running)
                });
            }
        }
    }

    /// Brings what runs in line with what etcd says: releases what is no
    /// longer this node's (stop, then delete the key), acquires what is
    /// (create the key, then start).
    async fn reconcile(&mut self, client: &mut Client) {
        let started = Instant::now();
        self.reconcile_now(client).await;
        tracing::debug!(took = ?started.elapsed(), serving = self.serving.len(), "cluster: reconciled");
    }

    async fn reconcile_now(&mut self, client: &mut Client) {
        let me = self.settings.node.clone();
        if !self.members.contains_key(&me) {
            // Our own key is gone (deleted by hand; an expired lease ends
            // the session instead): write it again. Until the watch shows
            // it, nothing is ours.
            tracing::warn!(node = %me, "cluster: this node's membership key is gone; registering again");
            if let Err(why) = self.register(client).await {
                tracing::warn!(node = %me, "cluster: {why}");
            }
        }
        let Some(fleet) = self.fleet.as_ref().map(|f| f.fleet.clone()) else {
            if !self.serving.is_empty() {
                self.apply(&[], "the fleet was deleted from etcd").await;
            }
            return;
        };
        let p = plan(&me, self.lease, &fleet.agents, &self.members, &self.owners);
        if p.full != self.full {
            self.full = p.full;
            self.over_capacity(fleet.agents.len());
        }
        // Release first: stop, then delete the keys.
        if !p.release.is_empty() {
            let keep: Vec<Agent> = fleet
                .agents
                .iter()
                .filter(|a| p.serve.contains(&a.name) && self.serving.contains(&a.name))
                .cloned()
                .collect();
            if self.apply(&keep, "").await {
                self.delete_owners(client, &p.release).await;
                for a in &p.release {
                    self.boots.remove(a);
                }
                self.released(&p.release, "owner changed");
            }
        }
        let acquired = if p.acquire.is_empty() {
            Vec::new()
        } else {
            self.acquire(client, &p.acquire).await
        };
        // SNMPv3 agents start once their boots are reserved.
        let unreserved: Vec<String> = fleet
            .agents
            .iter()
            .filter(|a| {
                a.snmpv3.is_some()
                    && !self.boots.contains_key(&a.name)
                    && (p.serve.contains(&a.name) || acquired.contains(&a.name))
            })
            .map(|a| a.name.clone())
            .collect();
        if !unreserved.is_empty() {
            self.reserve_boots(client, &unreserved).await;
        }
        let v3: HashSet<&str> = fleet
            .agents
            .iter()
            .filter(|a| a.snmpv3.is_some())
            .map(|a| a.name.as_str())
            .collect();
        let want: BTreeSet<&str> = p
            .serve
            .iter()
            .map(String::as_str)
            .chain(acquired.iter().map(String::as_str))
            .filter(|a| !v3.contains(a) || self.boots.contains_key(*a))
            .collect();
        let fleet_changed = self.fleet_served != self.fleet.as_ref().map(|f| f.revision);
        let before = self.serving.clone();
        let differs = want.len() != before.len()
            || want.iter().any(|n| !before.contains(*n))
            || fleet_changed;
        if differs && {
            let agents: Vec<Agent> = fleet
                .agents
                .iter()
                .filter(|a| want.contains(a.name.as_str()))
                .cloned()
                .collect();
            self.apply(&agents, "").await
        } {
            self.fleet_served = self.fleet.as_ref().map(|f| f.revision);
            let new: Vec<String> = self
                .serving
                .iter()
                .filter(|n| !before.contains(*n))
                .cloned()
                .collect();
            self.assigned(&new);
            self.replay_hand(&new).await;
        }
        if !p.waiting.is_empty() {
            tracing::info!(
                agents = p.waiting.len(),
                "cluster: waiting for other leases to release their owner keys"
            );
        }
    }

    /// Says, when it changes, how many agents of the fleet (of `agents`)
    /// no node has room for: every node that can bind them is at the
    /// capacity its membership key gives.
    fn over_capacity(&self, agents: usize) {
        if self.full == 0 {
            tracing::info!("cluster: every agent has a node with room for it again");
            return;
        }
        let room: Vec<String> = self
            .members
            .values()
            .map(|m| match m.capacity {
                Some(c) => format!("{} {c}", m.node),
                None => format!("{} unbounded", m.node),
            })
            .collect();
        tracing::warn!(
            unplaced = self.full,
            agents,
            capacities = %room.join(", "),
            "cluster: {} of {agents} agents fit on no node: every node that can serve them is at its capacity; they run once a node with room joins",
            self.full
        );
    }

    /// Asks the manager to serve exactly `agents`; `true` once done.
    async fn apply(&mut self, agents: &[Agent], why: &str) -> bool {
        let mut fleet = self.settings.base.clone();
        fleet.agents = agents.iter().map(|a| self.identity(a)).collect();
        // The pushed fleet's scenarios, counted from its push: each node
        // fires those of the agents it serves, at the times every node
        // would. Without a fleet there are no agents and no scenarios.
        let zero = match &self.fleet {
            Some(pushed) => {
                fleet.scenarios = pushed.fleet.scenarios.clone();
                pushed.zero
            }
            None => {
                fleet.scenarios.clear();
                SystemTime::now()
            }
        };
        // What was done by hand to the agents it serves: the scenarios'
        // faults a request by hand replaced or cleared are not given back.
        let hand: HashMap<String, Vec<HandEvent>> = match &self.fleet {
            Some(pushed) => fleet
                .agents
                .iter()
                .filter_map(|a| {
                    let kept = self.hand.get(&a.name)?;
                    let events = hand::events(&kept.faults, pushed.revision, pushed.zero);
                    (!events.is_empty()).then(|| (a.name.clone(), events))
                })
                .collect(),
            None => HashMap::new(),
        };
        let (reply, answer) = oneshot::channel();
        let share = Share::Serve {
            epoch: self.epoch,
            fleet: Box::new(fleet),
            zero,
            hand: Arc::new(hand),
            reply,
        };
        if self.shares.send(share).await.is_err() {
            return false;
        }
        match answer.await {
            Ok(Response::Done { .. }) => {
                let gone: Vec<String> = self
                    .serving
                    .iter()
                    .filter(|n| !agents.iter().any(|a| &a.name == *n))
                    .cloned()
                    .collect();
                if !why.is_empty() {
                    self.released(&gone, why);
                }
                self.serving = agents.iter().map(|a| a.name.clone()).collect();
                true
            }
            Ok(other) => {
                tracing::warn!(answer = ?other, "cluster: the share was not applied");
                false
            }
            Err(_) => false,
        }
    }

    /// `agent` as this node runs it: its engine ID, unless configured,
    /// derived from the fleet (its prefix) and its name rather than from
    /// the node, so that it stays the same wherever the agent runs.
    fn identity(&self, agent: &Agent) -> Agent {
        let mut a = agent.clone();
        if a.engine_id.is_none() {
            a.engine_id = Some(agentcluster_agent::engine::derive_engine_id(
                &format!("etcd:{}", self.keys.prefix()),
                &a.name,
            ));
        }
        a
    }

    /// Reserves the next [`BOOTS_BLOCK`] snmpEngineBoots of each of
    /// `agents` in etcd (a compare-and-swap on `PREFIX/boots/AGENT`) and
    /// raises the local counter to the previous top, so the agent's next
    /// boot here is past every boot it had on any node. Returns the agents
    /// reserved for.
    async fn reserve_boots(&mut self, client: &mut Client, agents: &[String]) -> Vec<String> {
        let mut done = Vec::new();
        for batch in agents.chunks(TXN_OPS / 2) {
            let mut left: Vec<String> = batch.to_vec();
            // A batch that raced another writer is retried key by key.
            for attempt in 0..3 {
                if left.is_empty() {
                    break;
                }
                let chunks: Vec<Vec<String>> = if attempt == 0 {
                    vec![left.clone()]
                } else {
                    left.iter().map(|a| vec![a.clone()]).collect()
                };
                let mut failed = Vec::new();
                for chunk in chunks {
                    match self.reserve_batch(client, &chunk).await {
                        Some(true) => done.extend(chunk),
                        _ => failed.extend(chunk),
                    }
                }
                left = failed;
            }
            if !left.is_empty() {
                tracing::warn!(
                    agents = left.len(),
                    "cluster: snmpEngineBoots not reserved; those agents wait"
                );
            }
        }
        done
    }

    /// One read and one compare-and-swap transaction for `agents`' boots
    /// keys; `Some(true)` once reserved and seeded locally.
    async fn reserve_batch(&mut self, client: &mut Client, agents: &[String]) -> Option<bool> {
        let gets: Vec<TxnOp> = agents
            .iter()
            .map(|a| TxnOp::get(self.keys.boots(a), None))
            .collect();
        let read = timeout(self.op_timeout(), client.txn(Txn::new().and_then(gets)))
            .await
            .ok()?
            .ok()?;
        let mut seen = Vec::with_capacity(agents.len());
        for r in read.op_responses() {
            let etcd_client::TxnOpResponse::Get(g) = r else {
                return None;
            };
            seen.push(match g.kvs().first() {
                Some(kv) => (
                    String::from_utf8_lossy(kv.value())
                        .trim()
                        .parse::<u32>()
                        .unwrap_or(0),
                    kv.mod_revision(),
                ),
                None => (0, 0),
            });
        }
        let state_dir = self.settings.base.cluster.state_dir.clone();
        let names = agents.to_vec();
        let local = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .map(|a| agentcluster_agent::engine::current_boots(&state_dir, a).unwrap_or(0))
                .collect::<Vec<u32>>()
        })
        .await
        .ok()?;
        let floors: Vec<u32> = seen
            .iter()
            .zip(&local)
            .map(|((top, _), here)| (*top).max(*here))
            .collect();
        let compares: Vec<Compare> = agents
            .iter()
            .zip(&seen)
            .map(|(a, (_, rev))| Compare::mod_revision(self.keys.boots(a), CompareOp::Equal, *rev))
            .collect();
        let puts: Vec<TxnOp> = agents
            .iter()
            .zip(&floors)
            .map(|(a, floor)| {
                TxnOp::put(
                    self.keys.boots(a),
                    floor.saturating_add(BOOTS_BLOCK).to_string(),
                    None,
                )
            })
            .collect();
        let swapped = timeout(
            self.op_timeout(),
            client.txn(Txn::new().when(compares).and_then(puts)),
        )
        .await
        .ok()?
        .ok()?;
        if !swapped.succeeded() {
            return Some(false);
        }
        let state_dir = self.settings.base.cluster.state_dir.clone();
        let seeds: Vec<(String, u32)> = agents.iter().cloned().zip(floors.clone()).collect();
        let seeded = tokio::task::spawn_blocking(move || {
            seeds.iter().try_for_each(|(a, floor)| {
                agentcluster_agent::engine::raise_boots(&state_dir, a, *floor).map(drop)
            })
        })
        .await
        .ok()?;
        if let Err(e) = seeded {
            tracing::error!(cause = %e, "cluster: the local snmpEngineBoots counter cannot be written");
            return Some(false);
        }
        for (a, floor) in agents.iter().zip(floors) {
            self.boots
                .insert(a.clone(), floor.saturating_add(BOOTS_BLOCK));
        }
        Some(true)
    }

    /// Reserves more boots for the agents served here that used half of
    /// their block (each restart is a boot).
    async fn top_up_boots(&mut self, client: &mut Client) {
        let state_dir = self.settings.base.cluster.state_dir.clone();
        let tops: Vec<(String, u32)> = self
            .serving
            .iter()
            .filter_map(|a| self.boots.get(a).map(|t| (a.clone(), *t)))
            .collect();
        let low = tokio::task::spawn_blocking(move || {
            tops.into_iter()
                .filter(|(a, top)| {
                    let here =
                        agentcluster_agent::engine::current_boots(&state_dir, a).unwrap_or(0);
                    here.saturating_add(BOOTS_BLOCK / 2) >= *top
                })
                .map(|(a, _)| a)
                .collect::<Vec<String>>()
        })
        .await
        .unwrap_or_default();
        if !low.is_empty() {
            let done = self.reserve_boots(client, &low).await;
            tracing::info!(
                agents = done.len(),
                "cluster: reserved more snmpEngineBoots"
            );
        }
    }

    /// Creates the owner keys of `agents` where absent, bound to the
    /// lease, [`TXN_OPS`] to a transaction; a transaction that fails (a
    /// key appeared meanwhile) is retried key by key. Returns the agents
    /// whose keys it created.
    async fn acquire(&mut self, client: &mut Client, agents: &[String]) -> Vec<String> {
        let mut got = Vec::new();
        for batch in agents.chunks(TXN_OPS) {
            if self.create_owners(client, batch).await == Some(true) {
                got.extend_from_slice(batch);
                continue;
            }
            for one in batch {
                if self.create_owners(client, std::slice::from_ref(one)).await == Some(true) {
                    got.push(one.clone());
                }
            }
        }
        for a in &got {
            self.owners.insert(
                a.clone(),
                Holder {
                    node: self.settings.node.clone(),
                    lease: self.lease,
                },
            );
        }
        got
    }

    /// One create-if-absent transaction for `agents`' owner keys: whether
    /// it succeeded (`None`: etcd did not answer).
    async fn create_owners(&self, client: &mut Client, agents: &[String]) -> Option<bool> {
        let compares: Vec<Compare> = agents
            .iter()
            .map(|a| Compare::create_revision(self.keys.owner(a), CompareOp::Equal, 0))
            .collect();
        let puts: Vec<TxnOp> = agents
            .iter()
            .map(|a| {
                TxnOp::put(
                    self.keys.owner(a),
                    self.settings.node.clone(),
                    Some(PutOptions::new().with_lease(self.lease)),
                )
            })
            .collect();
        let txn = Txn::new().when(compares).and_then(puts);
        match timeout(self.op_timeout(), client.txn(txn)).await {
            Ok(Ok(r)) => Some(r.succeeded()),
            Ok(Err(e)) => {
                tracing::warn!(cause = %e, "cluster: owner keys not created");
                None
            }
            Err(_) => None,
        }
    }

    /// Deletes the owner keys of `agents` that this lease holds.
    async fn delete_owners(&mut self, client: &mut Client, agents: &[String]) {
        for batch in agents.chunks(TXN_OPS) {
            // Each key only if it is still ours: one transaction per key
            // would be slow, so the batch deletes unconditionally what
            // this node's view says it holds; the watch corrects the view.
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|a| TxnOp::delete(self.keys.owner(a), None))
                .collect();
            let compares: Vec<Compare> = batch
                .iter()
                .map(|a| Compare::lease(self.keys.owner(a), CompareOp::Equal, self.lease))
                .collect();
            let txn = Txn::new().when(compares).and_then(ops);
            match timeout(self.op_timeout(), client.txn(txn)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(cause = %e, "cluster: owner keys not deleted"),
                Err(_) => tracing::warn!("cluster: owner keys not deleted: etcd does not answer"),
            }
            for a in batch {
                self.owners.remove(a);
            }
        }
    }

    /// Keeps a fault injected by hand in the keys of its agents
    /// (`PREFIX/faults/AGENT`, [`TXN_OPS`] to a transaction), so that it
    /// moves with them.
    async fn record_hand(&mut self, client: &mut Client, fault: &HandFault) {
        let Some(revision) = self.fleet.as_ref().map(|f| f.revision) else {
            return;
        };
        for batch in fault.agents.chunks(TXN_OPS) {
            let mut ops = Vec::new();
            for agent in batch {
                let key = self.keys.fault(agent);
                let current = self.hand.get(agent).map(|k| &k.faults);
                match hand::record(current, fault, revision) {
                    Some(faults) => match serde_json::to_vec(&faults) {
                        Ok(value) => {
                            ops.push(TxnOp::put(key, value, None));
                            let kept = Kept {
                                faults,
                                mod_revision: 0,
                            };
                            self.hand.insert(agent.clone(), kept);
                        }
                        Err(e) => tracing::warn!(%agent, cause = %e, "cluster: faults not kept"),
                    },
                    None => {
                        if self.hand.remove(agent).is_some() {
                            ops.push(TxnOp::delete(key, None));
                        }
                    }
                }
            }
            if ops.is_empty() {
                continue;
            }
            match timeout(self.op_timeout(), client.txn(Txn::new().and_then(ops))).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(cause = %e, "cluster: faults injected by hand not kept in etcd")
                }
                Err(_) => tracing::warn!(
                    "cluster: faults injected by hand not kept in etcd: etcd does not answer"
                ),
            }
        }
    }

    /// Deletes the faults keys of no use any more ([`hand::dead`]: those
    /// of an earlier push, such as those of agents a push removed), each
    /// only if unchanged since this node read it. Every node sweeps; the first
    /// one's delete makes the others' compares fail. A batch in which one
    /// key changed deletes nothing: the next sweep sees the change.
    async fn sweep_hand(&mut self, client: &mut Client) {
        let Some(revision) = self.fleet.as_ref().map(|f| f.revision) else {
            return;
        };
        let dead: Vec<(String, i64)> = self
            .hand
            .iter()
            .filter(|(_, k)| k.mod_revision > 0 && hand::dead(&k.faults, revision))
            .map(|(agent, k)| (agent.clone(), k.mod_revision))
            .collect();
        for batch in dead.chunks(TXN_OPS) {
            let compares: Vec<Compare> = batch
                .iter()
                .map(|(a, rev)| Compare::mod_revision(self.keys.fault(a), CompareOp::Equal, *rev))
                .collect();
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|(a, _)| TxnOp::delete(self.keys.fault(a), None))
                .collect();
            let txn = Txn::new().when(compares).and_then(ops);
            match timeout(self.op_timeout(), client.txn(txn)).await {
                Ok(Ok(r)) if r.succeeded() => {
                    tracing::debug!(
                        keys = batch.len(),
                        "cluster: faults keys of an earlier push deleted"
                    );
                    for (a, _) in batch {
                        self.hand.remove(a);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(cause = %e, "cluster: faults keys not swept"),
                Err(_) => tracing::debug!("cluster: faults keys not swept: etcd does not answer"),
            }
        }
    }

    /// Gives `agents`, just taken over, the faults injected by hand that
    /// etcd keeps for them, for what is left of them: those that have not
    /// ended and that no scenario's later fault replaced or cleared (the
    /// scenarios' task gives back the scenarios' own, from the same
    /// reckoning: [`scenarios::in_progress`]).
    async fn replay_hand(&self, agents: &[String]) {
        let Some(pushed) = self.fleet.as_ref() else {
            return;
        };
        let skip = SystemTime::now()
            .duration_since(pushed.zero)
            .unwrap_or_default();
        let all = &pushed.fleet.scenarios;
        let matcher = scenarios::Matcher::new(all);
        let mut matching = Vec::new();
        for agent in agents {
            let Some(kept) = self.hand.get(agent) else {
                continue;
            };
            let events = hand::events(&kept.faults, pushed.revision, pushed.zero);
            matcher.matching(agent, &mut matching);
            for (origin, ends) in scenarios::in_progress(all, &matching, agent, skip, &events) {
                let Origin::Hand(i) = origin else { continue };
                let (kind, arg) = scenarios::split(events[i].fault);
                let left = ends.map(|e| e.saturating_sub(skip));
                let request =
                    crate::control::api::Request::own_fault(vec![agent.clone()], kind, arg, left);
                if let Response::Error { message, .. } = self.settings.requests.call(request).await
                {
                    tracing::warn!(%agent, cause = %message, "cluster: a fault injected by hand not given back");
                }
            }
        }
    }

    /// Stops every agent now (the lease is ending), whatever else runs.
    async fn fence(&mut self, why: &str) {
        let (reply, answer) = oneshot::channel();
        if self
            .shares
            .send(Share::Fence {
                epoch: self.epoch,
                reply,
            })
            .await
            .is_ok()
        {
            let _ = answer.await;
        }
        let serving: Vec<String> = std::mem::take(&mut self.serving).into_iter().collect();
        self.released(&serving, why);
        self.fleet_served = None;
    }

    /// Revokes the lease (its keys go with it), if etcd answers.
    async fn revoke(&mut self, client: &mut Client) {
        if self.lease == 0 {
            return;
        }
        match timeout(self.op_timeout(), client.lease_revoke(self.lease)).await {
            Ok(Ok(_)) => {
                tracing::info!(lease = %format!("{:x}", self.lease), "cluster: lease revoked")
            }
            Ok(Err(e)) => tracing::debug!(cause = %e, "cluster: lease not revoked"),
            Err(_) => tracing::debug!("cluster: lease not revoked: etcd does not answer"),
        }
        self.lease = 0;
        self.owners.clear();
        self.boots.clear();
    }

    /// One `assigned` event for agents this node now serves.
    fn assigned(&self, agents: &[String]) {
        self.batch_event(EventKind::Assigned, agents, "assigned to this node");
    }

    /// One `released` event for agents this node no longer serves.
    fn released(&self, agents: &[String], why: &str) {
        self.batch_event(EventKind::Released, agents, &format!("released ({why})"));
    }

    fn batch_event(&self, kind: EventKind, agents: &[String], what: &str) {
        if agents.is_empty() {
            return;
        }
        let agent = if agents.len() == 1 {
            agents[0].clone()
        } else {
            String::new()
        };
        let mut names = agents
            .iter()
            .take(NAMES_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if agents.len() > NAMES_SHOWN {
            names += &format!(" and {} more", agents.len() - NAMES_SHOWN);
        }
        tracing::info!(node = %self.settings.node, count = agents.len(), "cluster: {what}: {names}");
        self.bus.publish(NewEvent {
            agent,
            pid: Some(std::process::id()),
            reason: format!(
                "{} agent{} {what}: {names}",
                agents.len(),
                if agents.len() == 1 { "" } else { "s" }
            ),
            ..NewEvent::new(kind, State::Running)
        });
    }
}

/// Waits until `margin` before the deadline `deadline` holds (it moves on
/// with every answered keepalive), then tells the manager to stop every
/// agent of lease epoch `epoch` and cancels `fenced`. A deadline that
/// moved while this task waited is always seen before it fires.
async fn fence(
    mut deadline: watch::Receiver<Instant>,
    margin: Duration,
    shares: mpsc::Sender<Share>,
    epoch: u64,
    fenced: CancellationToken,
) {
    let mut extended = true;
    loop {
        let at = *deadline.borrow_and_update() - margin;
        if Instant::now() >= at {
            break;
        }
        if !extended {
            // The keepalive task ended: no more extensions.
            tokio::time::sleep_until(at).await;
            continue;
        }
        tokio::select! {
            biased;
            changed = deadline.changed() => extended = changed.is_ok(),
            () = tokio::time::sleep_until(at) => {}
        }
    }
    let (reply, answer) = oneshot::channel();
    if shares.send(Share::Fence { epoch, reply }).await.is_ok() {
        let _ = answer.await;
    }
    fenced.cancel();
}

/// Keeps `lease` alive every third of `ttl`: each answered keepalive moves
/// the deadline to the time it was sent + `ttl` (etcd counts from when it
/// received it, later); a keepalive that finds the lease gone cancels
/// `lost`. A failed or stuck one drops the stream, opened again next time.
async fn keep_alive(
    mut client: Client,
    lease: i64,
    ttl: Duration,
    deadline: watch::Sender<Instant>,
    lost: CancellationToken,
) {
    let period = ttl / 3;
    let mut stream = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    loop {
        tick.tick().await;
        let sent = Instant::now();
        // Opening the stream sends a keepalive and reads its answer (an
        // error if the lease is gone); later ones are sent and read here.
        let attempt = timeout(period, async {
            match stream.as_mut() {
                Some((keeper, responses)) => {
                    let keeper: &mut etcd_client::LeaseKeeper = keeper;
                    let responses: &mut etcd_client::LeaseKeepAliveStream = responses;
                    keeper.keep_alive().await?;
                    Ok(responses.message().await?.map(|r| r.ttl()))
                }
                None => {
                    stream = Some(client.lease_keep_alive(lease).await?);
                    Ok::<_, etcd_client::Error>(Some(i64::MAX))
                }
            }
        })
        .await;
        tracing::debug!(took = ?sent.elapsed(), result = ?attempt, "cluster: keepalive");
        match attempt {
            Ok(Ok(Some(left))) if left > 0 => {
                if failing {
                    tracing::info!("cluster: keepalives answered again");
                    failing = false;
                }
                deadline.send_replace(sent + ttl);
            }
            Ok(Ok(Some(_))) => {
                lost.cancel();
                return;
            }
            other => {
                stream = None;
                if !failing {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "no answer".into(),
                        _ => "stream closed".into(),
                    };
                    tracing::warn!(cause = %why, "cluster: keepalive failed; retrying");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fence waits while keepalives move the deadline, and stops the
    /// agents `margin` before the last deadline once they stop.
    #[tokio::test(start_paused = true)]
    async fn the_fence_follows_the_deadline_and_fires_before_it() {
        let ttl = Duration::from_secs(3);
        let margin = Duration::from_secs(1);
        let start = Instant::now();
        let (deadline, rx) = watch::channel(start + ttl);
        let (shares, mut asked) = mpsc::channel(4);
        let fenced = CancellationToken::new();
        let task = tokio::spawn(fence(rx, margin, shares, 7, fenced.clone()));
        // Keepalives answered every second for five seconds.
        for s in 1..=5 {
            tokio::time::sleep_until(start + Duration::from_secs(s)).await;
            deadline.send_replace(Instant::now() + ttl);
            assert!(!fenced.is_cancelled(), "fenced at {s}s");
        }
        // Then none: the fence asks at 5 + 3 - 1 = 7 s.
        match asked.recv().await {
            Some(Share::Fence { epoch, reply }) => {
                assert_eq!(epoch, 7);
                assert_eq!(start.elapsed(), Duration::from_secs(7));
                let _ = reply.send(Response::Done {
                    agents: vec![],
                    message: String::new(),
                });
            }
            other => panic!("{other:?}"),
        }
        task.await.unwrap();
        assert!(fenced.is_cancelled());
    }
}
