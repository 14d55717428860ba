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
    /// Every agent with its state ([`Response::Status`]).
    Status,
    /// Start stopped or failed agents (an inactive one becomes active).
    Start {
        /// Agent names or globs (`*`, `?`, `[...]`).
        names: Vec<String>,
    },
    /// Stop agents; they stay stopped until started.
    Stop {
        /// Agent names or globs.
        names: Vec<String>,
    },
    /// Stop and start agents.
    Restart {
        /// Agent names or globs.
        names: Vec<String>,
    },
    /// Re-read the configuration; answered once the reload is done.
    Reload,
    /// Inject a fault into agents, or remove faults (`clear`, `link-up`).
    Fault {
        /// Agent names or globs.
        names: Vec<String>,
        /// The fault's kind: `reboot`, `hang`, `link-down`, `link-up`,
        /// `latency`, `loss`, `clear`.
        kind: String,
        /// Its argument (an ifIndex, a delay, a percentage), if it takes one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arg: Option<String>,
        /// The fault ends by itself after this many milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_ms: Option<u64>,
        /// Answer once the request is handed to the agents' units, without
        /// waiting until their processes have applied it (the scenarios,
        /// whose next faults must not wait for a stopped process).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        at_once: bool,
    },
    /// Lifecycle events kept by the supervisor, oldest first.
    Events {
        /// Only events with `seq >= since`; absent: every event still kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// A `node|component|event|agent` pattern (see `Filter`);
        /// absent: every event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        /// Keep the connection open and stream new events as JSON lines
        /// (with `gap`, `ping` and a final `overflow` record); see
        /// docs/cli.md.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        follow: bool,
        /// Only the last this many of the events asked for (after `since`
        /// and `filter`); with `follow`, the stream starts with them.
        /// Absent: all of them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last: Option<u64>,
    },
}

impl Request {
    /// A fault the supervisor asks for itself (a scenario's, or one given
    /// back to an agent that moved in): at once, lasting `lasts` (at least
    /// 1 ms; `None`: until cleared).
    pub fn own_fault(
        names: Vec<String>,
        kind: String,
        arg: Option<String>,
        lasts: Option<std::time::Duration>,
    ) -> Request {
        Request::Fault {
            names,
            kind,
            arg,
            for_ms: lasts.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
            at_once: true,
        }
    }
}

/// One request line as it travels: the request, plus the protocol version the
/// client speaks (absent means the current version, 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRequest {
    /// The protocol version the client speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// What it asks.
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
    /// The agent's name.
    pub name: String,
    /// Its supervision state.
    pub state: crate::events::State,
    /// The pid of its process, while it has one.
    pub pid: Option<u32>,
    /// The endpoints it answers on (`address:port`).
    pub endpoints: Vec<String>,
    /// Restarts after failures so far.
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
    /// The device's active faults, as `KIND [ARG]` with the time left when
    /// they expire (`link-down 3 (8s left)`).
    #[serde(default)]
    pub faults: Vec<String>,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// The answer to `status`.
    Status {
        /// The node this supervisor runs as.
        node: String,
        /// Every agent, sorted by name.
        agents: Vec<AgentStatus>,
    },
    /// An operator action was carried out on these agents.
    Done {
        /// The agents it concerned.
        agents: Vec<String>,
        /// What was done, for people.
        message: String,
    },
    /// The answer to `events`.
    Events {
        /// The events, oldest first.
        events: Vec<crate::events::Event>,
        /// Events at or after the requested `since` were already dropped
        /// from the ring, so the client has missed some.
        gap: bool,
        /// With a gap: the first seq the ring still holds (as in the
        /// stream's `gap` record), so the client can say what it missed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oldest: Option<u64>,
    },
    /// The request failed.
    Error {
        /// Its class (the client's exit code follows from it).
        kind: ErrorKind,
        /// Why, for people.
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
    /// A handle without an event bus (tests of plain requests).
    #[cfg(test)]
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
