//! Prometheus metrics (`cluster.metrics`), end to end: a fleet serves
//! `/metrics` on a loopback port, answers SNMP requests (and drops one with
//! a bad community), loses an agent to SIGKILL and restarts it; what
//! `/metrics` says is read back by an independent parser, the Python
//! `prometheus_client` package's `text_string_to_metric_families` (from
//! `target/pysnmp-venv`, which `scripts/test` makes).
//!
//! The kill and the restart are waited on through the event stream. What
//! the agents count reaches the supervisor in their heartbeats, which
//! nothing announces, so those values (and the pending inform, which the
//! notification sink takes in on its own task) are waited for with the
//! bounded poll.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use crate::harness::imports::Signal;
use crate::harness::{
    Fleet, free_port, is, kill, mib, pid_of, poll_until, repo_file, snmp, snmp_ok, status,
};

/// Reads the exposition back with prometheus_client's parser: one
/// `{family, type, help, name, labels, value}` per sample.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append({"family": f.name, "type": f.type, "help": f.documentation,
                    "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// The interpreter with prometheus_client: `$AGENTCLUSTER_PROMETHEUS_PYTHON`,
/// else the venv `scripts/test` makes.
fn python() -> PathBuf {
    let p = std::env::var_os("AGENTCLUSTER_PROMETHEUS_PYTHON")
        .map_or_else(|| repo_file("target/pysnmp-venv/bin/python"), PathBuf::from);
    let ok = Command::new(&p)
        .args(["-c", "import prometheus_client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no prometheus_client: run scripts/test (it installs it into target/pysnmp-venv)",
        p.display()
    );
    p
}

/// One HTTP/1.1 request: the status code, the headers and the body.
fn http(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (code, head.to_string(), body.to_string())
}

/// A scrape, parsed.
struct Scrape {
    text: String,
    samples: Vec<Json>,
}

impl Scrape {
    fn take(port: u16, python: &PathBuf) -> Scrape {
        let (code, head, text) = http(port, "GET", "/metrics");
        assert_eq!(code, 200, "{head}\n{text}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let mut child = Command::new(python)
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the parser");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the parser refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let samples: Json = serde_json::from_slice(&out.stdout).unwrap();
        Scrape {
            text,
            samples: samples.as_array().unwrap().clone(),
        }
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .and_then(|s| s["value"].as_f64())
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.text))
    }

    /// The family of sample `name`: (type, help).
    fn family(&self, name: &str) -> (String, String) {
        let s = self
            .samples
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.text));
        (
            s["type"].as_str().unwrap_or_default().to_string(),
            s["help"].as_str().unwrap_or_default().to_string(),
        )
    }
}

fn agent(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n",
        mib("linux-host.snmprec").display()
    )
}

#[test]
fn metrics_are_read_back_by_prometheus_clients_parser() {
    let python = python();
    let (metrics, alpha, beta, nobody) = (free_port(), free_port(), free_port(), free_port());
    let fleet = Fleet::start(&format!(
        "  heartbeat: 200ms
  inactive_after: 5s
  metrics: {{ listen: \"127.0.0.1:{metrics}\" }}
events:
  notify:
    - target: \"127.0.0.1:{nobody}\"
      version: 2c
      type: inform
      community: public
      timeout: 200ms
      retries: 0
      events: [died]
agents:
{}{}",
        agent("alpha", alpha),
        agent("beta", beta)
    ));
    let control = fleet.control();
    let sent = 5;
    for _ in 0..sent {
        snmp_ok(
            "snmpget",
            &[
                "-v2c",
                "-c",
                "public",
                &format!("127.0.0.1:{alpha}"),
                "1.3.6.1.2.1.1.5.0",
            ],
        );
    }
    let refused = snmp(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "not-the-community",
            "-r",
            "0",
            "-t",
            "0.3",
            &format!("127.0.0.1:{alpha}"),
            "1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(!refused.status.success());
    // The agent's next heartbeats bring its counts.
    poll_until(
        "alpha's requests and drop in /metrics",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let s = Scrape::take(metrics, &python);
            let requests = s.value("agentcluster_agent_requests_total", &[("agent", "alpha")]);
            let dropped = s.value(
                "agentcluster_agent_dropped_total",
                &[("agent", "alpha"), ("reason", "bad_community")],
            );
            match (requests, dropped) {
                (Some(r), Some(d)) if r >= f64::from(sent) && d >= 1.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );

    // SIGKILL alpha; it comes back.
    let old = pid_of(&status(&control), "alpha");
    let since = fleet.next_seq();
    kill(old, Signal::SIGKILL);
    fleet.wait_event(since, "alpha ready again", |e| {
        is(e, "alpha", "ready") && e["restarts"] == 1
    });
    // The died inform has no receiver: it stays pending.
    let target = format!("127.0.0.1:{nobody} (v2c inform)");
    let s = poll_until(
        "the died inform pending",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let s = Scrape::take(metrics, &python);
            match s.value("agentcluster_informs_pending", &[("target", &target)]) {
                Some(1.0) => Ok(s),
                other => Err(format!("{other:?}")),
            }
        },
    );
    for name in ["alpha", "beta"] {
        assert_eq!(
            s.get(
                "agentcluster_agent_state",
                &[("agent", name), ("state", "running")]
            ),
            1.0
        );
        assert!(
            s.get(
                "agentcluster_agent_start_latency_seconds",
                &[("agent", name)]
            ) > 0.0,
            "{}",
            s.text
        );
    }
    assert_eq!(
        s.samples
            .iter()
            .filter(|x| x["name"] == "agentcluster_agent_state")
            .count(),
        2,
        "one state series per agent"
    );
    assert_eq!(
        s.get("agentcluster_agent_restarts_total", &[("agent", "alpha")]),
        1.0
    );
    assert_eq!(
        s.get("agentcluster_agent_restarts_total", &[("agent", "beta")]),
        0.0
    );
    // What the killed process had served is still counted.
    assert!(
        s.get("agentcluster_agent_requests_total", &[("agent", "alpha")]) >= f64::from(sent),
        "{}",
        s.text
    );
    assert!(
        s.get(
            "agentcluster_agent_dropped_total",
            &[("agent", "alpha"), ("reason", "bad_community")]
        ) >= 1.0
    );
    assert_eq!(s.get("agentcluster_events_total", &[("kind", "died")]), 1.0);
    assert_eq!(
        s.get("agentcluster_events_total", &[("kind", "ready")]),
        3.0
    );
    assert_eq!(s.get("agentcluster_start_tokens_in_use", &[]), 0.0);
    assert_eq!(s.get("agentcluster_agents_configured", &[]), 2.0);
    assert_eq!(s.get("agentcluster_agents", &[("state", "running")]), 2.0);
    assert_eq!(
        s.get("agentcluster_sink_lost_events_total", &[("sink", "notify")]),
        0.0
    );
    // HELP and TYPE, as the parser read them.
    for (name, kind) in [
        ("agentcluster_agent_state", "gauge"),
        ("agentcluster_agent_restarts_total", "counter"),
        ("agentcluster_agent_requests_total", "counter"),
        ("agentcluster_agent_dropped_total", "counter"),
        ("agentcluster_agent_start_latency_seconds", "gauge"),
        ("agentcluster_events_total", "counter"),
        ("agentcluster_informs_pending", "gauge"),
        ("agentcluster_start_tokens_in_use", "gauge"),
    ] {
        let (t, help) = s.family(name);
        assert_eq!(t, kind, "{name}");
        assert!(!help.is_empty(), "{name} has no HELP");
    }
    let helps = s.text.lines().filter(|l| l.starts_with("# HELP ")).count();
    let types = s.text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert!(helps >= 13 && helps == types, "{}", s.text);
    // Other paths and methods.
    let (code, _, body) = http(metrics, "GET", "/");
    assert_eq!(code, 404, "{body}");
    let (code, _, _) = http(metrics, "POST", "/metrics");
    assert_eq!(code, 405);
    let (code, head, body) = http(metrics, "HEAD", "/metrics");
    assert_eq!((code, body.as_str()), (200, ""), "{head}");
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{stderr}");
}

/// A metrics port that is taken stops the start, naming it.
#[test]
fn a_taken_metrics_port_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = crate::harness::tempdir();
    let path = dir.path().join("fleet.yaml");
    std::fs::write(
        &path,
        format!(
            "cluster:\n  cache_dir: {d}/cache\n  state_dir: {d}/state\n  control_socket: {d}/control.sock\n  metrics: {{ listen: \"127.0.0.1:{port}\" }}\nagents:\n{}",
            agent("alpha", free_port()),
            d = dir.path().display()
        ),
    )
    .unwrap();
    // Bounded, should the start not fail.
    let out = crate::harness::output(
        Command::new("timeout")
            .args(["60", crate::harness::BIN, "run", "-c"])
            .arg(&path),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cluster.metrics: cannot listen on tcp 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}
