//! The supervisor's own SNMP agent (`cluster.snmp`): a read-only view of the
//! fleet's health for a manager to poll. It answers SNMPv1/v2c (one
//! community) with sysDescr, sysObjectID (the MIB root), sysUpTime, sysName,
//! the SNMPv2-MIB `snmp` counters and AGENTCLUSTER-MIB's acAgentTable,
//! acAgentCount and acNode.
//!
//! The agent crate's responder does the protocol work; it serves an
//! in-memory store built from the supervisor's status snapshot ([`Table`],
//! pure), rebuilt when the snapshot changes and at most once per second.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agentcluster_agent::ber::Frame;
use agentcluster_agent::responder::{CommunityAccess, Config, Outcome, Responder};
use agentcluster_agent::snapshot::Record;
use agentcluster_agent::store::Store;
use agentcluster_agent::value::{Oid, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::control::api::AgentStatus;
use crate::events::State;
use crate::events::mib::cut;
use crate::process::bind::{BindError, bind_udp};

/// The shortest time between two rebuilds of the served table.
pub const REBUILD_EVERY: Duration = Duration::from_secs(1);
/// Most varbinds in one response (GETBULK is cut here).
const MAX_VARBINDS: usize = 1000;
/// Largest response datagram.
const MAX_MESSAGE_SIZE: usize = 65_507;
/// DisplayString's limit, in octets.
const TEXT_MAX: usize = 255;

const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_OBJECT_ID: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 2, 0];
const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];

/// Binds every `cluster.snmp.listen` endpoint; on failure reports all that
/// failed. Call it early: a clash is a startup error.
pub fn bind(listen: &[SocketAddr]) -> Result<Vec<std::net::UdpSocket>, Vec<BindError>> {
    let mut sockets = Vec::with_capacity(listen.len());
    let mut errors = Vec::new();
    for &endpoint in listen {
        match bind_udp(endpoint) {
            Ok(s) => sockets.push(s),
            Err(cause) => errors.push(BindError {
                agent: "cluster.snmp".into(),
                endpoint,
                cause,
            }),
        }
    }
    if errors.is_empty() {
        Ok(sockets)
    } else {
        Err(errors)
    }
}

/// What the served objects are built from, besides the status snapshot.
#[derive(Clone)]
pub struct Settings {
    /// The one community, read-only, for v1 and v2c.
    pub community: String,
    /// AGENTCLUSTER-MIB's root (`events.mib_root`); also sysObjectID.0.
    pub mib_root: Vec<u32>,
    /// sysName.0 and acNode.0.
    pub node: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("community", &"***")
            .field("mib_root", &self.mib_root)
            .field("node", &self.node)
            .finish()
    }
}

/// The agent table's memory between snapshots: a stable index per agent
/// name and when each agent's state or process last changed.
#[derive(Debug, Default)]
pub struct Table {
    index: HashMap<String, u32>,
    next_index: u32,
    /// (state, pid) last seen, and sysUpTime (ticks) when it changed.
    seen: HashMap<String, (State, Option<u32>, u32)>,
}

impl Table {
    /// Takes in a snapshot seen at `ticks` (sysUpTime). The agents of the
    /// first snapshot are numbered in name order from 1; later ones get the
    /// next numbers. A change of state or pid records `ticks`; agents of the
    /// first snapshot start at 0.
    pub fn observe(&mut self, snapshot: &[AgentStatus], ticks: u32) {
        let first = self.next_index == 0;
        if first {
            self.next_index = 1;
        }
        let mut new: Vec<&AgentStatus> = snapshot
            .iter()
            .filter(|a| !self.index.contains_key(&a.name))
            .collect();
        new.sort_by(|a, b| a.name.cmp(&b.name));
        for a in new {
            self.index.insert(a.name.clone(), self.next_index);
            self.next_index = self.next_index.saturating_add(1);
        }
        let at = if first { 0 } else { ticks };
        for a in snapshot {
            match self.seen.get_mut(&a.name) {
                Some((state, pid, when)) => {
                    if *state != a.state || *pid != a.pid {
                        *state = a.state;
                        *pid = a.pid;
                        *when = ticks;
                    }
                }
                None => {
                    self.seen.insert(a.name.clone(), (a.state, a.pid, at));
                }
            }
        }
        // Rows of removed agents go; a name keeps its index if it returns.
        self.seen
            .retain(|name, _| snapshot.iter().any(|a| a.name == *name));
    }

    /// The records to serve for `snapshot`, sorted by OID.
    pub fn records(&self, snapshot: &[AgentStatus], settings: &Settings) -> Vec<Record> {
        let root = &settings.mib_root;
        let at = |tail: &[u32]| -> Oid {
            let mut o = root.clone();
            o.extend_from_slice(tail);
            o
        };
        let text = |s: &str| Value::OctetString(cut(s, TEXT_MAX).as_bytes().to_vec());
        let mut values: Vec<(Oid, Value)> = vec![
            (
                SYS_DESCR.to_vec(),
                text(&format!(
                    "agentcluster {} supervisor of {} simulated SNMP agents on {}",
                    env!("CARGO_PKG_VERSION"),
                    snapshot.len(),
                    settings.node
                )),
            ),
            (SYS_OBJECT_ID.to_vec(), Value::ObjectId(root.clone())),
            (SYS_NAME.to_vec(), text(&settings.node)),
            (
                at(&[1, 3, 0]),
                Value::Gauge32(u32::try_from(snapshot.len()).unwrap_or(u32::MAX)),
            ),
            (at(&[1, 4, 0]), text(&settings.node)),
        ];
        for a in snapshot {
            let Some(&i) = self.index.get(&a.name) else {
                continue;
            };
            let changed = self.seen.get(&a.name).map_or(0, |s| s.2);
            let mut col = |c: u32, v: Value| values.push((at(&[1, 2, 1, c, i]), v));
            col(2, text(&a.name));
            col(3, Value::Integer(a.state.number()));
            col(4, Value::Gauge32(a.pid.unwrap_or(0)));
            col(5, Value::Counter32(a.restarts));
            col(6, Value::TimeTicks(changed));
            col(7, Value::Counter64(a.requests));
            col(8, text(&a.endpoints.join(",")));
        }
        values.sort_by(|a, b| a.0.cmp(&b.0));
        values.dedup_by(|a, b| a.0 == b.0);
        values
            .into_iter()
            .map(|(oid, value)| Record {
                oid,
                value,
                variation: None,
                line: 0,
            })
            .collect()
    }
}

/// sysUpTime in hundredths of a second since `start`, wrapping.
fn ticks(start: Instant) -> u32 {
    (start.elapsed().as_millis() / 10) as u32
}

/// The store for `snapshot`; `None` only if it cannot be encoded (an OID
/// longer than the store allows).
fn build(table: &Table, snapshot: &[AgentStatus], settings: &Settings) -> Option<Arc<Store>> {
    Store::from_records(&table.records(snapshot, settings)).map(Arc::new)
}

/// What of a status line is served: without uptime, RSS, process name and
/// faults (with their countdowns), which change without anything served
/// changing.
fn served_part(snapshot: &[AgentStatus]) -> Vec<AgentStatus> {
    snapshot
        .iter()
        .map(|a| AgentStatus {
            uptime_ms: None,
            rss_bytes: None,
            process: String::new(),
            faults: Vec::new(),
            ..a.clone()
        })
        .collect()
}

/// Follows the status snapshots: every change is observed (for
/// acAgentLastChange) and the store rebuilt when what it serves changed, at
/// most every [`REBUILD_EVERY`]. `built` is what the current store serves.
/// Ends with `shutdown`; once the status sender is gone the last table
/// stays served.
async fn rebuild(
    mut status: watch::Receiver<Vec<AgentStatus>>,
    settings: Settings,
    start: Instant,
    mut table: Table,
    mut built: Vec<AgentStatus>,
    out: watch::Sender<Arc<Store>>,
    shutdown: CancellationToken,
) {
    let mut next_build = tokio::time::Instant::now() + REBUILD_EVERY;
    let mut dirty = false;
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = status.changed(), if open => {
                if r.is_err() {
                    open = false;
                    continue;
                }
                let snapshot = served_part(&status.borrow_and_update());
                table.observe(&snapshot, ticks(start));
                dirty = snapshot != built;
            }
            () = tokio::time::sleep_until(next_build), if dirty => {
                let snapshot = served_part(&status.borrow_and_update());
                table.observe(&snapshot, ticks(start));
                match build(&table, &snapshot, &settings) {
                    Some(store) => {
                        out.send_replace(store);
                    }
                    None => tracing::error!(
                        "cluster.snmp: the agent table could not be built; the previous one stays"
                    ),
                }
                built = snapshot;
                dirty = false;
                next_build = tokio::time::Instant::now() + REBUILD_EVERY;
            }
        }
    }
}

/// One responder for every socket, so the counters are the agent's.
struct Served {
    responder: Responder,
    frame: Frame,
    store: watch::Receiver<Arc<Store>>,
}

/// Serves SNMP on `sockets` (from [`bind`]) until `shutdown`, then returns
/// `Ok`; an error means it stopped early. `status` is the supervisor's
/// status snapshot (as `agentcluster status` shows it), updated by the
/// supervisor whenever it changes.
pub async fn run(
    sockets: Vec<std::net::UdpSocket>,
    settings: Settings,
    mut status: watch::Receiver<Vec<AgentStatus>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let start = Instant::now();
    let mut table = Table::default();
    let first = served_part(&status.borrow_and_update());
    table.observe(&first, 0);
    let store = build(&table, &first, &settings)
        .ok_or_else(|| io::Error::other("cluster.snmp: the agent table cannot be encoded"))?;
    let config = Config {
        communities: vec![CommunityAccess {
            community: settings.community.as_bytes().to_vec(),
            v1: true,
            v2c: true,
            view: 0,
            write: false,
        }],
        max_varbinds: MAX_VARBINDS,
        max_message_size: MAX_MESSAGE_SIZE,
        v3: None,
    };
    let (store_tx, store_rx) = watch::channel(store.clone());
    let served = Arc::new(Mutex::new(Served {
        responder: Responder::new(config, vec![store], start),
        frame: Frame::default(),
        store: store_rx,
    }));
    let mut tasks = tokio::task::JoinSet::new();
    for s in sockets {
        s.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(s)?;
        tasks.spawn(serve(socket, served.clone(), shutdown.clone()));
    }
    tasks.spawn(rebuild(
        status,
        settings,
        start,
        table,
        first,
        store_tx,
        shutdown.clone(),
    ));
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            // A bug: end the others and say so, never serve half silently.
            tasks.shutdown().await;
            return Err(io::Error::other(format!("cluster.snmp task failed: {e}")));
        }
    }
    Ok(())
}

async fn serve(
    socket: tokio::net::UdpSocket,
    served: Arc<Mutex<Served>>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 65_535];
    let mut reply = Vec::with_capacity(1500);
    loop {
        let (len, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // An ICMP error of an earlier reply, or a transient one.
                Err(e) => {
                    tracing::debug!(cause = %e, "cluster.snmp: receive");
                    continue;
                }
            },
        };
        {
            let mut s = served.lock().unwrap_or_else(PoisonError::into_inner);
            let Served {
                responder,
                frame,
                store,
            } = &mut *s;
            if store.has_changed().unwrap_or(false) {
                let new = store.borrow_and_update().clone();
                responder.swap_store(0, new);
            }
            if responder.handle(&buf[..len], Instant::now(), frame) != Outcome::Reply {
                continue;
            }
            reply.clear();
            reply.extend_from_slice(frame.as_slice());
        }
        if let Err(e) = socket.send_to(&reply, peer).await {
            tracing::debug!(cause = %e, %peer, "cluster.snmp: reply not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentcluster_agent::ber::{self, TAG_SEQUENCE};
    use agentcluster_conf::DEFAULT_MIB_ROOT;

    fn agent(name: &str, state: &str, pid: Option<u32>) -> AgentStatus {
        AgentStatus {
            name: name.into(),
            state: state.parse().unwrap(),
            pid,
            endpoints: vec!["127.0.0.1:10161".into(), "[::1]:10161".into()],
            restarts: 2,
            uptime_ms: None,
            rss_bytes: None,
            requests: 5_000_000_000,
            process: name.into(),
            faults: Vec::new(),
        }
    }

    fn settings() -> Settings {
        Settings {
            community: "public".into(),
            mib_root: DEFAULT_MIB_ROOT.to_vec(),
            node: "lab-a".into(),
        }
    }

    fn oid(tail: &[u32]) -> Oid {
        let mut o = DEFAULT_MIB_ROOT.to_vec();
        o.extend_from_slice(tail);
        o
    }

    fn value<'a>(records: &'a [Record], o: &[u32]) -> Option<&'a Value> {
        records.iter().find(|r| r.oid == o).map(|r| &r.value)
    }

    #[test]
    fn indices_are_stable_and_changes_are_stamped() {
        let mut t = Table::default();
        let s = settings();
        let snap = vec![
            agent("b", "running", Some(20)),
            agent("a", "starting", None),
        ];
        t.observe(&snap, 100);
        let r = t.records(&snap, &s);
        assert!(r.windows(2).all(|w| w[0].oid < w[1].oid), "sorted");
        let text = |s: &str| Value::OctetString(s.as_bytes().to_vec());
        // name order: a = 1, b = 2
        assert_eq!(value(&r, &oid(&[1, 2, 1, 2, 1])), Some(&text("a")));
        assert_eq!(value(&r, &oid(&[1, 2, 1, 2, 2])), Some(&text("b")));
        assert_eq!(value(&r, &oid(&[1, 2, 1, 3, 1])), Some(&Value::Integer(2)));
        assert_eq!(value(&r, &oid(&[1, 2, 1, 3, 2])), Some(&Value::Integer(3)));
        assert_eq!(value(&r, &oid(&[1, 2, 1, 4, 1])), Some(&Value::Gauge32(0)));
        assert_eq!(value(&r, &oid(&[1, 2, 1, 4, 2])), Some(&Value::Gauge32(20)));
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 5, 2])),
            Some(&Value::Counter32(2))
        );
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 6, 2])),
            Some(&Value::TimeTicks(0))
        );
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 7, 2])),
            Some(&Value::Counter64(5_000_000_000))
        );
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 8, 2])),
            Some(&text("127.0.0.1:10161,[::1]:10161"))
        );
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 1, 1])),
            None,
            "the index is not-accessible"
        );
        assert_eq!(value(&r, &oid(&[1, 3, 0])), Some(&Value::Gauge32(2)));
        assert_eq!(value(&r, &oid(&[1, 4, 0])), Some(&text("lab-a")));
        assert_eq!(value(&r, SYS_NAME), Some(&text("lab-a")));
        assert_eq!(
            value(&r, SYS_OBJECT_ID),
            Some(&Value::ObjectId(DEFAULT_MIB_ROOT.to_vec()))
        );

        // a restarts with a new pid; c is added (it sorts before b but gets
        // the next index); b goes away.
        let snap = vec![
            agent("c", "running", Some(30)),
            agent("a", "running", Some(11)),
        ];
        t.observe(&snap, 250);
        let r = t.records(&snap, &s);
        assert_eq!(value(&r, &oid(&[1, 2, 1, 2, 1])), Some(&text("a")));
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 6, 1])),
            Some(&Value::TimeTicks(250))
        );
        assert_eq!(value(&r, &oid(&[1, 2, 1, 2, 2])), None, "b is gone");
        assert_eq!(value(&r, &oid(&[1, 2, 1, 2, 3])), Some(&text("c")));
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 6, 3])),
            Some(&Value::TimeTicks(250))
        );
        assert_eq!(value(&r, &oid(&[1, 3, 0])), Some(&Value::Gauge32(2)));
        // Nothing changed: nothing restamped.
        t.observe(&snap, 900);
        let r = t.records(&snap, &s);
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 6, 1])),
            Some(&Value::TimeTicks(250))
        );
        // b comes back: its name keeps its number.
        let snap = vec![agent("b", "running", Some(40))];
        t.observe(&snap, 1000);
        let r = t.records(&snap, &s);
        assert_eq!(value(&r, &oid(&[1, 2, 1, 2, 2])), Some(&text("b")));
        assert_eq!(
            value(&r, &oid(&[1, 2, 1, 6, 2])),
            Some(&Value::TimeTicks(1000))
        );
        assert!(build(&t, &snap, &s).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_is_rebuilt_at_most_once_a_second() {
        let (status_tx, status) = watch::channel(vec![agent("a", "starting", None)]);
        let mut table = Table::default();
        let served = served_part(&status.borrow());
        table.observe(&served, 0);
        let first = build(&table, &served, &settings()).unwrap();
        let (out, mut built) = watch::channel(first);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(rebuild(
            status,
            settings(),
            Instant::now(),
            table,
            served,
            out,
            shutdown.clone(),
        ));
        let begun = tokio::time::Instant::now();
        status_tx.send_replace(vec![agent("a", "running", Some(1))]);
        tokio::task::yield_now().await;
        status_tx.send_replace(vec![agent("a", "running", Some(2))]);
        built.changed().await.unwrap();
        assert!(begun.elapsed() >= REBUILD_EVERY, "{:?}", begun.elapsed());
        let store = built.borrow_and_update().clone();
        let i = store.lower_bound(&oid(&[1, 2, 1, 4, 1]));
        let item = store.item(i).unwrap();
        assert_eq!(item.oid, oid(&[1, 2, 1, 4, 1]));
        // Gauge32 2: both changes are in the one rebuild.
        assert_eq!(item.value, [ber::TAG_GAUGE32, 1, 2]);
        // No change of what is served (only uptime and RSS), no rebuild.
        let mut same = agent("a", "running", Some(2));
        same.uptime_ms = Some(5000);
        same.rss_bytes = Some(1 << 20);
        status_tx.send_replace(vec![same]);
        tokio::time::sleep(REBUILD_EVERY * 3).await;
        assert!(!built.has_changed().unwrap());
        shutdown.cancel();
        task.await.unwrap();
    }

    /// A v2c GET of `oids`; the response's varbinds as (OID bytes, value TLV).
    async fn get(to: SocketAddr, community: &[u8], oids: &[&[u32]]) -> Option<Vec<Vec<u8>>> {
        let mut frame = Frame::default();
        frame.reset(256);
        for o in oids {
            ber::push_varbind(frame.body(), o, &[ber::TAG_NULL, 0]);
        }
        frame.wrap(TAG_SEQUENCE);
        frame.prepend_int(0);
        frame.prepend_int(0);
        frame.prepend_int(77);
        frame.wrap(0xa0);
        frame.prepend_tlv(ber::TAG_OCTET_STRING, community);
        frame.prepend_int(1);
        frame.wrap(TAG_SEQUENCE);
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(frame.as_slice(), to).await.unwrap();
        let mut buf = vec![0u8; 65_535];
        let len = tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        let msg = &buf[..len];
        let (_, start, _) = ber::read_header(msg, 0)?;
        let (_, p, l) = ber::read_header(msg, start)?; // version
        let (_, p, l) = ber::read_header(msg, p + l)?; // community
        let (tag, pdu, _) = ber::read_header(msg, p + l)?;
        assert_eq!(tag, 0xa2);
        let (_, p, l) = ber::read_header(msg, pdu)?; // request-id
        let (_, p, l) = ber::read_header(msg, p + l)?; // error-status
        assert_eq!(&msg[p..p + l], [0]);
        let (_, p, l) = ber::read_header(msg, p + l)?; // error-index
        let (_, list, list_len) = ber::read_header(msg, p + l)?;
        let mut out = Vec::new();
        let mut at = list;
        while at < list + list_len {
            let (_, vb, vb_len) = ber::read_header(msg, at)?;
            let (_, o, ol) = ber::read_header(msg, vb)?;
            out.push(msg[o + ol..vb + vb_len].to_vec());
            at = vb + vb_len;
        }
        Some(out)
    }

    #[tokio::test]
    async fn answers_get_with_the_community_only() {
        let sockets = bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        let (_status_tx, status) = watch::channel(vec![
            agent("a", "running", Some(1234)),
            agent("b", "failed", None),
        ]);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(sockets, settings(), status, shutdown.clone()));
        let values = get(
            addr,
            b"public",
            &[
                SYS_NAME,
                &oid(&[1, 3, 0]),
                &oid(&[1, 2, 1, 4, 1]),
                &oid(&[1, 2, 1, 3, 2]),
            ],
        )
        .await
        .expect("an answer");
        assert_eq!(
            values,
            vec![
                vec![ber::TAG_OCTET_STRING, 5, b'l', b'a', b'b', b'-', b'a'],
                vec![ber::TAG_GAUGE32, 1, 2],
                vec![ber::TAG_GAUGE32, 2, 0x04, 0xd2],
                vec![ber::TAG_INTEGER, 1, 7],
            ]
        );
        assert_eq!(get(addr, b"private", &[SYS_NAME]).await, None);
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }

    #[test]
    fn a_taken_endpoint_is_a_bind_error_naming_it() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let errors = bind(&[addr]).unwrap_err();
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.contains("cluster.snmp") && text.contains(&addr.to_string()),
            "{text}"
        );
        assert!(!format!("{:?}", settings()).contains("public"));
    }
}
