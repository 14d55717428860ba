//! Steering a packed process's datagrams into one socket: a BPF
//! `sk_lookup` program, attached to the network namespace, looks up each
//! UDP datagram's destination (address and port) in a `SOCKHASH` map and,
//! when a process put a socket there for it, delivers the datagram to that
//! socket instead of the one bound to the destination.
//!
//! An agent process serving 500 devices then receives the requests of all
//! of them from one socket, its *steering socket* (one readiness in its
//! epoll set, one `recvmmsg` for a whole burst, each datagram's
//! destination from `IP_ORIGDSTADDR`) instead of one socket per device
//! asked: what a spread load costs the kernel per request falls towards
//! what one busy device costs. A datagram whose destination has no entry
//! (steering is off; the steering socket was closed, which takes its
//! entries out of the map) goes to the socket bound to it, if any.
//!
//! The kernel looks for a socket bound to the destination *before* it runs
//! the program, walking the whole chain of the destination's slot in its
//! UDP table (16,384 slots on a host of this size): with 100,000 devices
//! bound, every request walked about six other devices' sockets, cold. So
//! a steered device has no socket of its own (the supervisor reserves its
//! map entry first: [`Map::reserve`]); one device per port and address
//! family of each process stays bound, and the others send from their own
//! address through its socket (`crate::sys::Socket::face`).
//!
//! The supervisor loads the program and the map ([`Steering::attach`]) and
//! keeps the link (the program runs while the link is open: a supervisor
//! that dies takes it with it). A process's steering sockets are kept by
//! the socket holders like its devices' sockets, so requests wait in them
//! while the process restarts; each spawn puts them under the process's
//! devices' addresses ([`Map::steer`]) before passing them on. Loading and
//! attaching need `CAP_BPF` and `CAP_NET_ADMIN`; without them nothing is
//! steered and nothing else changes. Agent processes never touch the map.
//!
//! The program, 53 instructions, is written out here (no compiler, no
//! object file): the destination port's bit in an array (a port nothing
//! is steered at passes there: the host's other datagrams never reach the
//! hash), then the key `{family, port, address[4]}` (the address in
//! network order, IPv4 in the first word), `bpf_map_lookup_elem`,
//! `bpf_sk_assign`, `bpf_sk_release`; every datagram passes whether or
//! not it was steered.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
const BPF_PROG_TYPE_SK_LOOKUP: u32 = 30;
const BPF_SK_LOOKUP: u32 = 36;

const FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const FUNC_SK_RELEASE: i32 = 86;
const FUNC_SK_ASSIGN: i32 = 124;

/// Bytes of a key: family, port, four words of address.
const KEY: usize = 24;

/// A map key: what the program builds from a datagram's destination.
fn key(to: SocketAddr) -> [u8; KEY] {
    let mut k = [0u8; KEY];
    let (family, port, addr): (u32, u16, [u8; 16]) = match to {
        SocketAddr::V4(a) => {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&a.ip().octets());
            (libc::AF_INET as u32, a.port(), addr)
        }
        SocketAddr::V6(a) => (libc::AF_INET6 as u32, a.port(), a.ip().octets()),
    };
    k[0..4].copy_from_slice(&family.to_ne_bytes());
    k[4..8].copy_from_slice(&u32::from(port).to_ne_bytes());
    k[8..].copy_from_slice(&addr);
    k
}

/// `bpf(2)` with `attr`, `size` of it given.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `repr(C)` prefix of
    // `union bpf_attr` for `cmd`, its unused bytes zero; the kernel reads
    // (and for some commands writes) at most `size_of::<T>()` bytes of it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A descriptor a `bpf(2)` call returned.
fn fd_of(r: libc::c_long) -> OwnedFd {
    // SAFETY: the call succeeded and returned a new descriptor, which
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct Elem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The first words of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// One instruction: opcode, registers (dst low nibble, src high), offset,
/// immediate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes (class | size/op | source).
const MOV64_X: u8 = 0x07 | 0xb0 | 0x08;
const MOV64_K: u8 = 0x07 | 0xb0;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x07 | 0x50;
const RSH64_K: u8 = 0x07 | 0x70;
const RSH64_X: u8 = 0x07 | 0x70 | 0x08;
const LDX_W: u8 = 0x01 | 0x60;
const STX_W: u8 = 0x03 | 0x60;
const JNE_K: u8 = 0x05 | 0x50;
const JEQ_K: u8 = 0x05 | 0x10;
const JA: u8 = 0x05;
const CALL: u8 = 0x05 | 0x80;
const EXIT: u8 = 0x05 | 0x90;
const LD_IMM64: u8 = 0x18;
/// `src` of a `LD_IMM64` whose immediate is a map's descriptor.
const PSEUDO_MAP_FD: u8 = 1;

// `struct bpf_sk_lookup` offsets.
const FAMILY: i16 = 8;
const PROTOCOL: i16 = 12;
const LOCAL_IP4: i16 = 40;
const LOCAL_IP6: i16 = 44;
const LOCAL_PORT: i16 = 60;

/// A program's instruction, or a jump to a label, or a label.
enum Asm {
    I(Insn),
    Jump {
        code: u8,
        dst: u8,
        imm: i32,
        to: &'static str,
    },
    Label(&'static str),
}

/// The instructions of `asm`, each jump's offset counted to its label.
fn assemble(asm: &[Asm]) -> Vec<Insn> {
    let mut at = std::collections::HashMap::new();
    let mut pc = 0i32;
    for a in asm {
        match a {
            Asm::Label(l) => {
                at.insert(*l, pc);
            }
            _ => pc += 1,
        }
    }
    let mut out = Vec::with_capacity(pc as usize);
    for a in asm {
        match a {
            Asm::I(i) => out.push(*i),
            Asm::Jump { code, dst, imm, to } => {
                let off = at[to] - (out.len() as i32 + 1);
                out.push(insn(*code, *dst, 0, off as i16, *imm));
            }
            Asm::Label(_) => {}
        }
    }
    out
}

/// The program for the maps `ports` (a bit per steered port) and
/// `sockets` (a socket per steered destination).
fn program(ports: RawFd, sockets: RawFd) -> Vec<Insn> {
    use Asm::{I, Jump, Label};
    const UDP: i32 = libc::IPPROTO_UDP;
    const INET: i32 = libc::AF_INET;
    let jump = |code, dst, imm, to| Jump { code, dst, imm, to };
    // The key on the stack at r10 - 24: family, port, address; the port's
    // word of the bitmap at r10 - 28.
    assemble(&[
        I(insn(MOV64_X, 6, 1, 0, 0)),      // r6 = ctx
        I(insn(LDX_W, 2, 6, PROTOCOL, 0)), // r2 = ctx->protocol
        jump(JNE_K, 2, UDP, "pass"),
        // A port nothing is steered at passes at the cost of an array
        // lookup: the other datagrams of the host never reach the hash.
        I(insn(LDX_W, 2, 6, LOCAL_PORT, 0)),
        I(insn(RSH64_K, 2, 0, 0, 5)),
        I(insn(STX_W, 10, 2, -28, 0)), // the port's word
        I(insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, ports)),
        I(insn(0, 0, 0, 0, 0)),
        I(insn(MOV64_X, 2, 10, 0, 0)),
        I(insn(ADD64_K, 2, 0, 0, -28)),
        I(insn(CALL, 0, 0, 0, FUNC_MAP_LOOKUP_ELEM)),
        jump(JEQ_K, 0, 0, "pass"),
        I(insn(LDX_W, 4, 0, 0, 0)), // r4 = the word
        I(insn(LDX_W, 5, 6, LOCAL_PORT, 0)),
        I(insn(AND64_K, 5, 0, 0, 31)),
        I(insn(RSH64_X, 4, 5, 0, 0)),
        I(insn(AND64_K, 4, 0, 0, 1)),
        jump(JEQ_K, 4, 0, "pass"), // the port's bit
        I(insn(LDX_W, 3, 6, FAMILY, 0)),
        I(insn(STX_W, 10, 3, -24, 0)), // key.family
        I(insn(LDX_W, 2, 6, LOCAL_PORT, 0)),
        I(insn(STX_W, 10, 2, -20, 0)), // key.port
        jump(JNE_K, 3, INET, "ipv6"),
        I(insn(LDX_W, 2, 6, LOCAL_IP4, 0)),
        I(insn(STX_W, 10, 2, -16, 0)), // key.address[0]
        I(insn(MOV64_K, 2, 0, 0, 0)),
        I(insn(STX_W, 10, 2, -12, 0)), // key.address[1..4] = 0
        I(insn(STX_W, 10, 2, -8, 0)),
        I(insn(STX_W, 10, 2, -4, 0)),
        jump(JA, 0, 0, "lookup"),
        Label("ipv6"),
        I(insn(LDX_W, 2, 6, LOCAL_IP6, 0)),
        I(insn(STX_W, 10, 2, -16, 0)),
        I(insn(LDX_W, 2, 6, LOCAL_IP6 + 4, 0)),
        I(insn(STX_W, 10, 2, -12, 0)),
        I(insn(LDX_W, 2, 6, LOCAL_IP6 + 8, 0)),
        I(insn(STX_W, 10, 2, -8, 0)),
        I(insn(LDX_W, 2, 6, LOCAL_IP6 + 12, 0)),
        I(insn(STX_W, 10, 2, -4, 0)),
        Label("lookup"),
        I(insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, sockets)),
        I(insn(0, 0, 0, 0, 0)),
        I(insn(MOV64_X, 2, 10, 0, 0)),
        I(insn(ADD64_K, 2, 0, 0, -(KEY as i32))), // r2 = &key
        I(insn(CALL, 0, 0, 0, FUNC_MAP_LOOKUP_ELEM)),
        jump(JEQ_K, 0, 0, "pass"),    // no socket
        I(insn(MOV64_X, 7, 0, 0, 0)), // r7 = sk
        I(insn(MOV64_X, 1, 6, 0, 0)),
        I(insn(MOV64_X, 2, 7, 0, 0)),
        I(insn(MOV64_K, 3, 0, 0, 0)),
        I(insn(CALL, 0, 0, 0, FUNC_SK_ASSIGN)), // assigned or not: it passes
        I(insn(MOV64_X, 1, 7, 0, 0)),
        I(insn(CALL, 0, 0, 0, FUNC_SK_RELEASE)),
        Label("pass"),
        I(insn(MOV64_K, 0, 0, 0, 1)), // SK_PASS
        I(insn(EXIT, 0, 0, 0, 0)),
    ])
}

/// Words of the ports bitmap: a bit per port.
const PORT_WORDS: u32 = 65_536 / 32;

/// The program attached to this process's network namespace, and its
/// maps. Dropping it detaches the program.
#[derive(Debug)]
pub struct Steering {
    map: Map,
    _link: OwnedFd,
    id: u32,
}

impl Steering {
    /// Loads the program with a map of `max_entries` destinations and
    /// attaches it to this process's network namespace.
    pub fn attach(max_entries: u32) -> io::Result<Steering> {
        let mut create = MapCreate {
            map_type: BPF_MAP_TYPE_SOCKHASH,
            key_size: KEY as u32,
            value_size: 8,
            max_entries,
            map_name: *b"agentcluster\0\0\0\0",
            ..MapCreate::default()
        };
        let sockets = fd_of(bpf(BPF_MAP_CREATE, &mut create).map_err(|e| step("map", e))?);
        let mut create = MapCreate {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: PORT_WORDS,
            map_name: *b"agentcluster_p\0\0",
            ..MapCreate::default()
        };
        let ports = fd_of(bpf(BPF_MAP_CREATE, &mut create).map_err(|e| step("ports map", e))?);
        let insns = program(ports.as_raw_fd(), sockets.as_raw_fd());
        let license = c"GPL";
        let mut log = vec![0u8; 16 * 1024];
        let mut load = ProgLoad {
            prog_type: BPF_PROG_TYPE_SK_LOOKUP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: *b"agentcluster\0\0\0\0",
            expected_attach_type: BPF_SK_LOOKUP,
            ..ProgLoad::default()
        };
        let prog = match bpf(BPF_PROG_LOAD, &mut load) {
            Ok(fd) => fd_of(fd),
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EINVAL)) && log[0] != 0 =>
            {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let said = String::from_utf8_lossy(&log[..end]);
                return Err(io::Error::new(
                    e.kind(),
                    format!("the verifier refused the program: {}", said.trim()),
                ));
            }
            Err(e) => return Err(step("program", e)),
        };
        let netns = std::fs::File::open("/proc/self/ns/net")?;
        let mut link = LinkCreate {
            prog_fd: prog.as_raw_fd() as u32,
            target_fd: netns.as_raw_fd() as u32,
            attach_type: BPF_SK_LOOKUP,
            flags: 0,
        };
        let link = fd_of(bpf(BPF_LINK_CREATE, &mut link).map_err(|e| step("link", e))?);
        let id = map_id(&sockets)?;
        Ok(Steering {
            map: Map {
                sockets: Arc::new(sockets),
                ports: Arc::new((ports, Mutex::new(vec![0; PORT_WORDS as usize]))),
                room: Arc::new(AtomicUsize::new(max_entries as usize)),
            },
            _link: link,
            id,
        })
    }

    /// The id of its map of destinations (`bpftool map show id ID`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Its maps, through which destinations are steered.
    pub fn map(&self) -> Map {
        self.map.clone()
    }
}

/// `e` with what failed.
fn step(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn map_id(map: &OwnedFd) -> io::Result<u32> {
    let mut info = MapInfo::default();
    let mut get = InfoByFd {
        bpf_fd: map.as_raw_fd() as u32,
        info_len: size_of::<MapInfo>() as u32,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut get)?;
    Ok(info.id)
}

/// The steering maps, through which sockets are put in and taken out:
/// the destinations' sockets, and the ports they are at (a bitmap, kept
/// here too, so that setting a bit is one write).
#[derive(Debug, Clone)]
pub struct Map {
    sockets: Arc<OwnedFd>,
    ports: Arc<(OwnedFd, Mutex<Vec<u32>>)>,
    /// Destinations not yet reserved ([`Map::reserve`]).
    room: Arc<AtomicUsize>,
}

/// Room in the map for some destinations, kept until dropped
/// ([`Map::reserve`]).
#[derive(Debug)]
pub struct Reserved {
    n: usize,
    room: Arc<AtomicUsize>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.room.fetch_add(self.n, Ordering::Relaxed);
    }
}

impl Map {
    /// Room for `n` destinations, or `None` if the map has not that much
    /// left unreserved. Whoever steers destinations that have no socket of
    /// their own to fall back on reserves them first, and keeps the
    /// reservation as long as they are steered: the map's own count
    /// cannot be read, and an update to a full map fails.
    pub fn reserve(&self, n: usize) -> Option<Reserved> {
        self.room
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(n))
            .ok()?;
        Some(Reserved {
            n,
            room: self.room.clone(),
        })
    }

    /// Datagrams to `to` go to `socket` (a bound UDP socket) from now on,
    /// until the socket is closed or [`Map::unsteer`] is called.
    pub fn steer(&self, to: SocketAddr, socket: &impl AsRawFd) -> io::Result<()> {
        self.add_port(to.port())?;
        let k = key(to);
        let fd = socket.as_raw_fd() as u64;
        let mut elem = Elem {
            map_fd: self.sockets.as_raw_fd() as u32,
            key: k.as_ptr() as u64,
            value: std::ptr::from_ref(&fd) as u64,
            ..Elem::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut elem).map(drop)
    }

    /// Sets `port`'s bit (it stays set: a port once steered costs the
    /// other datagrams to it a hash lookup).
    fn add_port(&self, port: u16) -> io::Result<()> {
        let (fd, bits) = &*self.ports;
        let mut bits = bits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (word, bit) = (u32::from(port) / 32, 1u32 << (port % 32));
        let value = bits[word as usize] | bit;
        if value == bits[word as usize] {
            return Ok(());
        }
        let mut elem = Elem {
            map_fd: fd.as_raw_fd() as u32,
            key: std::ptr::from_ref(&word) as u64,
            value: std::ptr::from_ref(&value) as u64,
            ..Elem::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut elem)?;
        bits[word as usize] = value;
        Ok(())
    }

    /// Datagrams to `to` go to the socket bound to it again.
    pub fn unsteer(&self, to: SocketAddr) -> io::Result<()> {
        let k = key(to);
        let mut elem = Elem {
            map_fd: self.sockets.as_raw_fd() as u32,
            key: k.as_ptr() as u64,
            ..Elem::default()
        };
        bpf(BPF_MAP_DELETE_ELEM, &mut elem).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn bound(addr: &str) -> UdpSocket {
        let s = UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    #[test]
    fn datagrams_to_a_steered_address_reach_the_steering_socket() {
        let steering = match Steering::attach(64) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: cannot attach a BPF program here: {e}");
                return;
            }
        };
        assert_eq!(program(-1, -1).len(), 53, "as the module says");
        let map = steering.map();
        let device = bound("127.77.0.1:0");
        let other = bound("127.77.0.2:0");
        let receiver = bound("127.77.0.1:0");
        let to = device.local_addr().unwrap();
        map.steer(to, &receiver).unwrap();
        let client = bound("127.0.0.1:0");
        client.send_to(b"steered", to).unwrap();
        client.send_to(b"not", other.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"steered");
        let (n, _) = other.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"not");
        device.set_nonblocking(true).unwrap();
        assert!(
            device.recv_from(&mut buf).is_err(),
            "the device's own socket got it too"
        );
        // Closed, the steering socket leaves the map: its device's socket
        // gets what comes next.
        drop(receiver);
        client.send_to(b"back", to).unwrap();
        device.set_nonblocking(false).unwrap();
        let (n, _) = device.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
        // Unsteered by hand, likewise.
        let receiver = bound("127.77.0.1:0");
        map.steer(to, &receiver).unwrap();
        map.unsteer(to).unwrap();
        client.send_to(b"again", to).unwrap();
        let (n, _) = device.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"again");
        // Room is reserved until given back.
        let held = map.reserve(60).expect("room for 60 of 64");
        assert!(map.reserve(5).is_none(), "4 left");
        let four = map.reserve(4).expect("the last 4");
        drop(held);
        assert!(map.reserve(60).is_some());
        drop(four);
        // Without the program, nothing is steered.
        map.steer(to, &receiver).unwrap();
        drop(steering);
        client.send_to(b"detached", to).unwrap();
        let (n, _) = device.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"detached");
    }
}
