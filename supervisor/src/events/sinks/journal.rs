//! The journal sink: under systemd, every lifecycle event becomes one
//! structured journal entry (native protocol on the journal socket) with
//! `AGENTCLUSTER_*` fields and a stable `MESSAGE_ID` per event kind, so
//! `journalctl MESSAGE_ID=… ` or `journalctl AGENTCLUSTER_AGENT=core-sw-1`
//! find them. Never a secret in it: events carry none.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

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

/// The stable MESSAGE_ID of each event kind (random 128-bit IDs, fixed
/// forever, as journal catalogs expect).
pub fn message_id(event: &str) -> &'static str {
    match event {
        "starting" => "8d3c5b8e0b2f4f7e9a3e1f0c7d6b5a41",
        "ready" => "2f6a1c0e9d8b4c7a8e5f3b2a1d0c9e42",
        "start-failed" => "b7e4d2c1a0f94e8d9c6b5a4f3e2d1c43",
        "died" => "c1d2e3f4a5b64c7d8e9fa0b1c2d3e444",
        "unresponsive" => "d4c3b2a1f0e94d8c7b6a5f4e3d2c1b45",
        "restarting" => "e5f6a7b8c9d04e1f2a3b4c5d6e7f8a46",
        "failed" => "f0e1d2c3b4a54968778695a4b3c2d147",
        "stopped" => "0a1b2c3d4e5f46a7b8c9d0e1f2a3b448",
        "config-changed" => "1b2c3d4e5f6a47b8c9d0e1f2a3b4c549",
        "data-reloaded" => "2c3d4e5f6a7b48c9d0e1f2a3b4c5d64a",
        "supervisor-started" => "3d4e5f6a7b8c49d0e1f2a3b4c5d6e74b",
        "supervisor-stopping" => "4e5f6a7b8c9d40e1f2a3b4c5d6e7f84c",
        "events-dropped" => "6a7b8c9d0e1f42a3b4c5d6e7f8a9b04e",
        _ => "5f6a7b8c9d0e41f2a3b4c5d6e7f8a94d",
    }
}

/// syslog priority of an event kind.
fn priority(event: &str) -> u8 {
    match event {
        "died" | "failed" | "start-failed" => 3,
        "unresponsive" | "events-dropped" => 4,
        "restarting" | "config-changed" | "stopped" | "supervisor-stopping" => 5,
        _ => 6,
    }
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
    field(&mut out, "MESSAGE_ID", message_id(&e.event));
    field(&mut out, "PRIORITY", &priority(&e.event).to_string());
    field(&mut out, "SYSLOG_IDENTIFIER", "agentcluster");
    field(&mut out, "AGENTCLUSTER_EVENT", &e.event);
    field(&mut out, "AGENTCLUSTER_NODE", &e.node);
    field(&mut out, "AGENTCLUSTER_SEQ", &e.seq.to_string());
    field(&mut out, "AGENTCLUSTER_STATE", &e.state);
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

/// Writes every event to the journal at `socket` until `shutdown`. A lost
/// entry (journal busy) is logged, never retried in a loop.
pub async fn run(socket: PathBuf, bus: Bus, shutdown: CancellationToken) {
    let mut events = bus.subscribe();
    let Ok(sock) = UnixDatagram::unbound() else {
        tracing::warn!("journal: cannot create a socket; events go to stderr only");
        return;
    };
    loop {
        let e: Arc<Event> = tokio::select! {
            () = shutdown.cancelled() => {
                // What was published before the shutdown still goes out.
                match events.try_recv() {
                    Ok(e) => e,
                    Err(_) => return,
                }
            }
            r = events.recv() => match r {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "journal: events lost (journal too slow)");
                    bus.report_dropped("journal", n);
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        send(&sock, &socket, &entry(&e));
    }
}

fn send(sock: &UnixDatagram, path: &Path, entry: &[u8]) {
    if let Err(e) = sock.send_to(entry, path) {
        tracing::warn!(cause = %e, "journal: entry not written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NewEvent;

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
            event: "died".into(),
            pid: Some(4242),
            signal: Some("SIGKILL".into()),
            restarts: 3,
            state: "backoff".into(),
            reason: "killed by SIGKILL\nsecond line".into(),
            ..NewEvent::default()
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
        assert_eq!(get("MESSAGE_ID"), Some(message_id("died")));
        assert_eq!(get("PRIORITY"), Some("3"));
        assert_eq!(
            get("MESSAGE"),
            Some("agent core-sw-1: died (killed by SIGKILL\nsecond line)")
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn message_ids_are_distinct_per_kind() {
        let kinds = [
            "starting",
            "ready",
            "start-failed",
            "died",
            "unresponsive",
            "restarting",
            "failed",
            "stopped",
            "config-changed",
            "data-reloaded",
            "supervisor-started",
            "supervisor-stopping",
            "events-dropped",
        ];
        let mut ids: Vec<&str> = kinds.iter().map(|k| message_id(k)).collect();
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), kinds.len());
    }
}
