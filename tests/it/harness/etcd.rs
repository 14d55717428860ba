//! A real etcd for the scale-out tests: the `etcd` binary on two free
//! loopback ports with a data directory of its own, waited for until it
//! says it serves, and killed (SIGKILL, through [`Process`]) when the test
//! ends, pass or fail. Never the packaged daemon's default ports.

use std::process::Command;
use std::time::Duration;

use super::{Process, free_ports, tempdir};

/// A running etcd.
pub struct Etcd {
    _process: Process,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it serves clients.
    pub fn start() -> Etcd {
        let dir = tempdir();
        let ports = free_ports(2);
        let client = format!("http://127.0.0.1:{}", ports[0]);
        let peer = format!("http://127.0.0.1:{}", ports[1]);
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("test={peer}"));
        let process = Process::spawn(cmd);
        let ready = process.stderr.wait_for(0, Duration::from_secs(30), |l| {
            l.contains("ready to serve client requests")
        });
        assert!(
            ready.is_some(),
            "etcd did not start; it said:\n{}",
            process.stderr.tail(30)
        );
        Etcd {
            _process: process,
            endpoint: client,
            _dir: dir,
        }
    }

    /// The `cluster.etcd` lines of a fleet using this etcd under `prefix`
    /// (indented under `cluster:`).
    pub fn cluster_yaml(&self, prefix: &str, lease_ttl: &str) -> String {
        format!(
            "  etcd:\n    endpoints: [\"{}\"]\n    prefix: {prefix}\n    lease_ttl: {lease_ttl}\n",
            self.endpoint
        )
    }
}
