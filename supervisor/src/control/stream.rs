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
use crate::events::bus::{FLUSH_TIMEOUT, Follow};

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
///
/// It also knows how far the subscriber has got: each record carries the
/// seq up to which the subscriber has every event it asked for once that
/// record is written (events the filter leaves out count as had as soon as
/// the records before them are written), so a cut subscriber is told where
/// to resume without a hole.
#[derive(Default)]
struct Outbox {
    records: std::collections::VecDeque<(Vec<u8>, u64)>,
    /// Bytes of the first record already written.
    offset: usize,
    /// The subscriber has every event it asked for up to this seq.
    delivered: u64,
}

impl Outbox {
    /// Nothing queued; the subscriber has what it asked for up to
    /// `delivered`.
    fn new(delivered: u64) -> Outbox {
        Outbox {
            delivered,
            ..Outbox::default()
        }
    }

    /// Queues event `seq`.
    fn event(&mut self, e: &crate::events::Event) {
        self.push(e, e.seq);
    }

    /// Event `seq` is not for this subscriber: it has it once what is
    /// queued before it is written.
    fn pass(&mut self, seq: u64) {
        match self.records.back_mut() {
            Some((_, upto)) => *upto = seq,
            None => self.delivered = self.delivered.max(seq),
        }
    }

    /// Queues a record that is no event (a ping, a gap, the overflow).
    fn note<T: serde::Serialize>(&mut self, record: &T) {
        let upto = self.records.back().map_or(self.delivered, |(_, u)| *u);
        self.push(record, upto);
    }

    fn push<T: serde::Serialize>(&mut self, record: &T, upto: u64) {
        if let Ok(mut line) = serde_json::to_vec(record) {
            line.push(b'\n');
            self.records.push_back((line, upto));
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops every record not started yet; returns the seq up to which the
    /// subscriber has every event once the rest is written (what it resumes
    /// after).
    fn drop_unsent(&mut self) -> u64 {
        self.records.truncate(usize::from(self.offset > 0));
        self.records
            .front()
            .map_or(self.delivered, |(_, upto)| (*upto).max(self.delivered))
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
        while let Some((front, upto)) = self.records.front() {
            match wr.try_write(&front[self.offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.offset += n;
                    if self.offset == front.len() {
                        self.delivered = self.delivered.max(*upto);
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
/// `{"overflow":true,"last_seq":N,…}` record and is disconnected: it never
/// slows the supervisor. N is the last event it got, so it resumes with
/// `since` N + 1 without a hole.
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
    let Follow {
        mut live,
        kept,
        gap,
        next,
    } = bus.follow(since.unwrap_or(u64::MAX));
    // Without `since`: the events from now on; with it, those from `since`.
    let since = since.unwrap_or(next);
    let wanted =
        |e: &crate::events::Event| e.seq >= since && filter.as_ref().is_none_or(|f| f.matches(e));
    let mut out = Outbox::new(since.min(next).saturating_sub(1));
    // The last seq the stream has seen, sent or not.
    let mut last = next.saturating_sub(1);
    if gap {
        let oldest = kept.first().map(|e| e.seq);
        out.push(
            &serde_json::json!({"gap": true, "oldest": oldest}),
            oldest.unwrap_or(next).saturating_sub(1),
        );
    }
    for e in &kept {
        if wanted(e) {
            out.event(e);
        } else {
            out.pass(e.seq);
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
            // The subscriber resumes after what it got, not after what the
            // stream took off the bus: the rest is still in the ring.
            let resume_after = out.drop_unsent();
            out.note(
                &serde_json::json!({"overflow": true, "last_seq": resume_after, "reason": why}),
            );
            tracing::warn!(last_seq = resume_after, "event subscriber cut: {why}");
            bus.count_stream_cut();
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
                            last = e.seq;
                            if wanted(&e) {
                                out.event(&e);
                            } else {
                                out.pass(e.seq);
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
                out.note(&serde_json::json!({
                    "ping": crate::events::bus::rfc3339_millis(std::time::SystemTime::now()),
                    "last_seq": last,
                }));
            }
            r = live.recv() => match r {
                Ok(e) => {
                    last = e.seq;
                    if wanted(&e) {
                        idle = tokio::time::Instant::now();
                        out.event(&e);
                    } else {
                        out.pass(e.seq);
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
        let mut last_event = 0;
        let mut count = 0;
        while let Some(v) = next_json(&mut lines).await {
            count += 1;
            if let Some(seq) = v["seq"].as_u64() {
                last_event = seq;
            }
            last = Some(v);
        }
        let last = last.unwrap();
        assert_eq!(last["overflow"], true, "{last}");
        // Where to resume: after the last event written, not the last taken
        // off the bus.
        assert_eq!(last["last_seq"].as_u64(), Some(last_event), "{last}");
        assert!(last_event > 0);
        assert!(count < 5000, "{count} records: the cut dropped the backlog");
        task.await.unwrap();
    }

    /// The events of `client`'s stream until it ends: their seqs, and the
    /// `last_seq` of the overflow record that ends it, if one does.
    async fn read_all(client: UnixStream) -> (Vec<u64>, Option<u64>) {
        let mut lines = BufReader::new(client).lines();
        let (mut seqs, mut overflow) = (Vec::new(), None);
        while let Some(v) = next_json(&mut lines).await {
            if let Some(seq) = v["seq"].as_u64() {
                assert!(overflow.is_none(), "an event after the overflow: {v}");
                seqs.push(seq);
            } else if v["overflow"] == true {
                overflow = v["last_seq"].as_u64();
            }
        }
        (seqs, overflow)
    }

    /// A filtered subscriber that is cut resumes with `since` = `last_seq`
    /// + 1 and, between the two streams, gets every event it asked for,
    /// once each, in order: nothing between what it got and `last_seq` is
    /// skipped.
    #[tokio::test]
    async fn a_cut_subscriber_resumes_after_what_it_got_without_a_hole() {
        let bus = Bus::new("lab-a");
        let (client, task, stop) = stream(&bus, Some(1), Some("*|agent|*|a"));
        let total = 6000u64;
        for i in 0..total {
            publish(&bus, if i % 3 == 0 { "a" } else { "b" }, "ready");
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let (first, resume_after) = read_all(client).await;
        task.await.unwrap();
        let resume_after = resume_after.expect("the subscriber was cut");
        assert!(resume_after < total, "cut before the end: {resume_after}");
        assert!(
            first.last().is_some_and(|l| *l <= resume_after),
            "{first:?} then {resume_after}"
        );

        let (client, task, _) = stream(&bus, Some(resume_after + 1), Some("*|agent|*|a"));
        stop.close();
        let (rest, cut) = read_all(client).await;
        task.await.unwrap();
        assert_eq!(cut, None);
        let got: Vec<u64> = first.into_iter().chain(rest).collect();
        let want: Vec<u64> = (1..=total).filter(|s| (s - 1) % 3 == 0).collect();
        assert_eq!(got, want);
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
