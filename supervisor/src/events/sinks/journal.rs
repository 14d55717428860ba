//! The journal sink: under systemd, every lifecycle event becomes one
//! structured journal entry (native protocol on the journal socket) with
//! `AGENTCLUSTER_*` fields and a stable `MESSAGE_ID` per event kind, so
//! `journalctl MESSAGE_ID=… ` or `journalctl AGENTCLUSTER_AGENT=core-sw-1`
//! find them. Never a secret in it: events carry none.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio_util::sync::CancellationToken;

use crate::events::bus::Sink;
use crate::events::coalesce::WRITTEN;
use crate::events::gate::{DEPTH, Gate, Taken};
use crate::events::{Bus, Event};

/// Where journald listens for native entries.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Whether we run under systemd with a journal to write to.
pub fn available() -> Option<PathBuf> {
    let under_systemd =
        std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some();
    let path = PathBuf::from(JOURNAL_SOCKET);
    (under_systemd && path.exists()).then_some(path)
}

/// Appends one field in the native protocol: `KEY=value\n`, or the binary
/// form (`KEY\n`, little-endian length, value, `\n`) when the value holds a
/// newline.
fn field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// The journal entry of one event.
pub fn entry(e: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let who = if e.agent.is_empty() {
        "supervisor".to_string()
    } else {
        format!("agent {}", e.agent)
    };
    let message = if e.reason.is_empty() {
        format!("{who}: {}", e.event)
    } else {
        format!("{who}: {} ({})", e.event, e.reason)
    };
    field(&mut out, "MESSAGE", &message);
    field(&mut out, "MESSAGE_ID", e.event.message_id());
    field(&mut out, "PRIORITY", &e.event.priority().to_string());
    field(&mut out, "SYSLOG_IDENTIFIER", "agentcluster");
    field(&mut out, "AGENTCLUSTER_EVENT", e.event.as_str());
    field(&mut out, "AGENTCLUSTER_NODE", &e.node);
    field(&mut out, "AGENTCLUSTER_SEQ", &e.seq.to_string());
    field(&mut out, "AGENTCLUSTER_STATE", e.state.as_str());
    field(&mut out, "AGENTCLUSTER_RESTARTS", &e.restarts.to_string());
    if !e.agent.is_empty() {
        field(&mut out, "AGENTCLUSTER_AGENT", &e.agent);
    }
    if let Some(pid) = e.pid {
        field(&mut out, "AGENTCLUSTER_PID", &pid.to_string());
    }
    if let Some(code) = e.exit_code {
        field(&mut out, "AGENTCLUSTER_EXIT_CODE", &code.to_string());
    }
    if let Some(sig) = &e.signal {
        field(&mut out, "AGENTCLUSTER_SIGNAL", sig);
    }
    out
}

/// Writes every event to the journal at `socket` until `shutdown` (the bus
/// closing), then what was published before it, and returns. A burst is
/// spared the journal ([`Gate`]): beyond 100 events of a routine kind per
/// 10 s, one summary entry per kind per 10 s stands for the rest; failures
/// are each written. It taps the bus when called, not when first polled,
/// starting with the events in the ring, so no event published before is
/// missed. A lost entry (journal busy) is logged, never retried in a loop.
/// The sink never blocks a runtime thread: an entry waits for room in the
/// journal's queue at most [`ROOM_WAIT`], and when one waits longer the
/// journal is taken as stalled and the rest of that batch is lost (counted
/// and logged) rather than waited for, so a stalled journald neither holds
/// up the supervisor nor its stop.
pub fn run(
    socket: PathBuf,
    bus: Bus,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let gate = Gate::open(&bus, WRITTEN, DEPTH);
    deliver(socket, bus, gate, shutdown)
}

/// How long one entry may wait for room in the journal's queue.
pub const ROOM_WAIT: Duration = Duration::from_millis(250);

async fn deliver(socket: PathBuf, bus: Bus, gate: Gate, shutdown: CancellationToken) {
    let Ok(sock) = UnixDatagram::unbound() else {
        tracing::warn!("journal: cannot create a socket; events go to stderr only");
        gate.finish();
        return;
    };
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            taken = gate.next() => write(&sock, &socket, &bus, taken).await,
        }
    }
    // The bus is closed: what was published before it still goes out,
    // with the summaries of what was counted.
    write(&sock, &socket, &bus, gate.finish()).await;
}

/// Writes the entries of `taken` (and reports what the gate dropped): each
/// waits at most [`ROOM_WAIT`] for room; after one that did not get it,
/// the rest of the batch is lost without waiting.
async fn write(sock: &UnixDatagram, path: &Path, bus: &Bus, taken: Taken) {
    if taken.dropped > 0 {
        tracing::warn!(
            lost = taken.dropped,
            "journal: events lost (journal too slow)"
        );
        bus.report_dropped(Sink::Journal, "journal", taken.dropped);
    }
    let mut stalled = 0u64;
    for e in &taken.events {
        if stalled > 0 {
            stalled += 1;
            continue;
        }
        match tokio::time::timeout(ROOM_WAIT, sock.send_to(&entry(e), path)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(cause = %e, "journal: entry not written"),
            Err(_) => stalled = 1,
        }
    }
    if stalled > 0 {
        tracing::warn!(
            lost = stalled,
            "journal: events lost (the journal takes no entries)"
        );
        bus.report_dropped(Sink::Journal, "journal", stalled);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;
    use crate::events::{EventKind, NewEvent, State};

    fn parse(entry: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = entry;
        while !rest.is_empty() {
            let nl = rest.iter().position(|b| *b == b'\n').unwrap();
            let line = &rest[..nl];
            if let Some(eq) = line.iter().position(|b| *b == b'=') {
                out.push((
                    String::from_utf8_lossy(&line[..eq]).into(),
                    String::from_utf8_lossy(&line[eq + 1..]).into(),
                ));
                rest = &rest[nl + 1..];
            } else {
                let key = String::from_utf8_lossy(line).into_owned();
                let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let value = &rest[nl + 9..nl + 9 + len];
                out.push((key, String::from_utf8_lossy(value).into()));
                rest = &rest[nl + 9 + len + 1..];
            }
        }
        out
    }

    /// The journal entries on `journal` as the sink wrote them, each as the
    /// values of `keys` (empty when absent), read until the socket has no
    /// more (or its read timeout passes), or up to the entry whose MESSAGE
    /// is `until`, not included.
    fn entries(journal: &UnixDatagram, keys: &[&str], until: Option<&str>) -> Vec<Vec<String>> {
        let mut buf = vec![0u8; 8192];
        let mut got = Vec::new();
        while let Ok(n) = journal.recv(&mut buf) {
            let fields = parse(&buf[..n]);
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            if until.is_some_and(|u| get("MESSAGE") == u) {
                break;
            }
            got.push(keys.iter().map(|k| get(k)).collect());
        }
        got
    }

    #[tokio::test]
    async fn events_become_structured_journal_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let journal = UnixDatagram::bind(&path).unwrap();
        let bus = Bus::new("lab-a");
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(path.clone(), bus.clone(), stop.clone()));
        tokio::task::yield_now().await;
        bus.publish(NewEvent {
            agent: "core-sw-1".into(),
            pid: Some(4242),
            signal: Some("SIGKILL".into()),
            restarts: 3,
            reason: "killed by SIGKILL\nsecond line".into(),
            ..NewEvent::new(EventKind::Died, State::Backoff)
        });
        let mut buf = vec![0u8; 4096];
        journal
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n =
            tokio::task::spawn_blocking(move || journal.recv(&mut buf).map(|n| buf[..n].to_vec()))
                .await
                .unwrap()
                .unwrap();
        let fields = parse(&n);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("AGENTCLUSTER_AGENT"), Some("core-sw-1"));
        assert_eq!(get("AGENTCLUSTER_EVENT"), Some("died"));
        assert_eq!(get("AGENTCLUSTER_PID"), Some("4242"));
        assert_eq!(get("AGENTCLUSTER_SIGNAL"), Some("SIGKILL"));
        assert_eq!(get("MESSAGE_ID"), Some(EventKind::Died.message_id()));
        assert_eq!(get("PRIORITY"), Some("3"));
        assert_eq!(
            get("MESSAGE"),
            Some("agent core-sw-1: died (killed by SIGKILL\nsecond line)")
        );
        stop.cancel();
        task.await.unwrap();
    }

    /// The last events (published before the task ever ran, and up to the
    /// bus's close) all reach the journal.
    #[tokio::test]
    async fn every_event_up_to_the_close_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let journal = UnixDatagram::bind(&path).unwrap();
        let bus = Bus::new("lab-a");
        let sink = run(path.clone(), bus.clone(), bus.closed());
        crate::events::testutil::publish(&bus, "", "supervisor-stopping", "shutdown requested");
        for agent in ["a", "b", "c"] {
            crate::events::testutil::publish(&bus, agent, "stopped", "exited with code 0");
        }
        bus.close();
        sink.await;
        journal.set_nonblocking(true).unwrap();
        let got = entries(&journal, &["AGENTCLUSTER_SEQ", "AGENTCLUSTER_EVENT"], None);
        let want: Vec<Vec<String>> = [
            ("1", "supervisor-stopping"),
            ("2", "stopped"),
            ("3", "stopped"),
            ("4", "stopped"),
        ]
        .iter()
        .map(|(a, b)| vec![a.to_string(), b.to_string()])
        .collect();
        assert_eq!(got, want);
    }

    /// A journal that takes no more entries (its queue full, nobody
    /// reading) holds neither a runtime thread nor the sink's end: the
    /// sink finishes, with the entries it could not write counted as lost.
    #[test]
    fn a_stalled_journal_blocks_nothing_and_counts_what_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        // Bound and never read: its queue fills after a few hundred.
        let journal = UnixDatagram::bind(&path).unwrap();
        let bus = Bus::new("lab-a");
        let (done_tx, done) = std::sync::mpsc::channel();
        let (b2, p2) = (bus.clone(), path.clone());
        // A current-thread runtime of its own: a blocking send would stop
        // its only thread, and the ticks below with it.
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let sink = tokio::spawn(run(p2, b2.clone(), b2.closed()));
                let ticks = tokio::spawn(async {
                    let mut n = 0u32;
                    while n < 20 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        n += 1;
                    }
                    n
                });
                for i in 0..2000 {
                    crate::events::testutil::publish(
                        &b2,
                        &format!("d{i}"),
                        "died",
                        "killed by SIGKILL",
                    );
                    if i % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                assert_eq!(ticks.await.unwrap(), 20, "the runtime kept running");
                b2.close();
                sink.await.unwrap();
            });
            done_tx.send(()).unwrap();
        });
        done.recv_timeout(Duration::from_secs(60))
            .expect("the sink finished although the journal takes no entries");
        thread.join().unwrap();
        journal.set_nonblocking(true).unwrap();
        let written = entries(&journal, &["AGENTCLUSTER_EVENT"], None).len() as u64;
        let journal_at = Sink::ALL.iter().position(|k| *k == Sink::Journal).unwrap();
        let lost = bus.tallies().lost[journal_at];
        assert!(written > 0 && lost > 0, "written {written}, lost {lost}");
        // Every event written or counted lost (and the lost may include
        // the gate's summary entries, one per kind at most).
        let summaries = EventKind::ALL.len() as u64;
        assert!(
            (2000..=2000 + summaries).contains(&(written + lost)),
            "written {written}, lost {lost}"
        );
    }

    /// The start of 5,000 agents: 100 entries of each routine kind, then
    /// one summary entry per kind for the rest; each failure has its own.
    #[tokio::test]
    async fn a_start_burst_is_written_as_singles_and_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let journal = UnixDatagram::bind(&path).unwrap();
        journal
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        // Read as written: a full socket would hold the sink up.
        let reader = std::thread::spawn(move || {
            let keys = ["AGENTCLUSTER_EVENT", "AGENTCLUSTER_AGENT", "MESSAGE"];
            entries(&journal, &keys, Some("end of test"))
                .into_iter()
                .map(|e| (e[0].clone(), e[1].clone(), e[2].clone()))
                .collect::<Vec<_>>()
        });
        let bus = Bus::new("lab-a");
        let sink = tokio::spawn(run(path.clone(), bus.clone(), bus.closed()));
        let publish = crate::events::testutil::publish;
        publish(&bus, "", "supervisor-started", "5000 agents");
        for i in 0..5000 {
            publish(&bus, &format!("d{i}"), "starting", "");
            publish(&bus, &format!("d{i}"), "ready", "");
            if i % 1000 == 0 {
                publish(&bus, &format!("d{i}"), "died", "killed by SIGKILL");
            }
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        publish(&bus, "", "supervisor-stopping", "shutdown requested");
        bus.close();
        sink.await.unwrap();
        // Everything the sink wrote is before this mark.
        let mark = UnixDatagram::unbound().unwrap();
        mark.send_to(b"MESSAGE=end of test\n", &path).unwrap();
        let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        let of = |kind: &'static str| got.iter().filter(move |(k, _, _)| k == kind);
        for kind in ["starting", "ready"] {
            assert_eq!(of(kind).filter(|(_, a, _)| !a.is_empty()).count(), 100);
            let counted: usize = of(kind)
                .filter(|(_, a, _)| a.is_empty())
                .map(|(_, _, m)| {
                    let n = m
                        .split("(summary: ")
                        .nth(1)
                        .and_then(|r| r.split(' ').next())
                        .and_then(|n| n.parse::<usize>().ok());
                    assert!(m.ends_with(", not written one by one)"), "{m}");
                    n.unwrap_or_else(|| panic!("a summary: {m}"))
                })
                .sum();
            assert_eq!(counted, 4900, "{kind}");
        }
        assert_eq!(of("died").count(), 5);
        assert_eq!(bus.tallies().lost, [0, 0, 0]);
    }
}
