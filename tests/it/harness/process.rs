//! A child process of a test: its output kept line by line as it comes
//! ([`Lines`], which a test waits on), its exit seen through a pidfd
//! (never by polling), and a SIGKILL when the test ends, pass or fail.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::slot::{self, Slot};

/// How long a process gets to exit after SIGTERM before it is killed and
/// the test fails.
pub const STOP_WITHIN: Duration = Duration::from_secs(20);

/// The lines a process writes on one pipe, kept as they come, until the
/// pipe ends (when the process and every process that inherited the pipe
/// have closed it).
#[derive(Clone)]
pub struct Lines(Arc<(Mutex<Captured>, Condvar)>);

#[derive(Default)]
struct Captured {
    lines: Vec<String>,
    ended: bool,
}

impl Lines {
    /// Reads `pipe` on a thread of its own.
    fn capture(pipe: impl Read + Send + 'static) -> Lines {
        let lines = Lines(Arc::default());
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        sink.update(|c| c.lines.push(line.trim_end_matches('\n').to_string()));
                    }
                }
            }
            sink.update(|c| c.ended = true);
        });
        lines
    }

    fn update(&self, f: impl FnOnce(&mut Captured)) {
        let (lock, changed) = &*self.0;
        f(&mut lock.lock().unwrap_or_else(PoisonError::into_inner));
        changed.notify_all();
    }

    fn read<T>(&self, f: impl FnOnce(&Captured) -> T) -> T {
        f(&self.0.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many lines came so far: where a wait for what comes next starts.
    pub fn len(&self) -> usize {
        self.read(|c| c.lines.len())
    }

    /// Line `i`.
    pub fn get(&self, i: usize) -> Option<String> {
        self.read(|c| c.lines.get(i).cloned())
    }

    /// Lines `from..to`.
    pub fn range(&self, from: usize, to: usize) -> Vec<String> {
        self.read(|c| c.lines[from.min(c.lines.len())..to.min(c.lines.len())].to_vec())
    }

    /// Every line so far, joined.
    pub fn text(&self) -> String {
        self.read(|c| c.lines.join("\n"))
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        self.read(|c| c.lines[c.lines.len().saturating_sub(n)..].join("\n"))
    }

    /// The index of the first line at `from` or later for which `pred`
    /// holds; `None` when the pipe ends or `within` passes first.
    pub fn wait_for(
        &self,
        from: usize,
        within: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<usize> {
        let deadline = Instant::now() + within;
        let (lock, changed) = &*self.0;
        let mut c = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = from;
        loop {
            while let Some(line) = c.lines.get(next) {
                if pred(line) {
                    return Some(next);
                }
                next += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if c.ended || left.is_zero() {
                return None;
            }
            c = changed
                .wait_timeout(c, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until the pipe ends; false if `within` passes first.
    pub fn wait_end(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let (lock, changed) = &*self.0;
        let mut c = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !c.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = changed
                .wait_timeout(c, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// Runs a one-shot command to its end, stdin from /dev/null, and returns
/// its output. It takes no slot: the threads a test spawns run commands too
/// (the SNMPv3 matrix, the crash tests' restart churn), and a slot taken on
/// one of them while its test runs alone would wait for that test forever.
pub fn output(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).output()
}

/// A child process with its stdout and stderr captured. It holds a light
/// [`Slot`] while it lives, and is killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    pidfd: OwnedFd,
    pub stdout: Lines,
    pub stderr: Lines,
    exit: Option<ExitStatus>,
    _slot: Slot,
}

impl Process {
    /// Starts `cmd` with stdin from /dev/null and both outputs captured.
    pub fn spawn(mut cmd: Command) -> Process {
        let slot = slot::light();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let pidfd = open_pidfd(child.id()).expect("pidfd of our own child");
        let stdout = Lines::capture(child.stdout.take().expect("piped stdout"));
        let stderr = Lines::capture(child.stderr.take().expect("piped stderr"));
        Process {
            child,
            pidfd,
            stdout,
            stderr,
            exit: None,
            _slot: slot,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to this very process (through its pidfd, so never to
    /// another that got its pid); false once it has exited.
    pub fn signal(&self, signal: Signal) -> bool {
        self.exit.is_none() && pidfd_send_signal(&self.pidfd, signal).is_ok()
    }

    /// Its exit status once it exits, within `within`; `None` if it still
    /// runs then.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() && exited(&self.pidfd, within) {
            self.exit = Some(self.child.wait().expect("reap our own child"));
        }
        self.exit
    }

    /// SIGKILL, and its exit.
    pub fn kill(&mut self) -> ExitStatus {
        self.signal(Signal::KILL);
        self.wait_exit(STOP_WITHIN)
            .unwrap_or_else(|| panic!("process {} outlived SIGKILL", self.pid()))
    }

    /// SIGTERM, then its exit status once it exits (within
    /// [`STOP_WITHIN`], else it is killed and the test fails) and its whole
    /// stderr.
    pub fn stop(self) -> (ExitStatus, String) {
        self.signal(Signal::TERM);
        self.finish()
    }

    /// Its exit status once it exits (within [`STOP_WITHIN`], else it is
    /// killed and the test fails) and its whole stderr: for a process
    /// already told to stop.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let Some(status) = self.wait_exit(STOP_WITHIN) else {
            self.kill();
            panic!(
                "process {} did not exit within {STOP_WITHIN:?} of being stopped; its stderr ends with:\n{}",
                self.pid(),
                self.stderr.tail(30)
            );
        };
        // The pipe ends once whatever inherited it is gone too.
        self.stderr.wait_end(Duration::from_secs(5));
        (status, self.stderr.text())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.signal(Signal::KILL);
            let _ = self.child.wait();
        }
    }
}

fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// Whether the process of `pidfd` exits within `within` (a pidfd becomes
/// readable when its process ends).
fn exited(pidfd: &OwnedFd, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).expect("a short timeout");
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll of a pidfd: {e}"),
        }
    }
}

/// Waits until every process of `pids` (children or not) has exited;
/// returns those still running after `within`. A pid already gone counts
/// as exited.
pub fn wait_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    let mut running: Vec<(u32, OwnedFd)> = pids
        .iter()
        .filter_map(|&p| Some((p, open_pidfd(p)?)))
        .collect();
    while !running.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).expect("a short timeout");
        let mut fds: Vec<PollFd> = running
            .iter()
            .map(|(_, fd)| PollFd::new(fd, PollFlags::IN))
            .collect();
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => break,
            Ok(_) => {
                let done: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
                let mut i = 0;
                running.retain(|_| {
                    i += 1;
                    !done[i - 1]
                });
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll of pidfds: {e}"),
        }
    }
    running.into_iter().map(|(p, _)| p).collect()
}
