//! The supervisor's lifecycle events, read from its control socket (one
//! JSON request per line, one JSON record per line back; see
//! `supervisor/src/control.rs`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value as Json, json};

/// How long a wait for the supervisor may take before the test fails.
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

/// The kinds of `agent`'s events, in order.
pub fn kinds_for<'a>(events: &'a [Json], agent: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["agent"] == agent)
        .filter_map(|e| e["event"].as_str())
        .collect()
}
