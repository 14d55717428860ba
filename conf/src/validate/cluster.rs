//! The `cluster` section.

use std::net::SocketAddr;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::{MAIN, Validator, check_name, default};
use crate::account::{self, resolve_group, resolve_user};
use crate::duration::parse_range;
use crate::endpoint::parse_listen;
use crate::model::*;
use crate::problem::{FileId, Pos};
use crate::raw::*;

/// Largest UDP payload over IPv4 (65535 − 8 − 20): the default and the most
/// `max_response_bytes` may be.
const MAX_RESPONSE_BYTES: u32 = 65_507;
/// The least message size an SNMP engine must accept (RFC 3417 §3.2).
const MIN_RESPONSE_BYTES: u32 = 484;

/// The longest path a Unix socket can be bound at: `sun_path` holds 108
/// bytes with the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// The longest interface name Linux accepts: `IFNAMSIZ` (16) bytes with
/// the terminating NUL.
pub const MAX_INTERFACE_NAME: usize = 15;

/// Whether the kernel would accept `name` as an interface name (its
/// `dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:` or
/// blank.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the interface name is empty".into());
    }
    if name.len() > MAX_INTERFACE_NAME {
        return Err(format!(
            "`{name}` is {} bytes long, but an interface name has at most {MAX_INTERFACE_NAME}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`{}` is not a valid interface name: it holds {c:?}",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Whether a Unix socket can be created at `path` for its length: the
/// control socket's path is checked before anything starts, and by `check`.
pub fn check_socket_path(path: &std::path::Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "{} is {len} bytes long, but a Unix socket's path has at most {MAX_SOCKET_PATH}: choose a shorter one",
            path.display()
        ));
    }
    Ok(())
}

/// The shortest `cluster.cache_max_age` but 0: supervisors mark the stores
/// they serve as used once an hour, so a shorter age could prune a store
/// another supervisor sharing the directory serves.
const MIN_CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

impl Validator<'_> {
    pub(super) fn cluster(&mut self, raw: Option<&Spanned<RawCluster>>) -> Cluster {
        let empty = RawCluster::default();
        let c = raw.map_or(&empty, |s| &s.value);
        let f = MAIN;
        let node = match &c.node {
            Some(n) => {
                if let Err(e) = check_name(&n.value) {
                    self.err(f, Pos::of(n), format!("`node`: {e}"));
                }
                n.value.clone()
            }
            None => self.host.hostname.clone(),
        };
        let state_dir = self
            .dir_path(f, c.state_dir.as_ref(), "state_dir")
            .unwrap_or_else(|| self.host.state_dir());
        let cache_dir = self
            .dir_path(f, c.cache_dir.as_ref(), "cache_dir")
            .unwrap_or_else(|| self.host.cache_dir());
        let control_socket = self.dir_path(f, c.control_socket.as_ref(), "control_socket");
        if let (Some(path), Some(raw)) = (&control_socket, &c.control_socket)
            && let Err(e) = check_socket_path(path)
        {
            self.err(f, Pos::of(raw), format!("`control_socket`: {e}"));
        }
        let start_tokens = self.uint(
            f,
            c.start_tokens.as_ref(),
            default::START_TOKENS,
            1,
            "start_tokens",
        );
        let start_timeout = self.duration(
            f,
            c.start_timeout.as_ref(),
            default::START_TIMEOUT,
            "start_timeout",
            false,
        );
        let heartbeat = self.duration(
            f,
            c.heartbeat.as_ref(),
            default::HEARTBEAT,
            "heartbeat",
            false,
        );
        let inactive_after = self.duration(
            f,
            c.inactive_after.as_ref(),
            default::INACTIVE_AFTER,
            "inactive_after",
            false,
        );
        if inactive_after <= heartbeat {
            let pos = c
                .inactive_after
                .as_ref()
                .or(c.heartbeat.as_ref())
                .map_or(Pos::UNKNOWN, Pos::of);
            self.err(
                f,
                pos,
                format!(
                    "`inactive_after` ({inactive_after:?}) must be longer than `heartbeat` ({heartbeat:?}), or every agent is declared unresponsive"
                ),
            );
        }
        let stop_timeout = self.duration(
            f,
            c.stop_timeout.as_ref(),
            default::STOP_TIMEOUT,
            "stop_timeout",
            true,
        );
        let agents_per_process = self.uint(
            f,
            c.agents_per_process.as_ref(),
            default::AGENTS_PER_PROCESS,
            1,
            "agents_per_process",
        );
        let restart = self.restart(c.restart.as_ref());
        let probe = c.probe.as_ref().map(|p| self.probe(p));
        let snmp = c.snmp.as_ref().map(|s| self.cluster_snmp(s));
        let metrics = c.metrics.as_ref().and_then(|m| self.cluster_metrics(m));
        let etcd = c.etcd.as_ref().map(|e| self.etcd(e));
        let max_varbinds = self.uint(
            f,
            c.max_varbinds.as_ref(),
            default::MAX_VARBINDS,
            1,
            "max_varbinds",
        );
        let user = c.user.as_ref().and_then(|u| self.user(u));
        let group = c.group.as_ref().and_then(|g| self.group(g));
        let memory_max = self.size(f, c.memory_max.as_ref(), None, "memory_max");
        let max_response_bytes = self.max_response_bytes(c.max_response_bytes.as_ref());
        let rate_limit = c.rate_limit.as_ref().map(|r| self.rate_limit(r));
        let snapshot_max_loss = self.snapshot_max_loss(c.snapshot_max_loss.as_ref());
        let cache_max_age = self.duration(
            f,
            c.cache_max_age.as_ref(),
            default::CACHE_MAX_AGE,
            "cache_max_age",
            true,
        );
        if !cache_max_age.is_zero() && cache_max_age < MIN_CACHE_MAX_AGE {
            let pos = c.cache_max_age.as_ref().map_or(Pos::UNKNOWN, Pos::of);
            self.err(
                f,
                pos,
                "`cache_max_age` must be 0 (never prune) or at least 1h: a supervisor marks the stores it serves as used once an hour".to_string(),
            );
        }
        let addresses = c.addresses.as_ref().and_then(|a| self.addresses(a));
        Cluster {
            node,
            state_dir,
            cache_dir,
            control_socket,
            start_tokens,
            start_timeout,
            heartbeat,
            inactive_after,
            stop_timeout,
            agents_per_process,
            restart,
            probe,
            snmp,
            metrics,
            etcd,
            max_varbinds,
            user,
            group,
            memory_max,
            max_response_bytes,
            rate_limit,
            snapshot_max_loss,
            cache_max_age,
            addresses,
            steering: c.steering.as_ref().is_none_or(|s| s.value),
        }
    }

    /// `cluster.addresses`: an interface name the kernel would accept.
    fn addresses(&mut self, raw: &Spanned<RawAddresses>) -> Option<Addresses> {
        let a = &raw.value;
        let create = a.create.as_ref().is_some_and(|c| c.value);
        let Some(interface) = &a.interface else {
            self.err(
                MAIN,
                Pos::of(raw),
                "`addresses` needs `interface`: the interface the missing addresses are added to (lo, or a dummy interface)",
            );
            return None;
        };
        if let Err(e) = check_interface_name(&interface.value) {
            self.err(
                MAIN,
                Pos::of(interface),
                format!("`addresses.interface`: {e}"),
            );
            return None;
        }
        Some(Addresses {
            interface: interface.value.clone(),
            create,
        })
    }

    /// `cluster.snapshot_max_loss`: a whole percentage, `0%` to `100%`.
    fn snapshot_max_loss(&mut self, v: Option<&Spanned<String>>) -> u8 {
        let Some(v) = v else {
            return default::SNAPSHOT_MAX_LOSS;
        };
        match parse_percent(&v.value) {
            Some(p) if p <= 100 => u8::try_from(p).unwrap_or(100),
            Some(_) => {
                self.err(
                    MAIN,
                    Pos::of(v),
                    "`snapshot_max_loss` must be at most 100% (100% turns the check off)",
                );
                default::SNAPSHOT_MAX_LOSS
            }
            None => {
                self.err(
                    MAIN,
                    Pos::of(v),
                    format!(
                        "`snapshot_max_loss`: `{}` is not a percentage (write e.g. 50%, or 100% to turn the check off)",
                        v.value
                    ),
                );
                default::SNAPSHOT_MAX_LOSS
            }
        }
    }

    /// `cluster.max_response_bytes`: from the least message size every SNMP
    /// engine must accept (RFC 3417 §3.2) to the largest UDP payload.
    fn max_response_bytes(&mut self, v: Option<&Spanned<UInt>>) -> u32 {
        let n = self.uint(
            MAIN,
            v,
            MAX_RESPONSE_BYTES,
            MIN_RESPONSE_BYTES,
            "max_response_bytes",
        );
        match v {
            Some(v) if n > MAX_RESPONSE_BYTES => {
                self.err(
                    MAIN,
                    Pos::of(v),
                    format!(
                        "`max_response_bytes` must be at most {MAX_RESPONSE_BYTES} (the largest UDP payload)"
                    ),
                );
                MAX_RESPONSE_BYTES
            }
            _ => n,
        }
    }

    /// `cluster.rate_limit`.
    fn rate_limit(&mut self, raw: &Spanned<RawRateLimit>) -> RateLimit {
        let r = &raw.value;
        let per_source = match &r.per_source {
            Some(p) => self.uint(MAIN, Some(p), 1, 1, "rate_limit.per_source"),
            None => {
                self.err(
                    MAIN,
                    Pos::of(raw),
                    "`rate_limit` needs `per_source` (requests per second from one address)",
                );
                1
            }
        };
        let burst = self.uint(MAIN, r.burst.as_ref(), per_source, 1, "rate_limit.burst");
        RateLimit { per_source, burst }
    }

    /// `cluster.user`: a user in /etc/passwd, or a numeric uid.
    fn user(&mut self, u: &Spanned<String>) -> Option<String> {
        if u.value.trim().is_empty() {
            self.err(MAIN, Pos::of(u), "`user` is empty");
            return None;
        }
        if resolve_user(&u.value).is_none() {
            self.err(
                MAIN,
                Pos::of(u),
                format!(
                    "`user`: no user `{}` in {} (give an existing user name or a numeric uid)",
                    u.value,
                    account::PASSWD
                ),
            );
            return None;
        }
        Some(u.value.clone())
    }

    /// `cluster.group`: a group in /etc/group, or a numeric gid.
    fn group(&mut self, g: &Spanned<String>) -> Option<String> {
        if g.value.trim().is_empty() {
            self.err(MAIN, Pos::of(g), "`group` is empty");
            return None;
        }
        if resolve_group(&g.value).is_none() {
            self.err(
                MAIN,
                Pos::of(g),
                format!(
                    "`group`: no group `{}` in {} (give an existing group name or a numeric gid)",
                    g.value,
                    account::GROUP
                ),
            );
            return None;
        }
        Some(g.value.clone())
    }

    fn restart(&mut self, raw: Option<&Spanned<RawRestart>>) -> Restart {
        let empty = RawRestart::default();
        let r = raw.map_or(&empty, |s| &s.value);
        let f = MAIN;
        let policy = match &r.policy {
            None => RestartPolicy::Always,
            Some(p) => match p.value.to_ascii_lowercase().as_str() {
                "always" => RestartPolicy::Always,
                "on-failure" | "on_failure" => RestartPolicy::OnFailure,
                "never" => RestartPolicy::Never,
                _ => {
                    self.err(
                        f,
                        Pos::of(p),
                        format!(
                            "unknown restart policy `{}`: expected always, on-failure or never",
                            p.value
                        ),
                    );
                    RestartPolicy::Always
                }
            },
        };
        let (backoff_min, backoff_max) = match &r.backoff {
            None => (default::BACKOFF_MIN, default::BACKOFF_MAX),
            Some(b) => match parse_range(&b.value) {
                Some((min, max)) if min <= max => (min, max),
                Some(_) => {
                    self.err(
                        f,
                        Pos::of(b),
                        format!("`backoff` `{}`: MIN is longer than MAX", b.value),
                    );
                    (default::BACKOFF_MIN, default::BACKOFF_MAX)
                }
                None => {
                    self.err(
                        f,
                        Pos::of(b),
                        format!(
                            "`backoff` `{}` is not MIN..MAX (for example 100ms..30s)",
                            b.value
                        ),
                    );
                    (default::BACKOFF_MIN, default::BACKOFF_MAX)
                }
            },
        };
        Restart {
            policy,
            backoff_min,
            backoff_max,
            max_restarts: self.uint(
                f,
                r.max_restarts.as_ref(),
                default::MAX_RESTARTS,
                0,
                "max_restarts",
            ),
            window: self.duration(f, r.window.as_ref(), default::WINDOW, "window", false),
        }
    }

    fn probe(&mut self, p: &Spanned<RawProbe>) -> Probe {
        let f = MAIN;
        let interval = self.duration(
            f,
            p.value.interval.as_ref(),
            default::PROBE_INTERVAL,
            "interval",
            false,
        );
        let timeout = self.duration(
            f,
            p.value.timeout.as_ref(),
            default::PROBE_TIMEOUT,
            "timeout",
            false,
        );
        if timeout >= interval {
            let pos = p.value.timeout.as_ref().map_or(Pos::of(p), Pos::of);
            self.warn(
                f,
                pos,
                "probe `timeout` is not shorter than its `interval`: probes will overlap",
            );
        }
        Probe { interval, timeout }
    }

    fn cluster_snmp(&mut self, s: &Spanned<RawClusterSnmp>) -> ClusterSnmp {
        let f = MAIN;
        let listen = self.listen_list(f, s.value.listen.as_ref(), Pos::of(s), "cluster.snmp");
        let community = match &s.value.community {
            Some(c) => {
                if c.value.is_empty() {
                    self.err(f, Pos::of(c), "empty community");
                }
                Secret::new(c.value.clone())
            }
            None => Secret::new(default::COMMUNITY),
        };
        ClusterSnmp {
            listen: listen.into_iter().map(|(a, _)| a).collect(),
            community,
        }
    }

    /// `cluster.metrics`: one TCP endpoint, an IP and a port other than 0
    /// (a scraper must know where to ask).
    fn cluster_metrics(&mut self, m: &Spanned<RawClusterMetrics>) -> Option<ClusterMetrics> {
        let Some(raw) = &m.value.listen else {
            self.err(
                MAIN,
                Pos::of(m),
                "cluster.metrics has no `listen`: give the endpoint to serve /metrics on (`127.0.0.1:9464`)",
            );
            return None;
        };
        match parse_listen(&raw.value) {
            Ok(a) if a.port() == 0 => {
                self.err(
                    MAIN,
                    Pos::of(raw),
                    format!(
                        "`metrics.listen`: `{}` has port 0; give the port Prometheus scrapes (`127.0.0.1:9464`)",
                        raw.value
                    ),
                );
                None
            }
            Ok(listen) => Some(ClusterMetrics { listen }),
            Err(e) => {
                self.err(MAIN, Pos::of(raw), format!("`metrics.listen`: {e}"));
                None
            }
        }
    }

    fn etcd(&mut self, e: &Spanned<RawEtcd>) -> Etcd {
        let f = MAIN;
        let endpoints = match &e.value.endpoints {
            None => vec![default::ETCD_ENDPOINT.to_string()],
            Some(list) => {
                if list.value.0.is_empty() {
                    self.err(f, Pos::of(list), "`endpoints` is empty");
                }
                for ep in &list.value.0 {
                    if ep.value.trim().is_empty() {
                        self.err(f, Pos::of_or(ep, Pos::of(list)), "empty etcd endpoint");
                    }
                }
                list.value.0.iter().map(|s| s.value.clone()).collect()
            }
        };
        let prefix = match &e.value.prefix {
            None => default::ETCD_PREFIX.to_string(),
            Some(p) => {
                if !p.value.starts_with('/') {
                    self.err(f, Pos::of(p), "etcd `prefix` must start with `/`");
                }
                p.value.clone()
            }
        };
        let lease_ttl = self.duration(
            f,
            e.value.lease_ttl.as_ref(),
            default::LEASE_TTL,
            "lease_ttl",
            false,
        );
        if lease_ttl < Duration::from_secs(1) {
            let pos = e.value.lease_ttl.as_ref().map_or(Pos::of(e), Pos::of);
            self.err(
                f,
                pos,
                "`lease_ttl` must be at least 1s (etcd leases count in seconds)",
            );
        }
        let serves = e.value.serves.as_ref().map(|list| {
            if list.value.0.is_empty() {
                self.err(f, Pos::of(list), "`serves` is empty");
            }
            list.value
                .0
                .iter()
                .filter_map(|r| match AddressRange::parse(&r.value) {
                    Ok(range) => Some(range),
                    Err(why) => {
                        self.err(f, Pos::of_or(r, Pos::of(list)), format!("`serves`: {why}"));
                        None
                    }
                })
                .collect()
        });
        Etcd {
            endpoints,
            prefix,
            lease_ttl,
            serves,
        }
    }

    /// A `listen` list: every entry an IP and port, at least one entry.
    pub(super) fn listen_list(
        &mut self,
        file: FileId,
        raw: Option<&Spanned<OneOrMany<Spanned<String>>>>,
        owner_pos: Pos,
        owner: &str,
    ) -> Vec<(SocketAddr, Pos)> {
        let Some(list) = raw else {
            self.err(
                file,
                owner_pos,
                format!("{owner} has no `listen`: give at least one endpoint"),
            );
            return Vec::new();
        };
        let list_pos = Pos::of(list);
        if list.value.0.is_empty() {
            self.err(file, list_pos, format!("`listen` of {owner} is empty"));
        }
        let mut out = Vec::new();
        for item in &list.value.0 {
            let pos = Pos::of_or(item, list_pos);
            match parse_listen(&item.value) {
                Ok(a) => out.push((a, pos)),
                Err(e) => self.err(file, pos, e.to_string()),
            }
        }
        out
    }
}

/// A whole percentage: digits, then `%` (blanks allowed before it).
fn parse_percent(s: &str) -> Option<u32> {
    let digits = s.trim().strip_suffix('%')?.trim_end();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().or(Some(u32::MAX))
}
