//! `events --follow`: an event stream on a control connection. The events
//! kept are replayed, then new ones follow as they are published, with
//! keep-alive pings; a subscriber that falls behind is cut, never waited
//! for.

use std::io;
use std::time::Duration;

use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::control::filter::Filter;
use crate::events::Bus;
use crate::events::bus::FLUSH_TIMEOUT;

/// How long a stream stays silent before a keep-alive `ping` record.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Records a subscriber may have waiting (beyond what its socket holds, and
/// beyond its replay) before it is cut with an `overflow` record.
pub const MAX_BEHIND: usize = 1024;
/// How long a cut subscriber gets to read the rest, `overflow` included.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Records waiting to be written to a stream subscriber. Writes never
/// block the stream task: it keeps receiving while the socket is full, and
/// cuts the subscriber once [`MAX_BEHIND`] records wait. Whole records only
/// are ever dropped, so the stream stays valid JSON lines.
#[derive(Default)]
struct Outbox {
    records: std::collections::VecDeque<Vec<u8>>,
    /// Bytes of the first record already written.
    offset: usize,
}

impl Outbox {
    fn push<T: serde::Serialize>(&mut self, record: &T) {
        if let Ok(mut line) = serde_json::to_vec(record) {
            line.push(b'\n');
            self.records.push_back(line);
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops every record not started yet.
    fn drop_unsent(&mut self) {
        self.records.truncate(usize::from(self.offset > 0));
    }

    /// Writes everything, waiting for the socket to take it; `Err` when
    /// the subscriber is gone.
    async fn flush(&mut self, wr: &OwnedWriteHalf) -> io::Result<()> {
        while !self.is_empty() {
            wr.writable().await?;
            self.write(wr)?;
        }
        Ok(())
    }

    /// Writes what the socket takes now.
    fn write(&mut self, wr: &OwnedWriteHalf) -> io::Result<()> {
        while let Some(front) = self.records.front() {
            match wr.try_write(&front[self.offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.offset += n;
                    if self.offset == front.len() {
                        self.records.pop_front();
                        self.offset = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Streams the events `filter` matches (all without one) as JSON lines:
/// first those kept with `seq >= since` (after a `{"gap":true,…}` record
/// if some are gone), then each new one, with a `{"ping":…}` record after
/// [`PING_EVERY`] of silence. A subscriber that falls [`MAX_BEHIND`]
/// records behind, or that the bus itself left behind, gets a final
/// `{"overflow":true,…}` record and is disconnected: it never slows the
/// supervisor.
///
/// The stream lives as long as the bus, not the control socket: at
/// shutdown it goes on through `supervisor-stopping` and the agents'
/// `stopped` events, and once the bus is closed it writes what is left and
/// ends (the subscriber sees the connection close after the last event),
/// within [`FLUSH_TIMEOUT`].
pub(super) async fn stream_events(
    wr: &mut OwnedWriteHalf,
    bus: &Bus,
    since: Option<u64>,
    filter: Option<Filter>,
) {
    let closed = bus.closed();
    // Subscribe before replaying, so nothing falls between the two.
    let mut live = bus.subscribe();
    let (kept, gap) = bus.replay(since.unwrap_or(u64::MAX));
    let mut out = Outbox::default();
    let mut last = 0u64;
    if gap {
        out.push(&serde_json::json!({"gap": true, "oldest": kept.first().map(|e| e.seq)}));
    }
    for e in &kept {
        last = e.seq;
        if filter.as_ref().is_none_or(|f| f.matches(e)) {
            out.push(e.as_ref());
        }
    }
    let mut cut: Option<String> = None;
    let mut idle = tokio::time::Instant::now();
    // The replay itself may be long; the limit is on what piles up after.
    let limit = out.len() + MAX_BEHIND;
    // Set once the bus is closed: everything published is in `out`.
    let mut ending = false;
    loop {
        if cut.is_none() && out.len() > limit {
            cut = Some(format!(
                "the subscriber fell more than {MAX_BEHIND} records behind"
            ));
        }
        if let Some(why) = &cut {
            out.drop_unsent();
            out.push(&serde_json::json!({"overflow": true, "last_seq": last, "reason": why}));
            tracing::warn!(last_seq = last, "event subscriber cut: {why}");
            // The rest gets DRAIN_TIMEOUT, or FLUSH_TIMEOUT once the bus is
            // closed.
            let until_closed = async {
                closed.cancelled().await;
                tokio::time::sleep(FLUSH_TIMEOUT).await;
            };
            tokio::select! {
                () = until_closed => {}
                _ = tokio::time::timeout(DRAIN_TIMEOUT, out.flush(wr)) => {}
            }
            return;
        }
        if ending {
            match tokio::time::timeout(FLUSH_TIMEOUT, out.flush(wr)).await {
                Ok(_) => {}
                Err(_) => tracing::warn!(
                    records = out.len(),
                    "event subscriber did not read the last events within {FLUSH_TIMEOUT:?} of the shutdown: dropped"
                ),
            }
            return;
        }
        let ping_at = idle + PING_EVERY;
        tokio::select! {
            () = closed.cancelled() => {
                // Every event published before the close is in the channel.
                loop {
                    match live.try_recv() {
                        Ok(e) => {
                            if e.seq > last {
                                last = e.seq;
                                if filter.as_ref().is_none_or(|f| f.matches(&e)) {
                                    out.push(e.as_ref());
                                }
                            }
                        }
                        Err(TryRecvError::Lagged(n)) => {
                            cut = Some(format!("the subscriber fell {n} events behind the bus"));
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    }
                }
                ending = true;
            }
            r = wr.writable(), if !out.is_empty() => {
                if r.is_err() || out.write(wr).is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(ping_at) => {
                idle = tokio::time::Instant::now();
                out.push(&serde_json::json!({
                    "ping": crate::events::bus::rfc3339_millis(std::time::SystemTime::now()),
                    "last_seq": last,
                }));
            }
            r = live.recv() => match r {
                Ok(e) => {
                    if e.seq > last {
                        last = e.seq;
                        if filter.as_ref().is_none_or(|f| f.matches(&e)) {
                            idle = tokio::time::Instant::now();
                            out.push(e.as_ref());
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    cut = Some(format!("the subscriber fell {n} events behind the bus"));
                }
                Err(RecvError::Closed) => ending = true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixStream;

    fn publish(bus: &Bus, agent: &str, event: &str) {
        crate::events::testutil::publish(bus, agent, event, "test");
    }

    /// Runs `stream_events` on one end of a socketpair; returns the other.
    fn stream(
        bus: &Bus,
        since: Option<u64>,
        filter: Option<&str>,
    ) -> (UnixStream, tokio::task::JoinHandle<()>, Bus) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_rd, mut wr) = ours.into_split();
        let bus = bus.clone();
        let filter = filter.map(|f| Filter::parse(f).unwrap());
        let ours = bus.clone();
        let task = tokio::spawn(async move {
            stream_events(&mut wr, &ours, since, filter).await;
        });
        (theirs, task, bus)
    }

    async fn next_json(
        lines: &mut tokio::io::Lines<BufReader<UnixStream>>,
    ) -> Option<serde_json::Value> {
        let line = lines.next_line().await.ok()??;
        Some(serde_json::from_str(&line).expect("every record is a JSON line"))
    }

    #[tokio::test]
    async fn replay_then_live_with_a_filter() {
        let bus = Bus::new("lab-a");
        publish(&bus, "a", "ready");
        publish(&bus, "b", "ready");
        let (client, _task, stop) = stream(&bus, Some(1), Some("*|agent|*|a"));
        let mut lines = BufReader::new(client).lines();
        let first = next_json(&mut lines).await.unwrap();
        assert_eq!(
            (first["agent"].as_str(), first["seq"].as_u64()),
            (Some("a"), Some(1))
        );
        publish(&bus, "b", "died");
        publish(&bus, "a", "died");
        let live = next_json(&mut lines).await.unwrap();
        assert_eq!(
            (live["agent"].as_str(), live["event"].as_str()),
            (Some("a"), Some("died"))
        );
        assert_eq!(live["seq"], 4);
        stop.close();
    }

    #[tokio::test]
    async fn a_gap_is_announced_when_the_ring_no_longer_has_since() {
        let bus = Bus::new("lab-a");
        for _ in 0..crate::events::bus::RING + 10 {
            publish(&bus, "a", "ready");
        }
        let (client, _task, stop) = stream(&bus, Some(1), None);
        let mut lines = BufReader::new(client).lines();
        let first = next_json(&mut lines).await.unwrap();
        assert_eq!(first["gap"], true);
        assert_eq!(first["oldest"], 11);
        let second = next_json(&mut lines).await.unwrap();
        assert_eq!(second["seq"], 11);
        stop.close();
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_cut_and_never_slows_the_bus() {
        let bus = Bus::new("lab-a");
        let (client, task, _stop) = stream(&bus, None, None);
        // 5000 events while nobody reads: publishing never waits.
        let t = std::time::Instant::now();
        for i in 0..5000 {
            publish(&bus, &format!("agent-{i}"), "ready");
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        // Now read everything: whole records, then the overflow record, then EOF.
        let mut lines = BufReader::new(client).lines();
        let mut last = None;
        let mut count = 0;
        while let Some(v) = next_json(&mut lines).await {
            count += 1;
            last = Some(v);
        }
        let last = last.unwrap();
        assert_eq!(last["overflow"], true, "{last}");
        assert!(last["last_seq"].as_u64().unwrap() > 1000);
        assert!(count < 5000, "{count} records: the cut dropped the backlog");
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_keep_alive_pings() {
        let bus = Bus::new("lab-a");
        let (client, _task, stop) = stream(&bus, None, None);
        let mut lines = BufReader::new(client).lines();
        let ping = next_json(&mut lines).await.unwrap();
        assert!(ping.get("ping").is_some(), "{ping}");
        stop.close();
    }
}
