//! Answers to the notifications a device sends from its own serving
//! socket. A device's coldStart or warmStart leaves from the socket its
//! agent serves on (so its source is the device's endpoint); an inform's
//! acknowledgement, and the Report of an SNMPv3 engine discovery, then
//! come back to that socket, whose serving loop takes every datagram.
//! [`Replies`] is where the loop hands them over: only while an exchange
//! waits ([`Replies::waiting`], one atomic load per batch of datagrams, so
//! the path of requests is unchanged otherwise), and only an answer
//! ([`is_reply`]) from the peer an exchange waits on; the exchange then
//! matches its request-id or msgID, as on a socket of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::wire::ber::{TAG_INTEGER, TAG_OCTET_STRING, TAG_SEQUENCE, peek_version, read_header};
use crate::wire::v3::FLAG_REPORTABLE;

/// The Response-PDU tag (RFC 3416).
const TAG_RESPONSE: u8 = 0xa2;

/// Answers a waiting exchange may have queued before it reads them; more
/// are dropped (a peer flooding the device's port cannot grow memory).
const QUEUED: usize = 16;

/// Whether `datagram` is an answer to a notification originator rather
/// than a request to the command responder, told from its first bytes: an
/// SNMPv1/v2c message whose PDU is a Response, or an SNMPv3 message whose
/// reportableFlag is clear (a Response or a Report — its PDU may be
/// encrypted, but every request sets the flag, RFC 3412 §6.4).
pub fn is_reply(datagram: &[u8]) -> bool {
    let Some(version) = peek_version(datagram) else {
        return false;
    };
    // SEQUENCE { version, … }: the field after the version.
    let next = read_header(datagram, 0)
        .and_then(|(_, start, _)| read_header(datagram, start))
        .map(|(_, vstart, vlen)| vstart + vlen);
    let Some(next) = next else { return false };
    match version {
        0 | 1 => {
            // community, then the PDU.
            let Some((TAG_OCTET_STRING, cstart, clen)) = read_header(datagram, next) else {
                return false;
            };
            datagram.get(cstart + clen) == Some(&TAG_RESPONSE)
        }
        3 => {
            // msgGlobalData: msgID, msgMaxSize, msgFlags, msgSecurityModel.
            let Some((TAG_SEQUENCE, gstart, _)) = read_header(datagram, next) else {
                return false;
            };
            let Some((TAG_INTEGER, s, l)) = read_header(datagram, gstart) else {
                return false;
            };
            let Some((TAG_INTEGER, s, l)) = read_header(datagram, s + l) else {
                return false;
            };
            match read_header(datagram, s + l) {
                Some((TAG_OCTET_STRING, fstart, 1)) => datagram[fstart] & FLAG_REPORTABLE == 0,
                _ => false,
            }
        }
        _ => false,
    }
}

/// An exchange that waits: its number, its peer, and where its answers go.
type Waiting = (u64, SocketAddr, mpsc::Sender<Vec<u8>>);

/// One serving socket's exchanges that wait for answers.
#[derive(Debug, Default)]
pub struct Replies {
    /// How many exchanges wait; while 0, the serving loop does not look.
    waiting: AtomicUsize,
    exchanges: Mutex<Vec<Waiting>>,
    /// The number of the next exchange.
    next: AtomicUsize,
}

impl Replies {
    /// None waits yet.
    pub fn new() -> Arc<Replies> {
        Arc::new(Replies::default())
    }

    /// Whether an exchange waits for an answer: the serving loop offers
    /// datagrams only then.
    #[inline]
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Hands `datagram` from `peer` to the exchange that waits for an
    /// answer from it, if it is an answer ([`is_reply`]). Returns whether it
    /// was taken: if not, it is a request for the responder.
    pub fn offer(&self, peer: SocketAddr, datagram: &[u8]) -> bool {
        if !is_reply(datagram) {
            return false;
        }
        let exchanges = self
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((_, _, tx)) = exchanges.iter().find(|(_, p, _)| *p == peer) else {
            return false;
        };
        // A full queue drops it: it is an answer all the same.
        let _ = tx.try_send(datagram.to_vec());
        true
    }

    /// Waits for answers from `peer` until the returned [`Inbox`] is
    /// dropped.
    pub(crate) fn expect(self: &Arc<Replies>, peer: SocketAddr) -> Inbox {
        let (tx, rx) = mpsc::channel(QUEUED);
        let id = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, peer, tx));
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Inbox {
            replies: self.clone(),
            id,
            rx,
        }
    }
}

/// The answers from one peer while an exchange waits for them.
#[derive(Debug)]
pub(crate) struct Inbox {
    replies: Arc<Replies>,
    id: u64,
    pub(crate) rx: mpsc::Receiver<Vec<u8>>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.replies
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _, _)| *id != self.id);
        self.replies.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2c message, community `public`, request-id 7, no varbinds, with
    /// PDU `tag` (`version` 1; 0 makes it v1).
    fn v1v2c(version: u8, tag: u8) -> Vec<u8> {
        vec![
            0x30, 0x17, // Message
            0x02, 0x01, version, // version
            0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', // community
            tag, 0x0b, // PDU
            0x02, 0x01, 0x07, // request-id
            0x02, 0x01, 0x00, // error-status
            0x02, 0x01, 0x00, // error-index
            0x30, 0x00, // varbinds
        ]
    }

    /// An SNMPv3 message with `flags`, its security parameters and scoped
    /// PDU empty (only its header is looked at).
    fn v3(flags: u8) -> Vec<u8> {
        let global = [
            0x02, 0x01, 0x05, // msgID
            0x02, 0x02, 0x05, 0xdc, // msgMaxSize 1500
            0x04, 0x01, flags, // msgFlags
            0x02, 0x01, 0x03, // msgSecurityModel USM
        ];
        let mut body = vec![0x02, 0x01, 0x03, 0x30, global.len() as u8];
        body.extend(global);
        body.extend([0x04, 0x00, 0x30, 0x00]);
        let mut msg = vec![0x30, body.len() as u8];
        msg.extend(body);
        msg
    }

    #[test]
    fn answers_are_told_from_requests_by_their_first_bytes() {
        assert!(is_reply(&v1v2c(1, 0xa2)), "v2c Response");
        assert!(is_reply(&v1v2c(0, 0xa2)), "v1 Response");
        for tag in [0xa0, 0xa1, 0xa3, 0xa5, 0xa6, 0xa7] {
            assert!(!is_reply(&v1v2c(1, tag)), "v2c request {tag:#x}");
        }
        // SNMPv3: every request is reportable; answers (Response, Report)
        // are not, encrypted or not.
        assert!(is_reply(&v3(0x00)) && is_reply(&v3(0x01)) && is_reply(&v3(0x03)));
        assert!(!is_reply(&v3(0x04)) && !is_reply(&v3(0x07)));
        // Garbage, truncation, other versions: not an answer.
        let response = v1v2c(1, 0xa2);
        for cut in 0..14 {
            assert!(!is_reply(&response[..cut]), "cut at {cut}");
        }
        assert!(!is_reply(&v1v2c(2, 0xa2)));
        assert!(!is_reply(b"\x30\x03\x02\x01"));
        assert!(!is_reply(&[]));
    }

    #[test]
    fn answers_reach_the_exchange_that_waits_for_their_peer() {
        let replies = Replies::new();
        let manager: SocketAddr = "127.0.0.1:162".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:163".parse().unwrap();
        let response = v1v2c(1, 0xa2);
        assert!(!replies.waiting());
        assert!(!replies.offer(manager, &response), "nobody waits");
        let mut inbox = replies.expect(manager);
        assert!(replies.waiting());
        assert!(!replies.offer(other, &response), "not its peer");
        assert!(
            !replies.offer(manager, &v1v2c(1, 0xa0)),
            "a GET from the manager is for the responder"
        );
        assert!(replies.offer(manager, &response));
        assert_eq!(inbox.rx.try_recv().unwrap(), response);
        assert!(inbox.rx.try_recv().is_err());
        // A flood is bounded; what is over is taken and dropped.
        for _ in 0..2 * QUEUED {
            assert!(replies.offer(manager, &response));
        }
        let mut queued = 0;
        while inbox.rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, QUEUED);
        drop(inbox);
        assert!(!replies.waiting());
        assert!(!replies.offer(manager, &response));
    }
}
