//! Crash consistency (issue 7, item 4), with the real binary, SIGKILL and
//! net-snmp: the supervisor is killed with `kill -9` at random moments
//! (seeded; each test prints its seed, `CRASH_SEED=N` repeats a run) while
//! it writes the KVP pool, persists snmpEngineBoots and spools informs, and
//! is started again on the same files each time.
//!
//! Waits are on the supervisor's ready line, its event stream, snmptrapd's
//! log and process exits; on bounded polls only for what nothing announces
//! (the pool and the spool as the supervisor writes them, ports the kernel
//! frees). The sleeps, and the spins that aim a kill at a write in
//! progress, are the random moments of the kills themselves.

mod boots;
mod informs;
mod kvp;
mod pool;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::{agentcluster, mib, poll_until};

/// Waits until every agent port can be bound again: the agent processes of
/// a killed supervisor go (PR_SET_PDEATHSIG), so the next one can bind.
/// Only a bind shows that the kernel let go of a port.
fn wait_ports_free(ports: &[u16]) {
    poll_until(
        "the agents of the killed supervisor to free their ports",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let held: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| UdpSocket::bind(("127.0.0.1", *p)).is_err())
                .collect();
            if held.is_empty() {
                Ok(())
            } else {
                Err(format!("ports still held: {held:?}"))
            }
        },
    );
}

/// A fleet file in `dir` (state, cache and control socket there too).
fn write_config(dir: &Path, node: &str, cluster: &str, rest: &str) -> PathBuf {
    let path = dir.join("fleet.yaml");
    let text = format!(
        "cluster:\n  node: {node}\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\n{cluster}{rest}",
        dir.join("cache").display(),
        dir.join("state").display(),
        dir.join("control.sock").display(),
    );
    std::fs::write(&path, text).expect("write the fleet");
    path
}

/// `agents:` with one agent per port, named `<prefix><i>`, sending no
/// notifications of their own; `extra` is added to each.
fn agents_yaml(prefix: &str, ports: &[u16], extra: &str) -> String {
    let mut y = String::from("agents:\n");
    for (i, port) in ports.iter().enumerate() {
        y += &format!(
            "  - name: {prefix}{i}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    notify: none\n{extra}",
            mib("linux-host.snmprec").display()
        );
    }
    y
}

fn control_of(dir: &Path) -> String {
    dir.join("control.sock").display().to_string()
}

/// `agentcluster restart --control C '*'` in a loop until stopped: a steady
/// stream of lifecycle events (stopping, stopped, starting, ready, …).
struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Churn {
    fn start(control: String, pause: Duration) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut done = 0;
            while !flag.load(Ordering::Relaxed) {
                let out = agentcluster(&["restart", "--control", &control, "*"]);
                if out.status.success() {
                    done += 1;
                }
                // Pace of the load, not a wait for anything.
                std::thread::sleep(pause);
            }
            done
        });
        Churn {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the loop; how many restarts were accepted.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Identity of the temporary files present now (to tell a new one).
fn tmp_stamps(paths: &[PathBuf]) -> HashSet<(PathBuf, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .filter_map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((p.clone(), m.ino(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}
