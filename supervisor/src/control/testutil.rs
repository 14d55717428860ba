//! What the control tests share: a supervisor stand-in, a server on a
//! socket in a temporary directory, and a client that speaks lines.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::api::{self, AgentStatus, ErrorKind, Request, Response};
use super::server::error;
use super::{bind, serve};
use crate::events::Bus;

pub(super) fn agent(name: &str) -> AgentStatus {
    AgentStatus {
        name: name.into(),
        state: crate::events::State::Running,
        pid: Some(4242),
        endpoints: vec!["127.0.0.1:10161".into()],
        restarts: 1,
        uptime_ms: Some(61_000),
        rss_bytes: Some(2_200_000),
        requests: 7,
        process: name.into(),
        faults: Vec::new(),
    }
}

/// A supervisor stand-in: answers `status` with one agent, knows agents
/// `a` and `b`.
pub(super) fn fake_supervisor() -> api::Handle {
    api::Handle::new(fake_requests())
}

/// The requests channel of [`fake_supervisor`].
fn fake_requests() -> mpsc::Sender<api::Envelope> {
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
                | Request::Restart { names }
                | Request::Fault { names, .. } => {
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
                    oldest: None,
                },
            };
            let _ = reply.send(response);
        }
    });
    tx
}

pub(super) struct Server {
    pub(super) path: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<io::Result<()>>,
}

pub(super) fn start(path: &Path) -> Server {
    start_with(path, fake_supervisor())
}

/// [`start`], streaming the events of `bus`.
pub(super) fn start_with_events(path: &Path, bus: &Bus) -> Server {
    start_with(path, api::Handle::with_events(fake_requests(), bus.clone()))
}

fn start_with(path: &Path, handle: api::Handle) -> Server {
    let listener = match bind(path) {
        Ok(l) => l,
        Err(e) => panic!("bind {}: {e}", path.display()),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, handle, shutdown.clone()));
    Server {
        path: path.to_path_buf(),
        shutdown,
        task,
    }
}

impl Server {
    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Cancels the shutdown token only; the server ends once its event
    /// streams do ([`Server::finish`]).
    pub(super) fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    pub(super) async fn finish(self) {
        self.task.await.unwrap().unwrap();
    }
}

pub(super) struct Client {
    pub(super) rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    pub(super) wr: OwnedWriteHalf,
}

impl Client {
    pub(super) async fn connect(path: &Path) -> Client {
        let (rd, wr) = UnixStream::connect(path).await.unwrap().into_split();
        Client {
            rd: BufReader::new(rd),
            wr,
        }
    }

    pub(super) async fn ask(&mut self, line: &str) -> Response {
        self.wr.write_all(line.as_bytes()).await.unwrap();
        self.wr.write_all(b"\n").await.unwrap();
        self.answer().await
    }

    pub(super) async fn answer(&mut self) -> Response {
        let mut line = String::new();
        self.rd.read_line(&mut line).await.unwrap();
        assert!(line.ends_with('\n'), "one whole line: {line:?}");
        serde_json::from_str(&line).unwrap()
    }
}

pub(super) fn kind(r: &Response) -> Option<ErrorKind> {
    match r {
        Response::Error { kind, .. } => Some(*kind),
        _ => None,
    }
}
