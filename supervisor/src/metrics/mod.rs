//! Prometheus metrics (`cluster.metrics`): an HTTP server that answers
//! `GET /metrics` (and `HEAD`) with the text exposition format, 404 for
//! any other path and 405 for any other method.
//!
//! It reads from the other layers and nothing depends on it but `run`:
//! each agent's values come from its unit's status through the fleet
//! manager's roster, the supervisor's from the event bus, the start-token
//! semaphore and the notification sink ([`collect`]). prometheus-client
//! encodes them; hyper serves them, with the bounds of the control socket:
//! a fixed number of connections, a time limit to send a request and one
//! on a connection's life.

mod collect;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use collect::Sources;

/// Connections served at once; more are closed at once, so forgotten
/// scrapers cannot exhaust our file descriptors.
pub const MAX_CONNECTIONS: usize = 16;
/// A client must have sent its request's headers within this time.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection (a scraper that keeps its connection
/// alive opens a new one after it).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after running out of file descriptors in `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds the metrics endpoint. Call it early: a port in use is a startup
/// error.
pub fn bind(listen: SocketAddr) -> io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(listen)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves `/metrics` from `sources` on `listener` until `shutdown`.
pub async fn serve(
    listener: std::net::TcpListener,
    sources: Sources,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let registry = Arc::new(collect::registry(sources));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_transient(&e) => {
                tracing::debug!(cause = %e, "metrics: cannot accept a connection");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
            Err(e) => return Err(e),
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: connection refused, {MAX_CONNECTIONS} already open");
            continue;
        };
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, registry.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                r = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {
                    if let Ok(Err(e)) = r {
                        tracing::debug!(cause = %e, "metrics connection");
                    }
                }
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Errors of `accept` after which the listener still works.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO)
    )
}

/// One request's answer.
async fn answer(
    req: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD\n",
            head,
        ));
    }
    if req.uri().path() != "/metrics" {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
            head,
        ));
    }
    // A scrape of a large fleet takes a while: off the runtime's workers.
    let encoded = tokio::task::spawn_blocking(move || collect::encode(&registry)).await;
    let Ok(Ok(text)) = encoded else {
        return Ok(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
            head,
        ));
    };
    let len = text.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(text)
    };
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(collect::CONTENT_TYPE),
    );
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    Ok(r)
}

fn plain(status: StatusCode, text: &'static str, head: bool) -> Response<Full<Bytes>> {
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from_static(text.as_bytes())
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    r
}
