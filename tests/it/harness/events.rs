//! The supervisor's lifecycle events, read from its control socket (one
//! JSON request per line, one JSON record per line back; see
//! `supervisor/src/control.rs`). A test waits on them: it follows the
//! stream from a `seq` taken before it acts, so the events its action
//! causes cannot be missed, however fast they come.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

/// How long a wait for an event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// One request on the control socket, and its one answer.
fn request(control: &str, request: Json) -> Json {
    let mut stream = connect(control);
    send(&mut stream, control, &request);
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{control}: no answer to {request}: {e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{control}: {line:?}: {e}"))
}

fn connect(control: &str) -> UnixStream {
    UnixStream::connect(control).unwrap_or_else(|e| panic!("cannot connect to {control}: {e}"))
}

fn send(stream: &mut UnixStream, control: &str, request: &Json) {
    let mut line = serde_json::to_vec(&request).expect("JSON");
    line.push(b'\n');
    stream
        .write_all(&line)
        .unwrap_or_else(|e| panic!("{control}: cannot send {request}: {e}"));
}

/// Every event the supervisor on `control` still keeps, oldest first (the
/// ring holds far more than any test makes; losing one fails the test).
pub fn events(control: &str) -> Vec<Json> {
    let answer = request(control, json!({"protocol": 1, "cmd": "events", "since": 1}));
    assert_eq!(answer["result"], "events", "{control}: {answer}");
    assert_eq!(
        answer["gap"], false,
        "{control}: the event ring lost events"
    );
    answer["events"].as_array().cloned().unwrap_or_default()
}

/// The `seq` the supervisor on `control` gives its next event: what an
/// action causes from now on has this `seq` or a later one.
pub fn next_seq(control: &str) -> u64 {
    events(control)
        .last()
        .and_then(|e| e["seq"].as_u64())
        .map_or(1, |s| s + 1)
}

/// Whether `e` is an `event` of `agent`.
pub fn is(e: &Json, agent: &str, event: &str) -> bool {
    e["agent"] == agent && e["event"] == event
}

/// The pid an event names (a `ready` event names the new process).
pub fn pid_in(e: &Json) -> u32 {
    e["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in {e}"))
}

/// The kinds of `agent`'s events, in order.
pub fn kinds_for<'a>(events: &'a [Json], agent: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["agent"] == agent)
        .filter_map(|e| e["event"].as_str())
        .collect()
}

/// An event in a line: `#12 dev-a died pid=4242 restarts=1 (killed by SIGKILL)`.
pub fn show(e: &Json) -> String {
    let mut s = format!(
        "#{} {} {}",
        e["seq"],
        e["agent"].as_str().filter(|a| !a.is_empty()).unwrap_or("-"),
        e["event"].as_str().unwrap_or("?")
    );
    if let Some(pid) = e["pid"].as_u64() {
        s += &format!(" pid={pid}");
    }
    s += &format!(" restarts={}", e["restarts"]);
    if let Some(r) = e["reason"].as_str().filter(|r| !r.is_empty()) {
        s += &format!(" ({r})");
    }
    s
}

/// A subscription to the event stream (`events` with `follow`): the
/// events kept from a `seq` on, then each new one as it is published.
pub struct EventStream {
    control: String,
    since: u64,
    reader: BufReader<UnixStream>,
    /// Bytes of a line not yet complete when a read timed out.
    partial: Vec<u8>,
    seen: Vec<Json>,
    /// Where the next [`EventStream::wait`] looks first.
    next: usize,
}

impl EventStream {
    /// Follows the supervisor on `control` from event `since` on.
    pub fn follow(control: &str, since: u64) -> EventStream {
        let mut stream = connect(control);
        send(
            &mut stream,
            control,
            &json!({"protocol": 1, "cmd": "events", "since": since, "follow": true}),
        );
        EventStream {
            control: control.to_string(),
            since,
            reader: BufReader::new(stream),
            partial: Vec::new(),
            seen: Vec::new(),
            next: 0,
        }
    }

    /// Reads the next event, if one comes before `deadline`.
    fn read(&mut self, deadline: Instant) -> Option<&Json> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("set a read timeout");
            match self.reader.read_until(b'\n', &mut self.partial) {
                Ok(0) => panic!(
                    "{}: the event stream ended (the supervisor stopped?); {}",
                    self.control,
                    self.so_far()
                ),
                Ok(_) if self.partial.ends_with(b"\n") => {}
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("{}: reading the event stream: {e}", self.control),
            }
            let line = std::mem::take(&mut self.partial);
            let record: Json = serde_json::from_slice(&line).unwrap_or_else(|e| {
                panic!(
                    "{}: {:?}: {e}",
                    self.control,
                    String::from_utf8_lossy(&line)
                )
            });
            if record.get("seq").is_some() {
                self.seen.push(record);
                return self.seen.last();
            }
            assert!(
                record.get("ping").is_some(),
                "{}: the stream says {record}: events since {} were lost",
                self.control,
                self.since
            );
        }
    }

    /// Reads on until an event after the one the last `wait` returned
    /// satisfies `pred`, and returns it. Fails the test, saying what it
    /// waited for and what it saw, if none comes within [`WAIT`].
    pub fn wait(&mut self, what: &str, mut pred: impl FnMut(&Json) -> bool) -> Json {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.seen[self.next..].iter().position(&mut pred) {
                self.next += i + 1;
                return self.seen[self.next - 1].clone();
            }
            self.next = self.seen.len();
            if self.read(deadline).is_none() {
                panic!(
                    "{}: no event {what} within {WAIT:?}; {}",
                    self.control,
                    self.so_far()
                );
            }
        }
    }

    /// Reads on until `pred` holds of every event read (from `since` on),
    /// and returns them. Fails the test like [`EventStream::wait`].
    pub fn wait_all(&mut self, what: &str, mut pred: impl FnMut(&[Json]) -> bool) -> &[Json] {
        let deadline = Instant::now() + WAIT;
        while !pred(&self.seen) {
            if self.read(deadline).is_none() {
                panic!(
                    "{}: events never showed {what} within {WAIT:?}; {}",
                    self.control,
                    self.so_far()
                );
            }
        }
        self.next = self.seen.len();
        &self.seen
    }

    /// The events seen, for a failure message (the last 60 of them).
    fn so_far(&self) -> String {
        let skip = self.seen.len().saturating_sub(60);
        let shown: Vec<String> = self.seen[skip..].iter().map(show).collect();
        format!(
            "{} events seen from seq {}{}:\n  {}",
            self.seen.len(),
            self.since,
            if skip > 0 { ", the last 60" } else { "" },
            shown.join("\n  ")
        )
    }
}

/// Milliseconds since the epoch of an event's `ts`
/// (`2026-11-22T12:00:00.123Z`).
pub fn ts_millis(ts: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60 + s) * 1000) + ms)
}
