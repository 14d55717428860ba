//! `events --follow`: an event stream on a control connection. The events
//! kept are replayed, then new ones follow as they are published, with
//! keep-alive pings. A subscriber that reads slower than events come (a
//! fleet's start burst) is never waited for: its stream takes the rest
//! from the bus's ring at the subscriber's pace, and only one that falls
//! further behind than the ring keeps is cut.

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
/// beyond its replay) before its stream stops taking events as they come
/// and takes them from the ring instead, this many at a time, as the
/// subscriber reads.
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

/// The next event of a live subscription, or never without one.
async fn recv(
    live: &mut Option<tokio::sync::broadcast::Receiver<std::sync::Arc<crate::events::Event>>>,
) -> Result<std::sync::Arc<crate::events::Event>, RecvError> {
    match live {
        Some(live) => live.recv().await,
        None => std::future::pending().await,
    }
}

/// Streams the events `filter` matches (all without one) as JSON lines:
/// first those kept with `seq >= since` (after a `{"gap":true,…}` record
/// if some are gone), then each new one, with a `{"ping":…}` record after
/// [`PING_EVERY`] of silence. A subscriber that falls [`MAX_BEHIND`]
/// records behind, or that the bus's channel left behind, is not cut: the
/// stream takes the next events from the bus's ring as the subscriber
/// reads, until it has caught up. Only a subscriber that falls further
/// behind than the ring keeps gets a final
/// `{"overflow":true,"last_seq":N,…}` record and is disconnected: it never
/// slows the supervisor. N is the last event it got.
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
        live,
        kept,
        gap,
        next,
    } = bus.follow(since.unwrap_or(u64::MAX));
    // Without `since`: the events from now on; with it, those from `since`.
    let since = since.unwrap_or(next);
    let wanted =
        |e: &crate::events::Event| e.seq >= since && filter.as_ref().is_none_or(|f| f.matches(e));
    let mut out = Outbox::new(since.min(next).saturating_sub(1));
    // The last seq the stream has taken, sent or not.
    let mut last = next.saturating_sub(1);
    let take = |out: &mut Outbox, e: &crate::events::Event| {
        if wanted(e) {
            out.event(e);
        } else {
            out.pass(e.seq);
        }
    };
    if gap {
        let oldest = kept.first().map(|e| e.seq);
        out.push(
            &serde_json::json!({"gap": true, "oldest": oldest}),
            oldest.unwrap_or(next).saturating_sub(1),
        );
    }
    for e in &kept {
        take(&mut out, e);
    }
    // `None` while the subscriber is behind: the next events come from
    // the ring, after `last`.
    let mut live = Some(live);
    let mut cut: Option<String> = None;
    let mut idle = tokio::time::Instant::now();
    // The replay itself may be long; the limit is on what piles up after.
    let mut limit = out.len() + MAX_BEHIND;
    // Set once the bus is closed: everything published is in `out`, or
    // in the ring after `last`; written by this deadline.
    let mut ending: Option<tokio::time::Instant> = None;
    loop {
        if live.is_some() && out.len() > limit {
            // Behind: stop queueing; the ring holds what comes next.
            live = None;
        }
        if live.is_none() && cut.is_none() && out.len() < MAX_BEHIND {
            match bus.catch_up(last + 1, MAX_BEHIND) {
                Some(c) => {
                    for e in &c.kept {
                        last = e.seq;
                        take(&mut out, e);
                    }
                    live = c.live;
                    limit = out.len() + MAX_BEHIND;
                }
                None => {
                    cut = Some(format!(
                        "the subscriber fell more than {} events behind (the events kept)",
                        bus.ring_len()
                    ));
                }
            }
        }
        if let Some(why) = &cut {
            // The subscriber resumes after what it got, not after what the
            // stream took off the bus.
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
        if let Some(deadline) = ending {
            match tokio::time::timeout_at(deadline, out.flush(wr)).await {
                // Caught up from the ring, or more to take from it.
                Ok(Ok(())) if live.is_none() => continue,
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
                // Every event published before the close is in the channel
                // (or, behind, in the ring).
                if let Some(rx) = live.as_mut() {
                    loop {
                        match rx.try_recv() {
                            Ok(e) => {
                                last = e.seq;
                                take(&mut out, &e);
                            }
                            Err(TryRecvError::Lagged(_)) => {
                                live = None;
                                break;
                            }
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                }
                ending = Some(tokio::time::Instant::now() + FLUSH_TIMEOUT);
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
            r = recv(&mut live) => match r {
                Ok(e) => {
                    last = e.seq;
                    if wanted(&e) {
                        idle = tokio::time::Instant::now();
                    }
                    take(&mut out, &e);
                }
                // Left behind by the channel: the rest from the ring.
                Err(RecvError::Lagged(_)) => live = None,
                Err(RecvError::Closed) => {
                    ending = Some(tokio::time::Instant::now() + FLUSH_TIMEOUT);
                }
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

    /// A subscriber that reads nothing while a burst larger than its
    /// queue and the bus's channel comes (a fleet's start) is not cut:
    /// once it reads it gets every event, in order, from the ring.
    #[tokio::test]
    async fn a_subscriber_that_reads_slower_than_a_burst_loses_nothing() {
        let bus = Bus::new("lab-a");
        let (client, task, stop) = stream(&bus, Some(1), None);
        let total = 9000u64;
        for i in 0..total {
            publish(&bus, &format!("agent-{i}"), "ready");
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let reader = tokio::spawn(read_all(client));
        // Events after the burst, while it reads, come too.
        for i in 0..10 {
            publish(&bus, &format!("late-{i}"), "ready");
            tokio::task::yield_now().await;
        }
        stop.close();
        let (seqs, overflow) = reader.await.unwrap();
        task.await.unwrap();
        assert_eq!(overflow, None);
        assert_eq!(seqs.len() as u64, total + 10);
        assert!(
            seqs.iter().zip(1..).all(|(s, i)| *s == i),
            "in order, without a hole"
        );
        assert_eq!(bus.tallies().streams_cut, 0);
    }

    /// Only a subscriber that falls further behind than the ring keeps is
    /// cut; publishing never waits for it.
    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_cut_and_never_slows_the_bus() {
        let bus = Bus::new("lab-a");
        let (client, task, _stop) = stream(&bus, Some(1), None);
        // More than the ring keeps while nobody reads: publishing never
        // waits.
        let total = crate::events::bus::RING + 5000;
        let t = std::time::Instant::now();
        for i in 0..total {
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
                assert_eq!(seq, last_event + 1, "in order, without a hole");
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
        assert!(
            count < total,
            "{count} records: the cut dropped the backlog"
        );
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

    /// A filtered subscriber that reads slower than events come gets every
    /// event it asked for, once each, in order; one that is cut resumes
    /// with `since` = `last_seq` + 1 and is told, by the gap record, that
    /// what it missed has left the ring.
    #[tokio::test]
    async fn a_filtered_subscriber_catches_up_and_a_cut_one_resumes_after_a_gap() {
        let bus = Bus::new("lab-a");
        let (client, task, _) = stream(&bus, Some(1), Some("*|agent|*|a"));
        let total = 6000u64;
        for i in 0..total {
            publish(&bus, if i % 3 == 0 { "a" } else { "b" }, "ready");
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let reader = tokio::spawn(read_all(client));
        let (cut_client, cut_task, _) = stream(&bus, Some(1), Some("*|agent|*|a"));
        // The second subscriber reads nothing while the ring turns over.
        let more = crate::events::bus::RING as u64 + 5000;
        for i in total..total + more {
            publish(&bus, if i % 3 == 0 { "a" } else { "b" }, "ready");
            if i % 20 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let (cut_first, resume_after) = read_all(cut_client).await;
        cut_task.await.unwrap();
        let resume_after = resume_after.expect("the second subscriber was cut");
        assert!(cut_first.last().is_some_and(|l| *l <= resume_after));
        let all = total + more;
        let (client, resumed, stop) = stream(&bus, Some(resume_after + 1), Some("*|agent|*|a"));
        stop.close();
        let (first, cut) = reader.await.unwrap();
        task.await.unwrap();
        assert_eq!(cut, None);
        let want: Vec<u64> = (1..=all).filter(|s| (s - 1) % 3 == 0).collect();
        assert!(first == want, "every event asked for, in order");
        let mut lines = BufReader::new(client).lines();
        let gap = next_json(&mut lines).await.unwrap();
        assert_eq!(gap["gap"], true, "{gap}");
        let oldest = gap["oldest"].as_u64().unwrap();
        assert!(oldest > resume_after + 1, "{gap}");
        let mut rest = Vec::new();
        while let Some(v) = next_json(&mut lines).await {
            rest.push(v["seq"].as_u64().unwrap());
        }
        resumed.await.unwrap();
        let want: Vec<u64> = (oldest..=all).filter(|s| (s - 1) % 3 == 0).collect();
        assert!(rest == want, "after the gap, every event asked for");
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
