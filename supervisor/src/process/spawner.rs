//! The spawner: creates every agent process.
//!
//! Forking the supervisor costs in proportion to what it holds: the fork
//! copies its page tables and its descriptor table (about three descriptors
//! per agent process), and the exec then closes each close-on-exec
//! descriptor again in the child, so starting N processes that way costs
//! O(N²). Instead, each spawner lane forks the supervisor once, early, to
//! run a *spawn helper* (this binary as `agentcluster spawner`), which holds
//! only its socket to the lane. For each agent process the lane sends the
//! helper the descriptors, and the helper forks itself with CLONE_PARENT
//! (see [`sys::spawn_agent`]): the new process is the supervisor's child,
//! which the supervisor watches through a pidfd and reaps ([`Child`]).
//!
//! The process's sockets are kept by the socket holders
//! ([`crate::process::holder`]): the lane borrows copies of them just
//! before it sends the request and closes them once the helper has
//! answered, so the supervisor holds the sockets of at most one process
//! per lane, never the fleet's.
//!
//! PR_SET_PDEATHSIG fires when the *thread* that created a process's parent
//! exits. With CLONE_PARENT, an agent's parent is the helper's parent: the
//! lane thread that started the helper, which lives as long as the
//! supervisor. So the parent-death signal still means "the supervisor
//! died"; the helper has it too. (The socket holders have it as well; they
//! are started from the holders' thread, which lives as long as the
//! supervisor uses them.)

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, atomic};

use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::process::holder::{self, Held};
use crate::process::sys::{self, Credentials};

/// What to start.
struct Job {
    /// argv[0], shown by `ps`: `agentcluster: agent NAME`.
    title: String,
    /// The child's end of its control channel, placed at 3.
    channel: OwnedFd,
    /// Its sockets, kept by the socket holders: copies are borrowed from
    /// them and placed at 4, 5, … in this order.
    sockets: Vec<Arc<Held>>,
    /// Run on the borrowed copies of `sockets` before they are passed on.
    prepare: Option<Prepare>,
    creds: Option<Credentials>,
    reply: oneshot::Sender<io::Result<(libc::pid_t, OwnedFd)>>,
}

/// What a spawn does with the copies of its sockets before it passes
/// them on (steering them: [`crate::process::launch`]).
pub type Prepare = Box<dyn FnOnce(&[OwnedFd]) + Send>;

/// A handle to the spawner lanes.
#[derive(Debug, Clone)]
pub struct Spawner {
    lanes: Arc<Vec<mpsc::Sender<Job>>>,
    next: Arc<atomic::AtomicUsize>,
    /// The program every agent process runs.
    program: Arc<PathBuf>,
}

/// Lanes: each has a thread and a helper, and a spawn waits for the child's
/// exec, so two in parallel keep both cores of a small machine busy.
pub const LANES: usize = 2;

/// Descriptors per message: SCM_RIGHTS carries at most 253.
const FD_CHUNK: usize = 200;

/// How long a lane waits for its helper's answer: a fork and an exec.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Longest title passed on (`ps` shows far less).
const MAX_TITLE: usize = 4096;

/// The request header: descriptor count, flags, uid, gid (u32 each), then
/// the title.
const HEADER: usize = 16;

impl Spawner {
    /// Starts the lanes, each of which starts its helper.
    pub fn start() -> io::Result<Spawner> {
        // AGENTCLUSTER_AGENT_EXE runs another program as the agent (a
        // wrapper such as valgrind or strace, or a test double); it gets the
        // same arguments and descriptors.
        let exe = match std::env::var_os("AGENTCLUSTER_AGENT_EXE") {
            Some(p) if !p.is_empty() => on_path(PathBuf::from(p)),
            _ => std::env::current_exe()?,
        };
        let helper_exe = std::env::current_exe()?;
        let mut lanes = Vec::with_capacity(LANES);
        for i in 0..LANES {
            let (tx, rx) = mpsc::channel::<Job>();
            let (exe, helper_exe) = (exe.clone(), helper_exe.clone());
            std::thread::Builder::new()
                .name(format!("agentcluster-spawner-{i}"))
                .spawn(move || lane(&helper_exe, &exe, rx))?;
            lanes.push(tx);
        }
        Ok(Spawner {
            lanes: Arc::new(lanes),
            next: Arc::new(atomic::AtomicUsize::new(0)),
            program: Arc::new(exe),
        })
    }

    /// The program every agent process runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Creates an agent process: `channel` becomes its descriptor 3 and
    /// copies of `sockets` its descriptors 4, 5, … (`prepare` runs on the
    /// copies first), `title` its argv[0]; it runs as `creds` if given.
    pub async fn spawn(
        &self,
        title: String,
        channel: OwnedFd,
        sockets: Vec<Arc<Held>>,
        prepare: Option<Prepare>,
        creds: Option<Credentials>,
    ) -> io::Result<Child> {
        let (reply, rx) = oneshot::channel();
        let i = self.next.fetch_add(1, atomic::Ordering::Relaxed) % self.lanes.len();
        self.lanes[i]
            .send(Job {
                title,
                channel,
                sockets,
                prepare,
                creds,
                reply,
            })
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        let (pid, pidfd) = rx
            .await
            .map_err(|_| io::Error::other("the spawner thread is gone"))??;
        Child::watch(pid, pidfd)
    }
}

/// A bare program name as a shell would find it on PATH (execve does not
/// search); a path, or a name found nowhere, unchanged.
fn on_path(program: PathBuf) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.components().count() != 1 || program.is_absolute() {
        return program;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(&program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or(program)
}

/// A lane's thread: owns the helper (restarted after a failure) and lives
/// as long as the supervisor.
fn lane(helper_exe: &Path, program: &Path, jobs: mpsc::Receiver<Job>) {
    let start = || {
        Helper::start(helper_exe, program)
            .inspect_err(|e| tracing::error!(cause = %e, "cannot start the spawn helper"))
            .ok()
    };
    let mut helper = start();
    while let Ok(mut job) = jobs.recv() {
        // A helper that died (killed by someone, or by the OOM killer) is
        // reaped and replaced before it gets the job.
        if helper.as_mut().is_some_and(|h| !h.alive()) {
            tracing::warn!("the spawn helper died; starting another");
            helper = None;
        }
        // Copies of the sockets, borrowed from their holders for as long
        // as the helper takes to have them.
        let result = holder::lend(&job.sockets)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot pass a socket: {e}")))
            .and_then(|sockets| {
                if let Some(prepare) = job.prepare.take() {
                    prepare(&sockets);
                }
                let mut fds = Vec::with_capacity(1 + sockets.len());
                fds.push(job.channel.as_raw_fd());
                fds.extend(sockets.iter().map(AsRawFd::as_raw_fd));
                ask(&mut helper, &start, &job, &fds).and_then(settle)
                // The copies in the supervisor close here.
            });
        drop(job.channel);
        let _ = job.reply.send(result);
    }
}

/// Sends `job` to the helper (started by `start` when there is none) and
/// returns its answer. A request the helper never saw is tried once more
/// with a new helper; one it may have acted on is not.
fn ask(
    helper: &mut Option<Helper>,
    start: &impl Fn() -> Option<Helper>,
    job: &Job,
    fds: &[i32],
) -> io::Result<Answer> {
    let mut failure = io::Error::other("no spawn helper");
    for _attempt in 0..2 {
        if helper.is_none() {
            *helper = start();
        }
        let Some(h) = helper.as_mut() else {
            break;
        };
        match h.spawn(job, fds) {
            Ok(answer) => return Ok(answer),
            Err(Failure::Unsent(e)) => {
                tracing::warn!(cause = %e, "the spawn helper is gone; starting another");
                *helper = None;
                failure = e;
            }
            Err(Failure::Unanswered(e)) => {
                tracing::error!(cause = %e, "the spawn helper failed; starting another");
                *helper = None;
                return Err(e);
            }
        }
    }
    Err(failure)
}

/// How a request to a helper failed.
#[derive(Debug)]
enum Failure {
    /// Before the helper had the whole request.
    Unsent(io::Error),
    /// After: it may have acted on it.
    Unanswered(io::Error),
}

/// The supervisor's side of a helper's answer: a pidfd for a process that
/// runs, or the error of one that could not (reaped here).
fn settle(answer: Answer) -> io::Result<(libc::pid_t, OwnedFd)> {
    match answer {
        Answer::Created(pid) => match sys::pidfd_open(pid) {
            Ok(fd) => Ok((pid, fd)),
            Err(e) => {
                sigkill(pid);
                let _ = sys::reap(pid, true);
                Err(e)
            }
        },
        Answer::Failed(pid, errno) => {
            if let Some(pid) = pid {
                // It has exited, or is about to, with status 127.
                let _ = sys::reap(pid, true);
            }
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// SIGKILL to child `pid`, which has not been reaped (so the pid is still
/// this process's child).
fn sigkill(pid: libc::pid_t) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// What a helper says about one request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// The process runs the program.
    Created(libc::pid_t),
    /// `errno` of the step that failed; the pid of a process that failed
    /// before exec (it exits with status 127 and needs reaping).
    Failed(Option<libc::pid_t>, i32),
}

impl Answer {
    fn encode(&self) -> [u8; 8] {
        let (pid, errno) = match *self {
            Answer::Created(pid) => (pid, 0),
            Answer::Failed(pid, errno) => (pid.unwrap_or(0), errno),
        };
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&pid.to_le_bytes());
        b[4..].copy_from_slice(&errno.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> io::Result<Answer> {
        if b.len() != 8 {
            return Err(io::Error::other("malformed answer from the spawn helper"));
        }
        let pid = i32::from_le_bytes(b[..4].try_into().unwrap_or_default());
        let errno = i32::from_le_bytes(b[4..].try_into().unwrap_or_default());
        Ok(match (pid, errno) {
            (pid, 0) if pid > 0 => Answer::Created(pid),
            (_, 0) => return Err(io::Error::other("the spawn helper gave no pid")),
            (pid, errno) => Answer::Failed((pid > 0).then_some(pid), errno),
        })
    }
}

/// A running spawn helper, seen from its lane.
struct Helper {
    process: std::process::Child,
    sock: OwnedFd,
}

impl Helper {
    fn start(helper_exe: &Path, program: &Path) -> io::Result<Helper> {
        use std::os::unix::process::CommandExt;
        let (ours, theirs) = sys::seqpacket_pair()?;
        // A helper that hangs (an exec stuck on a dead network file system)
        // must not hang its lane, and with it the supervisor's shutdown.
        nix::sys::socket::setsockopt(
            &ours,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0),
        )?;
        let parent = std::process::id() as libc::pid_t;
        let mut cmd = std::process::Command::new(helper_exe);
        cmd.arg0("agentcluster: spawner")
            .arg("spawner")
            .arg(program)
            .arg(parent.to_string())
            .stdin(std::process::Stdio::null());
        sys::prepare_helper(&mut cmd, theirs.as_raw_fd(), parent);
        let process = cmd.spawn()?;
        drop(theirs);
        Ok(Helper {
            process,
            sock: ours,
        })
    }

    /// Whether the helper process still runs (reaps it if not).
    fn alive(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    /// Sends one request and reads the answer.
    fn spawn(&mut self, job: &Job, raw: &[i32]) -> Result<Answer, Failure> {
        let mut header = Vec::with_capacity(HEADER + job.title.len());
        let (flags, uid, gid) = match job.creds {
            Some(c) => (1u32, c.uid, c.gid),
            None => (0, 0, 0),
        };
        for v in [raw.len() as u32, flags, uid, gid] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        let title = job.title.as_bytes();
        header.extend_from_slice(&title[..title.len().min(MAX_TITLE)]);
        let mut chunks = raw.chunks(FD_CHUNK);
        let first = chunks.next().unwrap_or(&[]);
        let send = |data: &[u8], fds: &[i32]| sys::send_with_fds(self.sock.as_raw_fd(), data, fds);
        send(&header, first).map_err(Failure::Unsent)?;
        for chunk in chunks {
            send(&[0], chunk).map_err(Failure::Unsent)?;
        }
        let mut buf = [0u8; 16];
        let (n, stray) = sys::recv_with_fds(self.sock.as_raw_fd(), &mut buf).map_err(|e| {
            Failure::Unanswered(if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the spawn helper did not answer within {ANSWER_TIMEOUT:?}"),
                )
            } else {
                e
            })
        })?;
        drop(stray);
        if n == 0 {
            return Err(Failure::Unanswered(io::Error::other(
                "the spawn helper exited",
            )));
        }
        Answer::decode(&buf[..n]).map_err(Failure::Unanswered)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the socket ends the helper; SIGKILL in case it is stuck.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The spawn helper (`agentcluster spawner PROGRAM PARENT`): serves the
/// socket on descriptor 3 until the supervisor closes it. Returns the exit
/// code.
pub fn helper_main(program: &Path, parent: libc::pid_t) -> i32 {
    match serve_helper(program, parent) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agentcluster spawner: {e}");
            1
        }
    }
}

fn serve_helper(program: &Path, parent: libc::pid_t) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use nix::sys::socket::{MsgFlags, send};
    let sock = agentcluster_agent::sys::adopt_fd(3)?;
    // Not for the agents.
    fcntl(&sock, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let c_program = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("the program's path contains NUL"))?;
    // The environment, as execve wants it, built once.
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv: OsString = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.into_vec()).ok()
        })
        .collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let agent_arg = c"agent";
    let mut buf = vec![0u8; HEADER + MAX_TITLE];
    loop {
        let (n, mut fds) = sys::recv_with_fds(sock.as_raw_fd(), &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let answer = match parse_request(&buf[..n]) {
            Err(e) => Answer::Failed(None, e),
            Ok(request) => {
                while fds.len() < request.nfds {
                    let mut one = [0u8; 1];
                    let (n, more) = sys::recv_with_fds(sock.as_raw_fd(), &mut one)?;
                    if n == 0 {
                        return Ok(());
                    }
                    fds.extend(more);
                }
                create(&request, &fds, &c_program, &envp, agent_arg, parent)
            }
        };
        drop(fds);
        loop {
            match send(sock.as_raw_fd(), &answer.encode(), MsgFlags::MSG_NOSIGNAL) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.map(|_| ()).map_err(io::Error::from)?,
            };
        }
    }
}

struct Request {
    nfds: usize,
    creds: Option<Credentials>,
    title: CString,
}

/// Reads a request header; an errno for a malformed one.
fn parse_request(b: &[u8]) -> Result<Request, i32> {
    if b.len() < HEADER {
        return Err(libc::EINVAL);
    }
    let word = |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    let title = CString::new(&b[HEADER..]).map_err(|_| libc::EINVAL)?;
    Ok(Request {
        nfds: word(0) as usize,
        creds: (word(1) & 1 != 0).then(|| Credentials {
            uid: word(2),
            gid: word(3),
        }),
        title,
    })
}

fn create(
    request: &Request,
    fds: &[OwnedFd],
    program: &CString,
    envp: &[*const libc::c_char],
    agent_arg: &std::ffi::CStr,
    parent: libc::pid_t,
) -> Answer {
    if fds.len() != request.nfds {
        return Answer::Failed(None, libc::EINVAL);
    }
    // Move every source above the target range first.
    let floor = 3 + fds.len() as i32;
    let high: Vec<OwnedFd> = match fds.iter().map(|fd| sys::dup_above(fd, floor)).collect() {
        Ok(h) => h,
        Err(e) => return Answer::Failed(None, e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let raw: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
    let argv = [request.title.as_ptr(), agent_arg.as_ptr(), std::ptr::null()];
    let exec = sys::Exec {
        program,
        argv: &argv,
        envp,
        fds: &raw,
        parent,
        creds: request.creds,
    };
    match sys::spawn_agent(&exec) {
        Ok((pid, 0)) => Answer::Created(pid),
        Ok((pid, errno)) => Answer::Failed(Some(pid), errno),
        Err(e) => Answer::Failed(None, e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// An agent process: a child of the supervisor, watched through a pidfd.
/// Dropped before it was reaped, it is killed and reaped in the background.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<std::process::ExitStatus>,
}

impl Child {
    fn watch(pid: libc::pid_t, pidfd: OwnedFd) -> io::Result<Child> {
        let mut child = Child {
            pid,
            pidfd: None,
            status: None,
        };
        // On failure, the drop kills and reaps it.
        child.pidfd = Some(sys::async_pidfd(pidfd)?);
        Ok(child)
    }

    /// The pid, until the process has been reaped.
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid as u32)
    }

    /// Waits for the process to exit and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let Some(fd) = self.pidfd.as_ref() else {
            return Err(io::Error::other("the process is not watched"));
        };
        loop {
            let mut ready = fd.readable().await?;
            match sys::reap(self.pid, false) {
                Ok(Some(s)) => {
                    self.status = Some(s);
                    self.pidfd = None;
                    return Ok(s);
                }
                Ok(None) => ready.clear_ready(),
                Err(e) => {
                    if e.raw_os_error() == Some(libc::ECHILD) {
                        // Reaped elsewhere: the pid is no longer ours to
                        // signal. Recorded as exit status 255.
                        use std::os::unix::process::ExitStatusExt;
                        self.status = Some(std::process::ExitStatus::from_raw(0xff00));
                        self.pidfd = None;
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // Not reaped: the pid is still this process's.
        let pid = self.pid;
        sigkill(pid);
        match (self.pidfd.take(), tokio::runtime::Handle::try_current()) {
            (Some(fd), Ok(runtime)) => {
                runtime.spawn(async move {
                    loop {
                        let Ok(mut ready) = fd.readable().await else {
                            return;
                        };
                        if !matches!(sys::reap(pid, false), Ok(None)) {
                            return;
                        }
                        ready.clear_ready();
                    }
                });
            }
            // No runtime (or no watch): SIGKILL ends it promptly.
            _ => {
                let _ = sys::reap(pid, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_found_on_path() {
        let sh = on_path(PathBuf::from("sh"));
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        for kept in ["./sh", "/no/such/agent", "no-such-program-anywhere"] {
            assert_eq!(on_path(PathBuf::from(kept)), PathBuf::from(kept));
        }
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Created(4242),
            Answer::Failed(Some(17), libc::EACCES),
            Answer::Failed(None, libc::EAGAIN),
        ] {
            assert_eq!(Answer::decode(&a.encode()).unwrap(), a);
        }
        assert!(Answer::decode(&Answer::Created(0).encode()).is_err());
        assert!(Answer::decode(&[0; 7]).is_err());
    }

    #[test]
    fn requests_parse() {
        let mut b = Vec::new();
        for v in [3u32, 1, 65534, 65533] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(b"agentcluster: agent x");
        let r = parse_request(&b).unwrap();
        assert_eq!(r.nfds, 3);
        assert_eq!(
            r.creds,
            Some(Credentials {
                uid: 65534,
                gid: 65533
            })
        );
        assert_eq!(r.title.as_bytes(), b"agentcluster: agent x");
        assert_eq!(parse_request(&b[..15]).err(), Some(libc::EINVAL));
        b.push(0);
        b.extend_from_slice(b"y");
        assert_eq!(parse_request(&b).err(), Some(libc::EINVAL));
    }
}
