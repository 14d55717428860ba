//! The requests an operator makes of a running supervisor, and the answers,
//! as they travel over the control socket (one JSON object per line). The
//! supervisor side answers them through a [`Handle`].

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Version of this protocol; a client sends it in every request.
pub const PROTOCOL: u32 = 1;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Status,
    /// `names` are agent names or globs (`*`, `?`, `[...]`).
    Start {
        names: Vec<String>,
    },
    Stop {
        names: Vec<String>,
    },
    Restart {
        names: Vec<String>,
    },
    Reload,
    /// Lifecycle events kept by the supervisor, oldest first.
    Events {
        /// Only events with `seq >= since`; absent: every event still kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// A `node|component|event|agent` pattern (see [`crate::control::filter`]);
        /// absent: every event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        /// Keep the connection open and stream new events as JSON lines
        /// (with `gap`, `ping` and a final `overflow` record); see
        /// [`crate::control`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        follow: bool,
    },
}

/// One request line as it travels: the request, plus the protocol version the
/// client speaks (absent means [`PROTOCOL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    #[serde(flatten)]
    pub request: Request,
}

impl WireRequest {
    /// A request tagged with our protocol version, as a client sends it.
    pub fn new(request: Request) -> WireRequest {
        WireRequest {
            protocol: Some(PROTOCOL),
            request,
        }
    }
}

/// One agent's line in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub name: String,
    pub state: crate::events::State,
    pub pid: Option<u32>,
    pub endpoints: Vec<String>,
    pub restarts: u32,
    /// Time in the running state, in milliseconds.
    pub uptime_ms: Option<u64>,
    /// Resident set size of the agent's process, in bytes.
    pub rss_bytes: Option<u64>,
    /// Requests answered since the process started.
    pub requests: u64,
    /// The process serving this agent (several agents share one with
    /// `agents_per_process` > 1).
    pub process: String,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    Status {
        node: String,
        agents: Vec<AgentStatus>,
    },
    /// An operator action was carried out on these agents.
    Done {
        agents: Vec<String>,
        message: String,
    },
    /// The answer to `events`.
    Events {
        events: Vec<crate::events::Event>,
        /// Events at or after the requested `since` were already dropped
        /// from the ring, so the client has missed some.
        gap: bool,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// Error classes, so a client can pick its exit code without reading text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// No agent matches a name (exit 1).
    UnknownAgent,
    /// The request itself is malformed (exit 1).
    BadRequest,
    /// The new configuration is invalid (exit 1).
    Config,
    /// Anything else (exit 2).
    Internal,
    /// The client's user may not control this supervisor (exit 3, like a
    /// socket it cannot open).
    PermissionDenied,
}

/// A request with the channel its answer goes back on.
pub type Envelope = (Request, oneshot::Sender<Response>);

/// How the control socket (and anything else) reaches the supervisor.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::Sender<Envelope>,
    /// For event streams, which bypass the request channel.
    bus: Option<crate::events::Bus>,
}

impl Handle {
    pub fn new(tx: mpsc::Sender<Envelope>) -> Handle {
        Handle { tx, bus: None }
    }

    /// A handle that can also serve `events --follow` streams from `bus`.
    pub fn with_events(tx: mpsc::Sender<Envelope>, bus: crate::events::Bus) -> Handle {
        Handle { tx, bus: Some(bus) }
    }

    pub fn bus(&self) -> Option<&crate::events::Bus> {
        self.bus.as_ref()
    }

    /// Sends a request and waits for its answer.
    pub async fn call(&self, request: Request) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.tx.send((request, tx)).await.is_err() {
            return Response::Error {
                kind: ErrorKind::Internal,
                message: "the supervisor is shutting down".into(),
            };
        }
        rx.await.unwrap_or_else(|_| Response::Error {
            kind: ErrorKind::Internal,
            message: "the supervisor dropped the request".into(),
        })
    }
}
