//! `agentcluster status`: the agents of the running supervisor under a
//! summary line, filtered by state, sorted, coloured on a terminal only;
//! `--watch` draws them again after each burst of events (it follows the
//! event stream and never polls). `--cluster` shows every node's agents
//! from etcd instead (`cluster_status.rs`), through the same filters,
//! order and colours.

use std::cmp::Ordering;
use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use agentcluster_supervisor::protocol::{AgentStatus, Request, Response, State, WireRequest};
use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::EXIT_RUNTIME;
use crate::ctl::{self, Failure, Target};

/// After an event, how long `--watch` waits for the rest of its burst
/// before it draws.
const SETTLE: Duration = Duration::from_millis(100);
/// The least time between two drawings of `--watch`: at most four a
/// second, however many events come.
const MIN_REDRAW: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print the agents as JSON instead of a table (those `--state`
    /// selects, in the supervisor's order).
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Every agent of every node of the fleet in etcd (the `-c` file's
    /// `cluster.etcd` says where), with the node that owns it.
    #[arg(long, conflicts_with_all = ["watch", "control"])]
    pub cluster: bool,
    /// Only the agents in STATE; repeat for several states (`unowned`
    /// and `unknown` with `--cluster`).
    #[arg(long = "state", value_name = "STATE", value_parser = state_parser())]
    pub states: Vec<Pick>,
    /// The order of the table: by name (numbers in order), by state, or
    /// the most restarts, longest uptime, most requests or largest RSS
    /// first.
    #[arg(long, value_enum, value_name = "KEY", default_value_t = SortKey::Name)]
    pub sort: SortKey,
    /// Draw the table again whenever the supervisor publishes events (in
    /// place on a terminal; a new table after a blank line otherwise),
    /// until interrupted.
    #[arg(short, long)]
    pub watch: bool,
    /// Only these agents: names or globs (`*`, `?`, `[...]`; quote them
    /// from the shell), as `stop` takes them. One that matches no agent
    /// is an error.
    #[arg(value_name = "NAME", value_parser = pattern)]
    pub names: Vec<glob::Pattern>,
}

/// A NAME argument: a glob, as the supervisor reads `stop`'s.
fn pattern(name: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(name).map_err(|e| format!("bad pattern {name:?}: {e}"))
}

/// What `status --sort` orders the agents by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    Name,
    State,
    Restarts,
    Uptime,
    Requests,
    Rss,
}

/// What `--state` picks: an agent's state, or one only the cluster's
/// view has. Ordered as `--sort state` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pick {
    /// A state of a supervised agent.
    Agent(State),
    /// `--cluster`: no node owns the agent.
    Unowned,
    /// `--cluster`: its owner has not reported it.
    Unknown,
}

impl Pick {
    /// The states only `--cluster` shows.
    const CLUSTER: [Pick; 2] = [Pick::Unowned, Pick::Unknown];

    /// Every pick, in order.
    fn all() -> impl Iterator<Item = Pick> {
        State::ALL.map(Pick::Agent).into_iter().chain(Pick::CLUSTER)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Pick::Agent(s) => s.as_str(),
            Pick::Unowned => "unowned",
            Pick::Unknown => "unknown",
        }
    }
}

/// `--state`: one of the states' names, which clap lists when it is not.
fn state_parser() -> impl TypedValueParser<Value = Pick> {
    let names: Vec<&'static str> = Pick::all().map(Pick::as_str).collect();
    PossibleValuesParser::new(names).try_map(|name: String| {
        Pick::all()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| format!("unknown state {name}"))
    })
}

/// `agentcluster status [--cluster] [--json] [--state STATE]… [--sort KEY]
/// [--watch]`.
pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    if args.cluster {
        return crate::cluster_status::status(args);
    }
    if let Some(only) = args.states.iter().find(|p| !matches!(p, Pick::Agent(_))) {
        return Err(crate::UserError(format!(
            "--state {}: only with --cluster (a supervisor's own agents are never {0})",
            only.as_str()
        ))
        .into());
    }
    let path = args.target.socket()?;
    let outcome = if args.watch {
        watch(&path, args)
    } else {
        once(&path, args)
    };
    Ok(ctl::finish(outcome))
}

fn once(path: &Path, args: &StatusArgs) -> Result<(), Failure> {
    let (node, agents) = fetch(path)?;
    all_named(args, &agents)?;
    let text = if args.json {
        let selected: Vec<&AgentStatus> = agents.iter().filter(|a| args.selects(a)).collect();
        let mut s = serde_json::to_string_pretty(&selected).map_err(|e| Failure {
            code: EXIT_RUNTIME,
            message: format!("cannot encode the status as JSON: {e}"),
        })?;
        s.push('\n');
        s
    } else {
        render(&node, &agents, args, colour())
    };
    ctl::print_open(&text).map(|_| ())
}

impl StatusArgs {
    /// Whether `--state` and the names let `agent` through.
    fn selects(&self, agent: &AgentStatus) -> bool {
        self.takes(&agent.name, Pick::Agent(agent.state))
    }

    /// Whether `--state` and the names let the agent `name` in `state`
    /// through.
    pub(crate) fn takes(&self, name: &str, state: Pick) -> bool {
        (self.states.is_empty() || self.states.contains(&state))
            && (self.names.is_empty() || self.names.iter().any(|p| p.matches(name)))
    }

    /// Whether `--state` or the names leave agents out: the summary then
    /// says how many are shown.
    pub(crate) fn filters(&self) -> bool {
        !self.states.is_empty() || !self.names.is_empty()
    }

    /// The names that match none of `agents` (every agent, whatever its
    /// state), as `stop` would refuse them: `no agent matches NAME, …`.
    pub(crate) fn unmatched<'a>(
        &self,
        agents: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<String> {
        let unmatched: Vec<&str> = self
            .names
            .iter()
            .filter(|p| !agents.clone().any(|a| p.matches(a)))
            .map(glob::Pattern::as_str)
            .collect();
        (!unmatched.is_empty()).then(|| format!("no agent matches {}", unmatched.join(", ")))
    }
}

/// Every NAME matches one of `agents`; else `no agent matches …`, a
/// failure of the command (exit status 1).
fn all_named(args: &StatusArgs, agents: &[AgentStatus]) -> Result<(), Failure> {
    match args.unmatched(agents.iter().map(|a| a.name.as_str())) {
        Some(message) => Err(Failure {
            code: crate::EXIT_USER,
            message,
        }),
        None => Ok(()),
    }
}

/// The supervisor's node and its agents.
fn fetch(path: &Path) -> Result<(String, Vec<AgentStatus>), Failure> {
    match ctl::exchange(path, Request::Status)? {
        Response::Status { node, agents } => Ok((node, agents)),
        other => Err(ctl::failure(path, other)),
    }
}

/// Whether to colour: stdout is a terminal and `NO_COLOR` is not set (to
/// anything but the empty string, <https://no-color.org>).
pub(crate) fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The summary line and the table of the agents `args` selects, in its
/// order.
fn render(node: &str, agents: &[AgentStatus], args: &StatusArgs, colour: bool) -> String {
    let mut rows: Vec<&AgentStatus> = agents.iter().filter(|a| args.selects(a)).collect();
    sort(&mut rows, args.sort);
    let shown = args.filters().then_some(rows.len());
    let mut out = summary(node, agents, shown);
    let plain = |_: State, cell: &str| cell.to_string();
    out.push_str(&if colour {
        ctl::render_table(&rows, &|s, cell| paint_pick(Pick::Agent(s), cell))
    } else {
        ctl::render_table(&rows, &plain)
    });
    out
}

/// `node lab-a: 5 agents: 3 running, 1 failed, 1 stopped`: every state
/// that has agents, in the order of [`State::ALL`]; `(N shown)` when a
/// filter left N of them.
fn summary(node: &str, agents: &[AgentStatus], shown: Option<usize>) -> String {
    let head = format!("node {}", ctl::one_line(node));
    let states: Vec<Pick> = agents.iter().map(|a| Pick::Agent(a.state)).collect();
    summary_of(&head, &states, shown, "")
}

/// `HEAD: N agents: COUNTS` and `extra`: the count of each state that
/// has agents, in [`Pick`]'s order; `(N shown)` when a filter left N.
pub(crate) fn summary_of(head: &str, states: &[Pick], shown: Option<usize>, extra: &str) -> String {
    let mut line = format!(
        "{head}: {} agent{}{extra}",
        states.len(),
        if states.len() == 1 { "" } else { "s" }
    );
    let mut sorted = states.to_vec();
    sorted.sort();
    let mut counts: Vec<(Pick, usize)> = Vec::new();
    for p in sorted {
        match counts.last_mut() {
            Some((last, n)) if *last == p => *n += 1,
            _ => counts.push((p, 1)),
        }
    }
    if !counts.is_empty() {
        line.push_str(": ");
        let counts: Vec<String> = counts
            .iter()
            .map(|(p, n)| format!("{n} {}", p.as_str()))
            .collect();
        line.push_str(&counts.join(", "));
    }
    if let Some(n) = shown {
        line.push_str(&format!(" ({n} shown)"));
    }
    line.push('\n');
    line
}

/// What `--sort` orders by, of one row of a table.
pub(crate) trait Sortable {
    fn name(&self) -> &str;
    fn state(&self) -> Pick;
    fn restarts(&self) -> u32;
    /// `None`: not known (no process, or not told).
    fn uptime_ms(&self) -> Option<u64>;
    fn requests(&self) -> Option<u64>;
    fn rss_bytes(&self) -> Option<u64>;
}

impl Sortable for AgentStatus {
    fn name(&self) -> &str {
        &self.name
    }
    fn state(&self) -> Pick {
        Pick::Agent(self.state)
    }
    fn restarts(&self) -> u32 {
        self.restarts
    }
    fn uptime_ms(&self) -> Option<u64> {
        self.uptime_ms
    }
    fn requests(&self) -> Option<u64> {
        Some(self.requests)
    }
    fn rss_bytes(&self) -> Option<u64> {
        self.rss_bytes
    }
}

/// Orders `rows` by `key`, ties by name (numbers in order). States go in
/// the order of [`State::ALL`] (then `unowned`, `unknown`); counts and
/// sizes largest first, agents without one (no process) last.
pub(crate) fn sort<R: Sortable>(rows: &mut [&R], key: SortKey) {
    rows.sort_by(|a, b| {
        let by = match key {
            SortKey::Name => Ordering::Equal,
            SortKey::State => a.state().cmp(&b.state()),
            SortKey::Restarts => b.restarts().cmp(&a.restarts()),
            SortKey::Uptime => b.uptime_ms().cmp(&a.uptime_ms()),
            SortKey::Requests => b.requests().cmp(&a.requests()),
            SortKey::Rss => b.rss_bytes().cmp(&a.rss_bytes()),
        };
        by.then_with(|| ctl::natural_cmp(a.name(), b.name()))
    });
}

/// A STATE cell in its colour: serving green, trouble red, on the way
/// yellow, stopped on purpose dim; with `--cluster`, an agent nobody owns
/// red and one its owner has not reported yellow.
pub(crate) fn paint_pick(state: Pick, cell: &str) -> String {
    match state {
        Pick::Agent(s) => paint(s, cell),
        Pick::Unowned => console::Style::new()
            .force_styling(true)
            .red()
            .apply_to(cell)
            .to_string(),
        Pick::Unknown => console::Style::new()
            .force_styling(true)
            .yellow()
            .apply_to(cell)
            .to_string(),
    }
}

/// A STATE cell in its colour: serving green, trouble red, on the way
/// yellow, stopped on purpose dim.
fn paint(state: State, cell: &str) -> String {
    let style = console::Style::new().force_styling(true);
    let style = match state {
        State::Running => style.green(),
        State::Failed | State::Unresponsive => style.red(),
        State::Starting | State::Stopping | State::Backoff => style.yellow(),
        State::Stopped | State::Inactive => style.dim(),
    };
    style.apply_to(cell).to_string()
}

/// What the event stream tells `--watch`.
enum Wake {
    /// An event (or a gap notice): the status may have changed.
    Event,
    /// The supervisor cut the stream (we fell behind): subscribe again.
    Resubscribe,
    /// The stream ended: the supervisor stopped.
    Closed,
    /// The supervisor refused the subscription.
    Refused(Failure),
}

/// `status --watch`: draws the status, then waits for events. After an
/// event it waits [`SETTLE`] for the rest of its burst (and at least
/// [`MIN_REDRAW`] after the last drawing), asks for the status again and
/// draws it: in place on a terminal, else after a blank line. Without
/// events nothing is drawn. Ends when the supervisor stops or stdout is
/// closed.
fn watch(path: &Path, args: &StatusArgs) -> Result<(), Failure> {
    let (tx, rx) = mpsc::channel();
    // Subscribed before the first status is read: no change between the
    // two goes unseen.
    subscribe(path, tx.clone())?;
    let terminal = std::io::stdout().is_terminal();
    let colour = colour();
    let mut first = true;
    loop {
        let (node, agents) = fetch(path)?;
        // The names must match when the watch begins; a reload may take
        // their agents away later, which the table then shows.
        if first {
            all_named(args, &agents)?;
        }
        let text = render(&node, &agents, args, colour);
        let frame = if terminal {
            in_place(&text)
        } else if first {
            text
        } else {
            format!("\n{text}")
        };
        if !ctl::print_open(&frame)? {
            return Ok(());
        }
        first = false;
        let drawn = Instant::now();
        // Nothing happens until something happens.
        if !woken(rx.recv().unwrap_or(Wake::Closed), path, &tx)? {
            return Ok(());
        }
        let until = (Instant::now() + SETTLE).max(drawn + MIN_REDRAW);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let wake = match rx.recv_timeout(left) {
                Ok(wake) => wake,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => Wake::Closed,
            };
            if !woken(wake, path, &tx)? {
                return Ok(());
            }
        }
    }
}

/// Acts on what the stream said: `false` when watching is over.
fn woken(wake: Wake, path: &Path, tx: &mpsc::Sender<Wake>) -> Result<bool, Failure> {
    match wake {
        Wake::Event => Ok(true),
        Wake::Resubscribe => subscribe(path, tx.clone()).map(|()| true),
        Wake::Closed => {
            eprintln!("agentcluster: the supervisor at {} stopped", path.display());
            Ok(false)
        }
        Wake::Refused(f) => Err(f),
    }
}

/// Subscribes to the events from now on, and reads the stream on a thread
/// that tells `tx` what comes (keep-alive pings are nothing).
fn subscribe(path: &Path, tx: mpsc::Sender<Wake>) -> Result<(), Failure> {
    let mut stream = UnixStream::connect(path).map_err(|e| ctl::unreachable(path, &e))?;
    let runtime = |e: std::io::Error| Failure {
        code: EXIT_RUNTIME,
        message: format!("control socket {}: {e}", path.display()),
    };
    stream
        .set_write_timeout(Some(ctl::SEND_TIMEOUT))
        .map_err(runtime)?;
    let request = Request::Events {
        since: None,
        filter: None,
        follow: true,
        last: None,
    };
    let mut line = serde_json::to_vec(&WireRequest::new(request)).map_err(|e| Failure {
        code: EXIT_RUNTIME,
        message: format!("cannot encode the request: {e}"),
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(runtime)?;
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        for record in BufReader::new(stream).lines() {
            let Ok(record) = record else { break };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&record) else {
                continue;
            };
            let wake = if value.get("ping").is_some() {
                continue;
            } else if value.get("overflow").is_some() {
                Wake::Resubscribe
            } else if value.get("result").is_some() {
                Wake::Refused(match serde_json::from_value::<Response>(value) {
                    Ok(response) => ctl::failure(&path, response),
                    Err(e) => Failure {
                        code: EXIT_RUNTIME,
                        message: format!("unreadable answer from the supervisor: {e}"),
                    },
                })
            } else {
                Wake::Event
            };
            let last = !matches!(wake, Wake::Event);
            if tx.send(wake).is_err() || last {
                return;
            }
        }
        let _ = tx.send(Wake::Closed);
    });
    Ok(())
}

/// `text` drawn over the previous drawing: from the top left corner, each
/// line cleared to its end, and the rest of the screen cleared.
fn in_place(text: &str) -> String {
    const HOME: &str = "\x1b[H";
    const CLEAR_LINE: &str = "\x1b[K";
    const CLEAR_BELOW: &str = "\x1b[J";
    let mut out = String::from(HOME);
    for line in text.lines() {
        out.push_str(line);
        out.push_str(CLEAR_LINE);
        out.push('\n');
    }
    out.push_str(CLEAR_BELOW);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: StatusArgs,
    }

    fn args(line: &[&str]) -> StatusArgs {
        Cli::try_parse_from(std::iter::once("status").chain(line.iter().copied()))
            .unwrap()
            .args
    }

    fn agent(name: &str, state: State, restarts: u32) -> AgentStatus {
        AgentStatus {
            name: name.into(),
            state,
            pid: (state == State::Running).then_some(100),
            endpoints: vec!["127.0.0.1:161".into()],
            restarts,
            uptime_ms: (state == State::Running).then_some(u64::from(restarts) * 1000),
            rss_bytes: None,
            requests: 0,
            process: name.into(),
            faults: vec![],
        }
    }

    fn fleet() -> Vec<AgentStatus> {
        vec![
            agent("a-10", State::Running, 0),
            agent("a-2", State::Failed, 3),
            agent("a-1", State::Running, 7),
            agent("b", State::Stopped, 0),
        ]
    }

    fn names(text: &str) -> Vec<&str> {
        text.lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .collect()
    }

    #[test]
    fn the_summary_counts_every_state_and_names_the_node() {
        assert_eq!(
            summary("lab-a", &fleet(), None),
            "node lab-a: 4 agents: 2 running, 1 failed, 1 stopped\n"
        );
        assert_eq!(
            summary("lab-a", &fleet()[..1], Some(1)),
            "node lab-a: 1 agent: 1 running (1 shown)\n"
        );
        assert_eq!(summary("n", &[], None), "node n: 0 agents\n");
    }

    #[test]
    fn states_filter_and_keys_sort() {
        let all = fleet();
        let t = render("n", &all, &args(&[]), false);
        assert_eq!(names(&t), ["a-1", "a-2", "a-10", "b"], "{t}");
        let t = render("n", &all, &args(&["--state", "failed"]), false);
        assert_eq!(names(&t), ["a-2"], "{t}");
        assert!(t.starts_with("node n: 4 agents: "), "{t}");
        assert!(t.lines().next().unwrap().ends_with("(1 shown)"), "{t}");
        let t = render(
            "n",
            &all,
            &args(&["--state", "failed", "--state", "stopped"]),
            false,
        );
        assert_eq!(names(&t), ["a-2", "b"], "{t}");
        let t = render("n", &all, &args(&["--sort", "restarts"]), false);
        assert_eq!(names(&t), ["a-1", "a-2", "a-10", "b"], "{t}");
        let t = render("n", &all, &args(&["--sort", "state"]), false);
        assert_eq!(names(&t), ["a-1", "a-10", "a-2", "b"], "{t}");
        // agents without an uptime come last
        let t = render("n", &all, &args(&["--sort", "uptime"]), false);
        assert_eq!(names(&t), ["a-1", "a-10", "a-2", "b"], "{t}");
    }

    #[test]
    fn an_unknown_state_or_key_is_refused_naming_the_valid_ones() {
        let e = Cli::try_parse_from(["status", "--state", "sleeping"])
            .err()
            .unwrap()
            .to_string();
        for s in State::ALL {
            assert!(e.contains(s.as_str()), "{e}");
        }
        assert!(e.contains("unowned") && e.contains("unknown"), "{e}");
        assert!(Cli::try_parse_from(["status", "--sort", "pid"]).is_err());
        assert!(Cli::try_parse_from(["status", "--cluster", "--watch"]).is_err());
        assert!(Cli::try_parse_from(["status", "--cluster", "--control", "/s"]).is_err());
        assert!(Cli::try_parse_from(["status", "--watch", "--json"]).is_err());
    }

    #[test]
    fn only_the_state_column_is_coloured_and_the_columns_stay_aligned() {
        let all = fleet();
        let plain = render("n", &all, &args(&[]), false);
        let coloured = render("n", &all, &args(&[]), true);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(coloured.contains("\x1b[32mrunning"), "{coloured:?}");
        assert!(coloured.contains("\x1b[31mfailed "), "{coloured:?}");
        assert_eq!(console::strip_ansi_codes(&coloured), plain);
        // the header and the summary are never coloured
        assert!(!coloured.lines().take(2).any(|l| l.contains('\x1b')));
    }

    #[test]
    fn drawing_in_place_starts_at_the_top_and_clears_what_was_there() {
        assert_eq!(in_place("a\nb\n"), "\x1b[Ha\x1b[K\nb\x1b[K\n\x1b[J");
    }
}
