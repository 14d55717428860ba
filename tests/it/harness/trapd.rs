//! A real `snmptrapd` on a loopback port, in the foreground, logging each
//! notification as one line on stdout; killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Trapd {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Trapd {
    /// Starts snmptrapd with `conf` (its snmptrapd.conf) and waits until it
    /// listens. Each notification is logged as
    /// `%b|%P|%N|%w|%q|%v` (source address, security, enterprise, trap type, subtype, varbinds).
    pub fn start(conf: &str) -> Trapd {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr").port()
        };
        Trapd::start_on(conf, port)
    }

    /// Like [`Trapd::start`], on a port chosen before (a target that comes
    /// up late).
    pub fn start_on(conf: &str, port: u16) -> Trapd {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf_path = dir.path().join("snmptrapd.conf");
        std::fs::write(&conf_path, conf).expect("write snmptrapd.conf");
        let mut child = Command::new("snmptrapd")
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(&conf_path)
            .args([
                "-M",
                "/dev/null",
                "-m",
                "",
                "-On",
                "-F",
                "%b|%P|%N|%w|%q|%v\n",
            ])
            .arg(format!("udp:127.0.0.1:{port}"))
            .env("SNMP_PERSISTENT_DIR", dir.path().join("persist"))
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("snmptrapd (net-snmp) installed");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let trapd = Trapd {
            child,
            lines: rx,
            port,
            _dir: dir,
        };
        trapd.expect("NET-SNMP version");
        trapd
    }

    /// The next logged line, if one comes `within`.
    pub fn next(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// The next line containing `needle` (bounded wait: 10 s).
    pub fn expect(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("snmptrapd never logged {needle:?}; it logged {seen:?}"),
            }
        }
    }
}

impl Drop for Trapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
