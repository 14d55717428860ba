//! What a packed fleet's processes hold: the supervisor's threads share
//! one malloc arena, and an agent process serving many devices runs one
//! thread. (How much a socket's serving loop holds is pinned by the agent
//! crate's unit tests; `scripts/pss-per-device` measures the whole.)

use crate::harness::{Fleet, free_block, mib, pid_of};

/// `n` devices on a block of free ports, `per_process` to a process, all
/// running.
fn packed(n: u16, per_process: u16) -> (Fleet, Vec<u32>) {
    let base = free_block(n);
    let yaml = format!(
        "  agents_per_process: {per_process}\nagents:\n  - name: \"p-{{i}}\"\n    count: {n}\n    listen: [\"127.0.0.1:{{i+{base}}}\"]\n    data: {}\n    identity: true\n    snmpv2c: {{ communities: [public] }}\n",
        mib("linux-host.snmprec").display()
    );
    let fleet = Fleet::start(&yaml);
    let status = fleet.status();
    let mut pids: Vec<u32> = (0..n).map(|i| pid_of(&status, &format!("p-{i}"))).collect();
    pids.sort_unstable();
    pids.dedup();
    (fleet, pids)
}

/// The glibc arenas of threads in `pid`'s address space: each is a
/// 64 MiB-aligned reservation of 64 MiB, its used part read-write and the
/// rest inaccessible.
fn thread_arenas(pid: u32) -> Vec<String> {
    const HEAP_MAX: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let regions: Vec<(u64, u64, String, String)> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (a, b) = f.next()?.split_once('-')?;
            let perms = f.next()?.to_string();
            let path = f.nth(3).unwrap_or("").to_string();
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
                perms,
                path,
            ))
        })
        .collect();
    regions
        .windows(2)
        .filter(|w| {
            let ((start, end, perms, path), (next, next_end, next_perms, next_path)) =
                (&w[0], &w[1]);
            start % HEAP_MAX == 0
                && path.is_empty()
                && perms.starts_with("rw")
                && end == next
                && next_perms.starts_with("---")
                && next_path.is_empty()
                && next_end - start == HEAP_MAX
        })
        .map(|w| format!("{:x}-{:x}", w[0].0, w[1].1))
        .collect()
}

#[test]
fn the_supervisors_threads_share_one_malloc_arena() {
    // Its runtime's threads built every unit and handled every start: with
    // glibc's default, some of them had arenas of their own by now.
    let (fleet, _) = packed(100, 25);
    let arenas = thread_arenas(fleet.pid());
    assert!(
        arenas.is_empty(),
        "the supervisor has thread arenas: {arenas:?}"
    );
}

#[test]
fn a_packed_agent_process_runs_one_thread() {
    let (_fleet, pids) = packed(60, 60);
    assert_eq!(pids.len(), 1, "one process");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(|t| t.trim().to_string());
    assert_eq!(threads.as_deref(), Some("1"), "{status}");
}
