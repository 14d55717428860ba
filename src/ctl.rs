//! `agentcluster status|start|stop|restart|reload|events`: the operator's
//! side of the control socket. Finds the socket, sends one request, prints
//! the answer for a person (or as JSON) and picks the exit code of
//! docs/cli.md.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agentcluster_supervisor::protocol::{
    AgentStatus, ErrorKind, Event, Filter, RING, Request, Response, State, WireRequest,
    default_control_socket,
};

use crate::{EXIT_RUNTIME, EXIT_USER, UserError};

/// Exit code when the supervisor cannot be reached (docs/cli.md).
const EXIT_UNREACHABLE: u8 = 3;

/// How long to wait for an answer; a reload recompiles snapshots, so this
/// is generous, but a hung supervisor still ends in an error.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to find the supervisor (also accepted before the command, see
/// `crate::Cli`).
#[derive(Debug, Default, clap::Args)]
pub struct Target {
    /// Fleet configuration whose `cluster.control_socket` to use
    /// (`--control` wins over it).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Control socket of the supervisor (default: the `-c` file's
    /// `cluster.control_socket`, else a per-user runtime path).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

impl Target {
    /// Fills in what was given before the command, where nothing was given
    /// after it.
    pub fn or(&mut self, config: Option<&Path>, control: Option<&Path>) {
        if self.config.is_none() {
            self.config = config.map(Path::to_path_buf);
        }
        if self.control.is_none() {
            self.control = control.map(Path::to_path_buf);
        }
    }

    pub(crate) fn socket(&self) -> anyhow::Result<PathBuf> {
        socket_path(self.control.as_deref(), self.config.as_deref())
    }
}

#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    #[command(flatten)]
    pub target: Target,
    /// Agent names or globs (`*`, `?`, `[...]`; quote them from the shell).
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    #[command(flatten)]
    pub target: Target,
    /// Agent name or glob (`*`, `?`, `[...]`; quote it from the shell).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// reboot [OUTAGE], hang, link-down IFINDEX, link-up IFINDEX,
    /// latency DURATION[±DURATION], loss PERCENT, or clear (every fault).
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// The fault's argument, for the kinds that take one.
    #[arg(value_name = "ARG", allow_hyphen_values = true)]
    pub arg: Option<String>,
    /// The fault ends by itself after DURATION (`30s`, `5m`): a
    /// `fault-cleared` event says so.
    #[arg(long = "for", value_name = "DURATION")]
    pub for_: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Keep printing new events as they happen, until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Start at this event number (events with seq >= SEQ); default: every
    /// event the supervisor still keeps.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Only events whose id `node|component|event|agent` matches: a glob
    /// per field with the rules of `stop` names (`*`, `?`, `[...]`),
    /// component `agent` or `supervisor` (e.g. `'*|agent|died|core-*'`).
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Only the last N of those events (after --since and --filter); with
    /// --follow, start with them.
    #[arg(short = 'n', long, value_name = "N")]
    pub last: Option<u64>,
    /// Each record as the supervisor sends it, one JSON object a line:
    /// events, the `gap` record, the final `overflow` record (and `ping`
    /// records with `--pings`).
    #[arg(long)]
    pub json: bool,
    /// With `--follow --json`: also print the supervisor's keep-alive
    /// `ping` records.
    #[arg(long, requires_all = ["follow", "json"])]
    pub pings: bool,
}

/// An operator action on named agents.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

/// `agentcluster start|stop|restart NAME…`.
pub fn act(action: Action, args: NamesArgs) -> anyhow::Result<ExitCode> {
    let path = args.target.socket()?;
    let names = args.names;
    let request = match action {
        Action::Start => Request::Start { names },
        Action::Stop => Request::Stop { names },
        Action::Restart => Request::Restart { names },
    };
    let outcome = exchange(&path, request).and_then(|r| match r {
        Response::Done { agents, message } => print(&done(&agents, &message)),
        other => Err(failure(&path, other)),
    });
    Ok(finish(outcome))
}

/// `agentcluster fault NAME KIND [ARG] [--for DURATION]`.
pub fn fault(args: FaultArgs) -> anyhow::Result<ExitCode> {
    // A misspelt fault is the user's mistake, told before anything is asked.
    agentcluster_conf::Fault::parse(&args.kind, args.arg.as_deref()).map_err(UserError)?;
    let for_ms = match args.for_.as_deref() {
        None => None,
        Some(text) => match agentcluster_conf::parse_duration(text) {
            Some(d) if !d.is_zero() => Some(d.as_millis() as u64),
            _ => {
                return Err(
                    UserError(format!("bad --for {text:?}: a duration such as 30s or 5m")).into(),
                );
            }
        },
    };
    let path = args.target.socket()?;
    let request = Request::Fault {
        names: vec![args.name],
        kind: args.kind,
        arg: args.arg,
        for_ms,
        at_once: false,
    };
    let outcome = exchange(&path, request).and_then(|r| match r {
        Response::Done { agents, message } => print(&done(&agents, &message)),
        other => Err(failure(&path, other)),
    });
    Ok(finish(outcome))
}

/// `agentcluster reload`.
pub fn reload(target: &Target) -> anyhow::Result<ExitCode> {
    let path = target.socket()?;
    let outcome = exchange(&path, Request::Reload).and_then(|r| match r {
        Response::Done { message, .. } => print(&format!("{message}\n")),
        other => Err(failure(&path, other)),
    });
    Ok(finish(outcome))
}

/// `agentcluster events [--follow] [--since SEQ] [--filter PATTERN] [--json
/// [--pings]]`.
pub fn events(args: &EventsArgs) -> anyhow::Result<ExitCode> {
    // A bad pattern is the user's mistake, told before anything is asked.
    if let Some(pattern) = args.filter.as_deref() {
        Filter::parse(pattern).map_err(|e| UserError(e.to_string()))?;
    }
    let path = args.target.socket()?;
    let outcome = if args.follow {
        follow(&path, args)
    } else {
        let request = Request::Events {
            since: args.since,
            filter: args.filter.clone(),
            follow: false,
            last: args.last,
        };
        exchange_bytes(&path, request).and_then(|answer| {
            if args.json {
                // The events as the supervisor wrote them, not re-encoded.
                if let Ok(raw) = serde_json::from_slice::<RawEvents>(&answer)
                    && raw.result == "events"
                {
                    return print(&render_raw(&raw));
                }
            }
            match decode(&path, &answer)? {
                Response::Events { events, gap, .. } => {
                    let all: Vec<&Event> = events.iter().collect();
                    print(&render_events(&all, gap))
                }
                other => Err(failure(&path, other)),
            }
        })
    };
    Ok(finish(outcome))
}

/// The `events` answer with each event left as the supervisor wrote it.
#[derive(serde::Deserialize)]
struct RawEvents<'a> {
    result: &'a str,
    #[serde(borrow)]
    events: Vec<&'a serde_json::value::RawValue>,
    #[serde(default)]
    gap: bool,
    #[serde(default)]
    oldest: Option<u64>,
}

/// `events --json` of a one-shot answer: the stream's records, a `gap`
/// record first (`{"gap":true,"oldest":N}`, as `--follow` gets it), then
/// one event a line, byte for byte.
fn render_raw(raw: &RawEvents<'_>) -> String {
    let mut out = String::new();
    if raw.gap {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"gap": true, "oldest": raw.oldest})
        );
    }
    for e in &raw.events {
        out.push_str(e.get());
        out.push('\n');
    }
    out
}

/// `events --follow`: one connection on which the supervisor streams the
/// events (after replaying those from `--since`), keep-alive `ping`
/// records when idle, and a final `overflow` record if we fell behind. Ends
/// when the supervisor stops, or when stdout is closed. With `--json` each
/// record is printed as it came (pings only with `--pings`).
fn follow(path: &Path, args: &EventsArgs) -> Result<(), Failure> {
    let mut stream = UnixStream::connect(path).map_err(|e| unreachable(path, &e))?;
    let runtime = |e: io::Error| Failure {
        code: EXIT_RUNTIME,
        message: format!("control socket {}: {e}", path.display()),
    };
    stream
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(runtime)?;
    let request = Request::Events {
        since: args.since,
        filter: args.filter.clone(),
        follow: true,
        last: args.last,
    };
    let mut line = serde_json::to_vec(&WireRequest::new(request)).map_err(|e| Failure {
        code: EXIT_RUNTIME,
        message: format!("cannot encode the request: {e}"),
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(runtime)?;
    let reader = BufReader::new(&stream);
    for record in reader.lines() {
        let record = record.map_err(runtime)?;
        if record.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&record).map_err(|e| Failure {
            code: EXIT_RUNTIME,
            message: format!("unreadable record from the supervisor: {e}"),
        })?;
        let raw = format!("{}\n", record.trim_end());
        if value.get("ping").is_some() {
            if args.pings && !print_open(&raw)? {
                return Ok(());
            }
            continue;
        }
        if value.get("overflow").is_some() {
            let last = value.get("last_seq").and_then(|v| v.as_u64()).unwrap_or(0);
            if args.json {
                print_open(&raw)?;
            }
            return Err(Failure {
                code: EXIT_RUNTIME,
                message: format!(
                    "the supervisor cut the stream: {}; resume with --since {}",
                    value
                        .get("reason")
                        .and_then(|v| v.as_str())
                        .unwrap_or("too slow"),
                    last + 1
                ),
            });
        }
        if value.get("gap").is_some() {
            let text = if args.json {
                raw
            } else {
                render_events(&[], true)
            };
            if !print_open(&text)? {
                return Ok(());
            }
            continue;
        }
        if value.get("result").is_some() {
            // An error answer instead of a stream.
            let response: Response = serde_json::from_value(value).map_err(|e| Failure {
                code: EXIT_RUNTIME,
                message: format!("unreadable answer from the supervisor: {e}"),
            })?;
            return Err(failure(path, response));
        }
        let text = if args.json {
            raw
        } else {
            let event: Event = serde_json::from_value(value).map_err(|e| Failure {
                code: EXIT_RUNTIME,
                message: format!("unreadable event from the supervisor: {e}"),
            })?;
            render_events(&[&event], false)
        };
        if !print_open(&text)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Events as text, after a gap notice when some were lost.
fn render_events(events: &[&Event], gap: bool) -> String {
    let mut out = String::new();
    if gap {
        let _ = writeln!(
            out,
            "-- events were dropped: the supervisor keeps only the last {RING} \
             (3 per agent of a larger fleet), and the ones asked for are gone --"
        );
    }
    for e in events {
        out.push_str(&event_line(e));
        out.push('\n');
    }
    out
}

/// One event for a person, on one line:
/// `2026-11-22T12:00:00.123Z lab-a core-sw-1 died pid=4242 signal=SIGKILL
/// restarts=3 state=backoff seq=42: killed by SIGKILL` (one line; a pid,
/// exit code or signal only when the event has one; `-` for the agent of
/// the supervisor's own events; no `: …` without a reason).
fn event_line(e: &Event) -> String {
    let mut line = format!(
        "{} {} {} {}",
        one_line(&e.ts),
        one_line(&e.node),
        if e.agent.is_empty() {
            "-".to_string()
        } else {
            one_line(&e.agent)
        },
        e.event,
    );
    if let Some(pid) = e.pid {
        let _ = write!(line, " pid={pid}");
    }
    if let Some(code) = e.exit_code {
        let _ = write!(line, " exit={code}");
    }
    if let Some(signal) = &e.signal {
        let _ = write!(line, " signal={}", one_line(signal));
    }
    let _ = write!(
        line,
        " restarts={} state={} seq={}",
        e.restarts, e.state, e.seq
    );
    if !e.reason.is_empty() {
        line.push_str(": ");
        line.push_str(&one_line(&e.reason));
    }
    line
}

/// Control characters (a newline in a reason) escaped, so one event or KVP
/// record stays one line.
pub(crate) fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The control socket to use: `--control`, else the config's
/// `cluster.control_socket` (with `-c`), else the default.
fn socket_path(control: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = control {
        return Ok(p.to_path_buf());
    }
    if let Some(file) = config {
        let loaded = agentcluster_conf::load(file).map_err(|problems| {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            UserError(format!(
                "cannot find the control socket in {}:\n{}",
                file.display(),
                text.join("\n")
            ))
        })?;
        if let Some(p) = loaded.fleet.cluster.control_socket {
            return Ok(p);
        }
    }
    Ok(default_control_socket())
}

/// Why a command did not succeed, and its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

pub(crate) fn finish(outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("agentcluster: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// An answer that is not the one the command waits for.
pub(crate) fn failure(path: &Path, response: Response) -> Failure {
    match response {
        Response::Error { kind, message } => Failure {
            code: match kind {
                ErrorKind::UnknownAgent | ErrorKind::BadRequest | ErrorKind::Config => EXIT_USER,
                ErrorKind::Internal => EXIT_RUNTIME,
                ErrorKind::PermissionDenied => EXIT_UNREACHABLE,
            },
            message,
        },
        other => Failure {
            code: EXIT_RUNTIME,
            message: format!(
                "unexpected answer from the supervisor at {}: {other:?}",
                path.display()
            ),
        },
    }
}

/// Sends one request and reads its answer.
pub(crate) fn exchange(path: &Path, request: Request) -> Result<Response, Failure> {
    let answer = exchange_bytes(path, request)?;
    decode(path, &answer)
}

fn decode(path: &Path, answer: &[u8]) -> Result<Response, Failure> {
    serde_json::from_slice(answer).map_err(|e| Failure {
        code: EXIT_RUNTIME,
        message: format!(
            "unreadable answer from the supervisor at {}: {e}",
            path.display()
        ),
    })
}

/// Sends one request and reads its answer line, undecoded.
fn exchange_bytes(path: &Path, request: Request) -> Result<Vec<u8>, Failure> {
    let mut stream = UnixStream::connect(path).map_err(|e| unreachable(path, &e))?;
    let runtime = |e: io::Error| Failure {
        code: EXIT_RUNTIME,
        message: format!("control socket {}: {e}", path.display()),
    };
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(runtime)?;
    stream
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(runtime)?;
    let mut line = serde_json::to_vec(&WireRequest::new(request)).map_err(|e| Failure {
        code: EXIT_RUNTIME,
        message: format!("cannot encode the request: {e}"),
    })?;
    line.push(b'\n');
    // A supervisor that refuses us closes the connection after one error
    // line; read that line even if our write failed.
    let sent = stream.write_all(&line);
    let mut answer = Vec::new();
    let read = BufReader::new(&stream).read_until(b'\n', &mut answer);
    if answer.is_empty() {
        let message = match (sent, read) {
            (_, Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                format!(
                    "no answer from the supervisor at {} within {}s",
                    path.display(),
                    ANSWER_TIMEOUT.as_secs()
                )
            }
            (Err(e), _) | (Ok(()), Err(e)) => {
                format!("control socket {}: {e}", path.display())
            }
            (Ok(()), Ok(_)) => format!(
                "the supervisor at {} closed the connection without answering",
                path.display()
            ),
        };
        return Err(Failure {
            code: EXIT_RUNTIME,
            message,
        });
    }
    Ok(answer)
}

pub(crate) fn unreachable(path: &Path, e: &io::Error) -> Failure {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        "hint: the socket belongs to another user: run this as that user (or root), \
         or point at your own supervisor with --control PATH"
    } else {
        "hint: is `agentcluster run` running? Point at its control socket with \
         --control PATH (or -c FILE to read it from the fleet configuration)"
    };
    Failure {
        code: EXIT_UNREACHABLE,
        message: format!(
            "cannot reach the supervisor at {}: {e}\n{hint}",
            path.display()
        ),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> Result<(), Failure> {
    print_open(text).map(|_| ())
}

/// Writes to stdout; `false` when the reader has gone (`| head`), which is
/// not an error but means nobody wants more.
pub(crate) fn print_open(text: &str) -> Result<bool, Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure {
            code: EXIT_RUNTIME,
            message: format!("cannot write to stdout: {e}"),
        }),
    }
}

/// The answer to an action: its message, then one affected agent a line.
fn done(agents: &[String], message: &str) -> String {
    let mut s = String::new();
    if !message.is_empty() {
        s.push_str(message);
        s.push('\n');
    }
    for a in agents {
        s.push_str("  ");
        s.push_str(a);
        s.push('\n');
    }
    s
}

const HEADERS: [&str; 8] = [
    "NAME",
    "STATE",
    "PID",
    "ENDPOINTS",
    "RESTARTS",
    "UPTIME",
    "RSS",
    "REQUESTS",
];

/// The column of the state, which may be coloured.
const STATE_COLUMN: usize = 1;

/// Numeric columns, right-aligned.
const RIGHT: [bool; 8] = [false, false, true, false, true, true, true, true];

/// The `status` table, sorted by name (`printer-2` before `printer-10`).
#[cfg(test)]
fn table(agents: &[AgentStatus]) -> String {
    let mut sorted: Vec<&AgentStatus> = agents.iter().collect();
    sorted.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    render_table(&sorted, &|_, cell| cell.to_string())
}

/// The `status` table of `agents`, in their order. `paint` gets each
/// STATE cell, already padded to its column's width, and may wrap it (in
/// colour codes) without breaking the alignment.
pub(crate) fn render_table(
    agents: &[&AgentStatus],
    paint: &dyn Fn(State, &str) -> String,
) -> String {
    let dash = || "-".to_string();
    let rows: Vec<Row<State>> = agents
        .iter()
        .map(|a| Row {
            key: a.state,
            cells: vec![
                a.name.clone(),
                a.state.to_string(),
                a.pid.map_or_else(dash, |p| p.to_string()),
                if a.endpoints.is_empty() {
                    dash()
                } else {
                    a.endpoints.join(",")
                },
                a.restarts.to_string(),
                a.uptime_ms.map_or_else(dash, uptime),
                a.rss_bytes.map_or_else(dash, rss),
                a.requests.to_string(),
            ],
            // A device's active faults follow its row.
            after: if a.faults.is_empty() {
                String::new()
            } else {
                format!("  faults: {}", a.faults.join(", "))
            },
        })
        .collect();
    let columns: Vec<Column> = HEADERS
        .iter()
        .zip(RIGHT)
        .map(|(&header, right)| Column { header, right })
        .collect();
    render_grid(&columns, STATE_COLUMN, &rows, paint)
}

/// One column of a table.
pub(crate) struct Column {
    pub header: &'static str,
    /// Numbers: right-aligned.
    pub right: bool,
}

/// One row of a table: its cells, what [`render_grid`]'s `paint` gets
/// for the painted column, and text after the row's last cell.
pub(crate) struct Row<K> {
    pub key: K,
    pub cells: Vec<String>,
    pub after: String,
}

/// `rows` under a header line, each column as wide as its widest cell,
/// two spaces apart; the cells of column `painted` go through `paint`
/// (with their row's key) once padded, so colours keep the alignment.
pub(crate) fn render_grid<K: Copy>(
    columns: &[Column],
    painted: usize,
    rows: &[Row<K>],
    paint: &dyn Fn(K, &str) -> String,
) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.header.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(&row.cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let headers: Vec<String> = columns.iter().map(|c| c.header.to_string()).collect();
    let lines = std::iter::once((None, &headers, "")).chain(
        rows.iter()
            .map(|r| (Some(r.key), &r.cells, r.after.as_str())),
    );
    let mut out = String::new();
    for (key, cells, after) in lines {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = widths[i];
            let padded = if columns[i].right {
                format!("{cell:>w$}")
            } else {
                format!("{cell:<w$}")
            };
            match key {
                Some(key) if i == painted => line.push_str(&paint(key, &padded)),
                _ => line.push_str(&padded),
            }
        }
        out.push_str(line.trim_end());
        out.push_str(after);
        out.push('\n');
    }
    out
}

/// `42s`, `12m05s`, `5h03m`, `3d4h`.
fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Bytes in binary units: `512B`, `2.1M`, `34M`, `1.5G`.
fn rss(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    loop {
        // Round as it will be shown, so 1023.9K becomes 1.0M, not 1024K.
        let shown = if v < 9.95 {
            (v * 10.0).round() / 10.0
        } else {
            v.round()
        };
        if shown < 1024.0 || unit == UNITS.len() - 1 {
            return if shown < 10.0 {
                format!("{shown:.1}{}", UNITS[unit])
            } else {
                format!("{shown:.0}{}", UNITS[unit])
            };
        }
        v /= 1024.0;
        unit += 1;
    }
}

/// Compares names with runs of digits taken as numbers.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let trim = |n: &[u8]| -> usize { n.iter().take_while(|&&c| c == b'0').count() };
                let (ta, tb) = (&na[trim(na)..], &nb[trim(nb)..]);
                let ord = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentcluster_supervisor::protocol::EventKind;

    fn agent(name: &str) -> AgentStatus {
        AgentStatus {
            name: name.into(),
            state: State::Running,
            pid: Some(4242),
            endpoints: vec!["127.0.0.1:10161".into(), "[::1]:10161".into()],
            restarts: 0,
            uptime_ms: Some(725_000),
            rss_bytes: Some(2_202_009),
            requests: 1234,
            process: name.into(),
            faults: Vec::new(),
        }
    }

    fn died() -> Event {
        Event {
            seq: 42,
            ts: "2026-11-22T12:00:00.123Z".into(),
            node: "lab-a".into(),
            agent: "core-sw-1".into(),
            event: EventKind::Died,
            pid: Some(4242),
            exit_code: None,
            signal: Some("SIGKILL".into()),
            restarts: 3,
            state: State::Backoff,
            reason: "killed by SIGKILL".into(),
        }
    }

    #[test]
    fn an_event_is_one_human_line() {
        assert_eq!(
            event_line(&died()),
            "2026-11-22T12:00:00.123Z lab-a core-sw-1 died pid=4242 signal=SIGKILL \
             restarts=3 state=backoff seq=42: killed by SIGKILL"
        );
        let started = Event {
            seq: 1,
            agent: String::new(),
            event: EventKind::SupervisorStarted,
            pid: None,
            exit_code: Some(0),
            signal: None,
            restarts: 0,
            state: State::Running,
            reason: String::new(),
            ..died()
        };
        assert_eq!(
            event_line(&started),
            "2026-11-22T12:00:00.123Z lab-a - supervisor-started exit=0 \
             restarts=0 state=running seq=1"
        );
        let mut multi = died();
        multi.reason = "bad data\nline 2\r\x1b[31m".into();
        let line = event_line(&multi);
        assert!(line.ends_with(r": bad data\nline 2\r\u{1b}[31m"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn events_render_as_text_or_json_lines_with_a_gap_notice_first() {
        let e = died();
        let text = render_events(&[&e, &e], false);
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        let text = render_events(&[&e], true);
        let first = text.lines().next().unwrap();
        assert!(first.contains("dropped"), "{first}");
        assert!(text.lines().nth(1).unwrap().contains("core-sw-1 died"));
        assert_eq!(render_events(&[], false), "");
    }

    /// `--json` prints the answer's events byte for byte (a field this
    /// client does not know stays), after the stream's `gap` record.
    #[test]
    fn json_events_are_printed_as_the_supervisor_sent_them() {
        let event = r#"{"seq":42,"ts":"2026-11-22T12:00:00.123Z","node":"lab-a","agent":"core-sw-1","event":"died","pid":4242,"exit_code":null,"signal":"SIGKILL","restarts":3,"state":"backoff","reason":"killed by SIGKILL","new_field":{"b":1,"a":2}}"#;
        let answer =
            format!(r#"{{"result":"events","events":[{event},{event}],"gap":true,"oldest":7}}"#);
        let raw: RawEvents = serde_json::from_str(&answer).unwrap();
        let text = render_raw(&raw);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, [r#"{"gap":true,"oldest":7}"#, event, event]);
        let answer = format!(r#"{{"result":"events","events":[{event}],"gap":false}}"#);
        let raw: RawEvents = serde_json::from_str(&answer).unwrap();
        assert_eq!(render_raw(&raw), format!("{event}\n"));
    }

    #[test]
    fn uptime_is_short_and_human() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(999), "0s");
        assert_eq!(uptime(42_000), "42s");
        assert_eq!(uptime(60_000), "1m00s");
        assert_eq!(uptime(725_000), "12m05s");
        assert_eq!(uptime(3_600_000), "1h00m");
        assert_eq!(uptime((5 * 3600 + 3 * 60 + 59) * 1000), "5h03m");
        assert_eq!(uptime((3 * 86_400 + 4 * 3600 + 59 * 60) * 1000), "3d4h");
        assert_eq!(uptime(400 * 86_400 * 1000), "400d0h");
    }

    #[test]
    fn rss_uses_binary_units() {
        assert_eq!(rss(0), "0B");
        assert_eq!(rss(1023), "1023B");
        assert_eq!(rss(1024), "1.0K");
        assert_eq!(rss(2_202_009), "2.1M");
        assert_eq!(rss(35_651_584), "34M");
        assert_eq!(rss(1024 * 1024 - 1), "1.0M");
        assert_eq!(rss(10 * 1024 * 1024 - 1), "10M");
        assert_eq!(rss(3 * 1024 * 1024 * 1024 / 2), "1.5G");
        assert_eq!(rss(u64::MAX), "16384P");
    }

    #[test]
    fn names_sort_naturally() {
        let mut v = vec![
            "printer-10",
            "printer-2",
            "core",
            "printer-02",
            "Core",
            "a1b",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "Core",
                "a1b",
                "core",
                "printer-2",
                "printer-02",
                "printer-10"
            ]
        );
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
        assert_eq!(natural_cmp("x1", "x"), Ordering::Greater);
    }

    #[test]
    fn status_table_is_aligned_and_sorted() {
        let mut idle = agent("printer-10");
        idle.state = State::Backoff;
        idle.pid = None;
        idle.uptime_ms = None;
        idle.rss_bytes = None;
        idle.endpoints = vec![];
        idle.restarts = 3;
        idle.requests = 0;
        let t = table(&[idle, agent("printer-2")]);
        let want = "\
NAME        STATE     PID  ENDPOINTS                    RESTARTS  UPTIME   RSS  REQUESTS
printer-2   running  4242  127.0.0.1:10161,[::1]:10161         0  12m05s  2.1M      1234
printer-10  backoff     -  -                                   3       -     -         0
";
        assert_eq!(t, want, "\n{t}");
    }

    #[test]
    fn active_faults_follow_their_row() {
        let mut hung = agent("printer-2");
        hung.faults = vec!["hang".into(), "link-down 3 (8s left)".into()];
        let t = table(&[agent("printer-1"), hung]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].starts_with("printer-1") && !lines[1].contains("faults"));
        assert!(
            lines[2].ends_with("1234  faults: hang, link-down 3 (8s left)"),
            "{t}"
        );
    }

    #[test]
    fn empty_status_is_just_the_header() {
        assert_eq!(
            table(&[]),
            "NAME  STATE  PID  ENDPOINTS  RESTARTS  UPTIME  RSS  REQUESTS\n"
        );
    }

    #[test]
    fn done_lists_the_agents() {
        assert_eq!(
            done(&["a".into(), "b".into()], "restarting 2 agents"),
            "restarting 2 agents\n  a\n  b\n"
        );
        assert_eq!(done(&[], ""), "");
    }

    #[test]
    fn error_kinds_map_to_exit_codes() {
        let p = Path::new("/x.sock");
        let code = |kind| {
            failure(
                p,
                Response::Error {
                    kind,
                    message: "m".into(),
                },
            )
            .code
        };
        assert_eq!(code(ErrorKind::UnknownAgent), 1);
        assert_eq!(code(ErrorKind::BadRequest), 1);
        assert_eq!(code(ErrorKind::Config), 1);
        assert_eq!(code(ErrorKind::Internal), 2);
        assert_eq!(code(ErrorKind::PermissionDenied), 3);
        let wrong = failure(
            p,
            Response::Done {
                agents: vec![],
                message: String::new(),
            },
        );
        assert_eq!(wrong.code, 2);
    }

    #[test]
    fn socket_path_prefers_control_then_config_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let snap = Path::new(env!("CARGO_MANIFEST_DIR")).join("mibs/linux-host.snmprec");
        let agents = format!(
            "agents:\n  - name: a\n    listen: [\"127.0.0.1:20001\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            snap.display()
        );
        let with = dir.path().join("with.yaml");
        std::fs::write(
            &with,
            format!("cluster:\n  control_socket: run/ctl.sock\n{agents}"),
        )
        .unwrap();
        let without = dir.path().join("without.yaml");
        std::fs::write(&without, &agents).unwrap();

        let explicit = Path::new("/somewhere/x.sock");
        assert_eq!(socket_path(Some(explicit), Some(&with)).unwrap(), explicit);
        // relative to the config file's directory
        assert_eq!(
            socket_path(None, Some(&with)).unwrap(),
            dir.path().join("run/ctl.sock")
        );
        assert_eq!(
            socket_path(None, Some(&without)).unwrap(),
            default_control_socket()
        );
        assert_eq!(socket_path(None, None).unwrap(), default_control_socket());
        let err = socket_path(None, Some(&dir.path().join("missing.yaml"))).unwrap_err();
        assert!(err.downcast_ref::<UserError>().is_some(), "{err:#}");
    }

    #[test]
    fn an_absent_socket_is_unreachable_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let f = exchange(&path, Request::Status).unwrap_err();
        assert_eq!(f.code, EXIT_UNREACHABLE);
        assert!(
            f.message.contains(&path.display().to_string()),
            "{}",
            f.message
        );
        assert!(f.message.contains("--control"), "{}", f.message);
        // a stale socket file: connection refused, same exit code
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let f = exchange(&path, Request::Status).unwrap_err();
        assert_eq!(f.code, EXIT_UNREACHABLE, "{}", f.message);
    }
}
