//! A running supervisor, `agentcluster run`, on a fleet written into a
//! temporary directory: started, waited for until its ready line (never a
//! sleep), asked for its status and events over its control socket, and
//! killed when the test ends, pass or fail.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value as Json;

use rustix::process::Signal;

use super::events::{self, EventStream};
use super::{BIN, Lines, Process, agentcluster, tempdir};

/// How long a supervisor may take to print its ready line.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// The last line of the ready block `agentcluster run` prints on stdout.
const READY_END: &str = "Stop with Ctrl-C.";

impl Process {
    /// `agentcluster run -c CONFIG`, not waited for.
    pub fn run(config: &Path) -> Process {
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("-c").arg(config);
        Process::spawn(cmd)
    }

    /// Waits (at most `within`) for the ready block of `agentcluster run`
    /// and returns it; `Err` says why not (the process ended, or the time
    /// passed) with the end of its log.
    pub fn wait_ready(&self, within: Duration) -> Result<Vec<String>, String> {
        match self.stdout.wait_for(0, within, |l| l == READY_END) {
            Some(end) => {
                let banner = self.stdout.range(0, end + 1);
                assert!(
                    banner
                        .iter()
                        .any(|l| l.starts_with("agentcluster: ") && l.contains(" ready")),
                    "a ready block without its ready line: {banner:?}"
                );
                Ok(banner)
            }
            None => Err(format!(
                "agentcluster did not become ready within {within:?}; stdout: {:?}; stderr ends with:\n{}",
                self.stdout.text(),
                self.stderr.tail(30)
            )),
        }
    }

    /// [`Process::wait_ready`] within [`READY_WITHIN`], failing the test
    /// (saying `what` was starting) if it is not.
    pub fn assert_ready(&self, what: &str) -> Vec<String> {
        self.wait_ready(READY_WITHIN)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// A running `agentcluster run` on a fleet in its own directory.
pub struct Fleet {
    process: Process,
    control: String,
    pub dir: tempfile::TempDir,
    /// The stdout lines up to and including the ready line.
    pub banner: Vec<String>,
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
    pub fn start_with(yaml: &str, env: &[(&str, &OsStr)]) -> Fleet {
        Fleet::start_args(&[], yaml, env)
    }

    /// [`Fleet::start_with`] with global options before `run` (`-vvv`,
    /// `--log-format json`).
    pub fn start_args(args: &[&str], yaml: &str, env: &[(&str, &OsStr)]) -> Fleet {
        Fleet::start_in(tempdir(), args, yaml, env)
    }

    /// [`Fleet::start_args`] in `dir`, a directory the test made (one that
    /// agent processes cannot read, say).
    pub fn start_in(
        dir: tempfile::TempDir,
        args: &[&str],
        yaml: &str,
        env: &[(&str, &OsStr)],
    ) -> Fleet {
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

    /// Starts an arbitrary `agentcluster` command that prints a ready line,
    /// with `dir` as its directory, and waits until it is ready.
    pub fn spawn(cmd: Command, dir: tempfile::TempDir) -> Fleet {
        let control = dir.path().join("control.sock").display().to_string();
        Fleet::ready(Process::spawn(cmd), control, dir)
    }

    /// `agentcluster run -c CONFIG` on a fleet file of the test's own,
    /// whose control socket is `control` (its state outlives this run),
    /// waited for until it is ready.
    pub fn run(config: &Path, control: &str) -> Fleet {
        Fleet::ready(Process::run(config), control.to_string(), tempdir())
    }

    fn ready(process: Process, control: String, dir: tempfile::TempDir) -> Fleet {
        let banner = process.assert_ready("the fleet");
        Fleet {
            process,
            control,
            dir,
            banner,
        }
    }

    /// The fleet file [`Fleet::start`] wrote.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("fleet.yaml")
    }

    /// The control socket's path, for `--control`.
    pub fn control(&self) -> String {
        self.control.clone()
    }

    /// `status --json`: one object per agent.
    pub fn status(&self) -> Vec<Json> {
        status(&self.control())
    }

    /// Every event the supervisor keeps.
    pub fn events(&self) -> Vec<Json> {
        events::events(&self.control())
    }

    /// The `seq` of the next event: take it before acting, follow from it.
    pub fn next_seq(&self) -> u64 {
        events::next_seq(&self.control())
    }

    /// The event stream from `since` on.
    pub fn follow(&self, since: u64) -> EventStream {
        EventStream::follow(&self.control(), since)
    }

    /// The first event from `since` on for which `pred` holds (see
    /// [`EventStream::wait`]).
    pub fn wait_event(&self, since: u64, what: &str, pred: impl FnMut(&Json) -> bool) -> Json {
        self.follow(since).wait(what, pred)
    }

    /// Every event from the first on, once `pred` holds of them (see
    /// [`EventStream::wait_all`]).
    pub fn wait_events(&self, what: &str, pred: impl FnMut(&[Json]) -> bool) -> Vec<Json> {
        self.follow(1).wait_all(what, pred).to_vec()
    }

    /// The supervisor's log (its agents' too), as it comes.
    pub fn stderr(&self) -> &Lines {
        &self.process.stderr
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops the fleet with SIGTERM and returns (exit status, stderr).
    pub fn stop(self) -> (ExitStatus, String) {
        self.process.stop()
    }

    /// Sends `signal` to the supervisor (false once it has exited).
    pub fn signal(&self, signal: Signal) -> bool {
        self.process.signal(signal)
    }

    /// Waits for a supervisor already told to stop ([`Fleet::signal`]) to
    /// exit, and returns (exit status, stderr).
    pub fn finish(self) -> (ExitStatus, String) {
        self.process.finish()
    }
}

/// `agentcluster status --json --control CONTROL`: one object per agent.
pub fn status(control: &str) -> Vec<Json> {
    let out = agentcluster(&["status", "--json", "--control", control]);
    assert!(out.status.success(), "status failed: {out:?}");
    serde_json::from_slice(&out.stdout).expect("status --json is a JSON array")
}

/// Agent `name` in a status.
pub fn agent<'a>(status: &'a [Json], name: &str) -> &'a Json {
    status
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in status: {status:?}"))
}

/// The rows of a status table (`status`, `status --cluster`: after its
/// summary line and its header), each split into its cells.
pub fn table_rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// The pid of agent `name`'s process in a status.
pub fn pid_of(status: &[Json], name: &str) -> u32 {
    agent(status, name)["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("{name} has no pid: {status:?}"))
}
