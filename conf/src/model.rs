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
    pub cluster: Cluster,
    pub events: Events,
    /// Every agent, templates expanded, in file order (includes after the
    /// main file's own agents, in glob order).
    pub agents: Vec<Agent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub node: String,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// `None`: the CLI picks the per-user default.
    pub control_socket: Option<PathBuf>,
    pub start_tokens: u32,
    pub start_timeout: Duration,
    pub heartbeat: Duration,
    pub inactive_after: Duration,
    pub stop_timeout: Duration,
    pub agents_per_process: u32,
    pub restart: Restart,
    pub probe: Option<Probe>,
    pub snmp: Option<ClusterSnmp>,
    pub etcd: Option<Etcd>,
    /// Most varbinds one response may carry (GETBULK is cut here).
    pub max_varbinds: u32,
    /// The account agent processes run as (`None`: the supervisor's own). A
    /// name that was found in /etc/passwd, or a numeric uid; turn it into ids
    /// with [`crate::resolve_user`].
    pub user: Option<String>,
    /// The group agent processes run as (`None`: `user`'s primary group, or
    /// the supervisor's own). A name found in /etc/group, or a numeric gid;
    /// see [`crate::resolve_group`].
    pub group: Option<String>,
    /// Memory limit of each agent process, in bytes (`None`: no limit); each
    /// agent may override it, see [`Agent::memory_max`].
    pub memory_max: Option<u64>,
    /// Largest response datagram an agent sends (484..=65507): bounds what
    /// a small, possibly spoofed request can make an agent send.
    pub max_response_bytes: u32,
    /// Per-source request limit of each agent; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket per source address: `per_source` requests a second
/// sustained, up to `burst` at once. Requests over it are dropped and
/// counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_source: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    pub policy: RestartPolicy,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub max_restarts: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSnmp {
    pub listen: Vec<SocketAddr>,
    pub community: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub lease_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    pub kvp: Option<Kvp>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Kvp {
    pub path: PathBuf,
    pub max_records: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnmpVersion {
    V1,
    V2c,
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyType {
    Trap,
    Inform,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifyTarget {
    /// `host:port`; kept as text so a host name resolves at send time.
    pub target: String,
    pub version: SnmpVersion,
    /// v1/v2c only.
    pub community: Option<Secret>,
    pub kind: NotifyType,
    /// Event kinds to send; `None` = all.
    pub events: Option<Vec<crate::EventKind>>,
    /// v3 only.
    pub user: Option<V3User>,
    pub retries: u32,
    pub timeout: Duration,
}

/// A device's own notification targets.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AgentNotify {
    /// Use `events.notify`.
    #[default]
    Inherit,
    Targets(Vec<NotifyTarget>),
}

/// One simulated SNMP device.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub name: String,
    pub active: bool,
    pub listen: Vec<SocketAddr>,
    /// Raw engine ID bytes (validated: 5..=32 bytes). `None`: derived.
    pub engine_id: Option<Vec<u8>>,
    /// The default snapshot for every community and context.
    pub data: Option<PathBuf>,
    pub snmpv1: Option<Communities>,
    pub snmpv2c: Option<Communities>,
    pub snmpv3: Option<V3>,
    pub notify: AgentNotify,
    /// Per-agent override of `cluster.max_varbinds`.
    pub max_varbinds: u32,
    /// Memory limit in bytes, resolved: the agent's own `memory_max`, else
    /// `cluster.memory_max`; `None`: no limit.
    pub memory_max: Option<u64>,
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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Communities {
    pub entries: Vec<Community>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Community {
    pub name: Secret,
    /// Resolved: the community's own `data`, else the agent's `data`.
    pub data: PathBuf,
    pub write: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct V3 {
    pub users: Vec<V3User>,
    /// contextName → snapshot; `""` is the default context (the agent's
    /// `data` when not listed).
    pub contexts: Vec<(String, PathBuf)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProtocol {
    Des,
    TripleDes,
    Aes128,
    Aes192,
    Aes256,
    /// Reeder key extension (Cisco's variant).
    Aes192C,
    Aes256C,
}

#[derive(Debug, Clone, PartialEq)]
pub struct V3User {
    pub name: String,
    pub auth: Option<(AuthProtocol, Secret)>,
    pub privacy: Option<(PrivProtocol, Secret)>,
    pub write: bool,
}

/// A secret (community, password). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
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
