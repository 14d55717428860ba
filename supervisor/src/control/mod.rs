//! The control socket: the Unix stream socket on which `agentcluster status`,
//! `restart`, `reload`, … reach the running supervisor. One JSON request per
//! line in, one JSON response per line out, in the serde form of
//! [`crate::control::api`]; only our own user (or root) may talk to it.

pub mod api;
pub mod filter;

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::WireRequest;
use api::{ErrorKind, Request, Response};

/// Longest request line accepted; a longer one is answered with an error and
/// the connection closed, so a client cannot make us buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// Connections served at once. More are answered with an error and closed,
/// so forgotten clients cannot exhaust our file descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection that sends no request for this long is closed, so idle
/// clients give their slot back.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A client that does not read its answer within this time is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after running out of file descriptors (or memory) in `accept`: the
/// pending connection stays queued, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const SOCKET_NAME: &str = "control.sock";

/// Where the control socket lives when the configuration does not say:
/// `$XDG_RUNTIME_DIR/agentcluster/control.sock`, else
/// `/run/agentcluster/control.sock` as root, else
/// `/tmp/agentcluster-$UID/control.sock`. The supervisor binds it and the
/// CLI looks for it by the same rule.
pub fn default_control_socket() -> PathBuf {
    default_for(
        std::env::var_os("XDG_RUNTIME_DIR"),
        nix::unistd::geteuid().as_raw(),
    )
}

fn default_for(xdg_runtime_dir: Option<OsString>, euid: u32) -> PathBuf {
    // The XDG spec says a relative (or empty) value must be ignored.
    if let Some(dir) = xdg_runtime_dir
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    {
        return dir.join("agentcluster").join(SOCKET_NAME);
    }
    if euid == 0 {
        return Path::new("/run/agentcluster").join(SOCKET_NAME);
    }
    PathBuf::from(format!("/tmp/agentcluster-{euid}")).join(SOCKET_NAME)
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error(
        "another supervisor is running on {} (stop it, or give this one another cluster.control_socket)",
        .path.display()
    )]
    AlreadyRunning { path: PathBuf },
    #[error("refusing to use {} for the control socket: {reason}", .path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("cannot {action} {}: {cause}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ControlError {
    let path = path.to_path_buf();
    move |cause| ControlError::Io {
        action,
        path,
        cause,
    }
}

/// A bound control socket, not yet serving. Dropping it removes the socket
/// file.
#[derive(Debug)]
pub struct ControlListener {
    listener: std::os::unix::net::UnixListener,
    file: SocketFile,
}

impl ControlListener {
    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

/// The socket file we created; removed on drop, unless it has since been
/// replaced by someone else's.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), cause = %e, "cannot remove the control socket");
        }
    }
}

/// Creates the control socket at `path`: makes its directory (mode 0700) if
/// missing, refuses if a live supervisor already answers there, replaces a
/// stale socket file, and leaves the new socket with mode 0600. Needs no
/// runtime, so the supervisor can fail before it starts anything.
pub fn bind(path: &Path) -> Result<ControlListener, ControlError> {
    prepare_dir(path)?;
    match probe(path)? {
        Probe::Absent => {}
        Probe::Live => {
            return Err(ControlError::AlreadyRunning {
                path: path.to_path_buf(),
            });
        }
        Probe::Stale => {
            tracing::info!(path = %path.display(), "removing a stale control socket");
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove the stale socket", path)(e)),
            }
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            // Someone bound it between our probe and our bind.
            ControlError::AlreadyRunning {
                path: path.to_path_buf(),
            }
        } else {
            io_error("create the control socket", path)(e)
        }
    })?;
    let meta = std::fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    // The mode after bind depends on the umask; set it explicitly.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("set the mode of", path))?;
    listener
        .set_nonblocking(true)
        .map_err(io_error("configure", path))?;
    Ok(ControlListener { listener, file })
}

/// Makes sure the socket's directory exists and that nobody but us (or
/// root) can swap the socket under our feet.
fn prepare_dir(path: &Path) -> Result<(), ControlError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(ControlError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!("{} is not a directory", dir.display()),
                });
            }
            if let Some(reason) =
                dir_problem(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw())
            {
                return Err(ControlError::Unsafe {
                    path: path.to_path_buf(),
                    reason: format!("its directory {} {reason}", dir.display()),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error("create the directory", dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_error("set the mode of", dir))
        }
        Err(e) => Err(io_error("inspect", dir)(e)),
    }
}

/// Why a directory with this owner and mode is not safe for our socket, if
/// it is not. Root may use any directory.
fn dir_problem(owner: u32, mode: u32, euid: u32) -> Option<String> {
    if euid != 0 && owner != euid && owner != 0 {
        return Some(format!(
            "belongs to uid {owner}, not to us (uid {euid}); it could replace the socket"
        ));
    }
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Some("is writable by everyone (and not sticky)".into());
    }
    None
}

enum Probe {
    Absent,
    Live,
    Stale,
}

/// Is something listening on `path`? A non-blocking connect answers at once,
/// even when a live supervisor's backlog is full.
fn probe(path: &Path) -> Result<Probe, ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Probe::Absent),
        Err(e) => return Err(io_error("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::Unsafe {
            path: path.to_path_buf(),
            reason: "it exists and is not a socket (remove it, or choose another control_socket)"
                .into(),
        });
    }
    let addr = socket2::SockAddr::unix(path).map_err(io_error("connect to", path))?;
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .map_err(io_error("probe", path))?;
    socket
        .set_nonblocking(true)
        .map_err(io_error("probe", path))?;
    match socket.connect(&addr) {
        Ok(()) => Ok(Probe::Live),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Probe::Live),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Probe::Stale),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Probe::Absent),
        Err(e) => Err(io_error("connect to", path)(e)),
    }
}

/// Answers requests on `listener` through `handle` until `shutdown` is
/// cancelled, then closes every connection, removes the socket file and
/// returns. Each connection runs in its own task, so a slow or idle client
/// never holds up the supervisor or other clients.
pub async fn serve(
    listener: ControlListener,
    handle: api::Handle,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let ControlListener { listener, file } = listener;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let our_uid = nix::unistd::geteuid().as_raw();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    tracing::debug!(path = %file.path.display(), "control socket ready");
    let result = loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => match accept_error(&e) {
                AcceptError::Retry => continue,
                AcceptError::Backoff => {
                    tracing::warn!(cause = %e, "control socket: cannot accept a connection");
                    tokio::select! {
                        () = shutdown.cancelled() => break Ok(()),
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
                AcceptError::Fatal => break Err(e),
            },
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(cause = %e, "control connection without credentials");
                continue;
            }
        };
        if !peer_allowed(cred.uid(), our_uid) {
            tracing::warn!(
                peer_uid = cred.uid(),
                peer_pid = cred.pid(),
                "control connection refused: another user"
            );
            refuse(
                &stream,
                ErrorKind::PermissionDenied,
                format!(
                    "uid {} may not control this supervisor (it runs as uid {our_uid})",
                    cred.uid()
                ),
            );
            continue;
        }
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                peer_pid = cred.pid(),
                "control connection refused: {MAX_CONNECTIONS} already open"
            );
            refuse(
                &stream,
                ErrorKind::Internal,
                format!("too many control connections ({MAX_CONNECTIONS}); try again later"),
            );
            continue;
        };
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            connection(stream, handle, shutdown).await;
            drop(permit);
        });
    };
    drop(listener);
    drop(file);
    tracker.close();
    tracker.wait().await;
    result
}

enum AcceptError {
    /// The one connection failed; the listener is fine.
    Retry,
    /// Out of descriptors or memory: wait a little.
    Backoff,
    Fatal,
}

fn accept_error(e: &io::Error) -> AcceptError {
    match e.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock => return AcceptError::Retry,
        io::ErrorKind::OutOfMemory => return AcceptError::Backoff,
        _ => {}
    }
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Backoff,
        Some(libc::EPROTO | libc::EPERM) => AcceptError::Retry,
        _ => AcceptError::Fatal,
    }
}

/// Our own user and root may control us; nobody else.
fn peer_allowed(peer_uid: u32, our_uid: u32) -> bool {
    peer_uid == our_uid || peer_uid == 0
}

/// Tells a connection we will not serve why, without waiting: a fresh
/// socket's send buffer always has room for one line.
fn refuse(stream: &UnixStream, kind: ErrorKind, message: String) {
    let line = encode(&Response::Error { kind, message });
    let _ = stream.try_write(&line);
}

/// Serves one connection: requests in order, one answer each.
async fn connection(stream: UnixStream, handle: api::Handle, shutdown: CancellationToken) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut rd, &mut line, MAX_LINE)) => r,
        };
        let response = match read {
            Err(_) => {
                tracing::debug!("control connection idle; closed");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(cause = %e, "control connection read failed");
                return;
            }
            Ok(Ok(Line::Eof)) => return,
            Ok(Ok(Line::TooLong)) => {
                let response = error(
                    ErrorKind::BadRequest,
                    format!("request line longer than {MAX_LINE} bytes; closing"),
                );
                send(&mut wr, &response, &shutdown).await;
                return;
            }
            Ok(Ok(Line::Complete)) => match parse(&line) {
                None => continue,
                Some(Err(response)) => response,
                Some(Ok(Request::Events {
                    since,
                    filter,
                    follow: true,
                })) => {
                    let Some(bus) = handle.bus() else {
                        let response = error(
                            ErrorKind::BadRequest,
                            "this supervisor does not stream events".into(),
                        );
                        send(&mut wr, &response, &shutdown).await;
                        return;
                    };
                    // A stream is the connection's last request.
                    stream_events(&mut wr, bus, since, filter.as_deref(), &shutdown).await;
                    return;
                }
                Some(Ok(request)) => {
                    tracing::debug!(?request, "control request");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = handle.call(request) => r,
                    }
                }
            },
        };
        if !send(&mut wr, &response, &shutdown).await {
            return;
        }
    }
}

/// How long a stream stays silent before a keep-alive `ping` record.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Records a subscriber may have waiting (beyond what its socket holds, and
/// beyond its replay) before it is cut with an `overflow` record.
pub const MAX_BEHIND: usize = 1024;
/// How long a cut subscriber gets to read the rest, `overflow` included.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Records waiting to be written to a stream subscriber. Writes never
/// block the stream task: it keeps receiving while the socket is full, and
/// cuts the subscriber once [`MAX_BEHIND`] records wait. Whole records only
/// are ever dropped, so the stream stays valid JSON lines.
#[derive(Default)]
struct Outbox {
    records: std::collections::VecDeque<Vec<u8>>,
    /// Bytes of the first record already written.
    offset: usize,
}

impl Outbox {
    fn push<T: serde::Serialize>(&mut self, record: &T) {
        if let Ok(mut line) = serde_json::to_vec(record) {
            line.push(b'\n');
            self.records.push_back(line);
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops every record not started yet.
    fn drop_unsent(&mut self) {
        self.records.truncate(usize::from(self.offset > 0));
    }

    /// Writes what the socket takes now.
    fn write(&mut self, wr: &OwnedWriteHalf) -> io::Result<()> {
        while let Some(front) = self.records.front() {
            match wr.try_write(&front[self.offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.offset += n;
                    if self.offset == front.len() {
                        self.records.pop_front();
                        self.offset = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Streams events as JSON lines: first those kept with `seq >= since`
/// (after a `{"gap":true,…}` record if some are gone), then each new one,
/// with a `{"ping":…}` record after [`PING_EVERY`] of silence. A subscriber
/// that falls [`MAX_BEHIND`] records behind, or that the bus itself left
/// behind, gets a final `{"overflow":true,…}` record and is disconnected:
/// it never slows the supervisor.
async fn stream_events(
    wr: &mut OwnedWriteHalf,
    bus: &crate::events::Bus,
    since: Option<u64>,
    filter: Option<&str>,
    shutdown: &CancellationToken,
) {
    let filter = match filter
        .map(crate::control::filter::Filter::parse)
        .transpose()
    {
        Ok(f) => f,
        Err(e) => {
            send(wr, &error(ErrorKind::BadRequest, e.to_string()), shutdown).await;
            return;
        }
    };
    // Subscribe before replaying, so nothing falls between the two.
    let mut live = bus.subscribe();
    let (kept, gap) = bus.replay(since.unwrap_or(u64::MAX));
    let mut out = Outbox::default();
    let mut last = 0u64;
    if gap {
        out.push(&serde_json::json!({"gap": true, "oldest": kept.first().map(|e| e.seq)}));
    }
    for e in &kept {
        last = e.seq;
        if filter.as_ref().is_none_or(|f| f.matches(e)) {
            out.push(e.as_ref());
        }
    }
    let mut cut: Option<String> = None;
    let mut idle = tokio::time::Instant::now();
    // The replay itself may be long; the limit is on what piles up after.
    let limit = out.len() + MAX_BEHIND;
    loop {
        if cut.is_none() && out.len() > limit {
            cut = Some(format!(
                "the subscriber fell more than {MAX_BEHIND} records behind"
            ));
        }
        if let Some(why) = &cut {
            out.drop_unsent();
            out.push(&serde_json::json!({"overflow": true, "last_seq": last, "reason": why}));
            tracing::warn!(last_seq = last, "event subscriber cut: {why}");
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
                while !out.is_empty() {
                    if wr.writable().await.is_err() || out.write(wr).is_err() {
                        return;
                    }
                }
            });
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = drained => {}
            }
            return;
        }
        let ping_at = idle + PING_EVERY;
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = wr.writable(), if !out.is_empty() => {
                if r.is_err() || out.write(wr).is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(ping_at) => {
                idle = tokio::time::Instant::now();
                out.push(&serde_json::json!({
                    "ping": crate::events::bus::rfc3339_millis(std::time::SystemTime::now()),
                    "last_seq": last,
                }));
            }
            r = live.recv() => match r {
                Ok(e) => {
                    if e.seq > last {
                        last = e.seq;
                        if filter.as_ref().is_none_or(|f| f.matches(&e)) {
                            idle = tokio::time::Instant::now();
                            out.push(e.as_ref());
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    cut = Some(format!("the subscriber fell {n} events behind the bus"));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

enum Line {
    /// A line (without its `\n`) is in the buffer; the last line of a
    /// stream may lack the `\n`.
    Complete,
    Eof,
    TooLong,
}

/// Reads one line into `buf`, never holding more than `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Line::Complete);
        }
    }
}

/// Decodes one request line exactly as a connection does: `None` for a blank
/// line, `Err` with the answer for a bad one. Public for the fuzz target.
pub fn parse_request_line(line: &[u8]) -> Option<Result<Request, Response>> {
    parse(line)
}

/// Decodes one request line: `None` for a blank line, `Err` with the answer
/// for a bad one.
fn parse(line: &[u8]) -> Option<Result<Request, Response>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let wire: WireRequest = match serde_json::from_slice(line) {
        Ok(w) => w,
        Err(e) => {
            return Some(Err(error(
                ErrorKind::BadRequest,
                format!("not a valid request: {e}"),
            )));
        }
    };
    if let Some(v) = wire.protocol
        && v != api::PROTOCOL
    {
        return Some(Err(error(
            ErrorKind::BadRequest,
            format!(
                "protocol version {v} is not supported; this supervisor speaks version {}",
                api::PROTOCOL
            ),
        )));
    }
    Some(Ok(wire.request))
}

fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error { kind, message }
}

/// One response as a line, `\n` included.
fn encode(response: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(response).unwrap_or_else(|e| {
        tracing::error!(cause = %e, "cannot encode a control response");
        br#"{"result":"error","kind":"internal","message":"cannot encode the response"}"#.to_vec()
    });
    line.push(b'\n');
    line
}

/// Writes one response; `false` if the connection is done for.
async fn send(wr: &mut OwnedWriteHalf, response: &Response, shutdown: &CancellationToken) -> bool {
    let line = encode(response);
    tokio::select! {
        () = shutdown.cancelled() => false,
        r = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&line)) => match r {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(cause = %e, "control connection write failed");
                false
            }
            Err(_) => {
                tracing::debug!("control client does not read its answers; closed");
                false
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::AgentStatus;
    use tokio::io::AsyncReadExt;
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    fn agent(name: &str) -> AgentStatus {
        AgentStatus {
            name: name.into(),
            state: "running".into(),
            pid: Some(4242),
            endpoints: vec!["127.0.0.1:10161".into()],
            restarts: 1,
            uptime_ms: Some(61_000),
            rss_bytes: Some(2_200_000),
            requests: 7,
            process: name.into(),
        }
    }

    /// A supervisor stand-in: answers `status` with one agent, knows agents
    /// `a` and `b`.
    fn fake_supervisor() -> api::Handle {
        let (tx, mut rx) = mpsc::channel::<api::Envelope>(8);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let response = match request {
                    Request::Status => Response::Status {
                        node: "test".into(),
                        agents: vec![agent("a"), agent("b")],
                    },
                    Request::Start { names }
                    | Request::Stop { names }
                    | Request::Restart { names } => {
                        if names.iter().all(|n| n == "a" || n == "b") {
                            Response::Done {
                                agents: names,
                                message: "ok".into(),
                            }
                        } else {
                            error(ErrorKind::UnknownAgent, "no such agent".into())
                        }
                    }
                    Request::Reload => Response::Done {
                        agents: vec![],
                        message: "reloaded".into(),
                    },
                    Request::Events { .. } => Response::Events {
                        events: vec![],
                        gap: false,
                    },
                };
                let _ = reply.send(response);
            }
        });
        api::Handle::new(tx)
    }

    struct Server {
        path: PathBuf,
        shutdown: CancellationToken,
        task: JoinHandle<io::Result<()>>,
    }

    fn start(path: &Path) -> Server {
        let listener = match bind(path) {
            Ok(l) => l,
            Err(e) => panic!("bind {}: {e}", path.display()),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, fake_supervisor(), shutdown.clone()));
        Server {
            path: path.to_path_buf(),
            shutdown,
            task,
        }
    }

    impl Server {
        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.unwrap().unwrap();
        }
    }

    struct Client {
        rd: BufReader<tokio::net::unix::OwnedReadHalf>,
        wr: OwnedWriteHalf,
    }

    impl Client {
        async fn connect(path: &Path) -> Client {
            let (rd, wr) = UnixStream::connect(path).await.unwrap().into_split();
            Client {
                rd: BufReader::new(rd),
                wr,
            }
        }

        async fn ask(&mut self, line: &str) -> Response {
            self.wr.write_all(line.as_bytes()).await.unwrap();
            self.wr.write_all(b"\n").await.unwrap();
            self.answer().await
        }

        async fn answer(&mut self) -> Response {
            let mut line = String::new();
            self.rd.read_line(&mut line).await.unwrap();
            assert!(line.ends_with('\n'), "one whole line: {line:?}");
            serde_json::from_str(&line).unwrap()
        }
    }

    fn kind(r: &Response) -> Option<ErrorKind> {
        match r {
            Response::Error { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    #[test]
    fn default_socket_follows_xdg_then_root_then_tmp() {
        assert_eq!(
            default_for(Some("/run/user/1000".into()), 1000),
            Path::new("/run/user/1000/agentcluster/control.sock")
        );
        assert_eq!(
            default_for(Some("/run/user/0".into()), 0),
            Path::new("/run/user/0/agentcluster/control.sock")
        );
        assert_eq!(
            default_for(None, 0),
            Path::new("/run/agentcluster/control.sock")
        );
        assert_eq!(
            default_for(None, 1000),
            Path::new("/tmp/agentcluster-1000/control.sock")
        );
        // relative or empty XDG_RUNTIME_DIR is ignored
        assert_eq!(
            default_for(Some("run".into()), 1000),
            Path::new("/tmp/agentcluster-1000/control.sock")
        );
        assert_eq!(
            default_for(Some("".into()), 0),
            Path::new("/run/agentcluster/control.sock")
        );
    }

    #[test]
    fn wire_request_carries_the_protocol_and_may_omit_it() {
        let w = WireRequest::new(Request::Restart {
            names: vec!["a*".into()],
        });
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"protocol":1,"cmd":"restart","names":["a*"]}"#
        );
        assert_eq!(
            serde_json::to_string(&WireRequest::new(Request::Status)).unwrap(),
            r#"{"protocol":1,"cmd":"status"}"#
        );
        assert_eq!(
            parse(br#"{"cmd":"status"}"#).unwrap().unwrap(),
            Request::Status
        );
        assert_eq!(
            parse(br#"{"cmd":"stop","names":["x"],"protocol":1}"#)
                .unwrap()
                .unwrap(),
            Request::Stop {
                names: vec!["x".into()]
            }
        );
        assert!(parse(b"  \r").is_none());
        assert_eq!(
            kind(
                &parse(br#"{"cmd":"status","protocol":2}"#)
                    .unwrap()
                    .unwrap_err()
            ),
            Some(ErrorKind::BadRequest)
        );
        assert_eq!(
            kind(&parse(br#"{"cmd":"explode"}"#).unwrap().unwrap_err()),
            Some(ErrorKind::BadRequest)
        );
        assert_eq!(
            kind(&parse(br#"{"cmd":"stop"}"#).unwrap().unwrap_err()),
            Some(ErrorKind::BadRequest)
        );
    }

    #[test]
    fn only_our_user_and_root_may_connect() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(1000, 0));
    }

    #[test]
    fn unsafe_directories_are_refused() {
        assert_eq!(dir_problem(1000, 0o40700, 1000), None);
        assert_eq!(dir_problem(0, 0o40755, 1000), None);
        assert_eq!(dir_problem(0, 0o41777, 1000), None); // /tmp
        assert!(dir_problem(1001, 0o40700, 1000).is_some());
        assert!(dir_problem(1000, 0o40777, 1000).is_some());
        assert_eq!(dir_problem(1001, 0o40755, 0), None);
    }

    #[tokio::test]
    async fn status_round_trip_and_several_requests_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir.path().join("control.sock"));
        let mut c = Client::connect(&server.path).await;
        match c.ask(r#"{"protocol":1,"cmd":"status"}"#).await {
            Response::Status { node, agents } => {
                assert_eq!(node, "test");
                assert_eq!(agents, vec![agent("a"), agent("b")]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.ask(r#"{"cmd":"restart","names":["a"]}"#).await,
            Response::Done {
                agents: vec!["a".into()],
                message: "ok".into()
            }
        );
        assert_eq!(
            kind(&c.ask(r#"{"cmd":"stop","names":["zz"]}"#).await),
            Some(ErrorKind::UnknownAgent)
        );
        // two requests in one write, answered in order
        c.wr.write_all(b"{\"cmd\":\"reload\"}\r\n\n{\"cmd\":\"status\"}\n")
            .await
            .unwrap();
        assert!(
            matches!(c.answer().await, Response::Done { message, .. } if message == "reloaded")
        );
        assert!(matches!(c.answer().await, Response::Status { .. }));
        server.stop().await;
    }

    #[tokio::test]
    async fn garbage_gets_bad_request_and_the_connection_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir.path().join("control.sock"));
        let mut c = Client::connect(&server.path).await;
        for bad in [
            "garbage",
            "{\"cmd\":",
            "[1,2]",
            r#"{"cmd":"status","protocol":99}"#,
        ] {
            let r = c.ask(bad).await;
            assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "{bad}: {r:?}");
        }
        c.wr.write_all(b"\xff\xfe\n").await.unwrap();
        assert_eq!(kind(&c.answer().await), Some(ErrorKind::BadRequest));
        assert!(matches!(
            c.ask(r#"{"cmd":"status"}"#).await,
            Response::Status { .. }
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_too_long_line_gets_an_error_and_the_connection_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir.path().join("control.sock"));
        let Client { mut rd, mut wr } = Client::connect(&server.path).await;
        // The server stops reading mid-line, so the writer may see EPIPE.
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&vec![b'x'; MAX_LINE + 4096]).await;
            let _ = wr.write_all(b"\n").await;
        });
        let mut line = String::new();
        rd.read_line(&mut line).await.unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(kind(&r), Some(ErrorKind::BadRequest), "{r:?}");
        // then EOF (or a reset, as we wrote data the server never read)
        let mut rest = Vec::new();
        assert!(matches!(rd.read_to_end(&mut rest).await, Ok(0) | Err(_)));
        writer.await.unwrap();
        // a line of exactly MAX_LINE bytes is still read (and is bad JSON)
        let mut c = Client::connect(&server.path).await;
        let r = c.ask(&"y".repeat(MAX_LINE)).await;
        assert_eq!(kind(&r), Some(ErrorKind::BadRequest));
        assert!(matches!(
            c.ask(r#"{"cmd":"status"}"#).await,
            Response::Status { .. }
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn socket_is_private_and_removed_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("run").join("agentcluster");
        let path = sub.join("control.sock");
        let server = start(&path);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&dir.path().join("run")), 0o700);
        // an open connection does not hold up shutdown
        let _idle = Client::connect(&path).await;
        server.stop().await;
        assert!(!path.exists(), "socket removed");
        assert!(sub.is_dir());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "the dead listener left its file");
        let server = start(&path);
        let mut c = Client::connect(&path).await;
        assert!(matches!(
            c.ask(r#"{"cmd":"status"}"#).await,
            Response::Status { .. }
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_second_supervisor_on_a_live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let server = start(&path);
        let err = bind(&path).unwrap_err();
        assert!(
            matches!(err, ControlError::AlreadyRunning { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "another supervisor is running on {}",
                path.display()
            )),
            "{text}"
        );
        // the first one is untouched
        let mut c = Client::connect(&path).await;
        assert!(matches!(
            c.ask(r#"{"cmd":"status"}"#).await,
            Response::Status { .. }
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = bind(&path).unwrap_err();
        assert!(matches!(err, ControlError::Unsafe { .. }), "{err:?}");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn a_dropped_listener_removes_only_its_own_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = bind(&path).unwrap();
        drop(listener);
        assert!(!path.exists());
        // replaced by another file meanwhile: not ours to remove
        let listener = bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(listener);
        assert!(path.exists());
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused_with_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir.path().join("control.sock"));
        let mut open = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut c = Client::connect(&server.path).await;
            // answered, so the server has accepted it and holds its slot
            assert!(matches!(
                c.ask(r#"{"cmd":"status"}"#).await,
                Response::Status { .. }
            ));
            open.push(c);
        }
        let mut extra = Client::connect(&server.path).await;
        let r = extra.answer().await;
        assert_eq!(kind(&r), Some(ErrorKind::Internal), "{r:?}");
        // a slot given back is usable again
        drop(open.pop());
        let mut again = loop {
            let mut c = Client::connect(&server.path).await;
            // a refused connection may be closed before we write
            let _ = c.wr.write_all(b"{\"cmd\":\"status\"}\n").await;
            let mut line = String::new();
            let _ = c.rd.read_line(&mut line).await;
            if matches!(serde_json::from_str(&line), Ok(Response::Status { .. })) {
                break c;
            }
            // the server had not yet seen the close; retry
            tokio::task::yield_now().await;
        };
        assert!(matches!(
            again.ask(r#"{"cmd":"status"}"#).await,
            Response::Status { .. }
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn read_line_caps_and_splits() {
        let data: &[u8] = b"one\ntwo\r\nlast";
        let mut r = BufReader::with_capacity(2, data);
        let mut buf = Vec::new();
        for want in [&b"one"[..], b"two\r", b"last"] {
            buf.clear();
            assert!(matches!(
                read_line(&mut r, &mut buf, 8).await.unwrap(),
                Line::Complete
            ));
            assert_eq!(buf, want);
        }
        buf.clear();
        assert!(matches!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Eof
        ));
        let mut r = BufReader::with_capacity(3, &b"123456789\n"[..]);
        buf.clear();
        assert!(matches!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::TooLong
        ));
        assert!(buf.len() <= 8);
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;
    use crate::events::{Bus, NewEvent};
    use tokio::io::AsyncBufReadExt;

    fn publish(bus: &Bus, agent: &str, event: &str) {
        bus.publish(NewEvent {
            agent: agent.into(),
            event: event.into(),
            state: "running".into(),
            reason: "test".into(),
            ..NewEvent::default()
        });
    }

    /// Runs `stream_events` on one end of a socketpair; returns the other.
    fn stream(
        bus: &Bus,
        since: Option<u64>,
        filter: Option<&str>,
    ) -> (UnixStream, tokio::task::JoinHandle<()>, CancellationToken) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_rd, mut wr) = ours.into_split();
        let bus = bus.clone();
        let filter = filter.map(str::to_string);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            stream_events(&mut wr, &bus, since, filter.as_deref(), &token).await;
        });
        (theirs, task, shutdown)
    }

    async fn next_json(
        lines: &mut tokio::io::Lines<BufReader<UnixStream>>,
    ) -> Option<serde_json::Value> {
        let line = lines.next_line().await.ok()??;
        Some(serde_json::from_str(&line).expect("every record is a JSON line"))
    }

    #[tokio::test]
    async fn replay_then_live_with_a_filter() {
        let bus = Bus::new("lab-a");
        publish(&bus, "a", "ready");
        publish(&bus, "b", "ready");
        let (client, _task, stop) = stream(&bus, Some(1), Some("*|agent|*|a"));
        let mut lines = BufReader::new(client).lines();
        let first = next_json(&mut lines).await.unwrap();
        assert_eq!(
            (first["agent"].as_str(), first["seq"].as_u64()),
            (Some("a"), Some(1))
        );
        publish(&bus, "b", "died");
        publish(&bus, "a", "died");
        let live = next_json(&mut lines).await.unwrap();
        assert_eq!(
            (live["agent"].as_str(), live["event"].as_str()),
            (Some("a"), Some("died"))
        );
        assert_eq!(live["seq"], 4);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_gap_is_announced_when_the_ring_no_longer_has_since() {
        let bus = Bus::new("lab-a");
        for _ in 0..crate::events::bus::RING + 10 {
            publish(&bus, "a", "ready");
        }
        let (client, _task, stop) = stream(&bus, Some(1), None);
        let mut lines = BufReader::new(client).lines();
        let first = next_json(&mut lines).await.unwrap();
        assert_eq!(first["gap"], true);
        assert_eq!(first["oldest"], 11);
        let second = next_json(&mut lines).await.unwrap();
        assert_eq!(second["seq"], 11);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_cut_and_never_slows_the_bus() {
        let bus = Bus::new("lab-a");
        let (client, task, _stop) = stream(&bus, None, None);
        // 5000 events while nobody reads: publishing never waits.
        let t = std::time::Instant::now();
        for i in 0..5000 {
            publish(&bus, &format!("agent-{i}"), "ready");
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        // Now read everything: whole records, then the overflow record, then EOF.
        let mut lines = BufReader::new(client).lines();
        let mut last = None;
        let mut count = 0;
        while let Some(v) = next_json(&mut lines).await {
            count += 1;
            last = Some(v);
        }
        let last = last.unwrap();
        assert_eq!(last["overflow"], true, "{last}");
        assert!(last["last_seq"].as_u64().unwrap() > 1000);
        assert!(count < 5000, "{count} records: the cut dropped the backlog");
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_keep_alive_pings() {
        let bus = Bus::new("lab-a");
        let (client, _task, stop) = stream(&bus, None, None);
        let mut lines = BufReader::new(client).lines();
        let ping = next_json(&mut lines).await.unwrap();
        assert!(ping.get("ping").is_some(), "{ping}");
        stop.cancel();
    }
}
