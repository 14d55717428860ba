//! Serving the control socket: the accept loop, the peer checks, one task
//! per connection, and the request lines: read within bounds, parsed, and
//! answered one line each.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::socket::ControlListener;
use super::stream::stream_events;
use crate::control::api::{self, ErrorKind, Request, Response, WireRequest};
use crate::control::filter::Filter;

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

/// Answers requests on `listener` through `handle` until `shutdown` is
/// cancelled, then removes the socket file, closes every connection but
/// the event streams, which go on until the event bus is closed and has
/// delivered its last events, and returns once they are done. Each
/// connection runs in its own task, so a slow or idle client never holds
/// up the supervisor or other clients.
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
                    last,
                })) => {
                    let Some(bus) = handle.bus() else {
                        let response = error(
                            ErrorKind::BadRequest,
                            "this supervisor does not stream events".into(),
                        );
                        send(&mut wr, &response, &shutdown).await;
                        return;
                    };
                    let filter = match filter.as_deref().map(Filter::parse).transpose() {
                        Ok(f) => f,
                        Err(e) => {
                            let response = error(ErrorKind::BadRequest, e.to_string());
                            send(&mut wr, &response, &shutdown).await;
                            return;
                        }
                    };
                    let since = match last {
                        Some(n) => super::filter::start_of_last(bus, since, filter.as_ref(), n),
                        None => since,
                    };
                    // A stream is the connection's last request.
                    stream_events(&mut wr, bus, since, filter).await;
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

pub(super) fn error(kind: ErrorKind, message: String) -> Response {
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
    use crate::control::testutil::{Client, agent, kind, start, start_with_events};
    use tokio::io::AsyncReadExt;

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

    /// At shutdown the socket stops answering, but a subscriber that
    /// follows the events gets `supervisor-stopping`, every agent's
    /// `stopped` and then the end of the stream, once the bus is closed.
    #[tokio::test]
    async fn an_event_stream_outlives_the_shutdown_until_the_bus_closes() {
        let dir = tempfile::tempdir().unwrap();
        let bus = crate::events::Bus::new("lab-a");
        let publish = |agent: &str, kind: &str| {
            crate::events::testutil::publish(&bus, agent, kind, "test");
        };
        let server = start_with_events(&dir.path().join("control.sock"), &bus);
        let mut c = Client::connect(&server.path).await;
        publish("a", "ready");
        c.wr.write_all(b"{\"cmd\":\"events\",\"since\":1,\"follow\":true}\n")
            .await
            .unwrap();
        // The stream is set up once it has replayed the event.
        let mut line = String::new();
        c.rd.read_line(&mut line).await.unwrap();
        assert!(line.contains("\"ready\""), "{line}");

        server.begin_stop();
        // The socket is gone once the server acted on the shutdown; the
        // stream task gets its turns too.
        while server.path.exists() {
            tokio::task::yield_now().await;
        }
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        publish("", "supervisor-stopping");
        publish("a", "stopped");
        publish("b", "stopped");
        bus.close();
        let mut rest = String::new();
        c.rd.read_to_string(&mut rest).await.unwrap();
        let kinds: Vec<(String, String)> = rest
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["event"].to_string(), v["agent"].to_string())
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("\"supervisor-stopping\"".into(), "\"\"".into()),
                ("\"stopped\"".into(), "\"a\"".into()),
                ("\"stopped\"".into(), "\"b\"".into()),
            ]
        );
        server.finish().await;
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
