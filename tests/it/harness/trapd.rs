//! A real `snmptrapd` on a loopback port, in the foreground, logging each
//! notification as one line on stdout; killed when dropped.

use std::cell::Cell;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Process, free_port, tempdir};

/// How long [`Trapd::expect`] waits for a line.
const EXPECT_WITHIN: Duration = Duration::from_secs(10);

pub struct Trapd {
    process: Process,
    /// The next line [`Trapd::next`] or [`Trapd::expect`] looks at.
    cursor: Cell<usize>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Trapd {
    /// Starts snmptrapd with `conf` (its snmptrapd.conf) and waits until it
    /// listens. Each notification is logged as `%b|%P|%N|%w|%q|%v` (source
    /// address, security, enterprise, trap type, subtype, varbinds).
    pub fn start(conf: &str) -> Trapd {
        Trapd::start_on(conf, free_port())
    }

    /// Like [`Trapd::start`], on a port chosen before (a target that comes
    /// up late).
    pub fn start_on(conf: &str, port: u16) -> Trapd {
        let dir = tempdir();
        let conf_path = dir.path().join("snmptrapd.conf");
        std::fs::write(&conf_path, conf).expect("write snmptrapd.conf");
        let mut cmd = Command::new("snmptrapd");
        cmd.args(["-f", "-Lo", "-C", "-c"])
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
            .env("MIBS", "");
        let trapd = Trapd {
            process: Process::spawn(cmd),
            cursor: Cell::new(0),
            port,
            _dir: dir,
        };
        trapd.expect("NET-SNMP version");
        trapd
    }

    /// The next logged line, if one comes `within`.
    pub fn next(&self, within: Duration) -> Option<String> {
        let i = self
            .process
            .stdout
            .wait_for(self.cursor.get(), within, |_| true)?;
        self.cursor.set(i + 1);
        self.process.stdout.get(i)
    }

    /// The next line containing `needle` (bounded wait: 10 s); the lines
    /// before it are passed over.
    pub fn expect(&self, needle: &str) -> String {
        let from = self.cursor.get();
        let begun = Instant::now();
        let Some(i) = self
            .process
            .stdout
            .wait_for(from, EXPECT_WITHIN, |l| l.contains(needle))
        else {
            panic!(
                "snmptrapd never logged {needle:?} within {:?}; it logged {:?}",
                begun.elapsed(),
                self.process.stdout.range(from, usize::MAX)
            );
        };
        self.cursor.set(i + 1);
        self.process.stdout.get(i).unwrap_or_default()
    }
}
