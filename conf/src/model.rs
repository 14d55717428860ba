//! The checked fleet model: what `validate()` produces and every other crate
//! consumes. Every default is applied, every path is resolved against the file
//! that named it, every template is expanded.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole fleet, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// The main configuration file (or a placeholder name for embedded text).
    pub source: PathBuf,
    /// How the supervisor runs and watches agent processes (`cluster`).
    pub cluster: Cluster,
    /// Where lifecycle events go besides the journal and the stream
    /// (`events`).
    pub events: Events,
    /// Every agent, templates expanded, in file order (includes after the
    /// main file's own agents, in glob order).
    pub agents: Vec<Agent>,
    /// How big the fleet is, counted before its templates were expanded.
    pub counts: Counts,
    /// Scheduled faults (`scenarios`), in file order.
    pub scenarios: Vec<Scenario>,
}

impl Fleet {
    /// Every snapshot file of the fleet, without repeats, in the order its
    /// agents first name them.
    pub fn snapshots(&self) -> Vec<&PathBuf> {
        let mut seen = std::collections::HashSet::new();
        self.agents
            .iter()
            .flat_map(Agent::snapshots)
            .filter(|p| seen.insert(*p))
            .collect()
    }
}

/// One scheduled fault (`scenarios:`): `fault` on every agent `agents`
/// matches, `at` once or `every` period, each time shifted by a seeded
/// random part of `jitter` per agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// The agents it applies to: a name or a glob.
    pub agents: String,
    /// The fault (its `arg` included).
    pub fault: crate::Fault,
    /// When it happens, from the supervisor's start (or the reload that
    /// read it).
    pub when: When,
    /// How long each fault lasts (`for`); `None`: until something clears it.
    pub duration: Option<Duration>,
    /// Each occurrence is delayed by up to this much, per agent.
    pub jitter: Duration,
    /// The seed of the jitter: the same seed, the same times.
    pub seed: u64,
}

/// When a scenario's fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Once, this long after the start.
    At(Duration),
    /// Every period, the first one period after the start.
    Every(Duration),
}

/// How big a fleet is, counted from its entries before any template is
/// expanded (a template counts as its `count` copies): what a capacity
/// check works from, so that a fleet too big for the host is refused before
/// its copies take any memory (see [`crate::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Agents, template copies included.
    pub agents: u64,
    /// Of these, the agents with `active: false` (each gets a process of
    /// its own once started).
    pub inactive: u64,
    /// Endpoints of every agent.
    pub endpoints: u64,
    /// The most endpoints one agent has.
    pub max_endpoints: u64,
    /// Distinct snapshot files. A path with a placeholder counts each
    /// distinct file its copies name (`model-{i%3}`: three), or one file
    /// per copy when they name more than 1,024.
    pub snapshots: u64,
    /// Their size in bytes (missing files count 0). For a path with a
    /// placeholder, the size of copy 0's file per file: an estimate.
    pub snapshot_bytes: u64,
    /// The most snapshot files one agent serves (its `data`, its
    /// communities' and contexts' own): the stores an agent process is
    /// handed are at most this many per agent.
    pub max_snapshots: u64,
}

/// The `cluster` section: the supervisor's own settings, and the limits
/// every agent process gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// This host's name in events (`node|component|event|agent` ids) and in
    /// derived SNMPv3 engine IDs. Default: the host name.
    pub node: String,
    /// State that must outlive a run: snmpEngineBoots, unacknowledged
    /// informs. Default: `/var/lib/agentcluster` as root, else
    /// `$XDG_STATE_HOME/agentcluster` or `~/.local/state/agentcluster`.
    pub state_dir: PathBuf,
    /// Compiled snapshot stores. Default: `/var/cache/agentcluster` as root,
    /// else `$XDG_CACHE_HOME/agentcluster` or `~/.cache/agentcluster`.
    pub cache_dir: PathBuf,
    /// The Unix socket of `agentcluster status`, `reload`, `events`…
    /// `None`: the supervisor and the CLI both use the default
    /// (`$XDG_RUNTIME_DIR/agentcluster/control.sock`, …).
    pub control_socket: Option<PathBuf>,
    /// Most processes between spawn and ready at the same time, so that
    /// starting a big fleet does not swamp the host (default 8, at least 1).
    pub start_tokens: u32,
    /// How long a process has to answer `ready` before its start counts as
    /// failed (default 10 s).
    pub start_timeout: Duration,
    /// How often agent processes report that they live (default 1 s).
    pub heartbeat: Duration,
    /// No heartbeat for this long and a process is unresponsive, stopped
    /// and restarted (default 5 s; longer than `heartbeat`).
    pub inactive_after: Duration,
    /// How long a process may take to exit after SIGTERM before SIGKILL
    /// (default 5 s; 0 allowed).
    pub stop_timeout: Duration,
    /// Agents that share one process (default 1, at least 1): fewer
    /// processes for big fleets, at the cost of restarting them together.
    pub agents_per_process: u32,
    /// When and how fast failed processes are restarted.
    pub restart: Restart,
    /// An end-to-end SNMP check of each running process; `None`: off.
    pub probe: Option<Probe>,
    /// The supervisor's own SNMP agent (AGENTCLUSTER-MIB's agent table);
    /// `None`: off.
    pub snmp: Option<ClusterSnmp>,
    /// Prometheus metrics over HTTP (`GET /metrics`); `None`: off.
    pub metrics: Option<ClusterMetrics>,
    /// Scale-out through etcd (docs/scale-out.md): where the shared fleet
    /// lives and how this node takes part; `None`: a fleet of its own.
    pub etcd: Option<Etcd>,
    /// Most varbinds one response may carry (GETBULK is cut here); default
    /// 1000, at least 1. Each agent may override it.
    pub max_varbinds: u32,
    /// The account agent processes run as (`None`: the supervisor's own,
    /// or `nobody` when it runs as root). A name that was found in
    /// /etc/passwd, or a numeric uid; turn it into ids with
    /// [`crate::resolve_user`].
    pub user: Option<String>,
    /// The group agent processes run as (`None`: `user`'s primary group, or
    /// the supervisor's own). A name found in /etc/group, or a numeric gid;
    /// see [`crate::resolve_group`].
    pub group: Option<String>,
    /// Memory limit of each agent process, in bytes (`None`: no limit); each
    /// agent may override it, see [`Agent::memory_max`].
    pub memory_max: Option<u64>,
    /// Largest response datagram an agent sends (484..=65507, default
    /// 65507): bounds what a small, possibly spoofed request can make an
    /// agent send.
    pub max_response_bytes: u32,
    /// Per-source request limit of each agent; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// The most a snapshot may shrink on a hot reload, in percent of the
    /// records served now (0..=100, default 50; 100: no limit): a file cut
    /// short by accident is refused instead of served.
    pub snapshot_max_loss: u8,
    /// Compiled stores in `cache_dir` unused for longer than this are
    /// removed, at start and every few hours after (default 30 days; zero:
    /// never). The stores this supervisor serves are marked as used more
    /// often than that, so other supervisors sharing the directory keep
    /// them.
    pub cache_max_age: Duration,
    /// Listen addresses missing on the host are added to an interface
    /// before binding (and removed at shutdown); `None`: an address that
    /// is not on the host is a startup error.
    pub addresses: Option<Addresses>,
    /// Each agent process receives the datagrams of all of its devices on
    /// one socket, steered there by a BPF program the supervisor attaches
    /// to its network namespace (default `true`, where the host allows
    /// it: CAP_BPF and CAP_NET_ADMIN); `false`: every device's socket
    /// receives its own.
    pub steering: bool,
}

/// `cluster.addresses`: where the supervisor adds the listen addresses
/// that are not on the host yet, so a fleet of devices at addresses of
/// their own runs without setting them up by hand (needs CAP_NET_ADMIN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The interface that gets them (`lo`, or a dummy interface): a valid
    /// Linux interface name (1 to 15 bytes, no `/`, `:` or blanks).
    pub interface: String,
    /// Whether an absent `interface` is created as a dummy link (and
    /// deleted at shutdown); default `false`: it must exist.
    pub create: bool,
}

/// A token bucket per source address: `per_source` requests a second
/// sustained, up to `burst` at once. Requests over it are dropped and
/// counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained (at least 1).
    pub per_source: u32,
    /// Requests at once after a quiet spell (at least 1; default
    /// `per_source`).
    pub burst: u32,
}

/// Which process exits lead to a restart (`restart.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Every exit, clean or not (the default).
    Always,
    /// Exits with a failure, and processes stopped for a fault (no
    /// heartbeat, failed probe, over `memory_max`).
    OnFailure,
    /// None: a process that ends stays down (stopped or failed) until an
    /// operator starts it.
    Never,
}

/// The `restart` section: when to restart, how fast, and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    /// Which exits are restarted.
    pub policy: RestartPolicy,
    /// First delay of the exponential backoff (default 100 ms; `backoff:
    /// MIN..MAX`).
    pub backoff_min: Duration,
    /// Longest backoff delay (default 30 s).
    pub backoff_max: Duration,
    /// More restarts than this within `window` and the agent is left
    /// `failed` (default 10; 0 allowed).
    pub max_restarts: u32,
    /// The span `max_restarts` counts over (default 60 s).
    pub window: Duration,
}

/// The `probe` section: a GET of sysUpTime.0 to each running process's
/// first endpoint with its first v1/v2c community (agents that speak only
/// SNMPv3 are not probed), so a process that heartbeats but no longer
/// answers SNMP is caught.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Time between probes (default 10 s).
    pub interval: Duration,
    /// How long an answer may take before the probe fails (default 2 s).
    pub timeout: Duration,
}

/// `cluster.snmp`: where the supervisor answers AGENTCLUSTER-MIB queries.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSnmp {
    /// Endpoints bound by the supervisor (at least one); checked against
    /// the agents' for clashes.
    pub listen: Vec<SocketAddr>,
    /// The read-only community (default `public`).
    pub community: Secret,
}

/// `cluster.metrics`: where the supervisor serves its Prometheus metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMetrics {
    /// The TCP endpoint of the HTTP server (`GET /metrics`), bound by the
    /// supervisor at start; a port other than 0.
    pub listen: SocketAddr,
}

/// `cluster.etcd`: the etcd cluster a fleet is shared through.
#[derive(Debug, Clone, PartialEq)]
pub struct Etcd {
    /// Endpoint URLs (default `http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// Key prefix, starting with `/` (default `/agentcluster`).
    pub prefix: String,
    /// Lease lifetime (default 10 s, at least 1 s: etcd counts in seconds).
    pub lease_ttl: Duration,
    /// The addresses this node can bind, so that it is given only agents
    /// it can serve; `None`: every address on the host when it starts.
    pub serves: Option<Vec<AddressRange>>,
}

/// A range of IP addresses, `ADDR/LEN` (a bare address: just it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    /// The network address (host bits as written).
    pub addr: std::net::IpAddr,
    /// Prefix length: up to 32 for IPv4, 128 for IPv6.
    pub len: u8,
}

impl AddressRange {
    /// Parses `ADDR/LEN` or `ADDR`.
    pub fn parse(s: &str) -> Result<AddressRange, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or ADDR/LEN range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`{s}`: prefix length must be 0..={max}")),
            },
        };
        Ok(AddressRange { addr, len })
    }

    /// Whether `ip` lies in the range (an IPv4 range holds no IPv6
    /// address and the other way round).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The `events` section: the event sinks that need settings, and where
/// AGENTCLUSTER-MIB sits.
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    /// Hyper-V KVP records of each event; `None`: off.
    pub kvp: Option<Kvp>,
    /// Where AGENTCLUSTER-MIB notifications of events go (and, through
    /// [`AgentNotify::Inherit`], the devices' own coldStart/warmStart).
    pub notify: Vec<NotifyTarget>,
    /// Where AGENTCLUSTER-MIB is rooted (`events.mib_root`): the
    /// notifications are `mib_root.0.N`, the objects `mib_root.1…`. No PEN is
    /// registered for agentcluster, so the default is a placeholder a site
    /// moves under its own enterprise number.
    pub mib_root: Vec<u32>,
}

/// The default root of AGENTCLUSTER-MIB: `{ netSnmpPlaypen 4242 }`, a
/// documented placeholder under net-snmp's private-experimentation arc
/// (NET-SNMP-MIB: netSnmpPlaypen is 1.3.6.1.4.1.8072.9999.9999).
pub const DEFAULT_MIB_ROOT: &[u32] = &[1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 4242];

impl Default for Events {
    fn default() -> Self {
        Events {
            kvp: None,
            notify: Vec::new(),
            mib_root: DEFAULT_MIB_ROOT.to_vec(),
        }
    }
}

/// `events.kvp`: events as Hyper-V KVP records, so the host sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Kvp {
    /// The pool file hv_kvp_daemon reads (default
    /// `/var/lib/hyperv/.kvp_pool_1`).
    pub path: PathBuf,
    /// Most of our records kept in the pool, oldest dropped first (default
    /// 4096, at least 1): the pool is shared with other writers.
    pub max_records: u32,
}

/// The SNMP version of a notification target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnmpVersion {
    /// SNMPv1 (traps only).
    V1,
    /// SNMPv2c (the default).
    V2c,
    /// SNMPv3 with a USM user.
    V3,
}

/// How a notification is sent (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyType {
    /// Sent once, never acknowledged (the default).
    Trap,
    /// Acknowledged by the receiver; kept and resent until it is (v2c and
    /// v3).
    Inform,
}

/// One receiver of SNMP notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyTarget {
    /// `host:port`; kept as text so a host name resolves at send time.
    pub target: String,
    /// Default v2c.
    pub version: SnmpVersion,
    /// v1/v2c only (default `public`).
    pub community: Option<Secret>,
    /// Trap or inform (`type`, default trap; v1 has no inform).
    pub kind: NotifyType,
    /// Event kinds to send; `None` = all.
    pub events: Option<Vec<crate::EventKind>>,
    /// v3 only; its `write` is unused (always false).
    pub user: Option<V3User>,
    /// Resends of an unanswered inform within one delivery round (default
    /// 3; 0 allowed).
    pub retries: u32,
    /// How long each inform attempt waits for its acknowledgement (default
    /// 2 s).
    pub timeout: Duration,
}

/// A device's own notification targets.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AgentNotify {
    /// Use `events.notify`.
    #[default]
    Inherit,
    /// These targets only; empty for `notify: none`.
    Targets(Vec<NotifyTarget>),
}

/// One simulated SNMP device.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Unique in the fleet; no `| / * ? [ ]` or control characters, since
    /// it appears in event ids, file names and command-line globs.
    pub name: String,
    /// `false`: configured but neither bound nor started until an operator
    /// starts it, so it may share endpoints with an active agent (default
    /// `true`).
    pub active: bool,
    /// UDP endpoints, bound by the supervisor and handed to the process so
    /// a restart never loses the port (at least one).
    pub listen: Vec<SocketAddr>,
    /// Raw engine ID bytes (validated: 5..=32 bytes). `None`: derived from
    /// the node and agent name, so it is stable across restarts and hosts.
    pub engine_id: Option<Vec<u8>>,
    /// The default snapshot for every community and context.
    pub data: Option<PathBuf>,
    /// The snmpsim data directory the agent's communities and contexts were
    /// expanded from (`data_dir`), resolved; `None` when it has none.
    /// Kept so that `check` can say what the expansion gave and a reload
    /// sees a moved directory as a change.
    pub data_dir: Option<PathBuf>,
    /// SNMPv1 communities; `None`: v1 is not served.
    pub snmpv1: Option<Communities>,
    /// SNMPv2c communities; `None`: v2c is not served.
    pub snmpv2c: Option<Communities>,
    /// SNMPv3 users and contexts; `None`: v3 is not served.
    pub snmpv3: Option<V3>,
    /// Where the device sends its own coldStart/warmStart.
    pub notify: AgentNotify,
    /// Most varbinds in one response: the agent's own `max_varbinds`, else
    /// `cluster.max_varbinds`.
    pub max_varbinds: u32,
    /// Memory limit in bytes, resolved: the agent's own `memory_max`, else
    /// `cluster.memory_max`; `None`: no limit.
    pub memory_max: Option<u64>,
    /// The device's own values (`values:`), served over every snapshot of
    /// the agent without copying it, in file order (no OID twice).
    pub values: Vec<DeviceValue>,
    /// What to derive from the device itself (`identity:`); `None`: nothing.
    pub identity: Option<Identity>,
    /// Whether the snapshot's Counter32/Counter64 values count up
    /// (`counters:`), so that pollers see traffic instead of flat lines.
    pub counters: CounterMode,
}

/// How a device serves its snapshot's counters (`counters:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CounterMode {
    /// As recorded (the default).
    #[default]
    Static,
    /// Growing from the recorded value at a seeded, plausible rate per
    /// device (bounded by the interface's speed for interface counters).
    Animate,
}

/// One of an agent's own values: what makes one copy of a template a
/// different device from the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceValue {
    /// The object instance (at least two arcs).
    pub oid: Vec<u32>,
    /// A `.snmprec` type tag (`2`, `4`, `4x`, `64`…), checked; `None`: the
    /// type the snapshot records for the OID (OCTET STRING where it has
    /// none), known only once the snapshot is compiled.
    pub kind: Option<String>,
    /// The value as a `.snmprec` record of that type writes it.
    pub value: String,
}

/// The per-device objects `identity:` derives, so that copies of one
/// snapshot look like distinct devices without writing OIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// sysName.0 is the agent's name.
    pub sys_name: bool,
    /// ipAdEntTable (and ipAddressTable where the snapshot has it) lists the
    /// agent's listen addresses instead of the recorded ones.
    pub addresses: bool,
    /// Every interface with a recorded ifPhysAddress gets a locally
    /// administered MAC derived from the agent's name and the ifIndex.
    pub phys_address: bool,
}

impl Agent {
    /// Every snapshot file this agent serves, without repeats.
    pub fn snapshots(&self) -> Vec<&PathBuf> {
        let communities = [&self.snmpv1, &self.snmpv2c]
            .into_iter()
            .flatten()
            .flat_map(|c| c.entries.iter().map(|e| &e.data));
        let contexts = self
            .snmpv3
            .iter()
            .flat_map(|v3| v3.contexts.iter().map(|(_, d)| d));
        let mut out: Vec<&PathBuf> = Vec::new();
        for p in self.data.iter().chain(communities).chain(contexts) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// The communities of one version (`snmpv1` or `snmpv2c`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Communities {
    /// In file order, no name twice.
    pub entries: Vec<Community>,
}

/// One community string and the snapshot it sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Community {
    /// The community string.
    pub name: Secret,
    /// Resolved: the community's own `data`, else the agent's `data`.
    pub data: PathBuf,
    /// SET may change every existing object (default `false`: only
    /// `writecache` objects).
    pub write: bool,
}

/// The `snmpv3` section of an agent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct V3 {
    /// USM users, no name twice.
    pub users: Vec<V3User>,
    /// contextName → snapshot; `""` is the default context (the agent's
    /// `data` when not listed).
    pub contexts: Vec<(String, PathBuf)>,
}

/// USM authentication protocol (RFC 3414; SHA-2 from RFC 7860).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    /// HMAC-MD5-96 (`MD5`).
    Md5,
    /// HMAC-SHA-96 (`SHA`, `SHA1`).
    Sha1,
    /// HMAC-SHA-224 (`SHA224`).
    Sha224,
    /// HMAC-SHA-256 (`SHA256`).
    Sha256,
    /// HMAC-SHA-384 (`SHA384`).
    Sha384,
    /// HMAC-SHA-512 (`SHA512`).
    Sha512,
}

impl AuthProtocol {
    /// The name the configuration spells it with (`MD5`, `SHA`, `SHA256`…).
    pub fn name(self) -> &'static str {
        match self {
            AuthProtocol::Md5 => "MD5",
            AuthProtocol::Sha1 => "SHA",
            AuthProtocol::Sha224 => "SHA224",
            AuthProtocol::Sha256 => "SHA256",
            AuthProtocol::Sha384 => "SHA384",
            AuthProtocol::Sha512 => "SHA512",
        }
    }
}

/// USM privacy protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProtocol {
    /// CBC-DES (`DES`, RFC 3414).
    Des,
    /// 3DES-EDE (`3DES`).
    TripleDes,
    /// AES-128 in CFB mode (`AES`, `AES128`, RFC 3826).
    Aes128,
    /// AES-192, key extended as net-snmp does (Blumenthal).
    Aes192,
    /// AES-256, key extended as net-snmp does (Blumenthal).
    Aes256,
    /// AES-192 with the Reeder key extension (Cisco's variant).
    Aes192C,
    /// AES-256 with the Reeder key extension (Cisco's variant).
    Aes256C,
}

impl PrivProtocol {
    /// The name the configuration spells it with (`DES`, `AES`, `AES256C`…).
    pub fn name(self) -> &'static str {
        match self {
            PrivProtocol::Des => "DES",
            PrivProtocol::TripleDes => "3DES",
            PrivProtocol::Aes128 => "AES",
            PrivProtocol::Aes192 => "AES192",
            PrivProtocol::Aes256 => "AES256",
            PrivProtocol::Aes192C => "AES192C",
            PrivProtocol::Aes256C => "AES256C",
        }
    }
}

/// An SNMPv3 USM user (an agent's, or a notification target's).
#[derive(Debug, Clone, PartialEq)]
pub struct V3User {
    /// 1 to 32 characters.
    pub name: String,
    /// Protocol and password (at least 8 characters); `None`: noAuthNoPriv.
    pub auth: Option<(AuthProtocol, Secret)>,
    /// Protocol and password (at least 8 characters); only with `auth`.
    /// `None`: no privacy.
    pub privacy: Option<(PrivProtocol, Secret)>,
    /// SET may change every existing object (default `false`).
    pub write: bool,
}

/// A secret (community, password). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a community or password read from the configuration.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
