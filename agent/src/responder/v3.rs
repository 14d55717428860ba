//! The SNMPv3 path: [`crate::security::v3`] checks and opens the message, the same
//! handlers as v1/v2c answer the scoped PDU, and [`crate::security::v3::Engine::seal`]
//! encrypts and authenticates the response. Reports are built here.

use std::time::Instant;

use super::{Bulk, Drop, ErrorStatus, Outcome, Responder, Scratch, finish_pdu};
use crate::security::v3::{Incoming, Reply};
use crate::wire::ber::{self, Frame};

/// The Report PDU tag (RFC 3416: `[8]`).
const TAG_REPORT: u8 = 0xa8;

impl Responder {
    /// snmpEngineTime: seconds since the agent started.
    fn engine_time(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.start)
            .as_secs()
            .min(i32::MAX as u64) as u32
    }

    pub(super) fn answer_v3(
        &mut self,
        datagram: &[u8],
        now: Instant,
        scratch: &mut Scratch,
        frame: &mut Frame,
    ) -> Outcome {
        let time = self.engine_time(now);
        let Some(engine) = self.v3.as_mut() else {
            return Outcome::Dropped(Drop::BadVersion);
        };
        let Scratch { request, bulk } = scratch;
        let incoming = engine.incoming(datagram, time, &mut self.counters, request);
        self.answer_incoming(incoming, request, bulk, now, time, frame)
    }

    fn answer_incoming(
        &mut self,
        incoming: Incoming,
        request: &super::Request,
        bulk: &mut Bulk,
        now: Instant,
        time: u32,
        frame: &mut Frame,
    ) -> Outcome {
        let Some(engine) = self.v3.as_ref() else {
            return Outcome::Dropped(Drop::BadVersion);
        };
        let reply = match &incoming {
            Incoming::Drop(d) => return Outcome::Dropped(*d),
            Incoming::Request { reply, .. } | Incoming::Report { reply, .. } => reply,
        };
        let limit = self.config.max_message_size.min(reply.max_size);
        let overhead = engine.overhead(reply);
        let headroom = overhead + 16;
        let budget = limit.saturating_sub(overhead);
        match incoming {
            Incoming::Drop(d) => Outcome::Dropped(d),
            Incoming::Report { value, kind, reply } => {
                frame.reset(headroom);
                let mut counter = Vec::with_capacity(8);
                ber::push_u64(&mut counter, ber::TAG_COUNTER32, u64::from(value));
                ber::push_varbind(frame.body(), kind.oid(), &counter);
                frame.wrap(ber::TAG_SEQUENCE);
                frame.prepend_int(0);
                frame.prepend_int(0);
                frame.prepend_int(i64::from(reply.request_id));
                frame.wrap(TAG_REPORT);
                self.seal_v3(frame, &reply, time, limit)
            }
            Incoming::Request {
                reply,
                view,
                write,
                denied,
            } => {
                if denied {
                    frame.reset(headroom);
                    let status = ErrorStatus::AuthorizationError as u8;
                    if let Err(d) = finish_pdu(frame, request, status, 0, headroom, budget) {
                        return Outcome::Dropped(d);
                    }
                } else if let Err(d) =
                    self.run_pdu(request, bulk, view, write, budget, headroom, now, frame)
                {
                    return Outcome::Dropped(d);
                }
                self.seal_v3(frame, &reply, time, limit)
            }
        }
    }

    fn seal_v3(&mut self, frame: &mut Frame, reply: &Reply, time: u32, limit: usize) -> Outcome {
        let max_size = self.config.max_message_size;
        let Some(engine) = self.v3.as_mut() else {
            return Outcome::Dropped(Drop::BadVersion);
        };
        if !engine.seal(frame, reply, time, max_size) {
            return Outcome::Dropped(Drop::Unreported);
        }
        if frame.len() > limit {
            // Only a Report with an absurdly small msgMaxSize gets here.
            return Outcome::Dropped(Drop::TooBig);
        }
        Outcome::Reply
    }
}
