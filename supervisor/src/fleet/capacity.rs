//! Whether this host can carry a fleet: memory, tasks (pids and threads)
//! and open files, worked out from the fleet's counts before any agent
//! starts — before its templates are even expanded — so that a fleet too
//! large fails at `check` or at startup with the arithmetic, not halfway
//! through its start.
//!
//! The memory figures are estimates from measurements (bench/run's
//! `fleet-1000` and `fleet-10000` cases): an agent process holding one
//! agent has a proportional set size of about 0.45 MiB, each further agent
//! in the same process adds about 50 KiB, the supervisor about 20 KiB per
//! agent over a base of 18 MiB. The constants below round those up and add
//! the kernel's share per process (page tables, kernel stack, task and file
//! structures), which no user-space figure shows. Compiled stores are
//! mapped read-only and shared by every process that serves them: they
//! count once, as page cache.
//!
//! The open files are counted per process, each against the limit it runs
//! with (every process inherits the supervisor's RLIMIT_NOFILE, whose soft
//! limit the supervisor raises to the hard one), descriptor by descriptor
//! at the peak of a start, and measured against /proc by the tests:
//!
//! - the *supervisor*: per agent process its end of the control channel and
//!   its pidfd; per spawn under way (at most `start_tokens`) the process's
//!   end of the channel, its distinct
//!   stores, opened before the spawn and held until the start message has
//!   carried them; a copy of each socket of the processes being handed to
//!   a spawn helper (one per spawner lane), borrowed from the socket
//!   holders until the helper has them; the stores of the swaps being
//!   sent; a probe's socket per
//!   process; the notification targets' sockets and spools, the
//!   `cluster.snmp` sockets; the control socket and its clients; its socket
//!   to each socket holder; and the fixed rest. It holds no agent socket.
//! - a *socket holder*: the sockets it keeps, as many as the limit allows
//!   less [`HOLDER_FILES`]; the fleet gets as many holders as its endpoints
//!   need, so a holder never runs out.
//! - an *agent process*: the sockets of its agents (`agents_per_process` of
//!   them), its channel, its stores while it maps them, and its runtime's
//!   [`AGENT_PROCESS_FILES`].

use std::path::{Path, PathBuf};

use agentcluster_conf::Fleet;

use crate::control::MAX_CONNECTIONS;
pub use crate::process::holder::HOLDER_FILES;
use crate::process::spawner::LANES;

/// Memory of one agent process before its agents: runtime, stacks, heap,
/// the kernel's structures.
pub const PROCESS_BYTES: u64 = 768 << 10;
/// Memory of each agent: its state in its process and in the supervisor.
pub const AGENT_BYTES: u64 = 64 << 10;
/// The supervisor itself, with its spawn helpers (about 1 MiB each).
pub const SUPERVISOR_BYTES: u64 = 32 << 20;
/// A compiled store against the size of its source text (a store holds
/// the sorted index and the encoded values).
pub const STORE_PER_SOURCE_BYTE: u64 = 2;
/// Tasks (threads) of one agent process: its runtime thread and one spare
/// for blocking work.
pub const TASKS_PER_PROCESS: u64 = 2;
/// Tasks of the supervisor: the runtime's workers, spawner threads and
/// their spawn helper processes, the holders' thread, blocking pool
/// headroom (the socket holders count apart, one task each).
pub const SUPERVISOR_TASKS: u64 = 64;
/// Open files the supervisor holds per agent process while it runs: its
/// end of the control channel and the process's pidfd.
pub const FILES_PER_PROCESS: u64 = 2;
/// Open files a spawn under way holds besides the copies of its sockets and
/// its stores: the process's end of the control channel, until the spawn
/// helper has it.
pub const FILES_PER_SPAWN: u64 = 1;
/// Open files per notification target: its socket, and the spool of its
/// pending informs.
pub const FILES_PER_TARGET: u64 = 2;
/// The control socket and the most clients it serves at once.
pub const CONTROL_FILES: u64 = 1 + MAX_CONNECTIONS as u64;
/// Open files whatever the fleet: stdin, stdout and stderr; the runtime's
/// epoll, waker and signal pipes; the spawn helpers' sockets (and one being
/// replaced) and a starting socket holder's; inotify; the journal's socket; the KVP pool and its lock; a
/// snapshot being compiled (source, store, directory); the boots file being
/// written; with `cluster.steering` and packed processes, the steering
/// program's two maps and its link; and a spare. The supervisor of a small
/// fleet holds 15 of them.
pub const BASE_FILES: u64 = 32;
/// Open files of an agent process besides its sockets and stores: stdin,
/// stdout and stderr, its channel, its runtime's epoll, waker and signal
/// pipes, its poller's epoll, and spares. (Its steering socket is one of
/// its sockets: [`Demand::process_sockets`].)
pub const AGENT_PROCESS_FILES: u64 = 16;

/// What a fleet asks of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub agents: u64,
    pub processes: u64,
    /// Every endpoint's socket, kept by the socket holders.
    pub sockets: u64,
    /// The most agents in one process: `agents_per_process`, at most every
    /// agent.
    pub per_process: u64,
    /// The most sockets one agent process holds: its agents' endpoints.
    pub process_sockets: u64,
    /// Distinct snapshot files and their total size in bytes.
    pub snapshots: u64,
    pub snapshot_bytes: u64,
    /// Spawns under way at once: `start_tokens`, or fewer processes.
    pub spawning: u64,
    /// The copies of sockets the spawns hold at most: a spawner lane
    /// borrows a process's sockets from the holders just before it hands
    /// them to its spawn helper and closes them just after, so as many
    /// processes' sockets as there are lanes, at most every socket.
    pub spawning_sockets: u64,
    /// The most distinct stores one agent process is handed: its agents'
    /// snapshot files, at most every snapshot file.
    pub process_stores: u64,
    /// Swaps whose stores are open at once: a swap opens its process's new
    /// stores and closes them once its message is written, which is at once
    /// (the channel has room), so one per runtime worker thread at most.
    pub swapping: u64,
    /// Open files of probes (one per process while its probe waits), of
    /// notification targets and of `cluster.snmp`.
    pub service_files: u64,
}

impl Demand {
    /// The demand of `fleet`, from its counts (its agents need not be
    /// expanded yet).
    pub fn of(fleet: &Fleet) -> Demand {
        Demand::under(fleet, &fleet.cluster)
    }

    /// The demand of `fleet`'s agents under the cluster settings `cluster`
    /// (a reload's: those of the supervisor that runs).
    pub fn under(fleet: &Fleet, cluster: &agentcluster_conf::Cluster) -> Demand {
        let c = &fleet.counts;
        let per = u64::from(cluster.agents_per_process.max(1));
        // Active agents share processes; inactive ones get one each.
        let active = c.agents.saturating_sub(c.inactive);
        let processes = active.div_ceil(per) + c.inactive;
        // With `cluster.steering`, a packed process of two endpoints or
        // more has a steering socket too (one per address family; counted
        // once), kept by the holders with the endpoints' sockets.
        let endpoints_per_process = per.min(c.agents) * c.max_endpoints;
        let steering = u64::from(cluster.steering && per >= 2 && endpoints_per_process >= 2);
        let sockets = c.endpoints + steering * active.div_ceil(per);
        let spawning = u64::from(cluster.start_tokens.max(1)).min(processes);
        let process_sockets = endpoints_per_process + steering;
        let probes = if cluster.probe.is_some() {
            processes
        } else {
            0
        };
        let snmp = cluster.snmp.as_ref().map_or(0, |s| s.listen.len() as u64);
        let process_stores = c.snapshots.min(per.min(c.agents) * c.max_snapshots);
        Demand {
            agents: c.agents,
            processes,
            sockets,
            per_process: per.min(c.agents),
            process_sockets: sockets.min(process_sockets),
            snapshots: c.snapshots,
            snapshot_bytes: c.snapshot_bytes,
            spawning,
            spawning_sockets: sockets.min(spawning.min(LANES as u64) * process_sockets),
            process_stores,
            swapping: runtime_workers().min(processes),
            service_files: probes + FILES_PER_TARGET * fleet.events.notify.len() as u64 + snmp,
        }
    }

    /// The demand of `n` agents of one endpoint and one snapshot each
    /// (its size not counted) under `base`'s settings: what a node's
    /// capacity is measured in ([`agents_that_fit`]).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub fn of_plain(base: &Fleet, n: u64) -> Demand {
        let mut f = base.clone();
        f.counts = agentcluster_conf::Counts {
            agents: n,
            inactive: 0,
            endpoints: n,
            max_endpoints: 1,
            snapshots: 1,
            snapshot_bytes: 0,
            max_snapshots: 1,
        };
        Demand::of(&f)
    }

    /// Estimated memory: processes, agents, the supervisor, stores.
    pub fn memory(&self) -> u64 {
        self.process_memory() + self.store_bytes()
    }

    fn process_memory(&self) -> u64 {
        self.processes * PROCESS_BYTES + self.agents * AGENT_BYTES + SUPERVISOR_BYTES
    }

    fn store_bytes(&self) -> u64 {
        self.snapshot_bytes * STORE_PER_SOURCE_BYTE
    }

    /// Tasks: the agent processes', the supervisor's and one per socket
    /// holder under a file limit of `files_max`.
    pub fn tasks(&self, files_max: u64) -> u64 {
        self.processes * TASKS_PER_PROCESS + SUPERVISOR_TASKS + self.holders(files_max)
    }

    /// Sockets one holder keeps under a file limit of `files_max`.
    pub fn per_holder(files_max: u64) -> u64 {
        files_max.saturating_sub(HOLDER_FILES).max(1)
    }

    /// Socket holders the endpoints need under a file limit of `files_max`.
    pub fn holders(&self, files_max: u64) -> u64 {
        self.sockets.div_ceil(Self::per_holder(files_max))
    }

    /// The open files of the fullest socket holder.
    pub fn holder_files(&self, files_max: u64) -> u64 {
        if self.sockets == 0 {
            return 0;
        }
        self.sockets.min(Self::per_holder(files_max)) + HOLDER_FILES
    }

    /// The supervisor's open files at the peak of a start, under a file
    /// limit of `files_max` (which decides how many socket holders there
    /// are).
    pub fn files(&self, files_max: u64) -> u64 {
        FILES_PER_PROCESS * self.processes
            + self.starting_files()
            + self.store_files()
            + self.service_files
            + self.holders(files_max)
            + CONTROL_FILES
            + BASE_FILES
    }

    /// The open files of the fullest agent process: its sockets, its
    /// stores while it maps them, and the rest.
    pub fn agent_files(&self) -> u64 {
        self.process_sockets + self.process_stores + AGENT_PROCESS_FILES
    }

    /// The open files the busiest process needs under a file limit of
    /// `files_max`: the supervisor or the fullest agent process (socket
    /// holders take what the limit allows).
    pub fn files_needed(&self, files_max: u64) -> u64 {
        self.files(files_max).max(self.agent_files())
    }

    /// An open-file limit under which every process fits: a lower limit
    /// means more socket holders, hence more descriptors in the
    /// supervisor, so this is found by iterating from the need under no
    /// limit (a few rounds: the holders only grow).
    pub fn files_limit(&self) -> u64 {
        let mut limit = self.files_needed(u64::MAX);
        for _ in 0..64 {
            let need = self.files_needed(limit);
            if need <= limit {
                break;
            }
            limit = need;
        }
        limit
    }

    /// What the spawns under way hold: channel ends and socket copies.
    fn starting_files(&self) -> u64 {
        FILES_PER_SPAWN * self.spawning + self.spawning_sockets
    }

    /// The stores opened to be handed over: those of each spawn under way,
    /// and of each swap being sent.
    fn store_files(&self) -> u64 {
        (self.spawning + self.swapping) * self.process_stores
    }
}

/// The supervisor runtime's worker threads, as tokio counts them:
/// `TOKIO_WORKER_THREADS`, or one per CPU this process may run on.
fn runtime_workers() -> u64 {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u64)
        })
        .unwrap_or(1)
}

/// What the host offers, as read from /proc, the cgroup and the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// Memory that can be had without swapping: `MemAvailable`, or what
    /// the memory cgroup still allows when that is less.
    pub memory_available: u64,
    /// Where `memory_available` comes from, for the message.
    pub memory_source: String,
    /// Tasks that can still be created: the least of kernel.pid_max and
    /// kernel.threads-max minus the tasks that exist, the pids cgroup's
    /// room, and RLIMIT_NPROC for a supervisor that is not root.
    pub tasks_available: u64,
    pub tasks_source: String,
    /// The hard RLIMIT_NOFILE (the supervisor raises its soft limit to it).
    pub files_max: u64,
}

impl Host {
    /// Reads this host. Figures that cannot be read impose no limit.
    pub fn probe() -> Host {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mut memory_available = meminfo_kib(&meminfo, "MemAvailable:")
            .map(|k| k * 1024)
            .unwrap_or(u64::MAX);
        let mut memory_source = "MemAvailable in /proc/meminfo".to_string();
        if let Some((limit, usage, file)) = cgroup_memory() {
            let room = limit.saturating_sub(usage);
            if room < memory_available {
                memory_available = room;
                memory_source = format!("the memory cgroup's limit less its usage ({file})");
            }
        }

        let existing = loadavg_tasks().unwrap_or(0);
        let mut tasks_available = u64::MAX;
        let mut tasks_source = String::new();
        let mut consider = |room: u64, source: String| {
            if room < tasks_available {
                tasks_available = room;
                tasks_source = source;
            }
        };
        if let Some(max) = read_u64("/proc/sys/kernel/pid_max") {
            consider(
                max.saturating_sub(existing),
                format!("kernel.pid_max {max} less {existing} existing tasks"),
            );
        }
        if let Some(max) = read_u64("/proc/sys/kernel/threads-max") {
            consider(
                max.saturating_sub(existing),
                format!("kernel.threads-max {max} less {existing} existing tasks"),
            );
        }
        if let Some((max, current, file)) = cgroup_pids() {
            consider(
                max.saturating_sub(current),
                format!("the pids cgroup's pids.max {max} less {current} in use ({file})"),
            );
        }
        if !nix::unistd::geteuid().is_root() {
            use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
            if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NPROC)
                && soft != RLIM_INFINITY
            {
                consider(soft, format!("RLIMIT_NPROC {soft} (ulimit -u)"));
            }
        }

        use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
        let files_max = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((_, hard)) if hard != RLIM_INFINITY => hard,
            _ => u64::MAX,
        };
        Host {
            memory_available,
            memory_source,
            tasks_available,
            tasks_source,
            files_max,
        }
    }
}

impl Host {
    /// This host with what a running fleet of demand `running` holds
    /// counted as free: a reload replaces that fleet.
    pub fn credit(&mut self, running: &Demand) {
        let memory = running.memory();
        if self.memory_available != u64::MAX {
            self.memory_available = self.memory_available.saturating_add(memory);
            self.memory_source = format!(
                "{}, and about {} the running fleet holds",
                self.memory_source,
                mib(memory)
            );
        }
        let tasks = running.tasks(self.files_max);
        if self.tasks_available != u64::MAX {
            self.tasks_available = self.tasks_available.saturating_add(tasks);
            self.tasks_source = format!(
                "{}, and the {tasks} tasks of the running fleet",
                self.tasks_source
            );
        }
    }
}

/// A reload to `fleet` against this host while a fleet of demand `running`
/// runs: every way it does not fit, as [`check`] finds them, under the
/// cluster settings `cluster` of the supervisor that runs (a reload keeps
/// them) and with what the running fleet holds counted as free.
pub fn check_reload(
    fleet: &Fleet,
    cluster: &agentcluster_conf::Cluster,
    running: &Demand,
) -> Vec<String> {
    let mut host = Host::probe();
    host.credit(running);
    let mut demand = Demand::under(fleet, cluster);
    // A reload keeps running processes that are not full
    // (`reload::regroup`): up to its slack more than the fewest.
    let c = &fleet.counts;
    let active = c.agents.saturating_sub(c.inactive);
    let packed = demand.processes - c.inactive;
    demand.processes += (crate::fleet::reload::REGROUP_SLACK as u64).min(active - packed);
    assess(&demand, &host)
}

/// Every way the fleet does not fit, each with its arithmetic; empty when
/// it fits.
pub fn assess(d: &Demand, host: &Host) -> Vec<String> {
    let mut out = Vec::new();
    let memory = d.memory();
    if memory > host.memory_available {
        out.push(format!(
            "the fleet needs about {} of memory but {} is available ({}): {} processes × {} + {} agents × {} + supervisor {} + compiled stores {} (2 × {} of {} snapshot file{}); pack more agents per process (cluster.agents_per_process), run fewer agents, or spread the fleet over more hosts",
            mib(memory),
            mib(host.memory_available),
            host.memory_source,
            d.processes,
            kib(PROCESS_BYTES),
            d.agents,
            kib(AGENT_BYTES),
            mib(SUPERVISOR_BYTES),
            mib(d.store_bytes()),
            mib(d.snapshot_bytes),
            d.snapshots,
            if d.snapshots == 1 { "" } else { "s" },
        ));
    }
    let holders = d.holders(host.files_max);
    let tasks = d.tasks(host.files_max);
    if tasks > host.tasks_available {
        out.push(format!(
            "the fleet needs about {tasks} tasks ({} processes × {TASKS_PER_PROCESS} + {SUPERVISOR_TASKS} for the supervisor + {holders} socket holder{}) but only {} can be created ({}); pack more agents per process (cluster.agents_per_process) or raise the limit",
            d.processes,
            if holders == 1 { "" } else { "s" },
            host.tasks_available,
            host.tasks_source,
        ));
    }
    let files = d.files(host.files_max);
    if files > host.files_max {
        out.push(format!(
            "the supervisor needs about {files} open files ({FILES_PER_PROCESS} × {} processes + {} for {} processes starting at once: {} channel ends and {} socket copies + {} for the stores handed over: {} per process for {} processes starting and {} swaps at once + {} for probes, notification targets and cluster.snmp + {holders} for the socket holders of the {} sockets + {CONTROL_FILES} for the control socket and its clients + {BASE_FILES}) but RLIMIT_NOFILE allows at most {}; pack agents into fewer processes (cluster.agents_per_process: each process costs the supervisor {FILES_PER_PROCESS}), lower cluster.start_tokens, or raise it (LimitNOFILE= in systemd, ulimit -Hn)",
            d.processes,
            d.starting_files(),
            d.spawning,
            FILES_PER_SPAWN * d.spawning,
            d.spawning_sockets,
            d.store_files(),
            d.process_stores,
            d.spawning,
            d.swapping,
            d.service_files,
            d.sockets,
            host.files_max,
        ));
    }
    let agent = d.agent_files();
    if agent > host.files_max {
        out.push(format!(
            "an agent process of {} agent{} needs about {agent} open files ({} sockets + {} stores + {AGENT_PROCESS_FILES}) but RLIMIT_NOFILE allows at most {}; put fewer agents in a process (cluster.agents_per_process), or raise it (LimitNOFILE= in systemd, ulimit -Hn)",
            d.per_process,
            if d.per_process == 1 { "" } else { "s" },
            d.process_sockets,
            d.process_stores,
            host.files_max,
        ));
    }
    out
}

/// The most agents `base`'s cluster settings let `host` carry, each with
/// one endpoint and one snapshot whose size is not counted: a node's
/// capacity in its membership key (docs/scale-out.md). At most the
/// 1,000,000 agents a fleet may have; 0 when not even one fits.
pub fn agents_that_fit(base: &Fleet, host: &Host) -> u64 {
    const MOST: u64 = 1_000_000;
    let fits = |n: u64| assess(&Demand::of_plain(base, n), host).is_empty();
    if !fits(1) {
        return 0;
    }
    // fits(lo), and hi is past the most that fit (or MOST + 1).
    let (mut lo, mut hi) = (1, 2);
    while hi <= MOST && fits(hi) {
        lo = hi;
        hi *= 2;
    }
    let mut hi = hi.min(MOST + 1);
    if fits(hi.min(MOST)) {
        return hi.min(MOST);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `agents_that_fit` on this host.
pub fn agents_this_host_carries(base: &Fleet) -> u64 {
    agents_that_fit(base, &Host::probe())
}

/// `fleet` against this host: every way it does not fit (see `assess`),
/// and the `summary` line.
pub fn check(fleet: &Fleet) -> (Vec<String>, String) {
    let demand = Demand::of(fleet);
    let host = Host::probe();
    (assess(&demand, &host), summary(&demand, &host))
}

/// One line for `check`: what the fleet needs against what the host has.
pub fn summary(d: &Demand, host: &Host) -> String {
    let room = |v: u64| {
        if v == u64::MAX {
            "no limit".to_string()
        } else {
            v.to_string()
        }
    };
    format!(
        "capacity: {} agent{} in {} process{} need{} about {} of memory ({} available), {} tasks ({} available), {} open files per process (supervisor {}, agent process {}, {} socket holder{} of up to {}; limit {})",
        d.agents,
        if d.agents == 1 { "" } else { "s" },
        d.processes,
        if d.processes == 1 { "" } else { "es" },
        if d.agents == 1 && d.processes == 1 {
            "s"
        } else {
            ""
        },
        mib(d.memory()),
        if host.memory_available == u64::MAX {
            "no limit".to_string()
        } else {
            mib(host.memory_available)
        },
        d.tasks(host.files_max),
        room(host.tasks_available),
        d.files_limit(),
        d.files(host.files_max),
        d.agent_files(),
        d.holders(host.files_max),
        if d.holders(host.files_max) == 1 {
            ""
        } else {
            "s"
        },
        d.holder_files(host.files_max),
        room(host.files_max),
    )
}

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / f64::from(1 << 20);
    if m >= 10_240.0 {
        format!("{:.1} GiB", m / 1024.0)
    } else {
        format!("{m:.0} MiB")
    }
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", bytes >> 10)
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The total of tasks (threads) on the host: the fourth field of
/// /proc/loadavg is `running/total`.
fn loadavg_tasks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// This process's cgroup directory for `controller` (v1), or the unified
/// one (v2, controller "").
fn cgroup_dir(controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controller.is_empty() && list.is_empty() {
            return Some(Path::new("/sys/fs/cgroup").join(path));
        }
        if !controller.is_empty() && list.split(',').any(|c| c == controller) {
            return Some(Path::new("/sys/fs/cgroup").join(controller).join(path));
        }
    }
    None
}

/// (limit, usage, file) of the memory cgroup, when it has a limit.
fn cgroup_memory() -> Option<(u64, u64, String)> {
    if let Some(dir) = cgroup_dir("")
        && let Some(limit) = read_u64(dir.join("memory.max"))
    {
        let usage = read_u64(dir.join("memory.current")).unwrap_or(0);
        return Some((limit, usage, dir.join("memory.max").display().to_string()));
    }
    let dir = cgroup_dir("memory")?;
    let limit = read_u64(dir.join("memory.limit_in_bytes"))?;
    // v1 reports "no limit" as a huge page-aligned number.
    if limit >= 1 << 62 {
        return None;
    }
    let usage = read_u64(dir.join("memory.usage_in_bytes")).unwrap_or(0);
    Some((
        limit,
        usage,
        dir.join("memory.limit_in_bytes").display().to_string(),
    ))
}

/// (pids.max, pids.current, file) of the pids cgroup, when it has a limit
/// ("max" is none).
fn cgroup_pids() -> Option<(u64, u64, String)> {
    let dir = cgroup_dir("")
        .filter(|d| d.join("pids.max").exists())
        .or_else(|| cgroup_dir("pids"))?;
    let max = read_u64(dir.join("pids.max"))?;
    let current = read_u64(dir.join("pids.current")).unwrap_or(0);
    Some((max, current, dir.join("pids.max").display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            memory_available: 8 << 30,
            memory_source: "MemAvailable in /proc/meminfo".into(),
            tasks_available: 30_000,
            tasks_source: "kernel.pid_max 32768 less 2768 existing tasks".into(),
            files_max: 1 << 20,
        }
    }

    fn demand(agents: u64, per: u64) -> Demand {
        let processes = agents.div_ceil(per);
        Demand {
            agents,
            processes,
            sockets: agents,
            per_process: per.min(agents),
            process_sockets: per.min(agents),
            snapshots: 1,
            snapshot_bytes: 3 << 20,
            spawning: processes.min(8),
            spawning_sockets: agents.min(processes.min(8).min(2) * per),
            process_stores: 1,
            swapping: processes.min(8),
            service_files: 0,
        }
    }

    /// A fleet of `yaml` (agents after `cluster:` with the keys of `cluster`).
    fn fleet(cluster: &str, agents: &str) -> Fleet {
        let snap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mibs/linux-host.snmprec");
        let text = format!("cluster:\n{cluster}agents:\n{agents}")
            .replace("SNAP", &snap.display().to_string());
        agentcluster_conf::load_str(&text, Path::new("/tmp/f.yaml"))
            .unwrap_or_else(|p| panic!("{p:?}"))
            .fleet
    }

    /// A node's capacity is the most agents that fit: that many pass the
    /// check, one more does not; packing raises it.
    #[test]
    fn a_nodes_capacity_is_the_most_agents_that_fit() {
        let agent = "  - name: a\n    listen: [\"127.0.0.1:20000\"]\n    data: SNAP\n    snmpv2c: { communities: [public] }\n";
        let h = host();
        let mut most = Vec::new();
        for per in [1, 500] {
            let f = fleet(&format!("  agents_per_process: {per}\n"), agent);
            let n = agents_that_fit(&f, &h);
            assert!(assess(&Demand::of_plain(&f, n), &h).is_empty(), "{n} fit");
            if n < 1_000_000 {
                assert!(
                    !assess(&Demand::of_plain(&f, n + 1), &h).is_empty(),
                    "{n} + 1 do not"
                );
            }
            most.push(n);
        }
        // One process each: memory (8 GiB at 832 KiB a process and agent)
        // runs out before the 30,000 tasks do.
        assert!((9_000..11_000).contains(&most[0]), "{most:?}");
        assert!(most[1] > 5 * most[0], "{most:?}");
        let none = Host {
            memory_available: 1 << 20,
            ..host()
        };
        let f = fleet("", agent);
        assert_eq!(agents_that_fit(&f, &none), 0);
    }

    /// A reload replaces the running fleet: what it holds counts as free,
    /// so a fleet that would not fit beside it fits instead of it, and
    /// one that does not fit even then is refused, the credit named.
    #[test]
    fn a_reload_counts_what_the_running_fleet_holds_as_free() {
        let running = demand(6000, 1);
        let grown = demand(12_000, 1);
        let mut h = host();
        h.memory_available = grown.memory() - running.memory() / 2;
        h.tasks_available = grown.tasks(h.files_max);
        assert!(!assess(&grown, &h).is_empty());
        let mut credited = h.clone();
        credited.credit(&running);
        assert!(assess(&grown, &credited).is_empty());
        assert_eq!(
            credited.memory_available,
            h.memory_available + running.memory()
        );
        let too_big = demand(40_000, 1);
        let problems = assess(&too_big, &credited);
        assert!(
            problems[0].contains("MemAvailable in /proc/meminfo, and about")
                && problems[0].contains("the running fleet holds"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_fleet_that_fits_has_no_problem() {
        assert!(assess(&demand(1000, 1), &host()).is_empty());
        assert!(assess(&demand(10_000, 50), &host()).is_empty());
    }

    #[test]
    fn too_many_processes_for_memory_shows_the_arithmetic() {
        // 20,000 processes × 768 KiB alone are 15 GiB.
        let d = demand(20_000, 1);
        let problems = assess(&d, &host());
        let memory = problems
            .iter()
            .find(|p| p.contains("of memory"))
            .expect("memory problem");
        assert!(memory.contains("20000 processes × 768 KiB"), "{memory}");
        assert!(memory.contains("20000 agents × 64 KiB"), "{memory}");
        assert!(memory.contains("8192 MiB is available"), "{memory}");
        assert!(memory.contains("MemAvailable"), "{memory}");
        assert!(memory.contains("agents_per_process"), "{memory}");
        // 20,000 × 2 + 64 + 1 holder tasks > 30,000.
        let tasks = problems
            .iter()
            .find(|p| p.contains("tasks"))
            .expect("task problem");
        assert!(tasks.contains("40065 tasks"), "{tasks}");
        assert!(tasks.contains("kernel.pid_max"), "{tasks}");
        // The same agents packed 100 per process fit.
        assert!(assess(&demand(20_000, 100), &host()).is_empty());
    }

    #[test]
    fn open_files_beyond_the_hard_limit() {
        let mut h = host();
        h.files_max = 1024;
        let problems = assess(&demand(1000, 1), &h);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(
                "the supervisor needs about 2124 open files (2 × 1000 processes + 10 for 8 processes starting at once: 8 channel ends and 2 socket copies + 16 for the stores handed over: 1 per process for 8 processes starting and 8 swaps at once + 0 for probes, notification targets and cluster.snmp + 1 for the socket holders of the 1000 sockets + 65 for the control socket and its clients + 32)"
            ),
            "{}",
            problems[0]
        );
    }

    /// 19,000 agents, 500 a process: the supervisor holds none of their
    /// sockets (the holders do, with each process's steering socket), but
    /// each of the two spawner lanes holds a copy of the 501 sockets of
    /// the process it is handing to its spawn helper; 8 processes
    /// starting at once hold their channel ends.
    #[test]
    fn the_sockets_copied_for_starting_processes_count() {
        let f = fleet(
            "  agents_per_process: 500\n",
            "  - name: \"d-{i}\"\n    count: 19000\n    listen: [\"127.0.0.1:{i+20000}\"]\n    data: SNAP\n    snmpv2c: { communities: [public] }\n",
        );
        let unsteered = fleet(
            "  agents_per_process: 500\n  steering: false\n",
            "  - name: \"d-{i}\"\n    count: 19000\n    listen: [\"127.0.0.1:{i+20000}\"]\n    data: SNAP\n    snmpv2c: { communities: [public] }\n",
        );
        let d = Demand::of(&unsteered);
        assert_eq!((d.sockets, d.process_sockets), (19_000, 500));
        let mut d = Demand::of(&f);
        assert_eq!((d.agents, d.processes, d.sockets), (19_000, 38, 19_038));
        assert_eq!((d.per_process, d.process_sockets), (500, 501));
        assert_eq!((d.spawning, d.spawning_sockets), (8, 2 * 501));
        assert_eq!(
            (d.process_stores, d.swapping),
            (1, runtime_workers().min(38))
        );
        // As on a host of two cores.
        d.swapping = 2;
        // Under 20,000 descriptors one holder keeps every socket.
        assert_eq!(d.holders(20_000), 1);
        assert_eq!(d.holder_files(20_000), 19_038 + HOLDER_FILES);
        assert_eq!(d.files(20_000), 2 * 38 + 8 + 1002 + (8 + 2) + 1 + 65 + 32);
        assert_eq!(d.agent_files(), 501 + 1 + AGENT_PROCESS_FILES);
        let mut h = host();
        h.files_max = 20_000;
        assert!(assess(&d, &h).is_empty(), "{:?}", assess(&d, &h));
        // Under 4,096, five holders of 4,088.
        h.files_max = 4096;
        assert_eq!(d.holders(4096), 5);
        assert_eq!(d.holder_files(4096), 4096);
        assert_eq!(d.files(4096), 2 * 38 + 8 + 1002 + (8 + 2) + 5 + 65 + 32);
        assert!(assess(&d, &h).is_empty(), "{:?}", assess(&d, &h));
        // Under 1,024, the socket copies are what does not fit.
        h.files_max = 1024;
        let problems = assess(&d, &h);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("the supervisor needs about 1212 open files"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].contains("8 channel ends and 1002 socket copies"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].contains("19 for the socket holders of the 19038 sockets"),
            "{}",
            problems[0]
        );
        // One process at a time holds only its own 500 (and its steering
        // socket).
        let f = fleet(
            "  agents_per_process: 500\n  start_tokens: 1\n",
            "  - name: \"d-{i}\"\n    count: 19000\n    listen: [\"127.0.0.1:{i+20000}\"]\n    data: SNAP\n    snmpv2c: { communities: [public] }\n",
        );
        let d = Demand::of(&f);
        assert_eq!(
            d.files(1024),
            2 * 38 + 1 + 501 + (1 + d.swapping) + 19 + 65 + 32
        );
        assert!(assess(&d, &h).is_empty(), "{:?}", assess(&d, &h));
    }

    /// 100,000 devices in 200 processes of 500 fit under 20,000
    /// descriptors: six holders keep the sockets.
    #[test]
    fn a_hundred_thousand_devices_fit_under_twenty_thousand() {
        let mut d = demand(100_000, 500);
        d.swapping = 2;
        assert_eq!(d.holders(20_000), 6);
        assert_eq!(d.files(20_000), 2 * 200 + 8 + 1000 + (8 + 2) + 6 + 65 + 32);
        assert_eq!(d.files_needed(20_000), d.files(20_000));
        assert_eq!(d.tasks(20_000), 200 * 2 + 64 + 6);
        let mut h = host();
        h.files_max = 20_000;
        assert!(assess(&d, &h).is_empty(), "{:?}", assess(&d, &h));
        let s = summary(&d, &h);
        assert!(
            s.contains("open files per process (supervisor 1521, agent process 517, 6 socket holders of up to 20000; limit 20000)"),
            "{s}"
        );
        // The figure `check` shows is a limit the fleet fits under: with
        // 1,582 descriptors each, 64 holders keep the sockets.
        assert_eq!(d.files_limit(), 1582);
        assert!(s.contains(" 1582 open files per process"), "{s}");
        assert_eq!(d.holders(1582), 64);
        assert!(d.files_needed(1582) <= 1582);
    }

    /// Too many agents in one process: the agent process is what
    /// overflows, and the message says so and which setting to lower.
    #[test]
    fn an_agent_process_with_more_sockets_than_its_limit() {
        let d = demand(5000, 5000);
        let mut h = host();
        h.files_max = 4096;
        let problems = assess(&d, &h);
        // The supervisor, which holds a copy of the 5,000 sockets while it
        // hands them to a spawn helper, runs out too.
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("5000 socket copies"),
            "{}",
            problems[0]
        );
        assert_eq!(
            problems[1],
            "an agent process of 5000 agents needs about 5017 open files (5000 sockets + 1 stores + 16) but RLIMIT_NOFILE allows at most 4096; put fewer agents in a process (cluster.agents_per_process), or raise it (LimitNOFILE= in systemd, ulimit -Hn)"
        );
        assert!(assess(&demand(5000, 1000), &h).is_empty());
    }

    /// A process is handed each distinct store of its agents, opened before
    /// its spawn and held until its start message is sent: as many as its
    /// agents serve snapshot files, at most every file of the fleet.
    #[test]
    fn the_stores_handed_over_count() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            std::fs::write(
                dir.path().join(format!("d-{i}.snmprec")),
                "1.3.6.1.2.1.1.5.0|4|d\n",
            )
            .unwrap();
        }
        let f = fleet(
            "  agents_per_process: 10\n  start_tokens: 4\n",
            &format!(
                "  - name: \"d-{{i}}\"\n    count: 100\n    listen: [\"127.0.0.1:{{i+20000}}\"]\n    data: SNAP\n    snmpv2c:\n      communities: {{ public: {{}}, other: {{ data: \"{}/d-{{i}}.snmprec\" }} }}\n",
                dir.path().display()
            ),
        );
        let d = Demand::of(&f);
        // Each agent serves 2 files, 10 agents a process: up to 20 stores.
        assert_eq!((d.snapshots, d.process_stores), (1 + 100, 20));
        assert_eq!(d.swapping, runtime_workers().min(10));
        assert_eq!(d.store_files(), (4 + d.swapping) * 20);
        // Every agent on one file, twice: never more stores than files.
        let f = fleet(
            "  agents_per_process: 10\n",
            "  - name: \"e-{i}\"\n    count: 100\n    listen: [\"127.0.0.1:{i+20000}\"]\n    data: SNAP\n    snmpv2c:\n      communities: { public: {}, other: { data: SNAP } }\n",
        );
        let d = Demand::of(&f);
        assert_eq!((d.snapshots, d.process_stores), (1, 1));
    }

    /// Probes, notification targets and `cluster.snmp` hold sockets too;
    /// inactive agents get a process each.
    #[test]
    fn services_and_inactive_agents_count() {
        let f = fleet(
            "  agents_per_process: 10\n  probe: {}\n  snmp: { listen: [\"127.0.0.1:1161\", \"127.0.0.2:1161\"] }\n",
            "  - name: \"on-{i}\"\n    count: 30\n    listen: [\"127.0.0.1:{i+20000}\", \"127.0.0.2:{i+20000}\"]\n    data: SNAP\n    snmpv2c: { communities: [public] }\n  - name: \"off-{i}\"\n    count: 5\n    active: false\n    listen: [\"127.0.0.3:{i+20000}\"]\n    data: SNAP\n    snmpv2c: { communities: [public] }\n",
        );
        let d = Demand::of(&f);
        // The three packed processes have a steering socket each.
        assert_eq!((d.agents, d.processes, d.sockets), (35, 3 + 5, 65 + 3));
        // 2 lanes each handing over a process of at most 10 agents with 2
        // endpoints each, and its steering socket.
        assert_eq!((d.spawning, d.spawning_sockets), (8, 42));
        assert_eq!(d.process_sockets, 21);
        assert_eq!(d.service_files, 8 + 2);
        assert_eq!((d.snapshots, d.process_stores), (1, 1));
    }

    #[test]
    fn large_stores_count_once() {
        let mut d = demand(10, 1);
        d.snapshot_bytes = 6 << 30;
        let problems = assess(&d, &host());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("compiled stores 12.0 GiB"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn this_host_can_be_read() {
        let h = Host::probe();
        assert!(h.memory_available > 0);
        assert!(h.tasks_available > 0);
        assert!(h.files_max > 0);
        let s = summary(&demand(1, 1), &h);
        assert!(
            s.starts_with("capacity: 1 agent in 1 process needs about"),
            "{s}"
        );
        let s = summary(&demand(3, 1), &h);
        assert!(
            s.starts_with("capacity: 3 agents in 3 processes need about"),
            "{s}"
        );
    }

    #[test]
    fn proc_figures_parse() {
        let text = "MemTotal:       24684092 kB\nMemAvailable:   23866192 kB\n";
        assert_eq!(meminfo_kib(text, "MemAvailable:"), Some(23_866_192));
        assert_eq!(meminfo_kib(text, "Nope:"), None);
        assert!(loadavg_tasks().is_some());
    }
}
