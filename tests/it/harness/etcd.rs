//! A real etcd for the scale-out tests: the `etcd` binary on two free
//! loopback ports with a data directory of its own, waited for until it
//! says it serves, and killed (SIGKILL, through [`Process`]) when the test
//! ends, pass or fail. Never the packaged daemon's default ports.

use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value as Json;

use super::{Process, free_ports, output, tempdir};

/// A key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    /// The revision that created it (a key re-created gets a new one).
    pub create_revision: i64,
    /// Its lease (0: none).
    pub lease: i64,
}

/// A running etcd.
pub struct Etcd {
    process: Process,
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
            process,
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

    /// Sends `signal` to etcd (SIGSTOP: it stops answering, its clients'
    /// connections stay open; SIGCONT: it goes on).
    pub fn signal(&self, signal: Signal) {
        assert!(self.process.signal(signal), "etcd is gone");
    }

    /// POSTs `body` to etcd's JSON gateway (`/v3/PATH`).
    fn call(&self, path: &str, body: &Json) -> Json {
        let out = output(Command::new("curl").args([
            "-sS",
            "--max-time",
            "10",
            &format!("{}/v3/{path}", self.endpoint),
            "-d",
            &body.to_string(),
        ]))
        .expect("run curl");
        assert!(out.status.success(), "curl {path}: {out:?}");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {out:?}"))
    }

    /// Every key under `prefix`, sorted, and the store's revision.
    pub fn range(&self, prefix: &str) -> (Vec<Kv>, i64) {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let got = self.call(
            "kv/range",
            &serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)}),
        );
        let kvs = got["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| Kv {
                        key: unb64(kv["key"].as_str().unwrap_or("")),
                        value: unb64(kv["value"].as_str().unwrap_or("")),
                        create_revision: number(&kv["create_revision"]),
                        lease: number(&kv["lease"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        (kvs, number(&got["header"]["revision"]))
    }

    /// Writes `key` (no lease); returns the new revision.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        let got = self.call(
            "kv/put",
            &serde_json::json!({"key": b64(key.as_bytes()), "value": b64(value.as_bytes())}),
        );
        number(&got["header"]["revision"])
    }

    /// Compacts the history up to `revision`: a watch that has not sent
    /// the events before it is cancelled.
    pub fn compact(&self, revision: i64) {
        self.call(
            "kv/compaction",
            &serde_json::json!({"revision": revision.to_string(), "physical": true}),
        );
    }
}

/// The gateway writes 64-bit numbers as strings.
fn number(v: &Json) -> i64 {
    match v {
        Json::String(s) => s.parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, as the gateway wants keys and values.
fn b64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(text: &str) -> String {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|b| *b == c).expect("base64") as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n & 0xff) as u8);
        }
    }
    String::from_utf8(out).expect("UTF-8 key or value")
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

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        let (runtime, mut client) = self.client();
        runtime.block_on(client.delete(key, None)).unwrap();
    }
}
