//! The decoders of what reaches a process over a local socket: frames of
//! the agent's control channel (either direction) and request lines of the
//! supervisor's control socket.

use agentcluster_agent::channel::{self, FromAgent, Message, ToAgent};
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

/// Reads frames until the end or an error, each read as large as the
/// framing allows (no descriptor comes from memory: a message that names
/// some is refused).
fn frames<T: Message>(mut data: &[u8]) {
    let mut frames = channel::Frames::default();
    while !data.is_empty() {
        let space = frames.space();
        assert!(!space.is_empty(), "the framing asked for no bytes");
        let n = space.len().min(data.len());
        space[..n].copy_from_slice(&data[..n]);
        data = &data[n..];
        match frames.filled(n, Vec::new()) {
            Ok(Some(frame)) => {
                let _ = frame.into_message::<T>();
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
    let _ = frames.end();
}
