//! UDP ports for agents, notification receivers and the supervisor's own
//! SNMP agent.
//!
//! They are handed out below the kernel's ephemeral range (32768–60999 by
//! default), where every client socket gets its port: the net-snmp tools,
//! the load generator and the supervisor's notification senders of every
//! test running meanwhile. A port chosen there was free a moment ago but
//! could be given to such a client before the agent binds it (the crash
//! tests, which bind the same ports again after each `kill -9`, saw it
//! happen). Below that range no client is given a port, each port is handed
//! out once per run of this binary (a cursor shared by its threads, which
//! starts where the process id says, so two runs on one machine start
//! apart), and checked free on 127.0.0.1 (and on ::1 where it exists).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, OnceLock};

/// Ports are handed out from here (the default fleet's 10161-10163 stay
/// below)…
const FIRST: u32 = 12_000;
/// …to here, the start of the kernel's default ephemeral range.
const END: u32 = 32_768;

/// The next port to hand out, as an offset from [`FIRST`] (taken modulo the
/// range).
static CURSOR: LazyLock<AtomicU32> =
    LazyLock::new(|| AtomicU32::new(std::process::id().wrapping_mul(7919) % (END - FIRST)));

/// Whether this machine has a usable ::1.
pub fn ipv6_loopback() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| UdpSocket::bind("[::1]:0").is_ok())
}

/// A free UDP port.
pub fn free_port() -> u16 {
    free_block(1)
}

/// `n` free UDP ports (consecutive).
pub fn free_ports(n: usize) -> Vec<u16> {
    let n = u16::try_from(n).expect("fewer than 65536 ports");
    let base = free_block(n);
    (base..base + n).collect()
}

/// The first of `n` consecutive free UDP ports.
pub fn free_block(n: u16) -> u16 {
    let n = u32::from(n);
    assert!(n > 0 && n < (END - FIRST) / 4, "a block of {n} ports");
    for _ in 0..1000 {
        let offset = CURSOR.fetch_add(n, Ordering::Relaxed) % (END - FIRST);
        if offset + n > END - FIRST {
            // The block would wrap around the end of the range.
            continue;
        }
        let base = FIRST + offset;
        let held: Vec<UdpSocket> = (base..base + n)
            .map_while(|p| bind(p as u16))
            .flatten()
            .collect();
        if held.len() == (n as usize) * if ipv6_loopback() { 2 } else { 1 } {
            return base as u16;
        }
    }
    panic!("no block of {n} free UDP ports in {FIRST}..{END}");
}

/// The port bound on every loopback address this machine has.
fn bind(port: u16) -> Option<Vec<UdpSocket>> {
    let v4 = UdpSocket::bind(("127.0.0.1", port)).ok()?;
    if !ipv6_loopback() {
        return Some(vec![v4]);
    }
    let v6 = UdpSocket::bind(("::1", port)).ok()?;
    Some(vec![v4, v6])
}
