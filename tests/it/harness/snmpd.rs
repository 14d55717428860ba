//! A real net-snmp `snmpd` on a loopback port, in the foreground, with a
//! configuration and persistent directory of its own; killed when dropped.

use std::process::Command;
use std::time::Duration;

use super::{Process, free_port, tempdir};

pub struct Snmpd {
    _process: Process,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Snmpd {
    /// Starts snmpd with `conf` as its only configuration (`-C -c`) and
    /// waits until it serves.
    pub fn start(conf: &str) -> Snmpd {
        let dir = tempdir();
        let port = free_port();
        let conf_path = dir.path().join("snmpd.conf");
        std::fs::write(&conf_path, conf).expect("write snmpd.conf");
        let persist = dir.path().join("persist");
        let mut cmd = Command::new("snmpd");
        cmd.args(["-f", "-Lo", "-C", "-c"])
            .arg(&conf_path)
            .args(["-M", "/dev/null", "-m", "", "-p"])
            .arg(dir.path().join("snmpd.pid"))
            .arg(format!("udp:127.0.0.1:{port}"))
            .env("SNMP_PERSISTENT_DIR", &persist)
            .env("MIBS", "");
        let process = Process::spawn(cmd);
        let ready = process.stdout.wait_for(0, Duration::from_secs(30), |l| {
            l.contains("NET-SNMP version")
        });
        assert!(
            ready.is_some(),
            "snmpd did not start: {}",
            process.stdout.tail(20)
        );
        Snmpd {
            _process: process,
            port,
            _dir: dir,
        }
    }
}
