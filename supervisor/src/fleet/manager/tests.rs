//! The manager with the fake launcher on tokio's paused clock: the test is
//! the supervisor's loop (it feeds `Work` back) and plays every process.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{Asker, Manager, Reports, Work};
use crate::control::api::{ErrorKind, Request, Response};
use crate::events::{Bus, Event, EventKind, State};
use crate::fleet::stores::compile_stores;
use crate::process::testutil::{Fake, Launched, OnTerm, Sent, shared};
use crate::process::unit::Shared;

const PATIENCE: Duration = Duration::from_secs(600);

/// A fleet file in a directory of its own, with one snapshot.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.snmprec"), "1.3.6.1.2.1.1.5.0|4|x\n").unwrap();
        Files { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("fleet.yaml")
    }

    /// Writes a fleet of `(name, port)` agents.
    fn write(&self, agents: &[(&str, u16)]) {
        self.write_with("", agents);
    }

    /// The snapshot every agent serves.
    fn snapshot(&self) -> PathBuf {
        self.dir.path().join("d.snmprec")
    }

    /// Writes a fleet of `(name, port)` agents with more `cluster` keys
    /// (`, key: value`).
    fn write_with(&self, cluster: &str, agents: &[(&str, u16)]) {
        let d = self.dir.path().display();
        let mut text = format!(
            "cluster: {{ cache_dir: {d}/cache, state_dir: {d}/state {cluster} }}\nagents:\n"
        );
        for (name, port) in agents {
            text += &format!(
                "  - {{ name: {name}, listen: [\"127.0.0.1:{port}\"], data: {d}/d.snmprec, snmpv2c: {{ communities: [public] }} }}\n"
            );
        }
        std::fs::write(self.path(), text).unwrap();
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Harness {
    manager: Manager,
    work: mpsc::UnboundedReceiver<Work>,
    launches: mpsc::UnboundedReceiver<Launched>,
    /// Every process launched so far, by unit name (the latest).
    procs: HashMap<String, Launched>,
    events: broadcast::Receiver<Arc<Event>>,
    _watch: watch::Receiver<Vec<PathBuf>>,
    /// Stores the units and the cache's upkeep find gone.
    missing: mpsc::UnboundedReceiver<Vec<PathBuf>>,
}

impl Harness {
    async fn start(path: &Path, on_term: OnTerm) -> Harness {
        let fleet = agentcluster_conf::load(path).unwrap().fleet;
        let compiled = compile_stores(&fleet).unwrap();
        let bus = Bus::new("lab-a");
        let events = bus.subscribe();
        let (fake, launches) = Fake::new(on_term);
        let (limits, _) = watch::channel(crate::fleet::plan::limits(&fleet.cluster));
        let (watch_files, watch_rx) = watch::channel(Vec::new());
        let (dead, _) = mpsc::unbounded_channel();
        let (work_tx, work) = mpsc::unbounded_channel();
        let reports = Reports {
            dead,
            work: work_tx,
        };
        let (missing_stores, missing) = mpsc::unbounded_channel();
        let manager = Manager::start(
            &fleet,
            &compiled,
            Shared {
                missing_stores,
                ..shared(fake, 8, &bus)
            },
            crate::process::bind::Sockets::new(crate::process::holder::Holders::in_threads(1000)),
            limits,
            watch_files,
            reports,
        )
        .unwrap();
        Harness {
            manager,
            work,
            launches,
            procs: HashMap::new(),
            events,
            _watch: watch_rx,
            missing,
        }
    }

    /// Takes the next `n` launches and answers each one ready.
    async fn ready(&mut self, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        for _ in 0..n {
            let p = tokio::time::timeout(PATIENCE, self.launches.recv())
                .await
                .expect("a launch")
                .unwrap();
            p.ready().await;
            names.push(p.unit.clone());
            self.procs.insert(p.unit.clone(), p);
        }
        names.sort();
        names
    }

    /// The next piece of off-loop work, not applied yet.
    async fn next_work(&mut self) -> Work {
        tokio::time::timeout(PATIENCE, self.work.recv())
            .await
            .expect("work comes back")
            .unwrap()
    }

    /// Feeds the next piece of off-loop work back, as the loop does.
    async fn turn(&mut self) -> &'static str {
        let w = self.next_work().await;
        self.apply(w).await
    }

    async fn apply(&mut self, w: Work) -> &'static str {
        let what = match &w {
            Work::Prepared(_) => "prepared",
            Work::Stopped => "stopped",
            Work::Compiled { .. } => "compiled",
        };
        self.manager.on_work(w).await;
        what
    }

    async fn ask(&mut self, request: Request) -> Response {
        let (tx, rx) = oneshot::channel();
        self.manager.handle(request, tx).await;
        rx.await.expect("an answer")
    }

    fn running(&mut self) -> Vec<(String, State, Option<u32>)> {
        self.manager
            .status_list()
            .into_iter()
            .map(|a| (a.name, a.state, a.pid))
            .collect()
    }

    /// The events published since the last look: (agent, kind, reason).
    fn published(&mut self) -> Vec<(String, EventKind, String)> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push((e.agent.clone(), e.event, e.reason.clone()));
        }
        out.sort();
        out
    }

    /// The store the next message to unit `unit`'s process swaps in.
    async fn next_swap(&mut self, unit: &str) -> Vec<PathBuf> {
        let p = self.procs.get_mut(unit).expect("a process");
        let msg = tokio::time::timeout(PATIENCE, p.sent.recv())
            .await
            .expect("a message")
            .expect("the unit is alive");
        let Sent::Swap(swaps) = msg else {
            panic!("not a swap: {msg:?}")
        };
        swaps.into_iter().map(|s| s.store).collect()
    }

    /// The `config-changed` events published so far: (agent, reason).
    fn config_changes(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            if e.event == EventKind::ConfigChanged {
                out.push((e.agent.clone(), e.reason.clone()));
            }
        }
        out.sort();
        out
    }
}

async fn all_running(h: &mut Harness, names: &[&str]) {
    tokio::time::timeout(PATIENCE, h.manager.started())
        .await
        .expect("started");
    let got: Vec<String> = h.running().into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(got, names);
    assert!(h.running().iter().all(|(_, s, _)| *s == State::Running));
}

#[tokio::test(start_paused = true)]
async fn a_reload_restarts_only_what_changed_and_requests_are_answered_meanwhile() {
    let files = Files::new();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    files.write(&[("a", pa), ("b", pb), ("c", pc)]);
    // Processes that ignore SIGTERM: a reload waits stop_timeout for them.
    let mut h = Harness::start(&files.path(), OnTerm::Ignore).await;
    assert_eq!(h.ready(3).await, ["a", "b", "c"]);
    all_running(&mut h, &["a", "b", "c"]).await;
    let pid_a = h.running()[0].2;

    // b moves to another port, c goes, d comes.
    let (pb2, pd) = (free_port(), free_port());
    files.write(&[("a", pa), ("b", pb2), ("d", pd)]);
    let (tx, mut reply) = oneshot::channel();
    h.manager.reload(Asker::Control(tx));
    assert_eq!(h.turn().await, "prepared");
    // b and c are being stopped (they ignore SIGTERM for 5 s): the reload
    // is not answered yet, and other requests are.
    assert!(reply.try_recv().is_err(), "answered before the stops");
    let Response::Status { agents, .. } = h.ask(Request::Status).await else {
        panic!("not a status")
    };
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a"], "b and c are no longer the fleet's");
    let stop = h
        .ask(Request::Stop {
            names: vec!["b".into()],
        })
        .await;
    assert!(
        matches!(
            stop,
            Response::Error {
                kind: ErrorKind::UnknownAgent,
                ..
            }
        ),
        "{stop:?}"
    );

    // SIGKILL after stop_timeout ends them; then the new units start.
    assert_eq!(h.turn().await, "stopped");
    let Response::Done { agents, message } = reply.await.unwrap() else {
        panic!("reload not done")
    };
    assert_eq!(agents, ["b", "d", "c"]);
    assert!(
        message.starts_with("reloaded: 1 changed, 1 added, 1 removed"),
        "{message}"
    );
    assert_eq!(h.ready(2).await, ["b", "d"]);
    all_running(&mut h, &["a", "b", "d"]).await;
    assert_eq!(h.running()[0].2, pid_a, "a kept its process");
    assert_eq!(
        h.config_changes(),
        [
            ("b".to_string(), "reload: agent changed".to_string()),
            ("c".to_string(), "reload: agent removed".to_string()),
            ("d".to_string(), "reload: agent added".to_string()),
        ]
    );
}

/// A reload says what it does to an agent before it does it: a changed or
/// removed agent's `config-changed` comes before the `stopped` of its
/// process (which names that process and how it ended), an added agent's
/// before its `starting`.
#[tokio::test(start_paused = true)]
async fn a_reload_publishes_config_changed_before_it_stops_or_starts_an_agent() {
    let files = Files::new();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    files.write(&[("a", pa), ("b", pb), ("c", pc)]);
    let mut h = Harness::start(&files.path(), OnTerm::Exit).await;
    h.ready(3).await;
    all_running(&mut h, &["a", "b", "c"]).await;
    let pids: HashMap<String, Option<u32>> =
        h.running().into_iter().map(|(n, _, p)| (n, p)).collect();
    while h.events.try_recv().is_ok() {}

    files.write(&[("a", pa), ("b", free_port()), ("d", free_port())]);
    let (tx, reply) = oneshot::channel();
    h.manager.reload(Asker::Control(tx));
    assert_eq!(h.turn().await, "prepared");
    assert_eq!(h.turn().await, "stopped");
    assert!(matches!(reply.await.unwrap(), Response::Done { .. }));
    assert_eq!(h.ready(2).await, ["b", "d"]);
    all_running(&mut h, &["a", "b", "d"]).await;

    let mut events = Vec::new();
    while let Ok(e) = h.events.try_recv() {
        events.push(e);
    }
    let at = |agent: &str, kind: EventKind| {
        events
            .iter()
            .position(|e| e.agent == agent && e.event == kind)
            .unwrap_or_else(|| panic!("no {kind} of {agent}: {events:#?}"))
    };
    for (agent, why) in [("b", "changed"), ("c", "removed")] {
        let told = &events[at(agent, EventKind::ConfigChanged)];
        assert_eq!(told.reason, format!("reload: agent {why}"));
        assert_eq!(told.state, State::Stopping, "{told:?}");
        assert!(
            at(agent, EventKind::ConfigChanged) < at(agent, EventKind::Stopped),
            "{agent}: config-changed first: {events:#?}"
        );
        let stopped = &events[at(agent, EventKind::Stopped)];
        assert_eq!(stopped.pid, pids[agent], "{stopped:?}");
        assert_eq!(stopped.signal.as_deref(), Some("SIGTERM"), "{stopped:?}");
    }
    assert!(at("b", EventKind::Stopped) < at("b", EventKind::Starting));
    let added = &events[at("d", EventKind::ConfigChanged)];
    assert_eq!(
        (added.reason.as_str(), added.state),
        ("reload: agent added", State::Starting)
    );
    assert!(at("d", EventKind::ConfigChanged) < at("d", EventKind::Starting));
    assert!(!events.iter().any(|e| e.agent == "a"), "a is untouched");
}

#[tokio::test(start_paused = true)]
async fn a_refused_configuration_changes_nothing_and_reloads_queue_up() {
    let files = Files::new();
    let pa = free_port();
    files.write(&[("a", pa)]);
    let mut h = Harness::start(&files.path(), OnTerm::Exit).await;
    h.ready(1).await;
    all_running(&mut h, &["a"]).await;
    let before = h.running();

    std::fs::write(files.path(), "agents: [ { name: a, lisen: [] } ]\n").unwrap();
    let (tx1, r1) = oneshot::channel();
    let (tx2, r2) = oneshot::channel();
    h.manager.reload(Asker::Control(tx1));
    // Asked while the first runs: served by a second reload.
    h.manager.reload(Asker::Control(tx2));
    let first = h.next_work().await;
    // The second reads the file again once the first is done: fixed by then.
    files.write(&[("a", pa)]);
    assert_eq!(h.apply(first).await, "prepared");
    let Response::Error { kind, message } = r1.await.unwrap() else {
        panic!("not refused")
    };
    assert_eq!(kind, ErrorKind::Config);
    assert!(message.contains("configuration not reloaded"), "{message}");
    assert_eq!(h.turn().await, "prepared");
    assert_eq!(h.turn().await, "stopped");
    let Response::Done { agents, .. } = r2.await.unwrap() else {
        panic!("second reload not done")
    };
    assert!(agents.is_empty(), "nothing changed: {agents:?}");
    assert_eq!(h.running(), before);
}

#[tokio::test(start_paused = true)]
async fn operator_requests_name_agents_by_glob() {
    let files = Files::new();
    files.write(&[
        ("core-1", free_port()),
        ("core-2", free_port()),
        ("edge", free_port()),
    ]);
    let mut h = Harness::start(&files.path(), OnTerm::Exit).await;
    h.ready(3).await;
    all_running(&mut h, &["core-1", "core-2", "edge"]).await;

    let r = h
        .ask(Request::Stop {
            names: vec!["core-[12]".into()],
        })
        .await;
    let Response::Done { agents, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(agents, ["core-1", "core-2"]);
    let r = h
        .ask(Request::Restart {
            names: vec!["nothing*".into(), "edge".into()],
        })
        .await;
    let Response::Error { kind, message } = r else {
        panic!("{r:?}")
    };
    assert_eq!(kind, ErrorKind::UnknownAgent);
    assert!(message.contains("nothing*"), "{message}");
    let r = h
        .ask(Request::Stop {
            names: vec!["[".into()],
        })
        .await;
    assert!(
        matches!(
            r,
            Response::Error {
                kind: ErrorKind::BadRequest,
                ..
            }
        ),
        "{r:?}"
    );
}

/// `start` and `stop` answer with the agents they change: a running agent
/// is not reported as started, a stopped one not as stopped; the message
/// names the ones left alone, with their state.
#[tokio::test(start_paused = true)]
async fn start_and_stop_report_only_the_agents_they_change() {
    let files = Files::new();
    files.write(&[("core-1", free_port()), ("core-2", free_port())]);
    let mut h = Harness::start(&files.path(), OnTerm::Exit).await;
    h.ready(2).await;
    all_running(&mut h, &["core-1", "core-2"]).await;

    let r = h
        .ask(Request::Start {
            names: vec!["core-*".into()],
        })
        .await;
    let Response::Done { agents, message } = r else {
        panic!("{r:?}")
    };
    assert!(agents.is_empty(), "{agents:?}");
    assert_eq!(
        message,
        "nothing to start; left alone: core-1 (running), core-2 (running)"
    );

    let r = h
        .ask(Request::Stop {
            names: vec!["core-1".into()],
        })
        .await;
    let Response::Done { agents, message } = r else {
        panic!("{r:?}")
    };
    assert_eq!(agents, ["core-1"]);
    assert_eq!(message, "stop requested for 1 agent");
    // The unit publishes its state before it yields after the event.
    tokio::time::timeout(PATIENCE, async {
        while let Ok(e) = h.events.recv().await {
            if e.agent == "core-1" && e.event == EventKind::Stopped {
                return;
            }
        }
    })
    .await
    .expect("core-1 stopped");

    let r = h
        .ask(Request::Start {
            names: vec!["core-[12]".into()],
        })
        .await;
    let Response::Done { agents, message } = r else {
        panic!("{r:?}")
    };
    assert_eq!(agents, ["core-1"]);
    assert_eq!(
        message,
        "start requested for 1 agent; left alone: core-2 (running)"
    );
}

/// Four records, then the snapshot rewritten as tools and people do it.
const FOUR: &str = "1.3.6.1.2.1.1.1.0|4|four\n1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.8072\n\
                    1.3.6.1.2.1.1.5.0|4|x\n1.3.6.1.2.1.1.6.0|4|lab\n";

/// The `reload-failed` events among `events`: (agent, reason).
fn refusals(events: &[(String, EventKind, String)]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|(_, k, _)| *k == EventKind::ReloadFailed)
        .map(|(a, _, r)| (a.clone(), r.clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_emptied_shrunk_or_broken_snapshot_is_refused_and_a_good_one_swapped_in() {
    let files = Files::new();
    let snap = files.snapshot();
    std::fs::write(&snap, FOUR).unwrap();
    files.write(&[("a", free_port()), ("b", free_port())]);
    let mut h = Harness::start(&files.path(), OnTerm::Exit).await;
    h.ready(2).await;
    all_running(&mut h, &["a", "b"]).await;
    h.published();

    let cases = [
        // A file without records does not compile: its one error names it.
        (
            "",
            format!(
                "{}: no records: the file is empty or holds only blank lines and comments; ",
                snap.display()
            ),
        ),
        (
            "# cut short\n\n",
            format!("{}: no records: ", snap.display()),
        ),
        (
            "1.3.6.1.2.1.1.5.0|4|x\n",
            "it has 1 records where 4 are served: 75.0% lost, more than cluster.snapshot_max_loss (50%)".into(),
        ),
        // Each broken record is not repeated in every agent's event.
        (
            "1.3.6.1.2.1.1.5.0|4\nx\n1.3.6.1.2.1.1.6.0|4|y\ny\n",
            "d.snmprec:1: ".into(),
        ),
        ("x\ny\nz\n", " (and 2 more broken records); ".into()),
    ];
    for (text, why) in cases {
        std::fs::write(&snap, text).unwrap();
        h.manager.snapshots_changed(vec![snap.clone()]);
        assert_eq!(h.turn().await, "compiled");
        let got = refusals(&h.published());
        assert_eq!(got.len(), 2, "{text:?}: one per agent: {got:?}");
        for ((agent, reason), want) in got.iter().zip(["a", "b"]) {
            assert_eq!(agent, want);
            assert!(
                reason.starts_with(&format!("snapshot {} not reloaded: ", snap.display()))
                    && reason.contains(&why)
                    && reason.ends_with("; the old data stays served"),
                "{text:?}: {reason}"
            );
        }
    }
    // Half of the records may go: swapped in, and the next message each
    // process gets is that swap (none came for the refused ones).
    std::fs::write(&snap, "1.3.6.1.2.1.1.1.0|4|two\n1.3.6.1.2.1.1.5.0|4|x\n").unwrap();
    h.manager.snapshots_changed(vec![snap.clone()]);
    assert_eq!(h.turn().await, "compiled");
    let new_store = compile_stores(&agentcluster_conf::load(&files.path()).unwrap().fleet)
        .unwrap()
        .remove(&snap)
        .unwrap();
    for unit in ["a", "b"] {
        assert_eq!(
            h.next_swap(unit).await,
            std::slice::from_ref(&new_store),
            "{unit}"
        );
    }
    assert!(refusals(&h.published()).is_empty());
}

/// A store served now that someone deleted from the cache directory is
/// found by the cache's upkeep (or by a start that cannot open it) and
/// compiled again under the same name: nothing is swapped, nothing is
/// published.
#[tokio::test(start_paused = true)]
async fn a_served_store_deleted_from_the_cache_is_compiled_again() {
    let files = Files::new();
    files.write(&[("a", free_port()), ("b", free_port())]);
    let mut h = Harness::start(&files.path(), OnTerm::Exit).await;
    h.ready(2).await;
    all_running(&mut h, &["a", "b"]).await;
    h.published();
    let store = compile_stores(&agentcluster_conf::load(&files.path()).unwrap().fleet)
        .unwrap()
        .remove(&files.snapshot())
        .unwrap();
    std::fs::remove_file(&store).unwrap();

    h.manager.tend_cache();
    let gone = tokio::time::timeout(PATIENCE, h.missing.recv())
        .await
        .expect("the upkeep finds it")
        .unwrap();
    assert_eq!(gone, std::slice::from_ref(&store));
    h.manager.stores_missing(gone);
    assert_eq!(h.turn().await, "compiled");
    assert!(store.exists(), "compiled again");
    assert_eq!(h.published(), []);
    for unit in ["a", "b"] {
        let p = h.procs.get_mut(unit).unwrap();
        assert!(p.sent.try_recv().is_err(), "{unit}: no swap");
    }
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_would_shrink_a_served_snapshot_too_much_is_refused() {
    let files = Files::new();
    let snap = files.snapshot();
    std::fs::write(&snap, FOUR).unwrap();
    let port = free_port();
    files.write(&[("a", port)]);
    let mut h = Harness::start(&files.path(), OnTerm::Exit).await;
    h.ready(1).await;
    all_running(&mut h, &["a"]).await;
    h.published();

    // One record of four: the whole reload is refused, with one supervisor
    // event naming the configuration and the snapshot.
    std::fs::write(&snap, "1.3.6.1.2.1.1.5.0|4|x\n").unwrap();
    let (tx, mut reply) = oneshot::channel();
    h.manager.reload(Asker::Control(tx));
    assert_eq!(h.turn().await, "prepared");
    // Refused at once: no unit is stopped for it.
    let Ok(Response::Error { kind, message }) = reply.try_recv() else {
        panic!("not refused")
    };
    assert_eq!(kind, ErrorKind::Config);
    let why = format!(
        "snapshot {} not reloaded: it has 1 records where 4 are served",
        snap.display()
    );
    assert!(message.contains(&why), "{message}");
    let got = refusals(&h.published());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "", "a supervisor event");
    assert!(
        got[0].1.starts_with(&format!(
            "configuration {} not reloaded: ",
            files.path().display()
        )) && got[0].1.contains(&why),
        "{}",
        got[0].1
    );

    // The same file with the check turned off: reloaded and swapped in.
    files.write_with(", snapshot_max_loss: 100%", &[("a", port)]);
    let (tx, reply) = oneshot::channel();
    h.manager.reload(Asker::Control(tx));
    assert_eq!(h.turn().await, "prepared");
    assert_eq!(h.turn().await, "stopped");
    let Response::Done { message, .. } = reply.await.unwrap() else {
        panic!("not reloaded")
    };
    assert!(
        message.contains("1 swapped to new snapshot data"),
        "{message}"
    );
    assert_eq!(h.next_swap("a").await.len(), 1);
    // And the watcher's swaps take the reloaded limit too.
    std::fs::write(&snap, "1.3.6.1.2.1.1.6.0|4|y\n").unwrap();
    h.manager.snapshots_changed(vec![snap.clone()]);
    assert_eq!(h.turn().await, "compiled");
    assert!(refusals(&h.published()).is_empty());
    assert_eq!(h.next_swap("a").await.len(), 1);
}
