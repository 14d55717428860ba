//! What /proc says about processes and the machine: descendants of a pid,
//! proportional set size, CPU ticks, run state.

use std::fs;

use serde::Serialize;

/// (pid, parent pid) of every process, from one scan of /proc.
fn parents() -> Vec<(u32, u32)> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_field(pid, 4).and_then(|s| s.parse::<u32>().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    parent_of
}

/// The children of `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    parents()
        .into_iter()
        .filter(|(_, ppid)| *ppid == parent)
        .map(|(pid, _)| pid)
        .collect()
}

/// Children, grandchildren… of `root`, from one scan of /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let parent_of = parents();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    // Bounded: a process tree cannot be deeper than the number of processes.
    for _ in 0..=parent_of.len() {
        let Some(p) = frontier.pop() else { break };
        for (pid, ppid) in &parent_of {
            if *ppid == p {
                out.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    out
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat.
pub fn stat_field(pid: u32, n: usize) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(n.checked_sub(3)?).map(str::to_owned)
}

/// The arguments of a process joined by spaces (`argv[0]` is its title, as
/// `ps` shows it); empty once it is gone.
pub fn cmdline(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The run state letter (R, S, Z, …), `None` once the process is gone.
pub fn state(pid: u32) -> Option<char> {
    stat_field(pid, 3).and_then(|s| s.chars().next())
}

pub use nix::sys::signal::Signal;

/// Sends `sig` to `pid`. An error (ESRCH: no such process) means nothing
/// was delivered.
pub fn signal(pid: u32, sig: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(std::io::Error::from)
}

/// Time on a CPU in nanoseconds of the live threads of a process, from
/// each one's /proc/PID/task/TID/schedstat (exact, where utime and stime
/// count whole clock ticks; the process's own schedstat is its first
/// thread's alone).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let on_cpu = |tid: &std::ffi::OsStr| -> Option<u64> {
        fs::read_to_string(format!("/proc/{pid}/task/{}/schedstat", tid.to_str()?))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(tasks.flatten().filter_map(|t| on_cpu(&t.file_name())).sum())
}

/// [`cpu_ns`] summed over `pids` (a process gone counts nothing).
pub fn cpu_ns_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|p| cpu_ns(*p)).sum()
}

/// Pss and Rss of a process in KiB (from smaps_rollup).
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("Pss:")?, field("Rss:")?))
}

/// Memory of a process tree.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TreeMemory {
    /// The root and its descendants that are not agent processes (the
    /// supervisor's spawn helpers).
    pub root_pss_kib: u64,
    /// Agent processes (`agentcluster: agent …`); the figures below are
    /// theirs.
    pub processes: usize,
    /// Descendants that are not agent processes.
    pub helpers: usize,
    /// PSS of all agent processes together, in KiB.
    pub pss_total_kib: u64,
    /// Median PSS of one agent process.
    pub pss_median_kib: u64,
    /// Largest PSS of one agent process.
    pub pss_max_kib: u64,
    /// Median RSS of one agent process (shared pages counted in full).
    pub rss_median_kib: u64,
    /// Root plus every descendant.
    pub total_pss_kib: u64,
}

/// The memory of `root` and its descendants; processes that are gone (or
/// unreadable) are left out.
pub fn tree_memory(root: u32) -> TreeMemory {
    let mut pss = Vec::new();
    let mut rss = Vec::new();
    let mut root_pss = memory_kib(root).map(|m| m.0).unwrap_or(0);
    let mut helpers = 0;
    for pid in descendants(root) {
        let agent = cmdline(pid).starts_with("agentcluster: agent ");
        match (memory_kib(pid), agent) {
            (Some((p, r)), true) => {
                pss.push(p);
                rss.push(r);
            }
            (Some((p, _)), false) => {
                helpers += 1;
                root_pss += p;
            }
            (None, _) => {}
        }
    }
    pss.sort_unstable();
    rss.sort_unstable();
    let total: u64 = pss.iter().sum();
    TreeMemory {
        root_pss_kib: root_pss,
        processes: pss.len(),
        helpers,
        pss_total_kib: total,
        pss_median_kib: pss.get(pss.len() / 2).copied().unwrap_or(0),
        pss_max_kib: pss.last().copied().unwrap_or(0),
        rss_median_kib: rss.get(rss.len() / 2).copied().unwrap_or(0),
        total_pss_kib: total + root_pss,
    }
}

/// Jiffies of the whole machine from the `cpu` line of /proc/stat:
/// (busy, idle + iowait, steal).
pub fn machine_ticks() -> Option<(u64, u64, u64)> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user)
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let steal = get(7);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    Some((busy, idle, steal))
}

/// How busy the machine was between two [`machine_ticks`] readings, in
/// percent of all CPUs: (busy, steal).
pub fn machine_busy(a: (u64, u64, u64), b: (u64, u64, u64)) -> (f64, f64) {
    let busy = b.0.saturating_sub(a.0) as f64;
    let idle = b.1.saturating_sub(a.1) as f64;
    let steal = b.2.saturating_sub(a.2) as f64;
    let total = (busy + idle + steal).max(1.0);
    (100.0 * busy / total, 100.0 * steal / total)
}

/// The 1-minute load average.
pub fn loadavg1() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

/// The machine, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// CPU model name (`unknown` when /proc/cpuinfo has none).
    pub cpu: String,
    /// MemTotal.
    pub mem_total_kib: u64,
    /// Kernel release.
    pub kernel: String,
    /// The 1, 5 and 15 minute load averages.
    pub loadavg: String,
}

/// Reads [`Machine`] from /proc; what cannot be read is left empty or 0.
pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    Machine {
        // Online CPUs, not this process's affinity (bench/run pins it).
        nproc: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1),
        cpu,
        mem_total_kib: mem,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        loadavg: fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Every thread of `pids` (their tasks now; threads they start later
/// inherit it) on `cpus`; threads gone meanwhile are skipped.
pub fn pin_all(pids: &[u32], cpus: &[usize]) -> std::io::Result<()> {
    let set = cpu_set(cpus)?;
    for &pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(tid) = task.file_name().to_string_lossy().parse::<i32>() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set);
            }
        }
    }
    Ok(())
}

/// The calling thread on `cpus`.
pub fn pin_this_thread(cpus: &[usize]) -> std::io::Result<()> {
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu_set(cpus)?)
        .map_err(std::io::Error::from)
}

/// The calling thread's CPUs.
pub fn this_thread_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

fn cpu_set(cpus: &[usize]) -> std::io::Result<nix::sched::CpuSet> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(std::io::Error::from)?;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_state_and_memory() {
        let me = std::process::id();
        assert!(matches!(state(me), Some('R' | 'S')));
        let (pss, rss) = memory_kib(me).unwrap();
        assert!(pss > 0 && rss >= pss / 2);
        assert!(cpu_ns(me).is_some_and(|ns| ns > 0));
        assert_eq!(state(u32::MAX), None);
    }
}
