//! Frames of the control channel, and the descriptors that travel with
//! them. A frame is an 8-byte header — the body's length and how many
//! descriptors the frame carries, each a 4-byte big-endian number — then
//! the body: one JSON [`Message`].
//!
//! Descriptors ride on the stream as SCM_RIGHTS. The kernel hands them over
//! with the read that reaches the first byte of the `sendmsg` they were
//! sent with, and that read may also return bytes sent before them. So the
//! reader never reads past the end of the frame it is reading
//! ([`Frames::space`]): every descriptor that arrives while a frame's bytes
//! are read is that frame's, and none of a later frame can arrive early.
//! The writer ([`send`]) sends a frame's descriptors with its header; past
//! the 253 one `sendmsg` carries, the rest go 253 at a time with the body's
//! first bytes, one byte each. Fail closed: a frame whose descriptors are
//! not the number its header claims, or not the number its message names,
//! is an error, and the descriptors that did come are closed.
//!
//! [`Frames`] is the pure part (bytes and descriptors in, frames out), fed
//! by [`Receiver`] from the socket and by the fuzz target from memory.

use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;

use super::{MAX_FRAME, Message};
use crate::sys::{self, MAX_FDS_PER_SEND};

/// Bytes of a frame's header: the body's length, then the descriptor count.
pub const HEADER: usize = 8;
/// Most descriptors a frame may claim (a process's distinct stores).
pub const MAX_FDS: usize = 1 << 16;
/// Most of a frame's body allocated before its bytes arrive.
const READ_AHEAD: usize = 64 << 10;

/// One whole frame: its body and the descriptors that came with it.
#[derive(Debug)]
pub struct Frame {
    body: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Frame {
    /// The message, with its descriptors in the order they were sent. An
    /// error when the body is no message of this kind, or when the message
    /// names another number of descriptors than came (they are closed).
    pub fn into_message<T: Message>(self) -> io::Result<(T, Vec<OwnedFd>)> {
        let msg: T = serde_json::from_slice(&self.body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if msg.descriptors() != self.fds.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the message names {} descriptors but its frame carries {}",
                    msg.descriptors(),
                    self.fds.len()
                ),
            ));
        }
        Ok((msg, self.fds))
    }
}

/// Assembles frames from what reads return. Each read goes into
/// [`Frames::space`], which never reaches past the current frame's end;
/// [`Frames::filled`] takes what it got, with its descriptors.
#[derive(Debug, Default)]
pub struct Frames {
    head: [u8; HEADER],
    head_len: usize,
    /// The body's length and the descriptors claimed, once the header is in.
    claim: Option<(usize, usize)>,
    body: Vec<u8>,
    /// Bytes of `body` read so far (`body` may be longer: room for a read).
    got: usize,
    fds: Vec<OwnedFd>,
}

impl Frames {
    /// Where the next read goes: the rest of the header, or of the body (at
    /// most 64 KiB at a time, so a length that claims more than the peer
    /// sends costs no more memory than what it sent). Never empty.
    pub fn space(&mut self) -> &mut [u8] {
        match self.claim {
            None => &mut self.head[self.head_len..],
            Some((len, _)) => {
                let want = (len - self.got).min(READ_AHEAD);
                self.body.resize(self.got + want, 0);
                &mut self.body[self.got..]
            }
        }
    }

    /// `n` bytes were read into [`Frames::space`], and `fds` came with
    /// them. Returns the frame they complete, if they do.
    pub fn filled(&mut self, n: usize, fds: Vec<OwnedFd>) -> io::Result<Option<Frame>> {
        self.fds.extend(fds);
        let room = match self.claim {
            None => HEADER - self.head_len,
            Some((len, _)) => (len - self.got).min(READ_AHEAD),
        };
        if n == 0 || n > room {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a read of {n} bytes where {room} were asked for"),
            ));
        }
        let (len, claimed) = match self.claim {
            Some(claim) => {
                self.got += n;
                claim
            }
            None => {
                self.head_len += n;
                if self.head_len < HEADER {
                    return Ok(None);
                }
                let word = |i: usize| {
                    u32::from_be_bytes([
                        self.head[i],
                        self.head[i + 1],
                        self.head[i + 2],
                        self.head[i + 3],
                    ]) as usize
                };
                let (len, claimed) = (word(0), word(4));
                if len > MAX_FRAME {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("frame of {len} bytes exceeds the limit"),
                    ));
                }
                if claimed > MAX_FDS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("frame claims {claimed} descriptors, over the limit"),
                    ));
                }
                self.claim = Some((len, claimed));
                (len, claimed)
            }
        };
        if self.fds.len() > claimed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} descriptors came with a frame that claims {claimed}",
                    self.fds.len()
                ),
            ));
        }
        if self.got < len {
            return Ok(None);
        }
        if self.fds.len() != claimed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the frame claims {claimed} descriptors but {} came with it",
                    self.fds.len()
                ),
            ));
        }
        self.body.truncate(self.got);
        let frame = Frame {
            body: std::mem::take(&mut self.body),
            fds: std::mem::take(&mut self.fds),
        };
        self.head_len = 0;
        self.claim = None;
        self.got = 0;
        Ok(Some(frame))
    }

    /// The stream ended: fine between frames, an error within one.
    pub fn end(&self) -> io::Result<()> {
        match self.claim {
            None if self.head_len == 0 => Ok(()),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "frame cut short: {} of {HEADER} header bytes",
                    self.head_len
                ),
            )),
            Some((len, _)) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("frame cut short: {} of {len} bytes", self.got),
            )),
        }
    }
}

/// The reading end of a channel: messages and their descriptors.
#[derive(Debug)]
pub struct Receiver {
    half: OwnedReadHalf,
    frames: Frames,
}

impl Receiver {
    /// Reads messages from `half` (of a Unix stream socket).
    pub fn new(half: OwnedReadHalf) -> Receiver {
        Receiver {
            half,
            frames: Frames::default(),
        }
    }

    /// The next message and the descriptors that came with it, in the
    /// order they were sent; `Ok(None)` at a clean end of the stream
    /// between frames. Cancel-safe: what was read stays for the next call.
    pub async fn recv<T: Message>(&mut self) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
        let Receiver { half, frames } = self;
        let stream: &UnixStream = half.as_ref();
        let fd = stream.as_raw_fd();
        loop {
            let space = frames.space();
            let got = stream
                .async_io(Interest::READABLE, || sys::recv_with_fds(fd, space))
                .await?;
            if got.truncated {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "descriptors sent on the channel were lost (more than fit, or no room for them)",
                ));
            }
            if got.len == 0 {
                return frames.end().map(|()| None);
            }
            if let Some(frame) = frames.filled(got.len, got.fds)? {
                return frame.into_message().map(Some);
            }
        }
    }
}

/// Sends `msg` on `stream` with `fds`, which must be the descriptors the
/// message names, in its order. Not cancel-safe: a frame dropped halfway
/// leaves the stream unusable.
pub async fn send<T: Message>(
    stream: &UnixStream,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let frame = encode(msg, fds.len())?;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let sock = stream.as_raw_fd();
    for (bytes, rights) in pieces(frame.len(), raw.len())? {
        let mut at = bytes.start;
        let mut rights = &raw[rights];
        while at < bytes.end {
            let piece = &frame[at..bytes.end];
            let n = stream
                .async_io(Interest::WRITABLE, || {
                    sys::send_with_fds(sock, piece, rights)
                })
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            // The descriptors went with the first byte sent.
            at += n;
            rights = &[];
        }
    }
    Ok(())
}

/// The header and body of `msg`, which is to carry `fds` descriptors.
fn encode<T: Message>(msg: &T, fds: usize) -> io::Result<Vec<u8>> {
    if msg.descriptors() != fds || fds > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message naming {} descriptors sent with {fds}",
                msg.descriptors()
            ),
        ));
    }
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let mut frame = Vec::with_capacity(HEADER + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&(fds as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// How a frame of `len` bytes with `fds` descriptors is sent: pieces of
/// bytes, each with the descriptors that go with its first byte. One piece
/// when one `sendmsg` carries them all; else the header with the first 253,
/// then one body byte with each further 253, the last piece running to the
/// end.
fn pieces(len: usize, fds: usize) -> io::Result<Vec<(Range<usize>, Range<usize>)>> {
    let groups = fds.div_ceil(MAX_FDS_PER_SEND).max(1);
    // Piece i starts at 0 (the header), then at HEADER + i - 1.
    let start = |i: usize| if i == 0 { 0 } else { HEADER + i - 1 };
    if start(groups - 1) >= len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a frame too short for its descriptors",
        ));
    }
    Ok((0..groups)
        .map(|i| {
            let end = if i + 1 == groups { len } else { start(i + 1) };
            let rights = i * MAX_FDS_PER_SEND..((i + 1) * MAX_FDS_PER_SEND).min(fds);
            (start(i)..end, rights)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::channel::{FromAgent, Limits, Swap, ToAgent};

    /// Both ends of a channel: the supervisor's writer, the agent's reader.
    fn pair() -> (tokio::net::unix::OwnedWriteHalf, Receiver) {
        let (a, b) = UnixStream::pair().unwrap();
        let (_, writer) = a.into_split();
        let (reader, _) = b.into_split();
        (writer, Receiver::new(reader))
    }

    /// A swap of `n` stores, store `i` into view `i` of agent 0.
    fn swap(n: usize) -> ToAgent {
        ToAgent::Swap {
            stores: (0..n)
                .map(|i| PathBuf::from(format!("/cache/{i}.store")))
                .collect(),
            swaps: (0..n)
                .map(|i| Swap {
                    agent: 0,
                    view: i,
                    store: i,
                })
                .collect(),
        }
    }

    /// A file holding `text`, opened for reading.
    fn file(dir: &std::path::Path, text: &str) -> std::fs::File {
        let path = dir.join(text);
        std::fs::write(&path, text).unwrap();
        std::fs::File::open(path).unwrap()
    }

    fn text_of(fd: OwnedFd) -> String {
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    }

    /// Raw bytes, and descriptors with their first byte, as a peer that
    /// does not follow the protocol may send them.
    fn raw(w: &tokio::net::unix::OwnedWriteHalf, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        let fds: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let n = sys::send_with_fds(w.as_ref().as_raw_fd(), bytes, &fds).unwrap();
        assert_eq!(n, bytes.len());
    }

    /// `f`, which must not take long: everything it reads was sent.
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(30), f)
            .await
            .expect("a read of what was sent hangs")
    }

    fn header(len: usize, fds: usize) -> Vec<u8> {
        let mut h = (len as u32).to_be_bytes().to_vec();
        h.extend_from_slice(&(fds as u32).to_be_bytes());
        h
    }

    #[tokio::test]
    async fn descriptors_arrive_with_their_own_message() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two, three) = (
            file(dir.path(), "one"),
            file(dir.path(), "two"),
            file(dir.path(), "three"),
        );
        let (w, mut r) = pair();
        // Everything is queued before the first read, so a read that took
        // what is there would see one frame's bytes and the next frame's
        // descriptors together.
        let limits = ToAgent::Limits(Limits {
            max_response_bytes: 1400,
            rate_limit: None,
        });
        send(w.as_ref(), &limits, &[]).await.unwrap();
        send(w.as_ref(), &swap(2), &[one.as_fd(), two.as_fd()])
            .await
            .unwrap();
        send(w.as_ref(), &ToAgent::Stop, &[]).await.unwrap();
        send(w.as_ref(), &swap(1), &[three.as_fd()]).await.unwrap();
        drop(w);

        let (msg, fds) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
        assert!(matches!(msg, ToAgent::Limits(_)) && fds.is_empty());
        let (msg, fds) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
        assert!(matches!(msg, ToAgent::Swap { ref stores, .. } if stores.len() == 2));
        let texts: Vec<String> = fds.into_iter().map(text_of).collect();
        assert_eq!(texts, ["one", "two"]);
        let (msg, fds) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
        assert!(matches!(msg, ToAgent::Stop) && fds.is_empty());
        let (msg, fds) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
        assert!(matches!(msg, ToAgent::Swap { ref stores, .. } if stores.len() == 1));
        let texts: Vec<String> = fds.into_iter().map(text_of).collect();
        assert_eq!(texts, ["three"]);
        assert!(within(r.recv::<ToAgent>()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn more_descriptors_than_one_sendmsg_carries_arrive_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * MAX_FDS_PER_SEND + 7;
        let files: Vec<std::fs::File> = (0..n).map(|i| file(dir.path(), &i.to_string())).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
        let (w, mut r) = pair();
        let sending = async {
            send(w.as_ref(), &swap(n), &fds).await.unwrap();
            send(w.as_ref(), &ToAgent::Stop, &[]).await.unwrap();
        };
        let receiving = async {
            let (msg, got) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
            assert_eq!(msg.descriptors(), n);
            let texts: Vec<String> = got.into_iter().map(text_of).collect();
            let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            assert_eq!(texts, want);
            let (msg, got) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
            assert!(matches!(msg, ToAgent::Stop) && got.is_empty());
        };
        tokio::join!(sending, receiving);
    }

    #[tokio::test]
    async fn a_message_is_sent_only_with_the_descriptors_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let one = file(dir.path(), "one");
        let (w, _r) = pair();
        let e = send(w.as_ref(), &swap(2), &[one.as_fd()])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = send(w.as_ref(), &ToAgent::Stop, &[one.as_fd()])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn descriptors_that_do_not_match_the_claim_are_refused_and_closed() {
        let body = serde_json::to_vec(&swap(2)).unwrap();

        // A frame that claims two descriptors, none of which came.
        let (w, mut r) = pair();
        raw(&w, &[header(body.len(), 2), body.clone()].concat(), &[]);
        let e = within(r.recv::<ToAgent>()).await.unwrap_err();
        assert!(
            e.to_string().contains("claims 2 descriptors but 0 came"),
            "{e}"
        );

        // The frame claims one and one came, but the message names two.
        let (pipe, pipe_w) = std::io::pipe().unwrap();
        let (w, mut r) = pair();
        raw(
            &w,
            &[header(body.len(), 1), body.clone()].concat(),
            &[pipe_w.as_fd()],
        );
        let e = within(r.recv::<ToAgent>()).await.unwrap_err();
        assert!(e.to_string().contains("names 2 descriptors"), "{e}");

        // Descriptors with a frame that claims none: refused, and closed
        // (the pipe's last writer is gone, so its reader sees the end).
        let stop = serde_json::to_vec(&ToAgent::Stop).unwrap();
        let (w, mut r) = pair();
        raw(
            &w,
            &[header(stop.len(), 0), stop].concat(),
            &[pipe_w.as_fd()],
        );
        let e = within(r.recv::<ToAgent>()).await.unwrap_err();
        assert!(e.to_string().contains("claims 0"), "{e}");
        drop(r);
        drop(pipe_w);
        let mut rest = Vec::new();
        (&pipe).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        // Descriptors sent with a later part of a frame than its first
        // bytes still belong to it; more than it claims are refused.
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (file(dir.path(), "one"), file(dir.path(), "two"));
        let (w, mut r) = pair();
        let frame = [header(body.len(), 2), body.clone()].concat();
        raw(&w, &frame[..HEADER], &[one.as_fd()]);
        raw(&w, &frame[HEADER..], &[two.as_fd()]);
        let (_, fds) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
        assert_eq!(
            fds.into_iter().map(text_of).collect::<Vec<_>>(),
            ["one", "two"]
        );
        let (w, mut r) = pair();
        let frame = [header(body.len(), 1), body].concat();
        raw(&w, &frame[..HEADER], &[one.as_fd()]);
        raw(&w, &frame[HEADER..], &[two.as_fd()]);
        let e = within(r.recv::<ToAgent>()).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("2 descriptors came with a frame that claims 1"),
            "{e}"
        );

        // An agent sends none.
        let ready = serde_json::to_vec(&FromAgent::Ready { token: "t".into() }).unwrap();
        let (w, mut r) = pair();
        raw(
            &w,
            &[header(ready.len(), 1), ready].concat(),
            &[one.as_fd()],
        );
        let e = within(r.recv::<FromAgent>()).await.unwrap_err();
        assert!(e.to_string().contains("names 0 descriptors"), "{e}");
    }

    #[tokio::test]
    async fn frames_round_trip_and_garbage_is_an_error() {
        let (w, mut r) = pair();
        let msg = FromAgent::Ready { token: "t1".into() };
        send(w.as_ref(), &msg, &[]).await.unwrap();
        let got = within(r.recv::<FromAgent>()).await.unwrap();
        assert!(matches!(got, Some((FromAgent::Ready { token }, _)) if token == "t1"));

        for garbage in [
            [header(3, 0), b"xyz".to_vec()].concat(),
            header(u32::MAX as usize, 0),
            header(2, MAX_FDS + 1),
            [
                header(32, 0),
                br#"{"type":"ready-ish","token":"t"}"#.to_vec(),
            ]
            .concat(),
        ] {
            let (w, mut r) = pair();
            raw(&w, &garbage, &[]);
            assert!(within(r.recv::<FromAgent>()).await.is_err(), "{garbage:?}");
        }

        // The end of the stream: clean between frames, an error within one.
        let (w, mut r) = pair();
        drop(w);
        assert!(within(r.recv::<FromAgent>()).await.unwrap().is_none());
        let (w, mut r) = pair();
        raw(&w, &header(10, 0)[..5], &[]);
        drop(w);
        let e = within(r.recv::<FromAgent>()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_read_cancelled_halfway_loses_nothing() {
        let stop = serde_json::to_vec(&ToAgent::Stop).unwrap();
        let frame = [header(stop.len(), 0), stop].concat();
        let (w, mut r) = pair();
        raw(&w, &frame[..HEADER + 3], &[]);
        tokio::select! {
            biased;
            got = r.recv::<ToAgent>() => panic!("a frame from half of one: {got:?}"),
            () = std::future::ready(()) => {}
        }
        raw(&w, &frame[HEADER + 3..], &[]);
        let (msg, _) = within(r.recv::<ToAgent>()).await.unwrap().unwrap();
        assert!(matches!(msg, ToAgent::Stop));
    }

    /// `data` read from memory, each read as large as the frames allow.
    fn feed(frames: &mut Frames, mut data: &[u8]) -> io::Result<Vec<Frame>> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let space = frames.space();
            let n = space.len().min(data.len());
            space[..n].copy_from_slice(&data[..n]);
            data = &data[n..];
            out.extend(frames.filled(n, Vec::new())?);
        }
        Ok(out)
    }

    #[test]
    fn a_length_claiming_more_than_arrives_costs_only_what_arrived() {
        let mut data = header(MAX_FRAME, 0);
        data.extend_from_slice(br#"{"type":"stop"}"#);
        let mut frames = Frames::default();
        let (peak, fed) = crate::sys::alloc_meter::peak(|| feed(&mut frames, &data));
        assert!(fed.unwrap().is_empty());
        assert!(peak < 1 << 20, "{peak} bytes allocated");
        let e = frames.end().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("cut short"), "{e}");
        // A whole frame of a large size still arrives in one piece.
        let body = format!(
            r#"{{"type":"failed","token":"t","reason":"{}"}}"#,
            "x".repeat(3 << 20)
        );
        let data = [header(body.len(), 0), body.into_bytes()].concat();
        let mut frames = Frames::default();
        let mut got = feed(&mut frames, &data).unwrap();
        assert_eq!(got.len(), 1);
        let (msg, _) = got.remove(0).into_message::<FromAgent>().unwrap();
        assert!(matches!(msg, FromAgent::Failed { reason, .. } if reason.len() == 3 << 20));
        frames.end().unwrap();
    }

    #[test]
    fn large_descriptor_counts_are_split_over_the_first_bytes() {
        let one = pieces(100, 3).unwrap();
        assert_eq!(one, [(0..100, 0..3)]);
        let n = 2 * MAX_FDS_PER_SEND + 1;
        let three = pieces(100, n).unwrap();
        assert_eq!(
            three,
            [
                (0..HEADER, 0..MAX_FDS_PER_SEND),
                (HEADER..HEADER + 1, MAX_FDS_PER_SEND..2 * MAX_FDS_PER_SEND),
                (HEADER + 1..100, 2 * MAX_FDS_PER_SEND..n),
            ]
        );
        assert!(pieces(HEADER + 1, n).is_err());
    }
}
