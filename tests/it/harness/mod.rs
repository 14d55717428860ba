//! What the integration tests share: the real `agentcluster` binary run on
//! loopback, each test in its own temporary directory with its own ports
//! ([`Fleet`], [`Process`], [`free_ports`]); the net-snmp tools; the library
//! items the tests use ([`imports`]); and the waits that prove a state, one
//! helper each:
//!
//! - a lifecycle event: [`Fleet::wait_event`] and [`EventStream`], which
//!   follow the supervisor's event stream from a `seq` taken before the
//!   test acts, so nothing it causes is missed;
//! - a line a process prints (a ready line, a log line, a notification
//!   snmptrapd received): [`Lines::wait_for`];
//! - a process's exit: [`Process::wait_exit`] and [`wait_gone`], on pidfds;
//! - for the few states nothing announces, the one bounded poll,
//!   [`poll_until`] (its module says which).
//!
//! Every wait is bounded and says, when it fails, what it waited for and
//! what it saw. Tests that load the machine run alone: see [`slot`].

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod events;
pub mod fleet;
pub mod imports;
pub mod poll;
pub mod ports;
pub mod process;
pub mod slot;
pub mod snmpd;
pub mod trapd;
pub mod walk;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

pub use events::{EventStream, WAIT, is, kinds_for, pid_in, ts_millis};
pub use fleet::{Fleet, agent, pid_of, status, table_rows};
pub use poll::poll_until;
pub use ports::{free_block, free_port, free_ports, ipv6_loopback};
pub use process::{Lines, Process, output, wait_gone};
pub use slot::{alone, alone_among, light};

use imports::{Signal, procs};

pub const BIN: &str = env!("CARGO_BIN_EXE_agentcluster");

/// A file of the repository.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// One of the repository's sample snapshots (or MIB files).
pub fn mib(name: &str) -> PathBuf {
    repo_file("mibs").join(name)
}

/// A temporary directory that agent processes can read: run as root, the
/// supervisor drops agents to `nobody`, and a default tempdir is 0700.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir()
        .expect("tempdir")
}

/// Runs `agentcluster` with arguments and returns its output.
pub fn agentcluster(args: &[&str]) -> Output {
    output(Command::new(BIN).args(args)).expect("run agentcluster")
}

/// Both outputs of a command, stdout first.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a net-snmp tool with MIB loading off (numeric output only) and a
/// bounded time.
pub fn snmp(tool: &str, args: &[&str]) -> Output {
    output(
        Command::new("timeout")
            .arg("120")
            .arg(tool)
            .args(["-m", "", "-M", "/dev/null", "-r", "2", "-t", "2"])
            .args(args)
            .env("MIBS", "")
            .env("SNMPCONFPATH", "/dev/null"),
    )
    .unwrap_or_else(|e| panic!("cannot run {tool} (net-snmp tools installed?): {e}"))
}

/// Runs a net-snmp tool and returns its stdout, failing on a non-zero exit.
pub fn snmp_ok(tool: &str, args: &[&str]) -> String {
    let out = snmp(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// snmpEngineBoots of the agent at `target` as net-snmp reads it
/// (SNMP-FRAMEWORK-MIB::snmpEngineBoots.0, noAuthNoPriv user `plain`);
/// `None` when it does not answer with one.
pub fn engine_boots(target: &str) -> Option<u32> {
    let out = snmp(
        "snmpget",
        &[
            "-v3",
            "-l",
            "noAuthNoPriv",
            "-u",
            "plain",
            "-On",
            "-Ov",
            target,
            "1.3.6.1.6.3.10.2.1.2.0",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().strip_prefix("INTEGER: ")?.parse().ok()
}

/// An snmpget of sysName.0 (community `public`) on 127.0.0.1:`port`
/// succeeds.
pub fn sys_name_ok(port: u16) {
    snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            &format!("127.0.0.1:{port}"),
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
}

/// Sends `sig` to process `pid`, which must exist.
pub fn kill(pid: u32, sig: Signal) {
    procs::signal(pid, sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// Whether process `pid` exists and has not exited (a zombie has).
pub fn is_alive(pid: u32) -> bool {
    procs::state(pid).is_some_and(|s| s != 'Z')
}

/// A v2c GETBULK (community `public`, request-id 7, non-repeaters 0,
/// max-repetitions 200) from sysDescr.0: an answer as large as the agent
/// allows.
pub const GETBULK_200: [u8; 41] = [
    0x30, 0x27, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa5, 0x1a, 0x02,
    0x01, 0x07, 0x02, 0x01, 0x00, 0x02, 0x02, 0x00, 0xc8, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b,
    6, 1, 2, 1, 1, 1, 0, 0x05, 0x00,
];

/// splitmix64: small and seedable, so a chaos or crash run can be repeated
/// from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the environment variable `var`, else from the clock;
    /// says which seed `test` runs with and how to repeat it.
    pub fn from_env(var: &str, test: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
            });
        eprintln!("{test}: seed {seed} (repeat with {var}={seed})");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in [0, n) (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration in `[lo, hi)` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}
