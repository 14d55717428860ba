//! The decoders of what reaches a process over a local socket: frames of
//! the agent's control channel (either direction) and request lines of the
//! supervisor's control socket.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use agentcluster_agent::channel::{self, FromAgent, ToAgent};
use agentcluster_supervisor::protocol as control;

/// Runs one fuzz input: the bytes as a channel stream read by the agent
/// (frames to it) and by the supervisor (frames from it), then as lines
/// sent to the control socket.
pub fn run(data: &[u8]) {
    frames::<ToAgent>(data);
    frames::<FromAgent>(data);
    for line in data.split(|&b| b == b'\n') {
        if line.len() <= control::MAX_LINE {
            let _ = control::parse_request_line(line);
        }
    }
}

/// Reads frames until the end, an error, or a bounded count.
fn frames<T: serde::de::DeserializeOwned>(data: &[u8]) {
    let mut reader = data;
    // Every frame takes at least its 4-byte length.
    for _ in 0..=data.len() / 4 {
        match now(channel::read_frame::<_, T>(&mut reader)) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
    panic!("more frames than the input holds");
}

/// Polls a future that never waits (it reads from memory) to its end.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("reading from memory waited"),
    }
}
