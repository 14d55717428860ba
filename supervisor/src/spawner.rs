//! The spawner: a few long-lived threads that create every agent process.
//! PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so
//! spawning from short-lived runtime threads would kill agents at random;
//! dedicated threads that live as long as the supervisor make it mean "the
//! supervisor died".

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;

use tokio::process::Child;
use tokio::sync::oneshot;

use crate::sys::{self, Credentials};

/// What to start.
#[derive(Debug)]
pub struct Job {
    /// argv[0], shown by `ps`: `agentcluster: agent NAME`.
    pub title: String,
    /// Descriptors for the child, placed at 3, 4, … in this order.
    pub fds: Vec<OwnedFd>,
    pub creds: Option<Credentials>,
    pub reply: oneshot::Sender<io::Result<Child>>,
}

/// A handle to the spawner thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    threads: std::sync::Arc<Vec<mpsc::Sender<Job>>>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The program every agent process runs.
    program: std::sync::Arc<PathBuf>,
}

/// Spawner threads: fork+exec waits for the child's exec, so a few threads
/// in parallel start a large fleet faster. Each lives as long as the
/// supervisor, which is what PR_SET_PDEATHSIG needs.
const THREADS: usize = 4;

impl Spawner {
    /// Starts the thread. `runtime` is the runtime that will reap the
    /// children (tokio's child reaping is per runtime).
    pub fn start(runtime: tokio::runtime::Handle) -> io::Result<Spawner> {
        // AGENTCLUSTER_AGENT_EXE runs another program as the agent (a
        // wrapper such as valgrind or strace, or a test double); it gets the
        // same arguments and descriptors.
        let exe = match std::env::var_os("AGENTCLUSTER_AGENT_EXE") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => std::env::current_exe()?,
        };
        let mut threads = Vec::with_capacity(THREADS);
        for i in 0..THREADS {
            let (tx, rx) = mpsc::channel::<Job>();
            let runtime = runtime.clone();
            let exe = exe.clone();
            std::thread::Builder::new()
                .name(format!("agentcluster-spawner-{i}"))
                .spawn(move || {
                    let _guard = runtime.enter();
                    while let Ok(job) = rx.recv() {
                        let result = spawn(&exe, job.title, &job.fds, job.creds);
                        // The descriptors' duplicates in the parent close here.
                        drop(job.fds);
                        let _ = job.reply.send(result);
                    }
                })?;
            threads.push(tx);
        }
        Ok(Spawner {
            threads: std::sync::Arc::new(threads),
            next: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            program: std::sync::Arc::new(exe),
        })
    }

    /// The program every agent process runs.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// Creates an agent process.
    pub async fn spawn(
        &self,
        title: String,
        fds: Vec<OwnedFd>,
        creds: Option<Credentials>,
    ) -> io::Result<Child> {
        let (reply, rx) = oneshot::channel();
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.threads.len();
        self.threads[i]
            .send(Job {
                title,
                fds,
                creds,
                reply,
            })
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        rx.await
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }
}

fn spawn(
    exe: &PathBuf,
    title: String,
    fds: &[OwnedFd],
    creds: Option<Credentials>,
) -> io::Result<Child> {
    // Move every source above the target range first.
    let floor = 3 + fds.len() as i32 + 1;
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| sys::dup_above(fd, floor))
        .collect::<io::Result<_>>()?;
    let raw: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg0(OsString::from(title))
        .arg("agent")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    sys::prepare_child(&mut cmd, raw, std::process::id() as libc::pid_t, creds);
    let child = cmd.spawn();
    drop(high);
    child
}
