//! The physical ceiling: a UDP responder that answers every datagram with
//! a fixed 50-byte reply and does nothing else. What agentcluster reaches
//! against what this reaches on the same machine, with the same client, is
//! the ratio that survives noisy machines.
//!
//! The ceiling of a spread load is an echo fleet ([`serve_many`]): as many
//! sockets as devices, at the devices' kind of addresses, in processes of
//! as many sockets as the fleet packs agents, each process one thread that
//! waits on all of its sockets with `epoll` and answers each datagram as
//! the single echo does. Its own spread rate against its rate on one socket
//! is what the kernel leaves of a spread load, before any agent runs.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Size of the reply, about that of a small SNMP response.
pub const REPLY: usize = 50;

/// Serves until `lifetime` has passed; returns the datagrams answered.
pub fn serve(listen: SocketAddr, lifetime: Duration) -> std::io::Result<u64> {
    let sock = UdpSocket::bind(listen)?;
    serve_on(&sock, lifetime, &[0x5a; REPLY])
}

/// Answers every datagram on `sock` with `reply` until `lifetime` has passed.
pub fn serve_on(sock: &UdpSocket, lifetime: Duration, reply: &[u8]) -> std::io::Result<u64> {
    let end = Instant::now() + lifetime;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; 65_536];
    let mut answered = 0u64;
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                if sock.send_to(reply, peer).is_ok() {
                    answered += 1;
                }
            }
            Err(e) if crate::load::transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(answered)
}

/// Binds every one of `addrs` (non-blocking), for [`serve_many`].
pub fn bind_all(addrs: &[SocketAddr]) -> io::Result<Vec<UdpSocket>> {
    addrs
        .iter()
        .map(|a| {
            let s = UdpSocket::bind(a)
                .map_err(|e| io::Error::new(e.kind(), format!("echo: cannot bind {a}: {e}")))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

/// Answers every datagram on each of `socks` (non-blocking) with the fixed
/// reply, from this one thread, until `lifetime` has passed: one `epoll`
/// wait for all of them, one receive and one send per datagram. Returns
/// the datagrams answered.
pub fn serve_many(socks: &[UdpSocket], lifetime: Duration) -> io::Result<u64> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, s) in socks.iter().enumerate() {
        epoll.add(s, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let reply = [0x5a; REPLY];
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; 65_536];
    let mut answered = 0u64;
    let end = Instant::now() + lifetime;
    while Instant::now() < end {
        let n = match epoll.wait(&mut events, 200u16) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        // Level-triggered: a socket with more queued is reported again.
        for ev in &events[..n] {
            let Some(s) = socks.get(ev.data() as usize) else {
                continue;
            };
            match s.recv_from(&mut buf) {
                Ok((_, peer)) => {
                    if s.send_to(&reply, peer).is_ok() {
                        answered += 1;
                    }
                }
                Err(e) if crate::load::transient(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(answered)
}

/// The sockets of an echo fleet of `count`: with `spread`, socket `i` at
/// device `i`'s address ([`crate::fleet::device_addr`]) on `listen`'s port;
/// else at `listen`'s address, port `listen + i`.
pub fn fleet_addrs(listen: SocketAddr, count: u32, spread: bool) -> io::Result<Vec<SocketAddr>> {
    (0..count)
        .map(|i| {
            if spread {
                return Ok(crate::fleet::device_addr(i, listen.port()));
            }
            let port = u16::try_from(u32::from(listen.port()) + i).map_err(|_| {
                io::Error::other(format!("echo: {count} ports from {listen} pass 65535"))
            })?;
            Ok(SocketAddr::new(listen.ip(), port))
        })
        .collect()
}

/// An echo fleet's processes, each `agentcluster-bench echo --part K`
/// serving its share of the sockets; killed when dropped.
pub struct EchoFleet {
    parts: Vec<crate::fleet::Guard>,
    /// Every socket of the fleet, in order.
    pub addrs: Vec<SocketAddr>,
}

/// What tells the spawning process a part has bound all its sockets.
pub const BOUND: &str = "echo: bound";

impl EchoFleet {
    /// The fleet's processes.
    pub fn pids(&self) -> Vec<u32> {
        self.parts.iter().map(|g| g.0.id()).collect()
    }

    /// Runs `exe echo --part K` once per `per_process` sockets of
    /// [`fleet_addrs`], each living `lifetime`, and waits until each has
    /// bound its sockets.
    pub fn spawn(
        exe: &std::path::Path,
        listen: SocketAddr,
        count: u32,
        per_process: u32,
        spread: bool,
        lifetime: Duration,
    ) -> io::Result<EchoFleet> {
        use std::io::BufRead as _;
        let addrs = fleet_addrs(listen, count, spread)?;
        let per = per_process.max(1);
        let mut fleet = EchoFleet {
            parts: Vec::new(),
            addrs,
        };
        for part in 0..count.div_ceil(per) {
            let mut cmd = std::process::Command::new(exe);
            cmd.arg("echo")
                .arg("--listen")
                .arg(listen.to_string())
                .arg("--count")
                .arg(count.to_string())
                .arg("--per-process")
                .arg(per.to_string())
                .arg("--part")
                .arg(part.to_string())
                .arg("--lifetime")
                .arg(format!("{}s", lifetime.as_secs().max(1)))
                .stdout(std::process::Stdio::piped())
                .stdin(std::process::Stdio::null());
            if spread {
                cmd.arg("--spread-addresses");
            }
            fleet.parts.push(crate::fleet::Guard(cmd.spawn()?));
        }
        for crate::fleet::Guard(child) in &mut fleet.parts {
            let out = child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("echo: no stdout"))?;
            let mut line = String::new();
            std::io::BufReader::new(out).read_line(&mut line)?;
            if line.trim() != BOUND {
                return Err(io::Error::other(format!(
                    "an echo process exited before binding its sockets ({})",
                    child.wait()?
                )));
            }
        }
        Ok(fleet)
    }
}

/// `echo --part K`: binds part `K` of the fleet's sockets, says so on
/// stdout ([`BOUND`]) and serves them until `lifetime` has passed.
pub fn serve_part(
    listen: SocketAddr,
    count: u32,
    per_process: u32,
    spread: bool,
    part: u32,
    lifetime: Duration,
) -> io::Result<u64> {
    use std::io::Write as _;
    let addrs = fleet_addrs(listen, count, spread)?;
    let per = per_process.max(1) as usize;
    let first = (part as usize * per).min(addrs.len());
    let last = (first + per).min(addrs.len());
    let socks = bind_all(&addrs[first..last])?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{BOUND}")?;
    out.flush()?;
    drop(out);
    serve_many(&socks, lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_fleet_answers_on_every_socket_from_its_address() {
        let addrs = [SocketAddr::from(([127, 0, 0, 1], 0)); 3];
        let socks = bind_all(&addrs).unwrap();
        let addrs: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
        let server = std::thread::spawn(move || serve_many(&socks, Duration::from_secs(2)));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 128];
        for a in &addrs {
            client.send_to(b"x", a).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (REPLY, *a));
        }
        assert_eq!(server.join().unwrap().unwrap(), 3);
    }

    #[test]
    fn an_echo_fleet_has_the_fleets_addresses() {
        let listen = SocketAddr::from(([127, 0, 0, 1], 30_000));
        let spread = fleet_addrs(listen, 251, true).unwrap();
        assert_eq!(spread[0].to_string(), "127.1.0.1:30000");
        assert_eq!(spread[250].to_string(), "127.1.1.1:30000");
        let ports = fleet_addrs(listen, 3, false).unwrap();
        assert_eq!(ports[2].to_string(), "127.0.0.1:30002");
        assert!(fleet_addrs(SocketAddr::from(([127, 0, 0, 1], 65_535)), 2, false).is_err());
    }
}
