//! The unit shell, driven through the fake launcher on tokio's paused
//! clock: the test plays the process (ready, heartbeats, exits) and checks
//! the events the unit publishes and the signals and messages it sends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentcluster_agent::channel::ToAgent;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AgentPlan, Command, Settings, Shared, Status, StoreSwap, UnitSpec, run};
use crate::events::{Bus, Event, EventKind, State};
use crate::process::launch::Inspection;
use crate::process::machine::{Exit, Sig};
use crate::process::testutil::{Fake, Launched, OnTerm, Sent, settings, shared};

/// Long enough for anything the paused clock can reach.
const PATIENCE: Duration = Duration::from_secs(600);

fn spec(name: &str) -> UnitSpec {
    UnitSpec {
        name: name.into(),
        agents: vec![AgentPlan {
            name: name.into(),
            endpoints: vec![],
            sockets: vec![],
            unbound: Box::default(),
            stores: vec![],
            config: agentcluster_agent::responder::Config {
                communities: vec![],
                max_varbinds: 1000,
                max_message_size: 1472,
                v3: None,
            },
            notify: vec![],
            engine_id: vec![],
            values: Default::default(),
            animate: None,
            faults: Default::default(),
            reboot_outage: None,
            reboot_from_ns: 0,
        }],
        active: true,
        memory_max: None,
        steering: Vec::new(),
    }
}

/// A unit under test.
struct Harness {
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    status: watch::Receiver<Status>,
    events: broadcast::Receiver<Arc<Event>>,
    launches: mpsc::UnboundedReceiver<Launched>,
    /// What the unit says of stores it could not open.
    missing: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    task: JoinHandle<()>,
}

fn start(spec: UnitSpec, on_term: OnTerm, tokens: usize) -> Harness {
    start_on(&Bus::new("lab-a"), spec, on_term, tokens)
}

fn start_on(bus: &Bus, spec: UnitSpec, on_term: OnTerm, tokens: usize) -> Harness {
    start_with(bus, spec, on_term, tokens, settings())
}

fn start_with(
    bus: &Bus,
    spec: UnitSpec,
    on_term: OnTerm,
    tokens: usize,
    settings: Settings,
) -> Harness {
    let (fake, launches) = Fake::new(on_term);
    let events = bus.subscribe();
    let (commands, rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let (status_tx, status) = watch::channel(Status::new(State::Stopped, 1));
    let (missing_stores, missing) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(
        spec,
        Shared {
            settings: Arc::new(settings),
            missing_stores,
            ..shared(fake, tokens, bus)
        },
        rx,
        stop.clone(),
        status_tx,
    ));
    Harness {
        commands,
        stop,
        status,
        events,
        launches,
        missing,
        task,
    }
}

impl Harness {
    async fn launched(&mut self) -> Launched {
        tokio::time::timeout(PATIENCE, self.launches.recv())
            .await
            .expect("a launch")
            .expect("the unit is alive")
    }

    /// The next event.
    async fn event(&mut self) -> Arc<Event> {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("an event")
            .expect("the bus is open")
    }

    /// The next event's kind, with the state it left.
    async fn next(&mut self) -> (EventKind, State) {
        let e = self.event().await;
        (e.event, e.state)
    }

    /// The kinds of the next `n` events.
    async fn kinds(&mut self, n: usize) -> Vec<EventKind> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await.0);
        }
        out
    }

    async fn state(&mut self, want: State) {
        tokio::time::timeout(PATIENCE, self.status.wait_for(|s| s.state == want))
            .await
            .expect("the state")
            .expect("the unit is alive");
    }
}

async fn signal(p: &mut Launched) -> Sig {
    tokio::time::timeout(PATIENCE, p.signals.recv())
        .await
        .expect("a signal")
        .expect("the process is held")
}

#[tokio::test(start_paused = true)]
async fn a_unit_starts_serves_and_stops_on_its_token() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let p = h.launched().await;
    assert_eq!((p.unit.as_str(), p.generation), ("a", 1));
    assert_eq!(h.next().await, (EventKind::Starting, State::Starting));
    p.ready().await;
    assert_eq!(h.next().await, (EventKind::Ready, State::Running));
    h.state(State::Running).await;
    assert_eq!(h.status.borrow().pid, Some(p.pid));

    h.stop.cancel();
    let mut p = p;
    assert_eq!(signal(&mut p).await, Sig::Term);
    let stopped = h.event().await;
    assert_eq!(
        (stopped.event, stopped.state),
        (EventKind::Stopped, State::Stopped)
    );
    // The text names the exit; so do the fields, with the process.
    assert_eq!(stopped.reason, "killed by SIGTERM");
    assert_eq!(stopped.pid, Some(p.pid));
    assert_eq!(stopped.signal.as_deref(), Some("SIGTERM"));
    tokio::time::timeout(PATIENCE, h.task)
        .await
        .expect("the unit ends")
        .expect("no panic");
}

#[tokio::test(start_paused = true)]
async fn a_process_that_dies_is_restarted_as_a_new_generation() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let p = h.launched().await;
    p.ready().await;
    assert_eq!(h.kinds(2).await, [EventKind::Starting, EventKind::Ready]);
    h.state(State::Running).await;

    p.exit(Exit::Signal("SIGKILL".into()));
    let died = tokio::time::timeout(PATIENCE, h.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(died.event, EventKind::Died);
    assert_eq!(died.pid, Some(p.pid), "died names the process that died");
    assert_eq!(died.signal.as_deref(), Some("SIGKILL"));
    // A first failure after a stable run restarts at once; `restarting`
    // names the process it replaces.
    let restarting = h.event().await;
    assert_eq!(restarting.event, EventKind::Restarting);
    assert_eq!(restarting.pid, Some(p.pid));
    assert_eq!(restarting.signal.as_deref(), Some("SIGKILL"));
    assert_eq!(h.kinds(1).await, [EventKind::Starting]);
    let q = h.launched().await;
    assert_eq!(q.generation, 2);
    assert_ne!(q.pid, p.pid);
    // A ready from the old generation counts for nothing.
    p.ready().await;
    q.ready().await;
    assert_eq!(h.next().await, (EventKind::Ready, State::Running));
    assert_eq!(h.status.borrow().restarts, 1);
}

/// A heartbeat that brings no new counts (a quiet process's) and the
/// checks between heartbeats leave the status as it was, its watchers
/// unwoken; one with counts shows them.
#[tokio::test(start_paused = true)]
async fn the_status_changes_when_a_heartbeat_brings_counts_only() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let p = h.launched().await;
    p.ready().await;
    assert_eq!(h.kinds(2).await, [EventKind::Starting, EventKind::Ready]);
    h.state(State::Running).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.status.mark_unchanged();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.heartbeat().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!h.status.has_changed().unwrap(), "{:?}", *h.status.borrow());
    let counts = agentcluster_agent::channel::AgentStats {
        name: "a".into(),
        requests: 7,
        ..Default::default()
    };
    p.heartbeat_with(vec![counts]).await;
    tokio::time::timeout(PATIENCE, h.status.changed())
        .await
        .expect("a change")
        .expect("the unit is alive");
    let status = h.status.borrow_and_update().clone();
    assert_eq!(status.requests, [7]);
    assert_eq!(status.totals[0].requests, 7);
    assert_eq!(status.state, State::Running);
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_makes_the_unit_unresponsive_and_restarts_it() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let mut p = h.launched().await;
    p.ready().await;
    assert_eq!(h.kinds(2).await, [EventKind::Starting, EventKind::Ready]);
    let ready_at = tokio::time::Instant::now();
    // Heartbeats keep it running for a while…
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.heartbeat().await;
    }
    let beat_until = tokio::time::Instant::now();
    // …then they stop, and after inactive_after (5 s) it is unresponsive.
    assert_eq!(
        h.next().await,
        (EventKind::Unresponsive, State::Unresponsive)
    );
    let silent = tokio::time::Instant::now() - beat_until;
    assert!(
        silent >= Duration::from_secs(5) && silent <= Duration::from_secs(7),
        "unresponsive after {silent:?} of silence"
    );
    assert!(beat_until - ready_at >= Duration::from_secs(8));
    assert_eq!(signal(&mut p).await, Sig::Term);
    assert_eq!(h.next().await.0, EventKind::Died);
    assert_eq!(h.next().await.0, EventKind::Restarting);
    assert_eq!(h.launched().await.generation, 2);
}

#[tokio::test(start_paused = true)]
async fn a_process_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let mut h = start(spec("a"), OnTerm::Ignore, 1);
    let mut p = h.launched().await;
    p.ready().await;
    h.state(State::Running).await;
    h.commands.send(Command::Stop).await.unwrap();
    assert_eq!(signal(&mut p).await, Sig::Term);
    let termed = tokio::time::Instant::now();
    assert_eq!(signal(&mut p).await, Sig::Kill);
    assert_eq!(termed.elapsed(), Duration::from_secs(5), "stop_timeout");
    h.state(State::Stopped).await;
    // Stopped on request: no restart follows.
    assert!(
        tokio::time::timeout(Duration::from_secs(120), h.launches.recv())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_start_without_ready_fails_after_the_start_timeout_and_is_retried() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let mut p = h.launched().await;
    let launched_at = tokio::time::Instant::now();
    assert_eq!(h.next().await.0, EventKind::Starting);
    assert_eq!(h.next().await.0, EventKind::StartFailed);
    assert_eq!(
        launched_at.elapsed(),
        Duration::from_secs(10),
        "start_timeout"
    );
    assert_eq!(signal(&mut p).await, Sig::Kill);
    assert_eq!(h.kinds(2).await, [EventKind::Died, EventKind::Restarting]);
    assert_eq!(h.launched().await.generation, 2);
}

#[tokio::test(start_paused = true)]
async fn a_ready_with_a_wrong_token_fails_closed() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let p = h.launched().await;
    p.ready_with("not-the-token").await;
    assert_eq!(
        h.kinds(2).await,
        [EventKind::Starting, EventKind::StartFailed]
    );
    assert_ne!(h.status.borrow().state, State::Running);
}

#[tokio::test(start_paused = true)]
async fn start_tokens_bound_how_many_processes_start_at_once() {
    let bus = Bus::new("lab-a");
    let (fake, mut launches) = Fake::new(OnTerm::Exit);
    let shared = shared(fake, 1, &bus);
    let mut tasks = Vec::new();
    let mut stops = Vec::new();
    for name in ["a", "b"] {
        let (_tx, rx) = mpsc::channel(16);
        let (status_tx, _status) = watch::channel(Status::new(State::Stopped, 1));
        let stop = CancellationToken::new();
        stops.push((stop.clone(), _tx, _status));
        tasks.push(tokio::spawn(run(
            spec(name),
            shared.clone(),
            rx,
            stop,
            status_tx,
        )));
    }
    let first = launches.recv().await.unwrap();
    // One token: the second process waits for the first to be ready.
    assert!(
        tokio::time::timeout(Duration::from_secs(3), launches.recv())
            .await
            .is_err(),
        "a second start while the only token is taken"
    );
    first.ready().await;
    let second = tokio::time::timeout(PATIENCE, launches.recv())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.unit, first.unit);
}

#[tokio::test(start_paused = true)]
async fn swaps_and_limits_reach_the_running_process() {
    let limits = |max_response_bytes| agentcluster_agent::channel::Limits {
        max_response_bytes,
        rate_limit: None,
    };
    let (limits_tx, limits_rx) = watch::channel(limits(1472));
    let settings = Settings {
        limits: limits_rx,
        ..settings()
    };
    let mut h = start_with(&Bus::new("lab-a"), spec("a"), OnTerm::Exit, 1, settings);
    let mut p = h.launched().await;
    p.ready().await;
    h.state(State::Running).await;
    let swap = StoreSwap {
        agent: 0,
        view: 0,
        store: "/cache/new.store".into(),
    };
    h.commands.send(Command::Swap(vec![swap])).await.unwrap();
    let sent = tokio::time::timeout(PATIENCE, p.sent.recv())
        .await
        .unwrap()
        .unwrap();
    let Sent::Swap(swaps) = sent else {
        panic!("not a swap: {sent:?}")
    };
    assert_eq!(swaps[0].store, std::path::Path::new("/cache/new.store"));
    limits_tx.send(limits(1400)).unwrap();
    let sent = tokio::time::timeout(PATIENCE, p.sent.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(sent, Sent::Msg(ToAgent::Limits(l)) if l == limits(1400)),
        "{sent:?}"
    );
}

/// A swap whose process ends before it answers is no failure: the next
/// process starts from the new stores, and its ready brings the
/// `data-reloaded` the swap owed. Whether the swap was sent first or found
/// the channel broken.
#[tokio::test(start_paused = true)]
async fn a_swap_whose_process_ends_first_is_served_by_the_restart() {
    let cache = tempfile::tempdir().unwrap();
    let store = |name: &str| {
        let p = cache.path().join(name);
        std::fs::write(&p, b"").unwrap();
        p
    };
    let mut one_view = spec("a");
    one_view.agents[0].stores = vec![store("old.store")];
    let mut h = start(one_view, OnTerm::Exit, 1);
    let mut p = h.launched().await;
    p.ready().await;
    assert_eq!(h.kinds(2).await, [EventKind::Starting, EventKind::Ready]);
    for (i, hang_up_first) in [(1, true), (2, false)] {
        let store = store(&format!("new-{i}.store"));
        if hang_up_first {
            p.hang_up();
        }
        let swap = StoreSwap {
            agent: 0,
            view: 0,
            store: store.clone(),
        };
        h.commands.send(Command::Swap(vec![swap])).await.unwrap();
        if !hang_up_first {
            assert!(matches!(sent(&mut p).await, Sent::Swap(_)));
        }
        // The unit takes the swap before it sees the exit.
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.exit(Exit::Signal("SIGKILL".into()));
        assert_eq!(
            h.kinds(3).await,
            [EventKind::Died, EventKind::Restarting, EventKind::Starting],
            "round {i}: no data-reloaded before the restart"
        );
        let q = h.launched().await;
        assert_eq!(q.stores, [vec![store]], "round {i}");
        q.ready().await;
        assert_eq!(h.next().await, (EventKind::Ready, State::Running));
        let e = h.event().await;
        assert_eq!(
            (e.event, e.reason.as_str(), e.pid),
            (
                EventKind::DataReloaded,
                "snapshot recompiled and served since the restart",
                Some(q.pid)
            ),
            "round {i}"
        );
        p = q;
    }
    // Two swaps in flight, the first answered, then the process ends: the
    // second is owed.
    for n in [4, 5] {
        let swap = StoreSwap {
            agent: 0,
            view: 0,
            store: store(&format!("new-{n}.store")),
        };
        h.commands.send(Command::Swap(vec![swap])).await.unwrap();
        assert!(matches!(sent(&mut p).await, Sent::Swap(_)));
    }
    p.swapped().await;
    let e = h.event().await;
    assert_eq!(e.reason, "snapshot recompiled and swapped in");
    p.exit(Exit::Signal("SIGKILL".into()));
    let q = h.launched().await;
    assert_eq!(q.stores, [vec![store("new-5.store")]]);
    q.ready().await;
    let kinds = h.kinds(5).await;
    assert_eq!(kinds[3..], [EventKind::Ready, EventKind::DataReloaded]);
    p = q;
    // Answered by its process, a swap says so once; the next restart owes
    // nothing.
    let swap = StoreSwap {
        agent: 0,
        view: 0,
        store: store("new-3.store"),
    };
    h.commands.send(Command::Swap(vec![swap])).await.unwrap();
    assert!(matches!(sent(&mut p).await, Sent::Swap(_)));
    p.swapped().await;
    let e = h.event().await;
    assert_eq!(
        (e.event, e.reason.as_str()),
        (
            EventKind::DataReloaded,
            "snapshot recompiled and swapped in"
        )
    );
    p.exit(Exit::Signal("SIGKILL".into()));
    let q = h.launched().await;
    q.ready().await;
    assert_eq!(
        h.kinds(4).await,
        [
            EventKind::Died,
            EventKind::Restarting,
            EventKind::Starting,
            EventKind::Ready
        ]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.events.try_recv().is_err(), "nothing after the ready");
}

/// A start that cannot open a store deleted from the cache directory says
/// which (the manager compiles it again), fails, and is retried: once the
/// store is back, the agent runs. With one start token, a start at once
/// after the failed spawn does not wait for the token it holds.
#[tokio::test(start_paused = true)]
async fn a_start_without_its_store_asks_for_it_and_runs_once_it_is_back() {
    let cache = tempfile::tempdir().unwrap();
    let (kept, gone) = (
        cache.path().join("kept.store"),
        cache.path().join("gone.store"),
    );
    std::fs::write(&kept, b"").unwrap();
    let mut two_views = spec("a");
    two_views.agents[0].stores = vec![kept, gone.clone(), gone.clone()];
    let mut h = start(two_views, OnTerm::Exit, 1);
    let e = h.event().await;
    assert_eq!(e.event, EventKind::StartFailed);
    assert!(
        e.reason.contains("gone.store") && e.reason.ends_with("; compiling it again"),
        "{}",
        e.reason
    );
    let missing = tokio::time::timeout(PATIENCE, h.missing.recv()).await;
    assert_eq!(
        missing.unwrap().unwrap(),
        std::slice::from_ref(&gone),
        "each store once"
    );
    // The compile puts it back; the next try starts.
    std::fs::write(&gone, b"").unwrap();
    let p = h.launched().await;
    p.ready().await;
    h.state(State::Running).await;
    // The restart at once may have asked again before the store was back.
    while let Ok(again) = h.missing.try_recv() {
        assert_eq!(again, std::slice::from_ref(&gone));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopped_or_oversized_process_is_unresponsive() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let p = h.launched().await;
    p.ready().await;
    h.state(State::Running).await;
    *p.proc_state.lock().unwrap() = Inspection {
        stopped: true,
        rss: None,
    };
    let (kind, _) = loop {
        let e = h.next().await;
        if e.0 != EventKind::Starting && e.0 != EventKind::Ready {
            break e;
        }
    };
    assert_eq!(kind, EventKind::Unresponsive);

    let mut big = spec("b");
    big.memory_max = Some(1 << 20);
    let mut h = start(big, OnTerm::Exit, 1);
    let p = h.launched().await;
    p.ready().await;
    h.state(State::Running).await;
    *p.proc_state.lock().unwrap() = Inspection {
        stopped: false,
        rss: Some(2 << 20),
    };
    loop {
        let e = tokio::time::timeout(PATIENCE, h.events.recv())
            .await
            .unwrap()
            .unwrap();
        if e.event == EventKind::Unresponsive {
            assert!(e.reason.contains("memory"), "{}", e.reason);
            break;
        }
    }
}

/// The next message the unit sent the process.
async fn sent(p: &mut Launched) -> Sent {
    tokio::time::timeout(PATIENCE, p.sent.recv())
        .await
        .expect("a message")
        .expect("the process is held")
}

fn fault(agents: Vec<usize>, fault: &str, arg: Option<&str>, secs: Option<u64>) -> Command {
    Command::Fault {
        agents,
        fault: agentcluster_conf::Fault::parse(fault, arg).unwrap(),
        duration: secs.map(Duration::from_secs),
        applied: None,
    }
}

/// Sends agent 0 of `h` fault `f` (`arg`), to be told once it is applied.
async fn ask_fault(h: &Harness, f: &str, arg: Option<&str>) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let Command::Fault {
        agents,
        fault,
        duration,
        ..
    } = fault(vec![0], f, arg, None)
    else {
        unreachable!()
    };
    let cmd = Command::Fault {
        agents,
        fault,
        duration,
        applied: Some(tx),
    };
    h.commands.send(cmd).await.unwrap();
    rx
}

/// A fault is confirmed once the process says it applied it: at once when
/// nothing was sent (no change, no process), and as soon as the process
/// ends (its next start has the fault).
#[tokio::test(start_paused = true)]
async fn a_fault_is_confirmed_once_its_process_applied_it() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let mut p = h.launched().await;
    p.ready().await;
    h.state(State::Running).await;
    let mut rx = ask_fault(&h, "loss", Some("50")).await;
    assert!(matches!(
        sent(&mut p).await,
        Sent::Msg(ToAgent::Faults { .. })
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.try_recv().is_err(), "not before the process applied it");
    p.applied().await;
    tokio::time::timeout(PATIENCE, rx).await.unwrap().unwrap();
    // The same again changes nothing: confirmed at once.
    let rx = ask_fault(&h, "loss", Some("50")).await;
    tokio::time::timeout(PATIENCE, rx).await.unwrap().unwrap();
    // Two in a row: each when its own message is applied.
    let mut first = ask_fault(&h, "hang", None).await;
    let mut second = ask_fault(&h, "clear", None).await;
    sent(&mut p).await;
    sent(&mut p).await;
    p.applied().await;
    tokio::time::timeout(PATIENCE, &mut first)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(second.try_recv().is_err());
    // The process ends before it applies it: the wait ends too.
    let rx = ask_fault(&h, "loss", Some("10")).await;
    sent(&mut p).await;
    p.exit(Exit::Signal("SIGKILL".into()));
    assert!(tokio::time::timeout(PATIENCE, rx).await.unwrap().is_err());
    let q = h.launched().await;
    assert_eq!(q.faults[0].loss_percent, 10, "the next start has it");
}

/// A fault is state of the device: injected, it is sent to the process,
/// shown in the status, and given to the next process after a crash.
#[tokio::test(start_paused = true)]
async fn faults_reach_the_process_and_survive_its_restart() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let mut p = h.launched().await;
    p.ready().await;
    assert_eq!(h.kinds(2).await, [EventKind::Starting, EventKind::Ready]);
    h.commands
        .send(fault(vec![0], "hang", None, None))
        .await
        .unwrap();
    let injected = h.event().await;
    assert_eq!(
        (injected.event, injected.reason.as_str()),
        (EventKind::FaultInjected, "hang")
    );
    let Sent::Msg(ToAgent::Faults { agent: 0, faults }) = sent(&mut p).await else {
        panic!("faults sent");
    };
    assert!(faults.hang);
    h.commands
        .send(fault(vec![0], "link-down", Some("3"), None))
        .await
        .unwrap();
    assert_eq!(h.next().await.0, EventKind::FaultInjected);
    let Sent::Msg(ToAgent::Faults { faults, .. }) = sent(&mut p).await else {
        panic!("faults sent");
    };
    assert_eq!((faults.hang, faults.links_down.clone()), (true, vec![3]));
    assert_eq!(
        h.status.borrow().faults[0]
            .iter()
            .map(|a| a.fault.to_string())
            .collect::<Vec<_>>(),
        ["hang", "link-down 3"]
    );

    p.exit(Exit::Signal("SIGKILL".into()));
    assert_eq!(
        h.kinds(3).await,
        [EventKind::Died, EventKind::Restarting, EventKind::Starting]
    );
    let q = h.launched().await;
    assert_eq!(q.faults, vec![faults], "the new process starts with them");
    assert_eq!(q.reboot, vec![None], "a crash is no reboot");
}

/// `--for`: the fault ends by itself, with a `fault-cleared`, and the
/// process is told.
#[tokio::test(start_paused = true)]
async fn a_fault_for_a_while_expires_by_itself() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let mut p = h.launched().await;
    p.ready().await;
    assert_eq!(h.kinds(2).await, [EventKind::Starting, EventKind::Ready]);
    let at = tokio::time::Instant::now();
    h.commands
        .send(fault(vec![0], "loss", Some("50"), Some(30)))
        .await
        .unwrap();
    let injected = h.event().await;
    assert_eq!(injected.reason, "loss 50%, for 30s");
    sent(&mut p).await;
    // Heartbeats keep it running meanwhile (for two minutes at most).
    let cleared = loop {
        assert!(
            tokio::time::Instant::now() - at < Duration::from_secs(120),
            "no fault-cleared"
        );
        tokio::select! {
            e = h.events.recv() => break e.unwrap(),
            _ = tokio::time::sleep(Duration::from_secs(1)) => p.heartbeat().await,
        }
    };
    assert_eq!(
        (cleared.event, cleared.reason.as_str()),
        (EventKind::FaultCleared, "loss 50%, expired")
    );
    let waited = tokio::time::Instant::now() - at;
    assert!(waited >= Duration::from_secs(30), "{waited:?}");
    let Sent::Msg(ToAgent::Faults { faults, .. }) = sent(&mut p).await else {
        panic!("faults sent");
    };
    assert!(faults.is_empty());
    assert!(h.status.borrow().faults[0].is_empty());
}

/// A reboot of an agent with a process of its own is a restart of that
/// process, and that one start (only) is a reboot; its end is a
/// `fault-cleared` after the outage.
#[tokio::test(start_paused = true)]
async fn a_reboot_restarts_the_process_once_as_a_reboot() {
    let mut h = start(spec("a"), OnTerm::Exit, 1);
    let mut p = h.launched().await;
    p.ready().await;
    assert_eq!(h.kinds(2).await, [EventKind::Starting, EventKind::Ready]);
    h.commands
        .send(fault(vec![0], "reboot", None, None))
        .await
        .unwrap();
    let injected = h.event().await;
    assert_eq!(
        (injected.event, injected.reason.as_str()),
        (EventKind::FaultInjected, "reboot")
    );
    assert_eq!(signal(&mut p).await, Sig::Term);
    let q = h.launched().await;
    assert_eq!(q.reboot, vec![Some(agentcluster_conf::REBOOT_OUTAGE)]);
    q.ready().await;
    let mut kinds = Vec::new();
    while kinds.last() != Some(&EventKind::FaultCleared) {
        kinds.push(h.next().await.0);
        q.heartbeat().await;
    }
    assert!(kinds.contains(&EventKind::Ready), "{kinds:?}");
    q.exit(Exit::Signal("SIGKILL".into()));
    let r = h.launched().await;
    assert_eq!(r.reboot, vec![None], "a crash after it is no reboot");
}

/// In a process of several agents, a reboot is of the one agent, inside
/// the process: it is sent the agent's reboot, the process stays.
#[tokio::test(start_paused = true)]
async fn a_reboot_of_a_packed_agent_stays_inside_its_process() {
    let mut two = spec("pair");
    let mut b = two.agents[0].clone();
    b.name = "b".into();
    two.agents.push(b);
    let mut h = start(two, OnTerm::Exit, 1);
    let mut p = h.launched().await;
    p.ready().await;
    h.state(State::Running).await;
    h.commands
        .send(fault(vec![1], "reboot", Some("5s"), None))
        .await
        .unwrap();
    let Sent::Msg(ToAgent::Reboot {
        agent: 1,
        outage_ms: 5000,
        ..
    }) = sent(&mut p).await
    else {
        panic!("a reboot of agent 1");
    };
    assert!(
        p.signals.try_recv().is_err(),
        "no signal: the process stays"
    );
}

/// A heartbeat names the agents whose counters moved, in the start's
/// order: each named agent gets its counts, the others keep theirs, and a
/// name out of order or unknown is no trouble.
#[test]
fn a_heartbeat_sets_the_counts_of_the_agents_it_names() {
    use agentcluster_agent::channel::AgentStats;
    use agentcluster_agent::responder::{Drop, Drops};

    let plan: Vec<AgentPlan> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| AgentPlan {
            name: (*n).into(),
            ..spec(n).agents.remove(0)
        })
        .collect();
    let stats = |named: &[(&str, u64)]| -> Vec<AgentStats> {
        named
            .iter()
            .map(|(name, requests)| AgentStats {
                name: (*name).into(),
                requests: *requests,
                ..AgentStats::default()
            })
            .collect()
    };
    let requests = |s: &super::Served| s.now.iter().map(|t| t.requests).collect::<Vec<_>>();
    let mut served = super::Served::new(plan.len());
    served.heard(&plan, &stats(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]));
    assert_eq!(requests(&served), [1, 2, 3, 4]);
    served.heard(&plan, &stats(&[("b", 5), ("d", 6)]));
    assert_eq!(requests(&served), [1, 5, 3, 6]);
    served.heard(&plan, &[]);
    assert_eq!(requests(&served), [1, 5, 3, 6]);
    // Out of order, and a name the unit does not serve.
    served.heard(&plan, &stats(&[("c", 7), ("x", 9), ("a", 8)]));
    assert_eq!(requests(&served), [8, 5, 7, 6]);
    // Drops travel with the requests.
    let mut drops = Drops::default();
    drops.add(Drop::BadCommunity);
    let dropped = AgentStats {
        name: "d".into(),
        requests: 6,
        dropped: 1,
        drops,
    };
    served.heard(&plan, &[dropped]);
    assert_eq!(served.now[3].drops.get(Drop::BadCommunity), 1);
    // A new process counts from zero; the totals keep what the last had.
    served.new_process();
    served.heard(&plan, &stats(&[("a", 1)]));
    assert_eq!(requests(&served), [1, 0, 0, 0]);
    let totals: Vec<u64> = served.totals().iter().map(|t| t.requests).collect();
    assert_eq!(totals, [9, 5, 7, 6]);
}
