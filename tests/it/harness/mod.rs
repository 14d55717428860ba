//! Test harness: runs the real `agentcluster` binary on loopback with a
//! fleet written into a temporary directory, waits for its ready line (never
//! a sleep), and kills it when the test ends, pass or fail.

#![allow(dead_code)]

pub mod trapd;
pub mod walk;

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_agentcluster");

/// The repository's sample snapshots.
pub fn mib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("mibs")
        .join(name)
}

/// A UDP port that was free a moment ago on 127.0.0.1 (and, where IPv6
/// loopback exists, on ::1 too).
pub fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = s.local_addr().expect("local addr").port();
        if !ipv6_loopback() || UdpSocket::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}

/// `n` distinct UDP ports that were free a moment ago (held together while
/// choosing, so none is handed out twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = s.local_addr().expect("local addr").port();
        if !ipv6_loopback() || UdpSocket::bind(("::1", port)).is_ok() {
            held.push(s);
        }
    }
    held.iter()
        .map(|s| s.local_addr().expect("local addr").port())
        .collect()
}

/// Whether this machine has a usable ::1.
pub fn ipv6_loopback() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
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

/// A running `agentcluster run`. Killed on drop.
pub struct Fleet {
    child: Child,
    pub dir: tempfile::TempDir,
    /// The stdout lines up to and including the ready line.
    pub banner: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl Fleet {
    /// Starts `agentcluster run -c fleet.yaml` with `yaml` after `cluster:`
    /// lines for the cache, state and control socket in the fleet's own
    /// directory (so `yaml` may go on with more `  key: value` cluster
    /// lines), and waits until it is ready.
    pub fn start(yaml: &str) -> Fleet {
        Fleet::start_with(yaml, &[])
    }

    /// [`Fleet::start`] with extra environment variables.
    pub fn start_with(yaml: &str, env: &[(&str, &std::ffi::OsStr)]) -> Fleet {
        Fleet::start_args(&[], yaml, env)
    }

    /// [`Fleet::start_with`] with global options before `run` (`-vvv`,
    /// `--log-format json`).
    pub fn start_args(args: &[&str], yaml: &str, env: &[(&str, &std::ffi::OsStr)]) -> Fleet {
        let dir = tempdir();
        let text = format!(
            "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\n{}",
            dir.path().join("cache").display(),
            dir.path().join("state").display(),
            dir.path().join("control.sock").display(),
            yaml
        );
        let path = dir.path().join("fleet.yaml");
        std::fs::write(&path, text).expect("write fleet");
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("run").arg("-c").arg(&path);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Fleet::spawn(cmd, dir)
    }

    /// Starts an arbitrary `agentcluster` command that prints a ready line.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Fleet {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn agentcluster");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            let _ = etx.send(s);
        });
        let mut fleet = Fleet {
            child,
            dir,
            banner: Vec::new(),
            stderr: erx,
        };
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    // The ready block: "agentcluster: N agents ready …",
                    // how to query them, and a closing line.
                    let end = line == "Stop with Ctrl-C.";
                    fleet.banner.push(line);
                    if end {
                        assert!(
                            fleet
                                .banner
                                .iter()
                                .any(|l| l.starts_with("agentcluster: ") && l.contains(" ready")),
                            "{:?}",
                            fleet.banner
                        );
                        break;
                    }
                }
                Err(_) => {
                    let _ = fleet.child.kill();
                    let _ = fleet.child.wait();
                    let err = fleet.stderr.recv_timeout(Duration::from_secs(5));
                    panic!(
                        "agentcluster did not become ready; stdout: {:?}; stderr: {}",
                        fleet.banner,
                        err.unwrap_or_default()
                    );
                }
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        fleet
    }

    /// The control socket's path, for `--control`.
    pub fn control(&self) -> String {
        self.dir.path().join("control.sock").display().to_string()
    }

    /// `status --json`: one object per agent.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let out = agentcluster(&["status", "--json", "--control", &self.control()]);
        assert!(out.status.success(), "status failed: {out:?}");
        serde_json::from_slice(&out.stdout).expect("status --json is a JSON array")
    }

    /// Every record of `events --since 1 --json`, gap markers included.
    pub fn event_records(&self) -> Vec<serde_json::Value> {
        let out = agentcluster(&[
            "events",
            "--since",
            "1",
            "--json",
            "--control",
            &self.control(),
        ]);
        assert!(out.status.success(), "events failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the fleet with SIGTERM and returns (exit status, stderr).
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = wait_timeout(&mut self.child, Duration::from_secs(20));
        let err = self
            .stderr
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        (status, err)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait");
        }
        // Polling a child's exit with a short pause is the portable way
        // without a reaper thread; it only runs while a test stops a fleet.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a net-snmp tool with MIB loading off (numeric output only) and a
/// bounded time.
pub fn snmp(tool: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg(tool)
        .args(["-m", "", "-M", "/dev/null", "-r", "2", "-t", "2"])
        .args(args)
        .env("MIBS", "")
        .env("SNMPCONFPATH", "/dev/null")
        .stdin(Stdio::null())
        .output()
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

/// Runs `agentcluster` with arguments and returns its output.
pub fn agentcluster(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run agentcluster")
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
}
