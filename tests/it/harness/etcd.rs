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

/// Writing keys as a node does, through the supervisor crate's client.
#[cfg(feature = "etcd")]
impl Etcd {
    /// This etcd under `prefix`, as a node's `cluster.etcd` has it.
    pub fn conf(&self, prefix: &str) -> super::imports::EtcdConf {
        super::imports::EtcdConf {
            endpoints: vec![self.endpoint.clone()],
            prefix: prefix.to_string(),
            lease_ttl: Duration::from_secs(10),
            serves: None,
        }
    }

    /// A runtime and a client of this etcd (a test that publishes keeps
    /// both while it runs).
    pub fn client(&self) -> (tokio::runtime::Runtime, super::imports::EtcdClient) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = runtime
            .block_on(super::imports::etcd_connect(&self.conf("/")))
            .unwrap();
        (runtime, client)
    }

    /// Writes `value` at `key`.
    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) {
        let (runtime, mut client) = self.client();
        runtime.block_on(client.put(key, value, None)).unwrap();
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        let (runtime, mut client) = self.client();
        runtime.block_on(client.delete(key, None)).unwrap();
    }
}
