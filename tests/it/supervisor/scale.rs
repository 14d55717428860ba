//! Fleets at scale: 300 agents in one process (more sockets than one
//! message carries), and 1,000 agent processes, every one answering.

use std::time::Duration;

use crate::harness::imports::probe;
use crate::harness::{Fleet, alone, free_block, is_alive, mib, pid_of};

/// Agents on ports `base..base + n` each answer a GET: one per agent, 100
/// in flight at a time (the client's receive buffer holds a few hundred
/// answers), in up to three rounds.
fn every_one_answers(base: u16, n: u16) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answered = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    for round in 0..3 {
        let missing: Vec<u16> = (0..n).filter(|i| !answered.contains(&(base + i))).collect();
        for batch in missing.chunks(100) {
            for &i in batch {
                let req = probe::request(b"public", false, i32::from(i) + 1);
                sock.send_to(&req, ("127.0.0.1", base + i)).unwrap();
            }
            let mut got = 0;
            while got < batch.len() {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    break;
                };
                let id = i32::from(from.port().wrapping_sub(base)) + 1;
                if probe::answers(&buf[..len], id) && answered.insert(from.port()) {
                    got += 1;
                }
            }
        }
        if answered.len() == n as usize {
            break;
        }
        eprintln!("round {round}: {} answered", answered.len());
    }
    assert_eq!(answered.len(), n as usize, "every agent answers a GET");
}

/// Starts `n` agents `NAME-i` on a block of free ports (after the cluster
/// keys `cluster`), all running; returns the fleet, the first port and the
/// distinct pids of their processes.
fn start_block(cluster: &str, name: &str, n: u16, snapshot: &str) -> (Fleet, u16, Vec<u32>) {
    let base = free_block(n);
    let yaml = format!(
        "{cluster}agents:\n  - name: \"{name}-{{i}}\"\n    count: {n}\n    listen: [\"127.0.0.1:{{i+{base}}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        mib(snapshot).display()
    );
    let fleet = Fleet::start(&yaml);
    let s = fleet.status();
    assert_eq!(s.len(), usize::from(n));
    assert!(s.iter().all(|a| a["state"] == "running"));
    let mut pids: Vec<u32> = s
        .iter()
        .map(|a| pid_of(&s, a["name"].as_str().unwrap_or_default()))
        .collect();
    pids.sort();
    pids.dedup();
    (fleet, base, pids)
}

#[test]
fn a_process_gets_more_sockets_than_one_message_carries() {
    let _alone = alone();
    // 300 agents in one process: 301 descriptors reach the spawn helper in
    // two messages (one carries at most 253).
    let n = 300u16;
    let (_fleet, base, pids) = start_block(
        &format!("  agents_per_process: {n}\n"),
        "m",
        n,
        "linux-host.snmprec",
    );
    assert_eq!(pids.len(), 1, "one process");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", pids[0]))
        .unwrap()
        .count();
    assert!(fds > usize::from(n), "{fds} descriptors");
    every_one_answers(base, n);
}

#[test]
fn a_thousand_agent_processes_start_and_all_answer() {
    let _alone = alone();
    let n = 1000u16;
    let (fleet, base, pids) = start_block("", "k", n, "cisco-c3750.snmprec");
    assert!(
        fleet.banner[0].contains("1000 agents ready"),
        "{:?}",
        fleet.banner
    );
    assert_eq!(pids.len(), 1000, "one process per agent");
    every_one_answers(base, n);
    let (code, _) = fleet.stop();
    assert!(code.success());
    assert!(pids.iter().all(|p| !is_alive(*p)), "no orphans");
}
