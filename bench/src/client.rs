//! One request at a time, with retries: engine discovery, the reference
//! request that teaches the generator the expected answer, walks, and the
//! restart probe. Not the hot path; answers are copied out.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::ber;
use crate::load::{socket_for, transient};
use crate::snmp::{self, Failure, Request, Scratch, Security};
use crate::usm;

/// A decoded answer, owned.
#[derive(Debug, Clone)]
pub struct Answer {
    /// request-id (of this call's first or a later attempt).
    pub rid: i64,
    /// error-status (0: noError).
    pub error_status: i64,
    /// error-index.
    pub error_index: i64,
    /// The contents of the variable-bindings SEQUENCE.
    pub varbinds: Vec<u8>,
    /// Response, or Report (v3).
    pub tag: u8,
}

/// Why a call produced no acceptable answer.
#[derive(Debug)]
pub enum CallError {
    /// The socket failed.
    Io(io::Error),
    /// No answer after every retry.
    Timeout,
    /// An answer that is not acceptable.
    Bad(Failure),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "{e}"),
            CallError::Timeout => f.write_str("no answer (timeout)"),
            CallError::Bad(b) => write!(f, "{b}"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> CallError {
        CallError::Io(e)
    }
}

/// A connected socket to one agent.
pub struct Client {
    sock: UdpSocket,
    sec: Security,
    scratch: Scratch,
    buf: Vec<u8>,
    msg: Vec<u8>,
    next_rid: i32,
    /// Requests sent again after a timeout.
    pub retries_used: u64,
}

impl Client {
    /// A socket connected to `target`, wrapping messages with `sec`.
    pub fn new(target: SocketAddr, sec: Security) -> io::Result<Client> {
        Ok(Client {
            sock: socket_for(&[target])?,
            sec,
            scratch: Scratch::default(),
            buf: vec![0u8; 65_536],
            msg: Vec::with_capacity(1500),
            next_rid: 1 + (std::process::id() as i32 & 0xffff) * 1000,
            retries_used: 0,
        })
    }

    /// Sends `req` and waits up to `timeout` per attempt, `retries` more
    /// times. Answers to earlier attempts of the same call are accepted.
    pub fn call(
        &mut self,
        req: &Request,
        timeout: Duration,
        retries: u32,
    ) -> Result<Answer, CallError> {
        let first = self.next_rid;
        for attempt in 0..=retries {
            if attempt > 0 {
                self.retries_used += 1;
            }
            let rid = self.next_rid;
            self.next_rid = self.next_rid.wrapping_add(1).max(1);
            snmp::encode(&mut self.sec, req, rid, &mut self.msg, &mut self.scratch);
            self.sock.send(&self.msg)?;
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.sock.set_read_timeout(Some(left))?;
                let n = match self.sock.recv(&mut self.buf) {
                    Ok(n) => n,
                    Err(e) if transient(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                let pdu = snmp::decode(&self.sec, &self.buf[..n], &mut self.scratch.plain)
                    .map_err(CallError::Bad)?;
                if pdu.rid < i64::from(first) || pdu.rid > i64::from(rid) {
                    continue; // an answer to an earlier call
                }
                return Ok(Answer {
                    rid: pdu.rid,
                    error_status: pdu.error_status,
                    error_index: pdu.error_index,
                    varbinds: pdu.varbinds.to_vec(),
                    tag: pdu.tag,
                });
            }
        }
        Err(CallError::Timeout)
    }
}

/// SNMPv3 engine discovery (RFC 3414 §4): an empty, unauthenticated,
/// reportable request; the Report names the engine, its boots and time.
pub fn discover(
    target: SocketAddr,
    timeout: Duration,
    retries: u32,
) -> Result<usm::Engine, CallError> {
    let sock = socket_for(&[target])?;
    let mut buf = vec![0u8; 65_536];
    for attempt in 0..=retries {
        let msg = usm::discovery_request(i64::from(attempt) + 1);
        sock.send(&msg)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    return usm::discovery_answer(&buf[..n])
                        .map_err(|m| CallError::Bad(Failure::Malformed(m.to_string())));
                }
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(CallError::Timeout)
}

/// The result of [`walk`]; the body of a `walk` record, so its field
/// names are keys the report reads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Walk {
    /// OIDs inside the subtree.
    pub oids: u64,
    /// GETBULK requests it took.
    pub requests: u64,
    /// Requests the client has sent again after a timeout, this walk
    /// included.
    pub retries: u64,
    /// Wall time of the walk.
    pub seconds: f64,
    /// `seconds` per OID, in microseconds (0 for an empty walk).
    pub per_oid_us: f64,
    /// The first OID, dotted (empty for an empty walk).
    pub first: String,
    /// The last OID, dotted.
    pub last: String,
}

/// A GETBULK walk of the subtree `root` (net-snmp's `snmpbulkwalk -Cr`):
/// one request at a time, each answer checked (error-status 0, every OID
/// inside the subtree and strictly increasing), until endOfMibView or the
/// first OID past the subtree, or `limit` requests.
pub fn walk(
    client: &mut Client,
    root: &[u32],
    max_repetitions: u32,
    timeout: Duration,
    retries: u32,
    limit: u64,
) -> Result<Walk, CallError> {
    let start = Instant::now();
    let mut current = if root.len() == 1 {
        vec![root[0], 0]
    } else {
        root.to_vec()
    };
    let mut last: Option<Vec<u32>> = None;
    let mut first: Option<Vec<u32>> = None;
    let (mut oids, mut requests) = (0u64, 0u64);
    'walk: while requests < limit {
        let req = Request::new(
            snmp::Op::GetBulk {
                non_repeaters: 0,
                max_repetitions,
            },
            std::slice::from_ref(&current),
        );
        let a = client.call(&req, timeout, retries)?;
        requests += 1;
        if a.tag != ber::RESPONSE {
            return Err(CallError::Bad(Failure::Report("during the walk".into())));
        }
        if a.error_status != 0 {
            return Err(CallError::Bad(Failure::ErrorStatus {
                status: a.error_status,
                index: a.error_index,
            }));
        }
        let mut got = 0;
        for vb in snmp::VarBinds::new(&a.varbinds) {
            let (name, value) = vb.map_err(|m| CallError::Bad(m.into()))?;
            got += 1;
            if value.tag == ber::END_OF_MIB_VIEW {
                break 'walk;
            }
            let name = ber::decode_oid(name)
                .ok_or_else(|| CallError::Bad(Failure::Malformed("bad OID".into())))?;
            if !name.starts_with(root) {
                break 'walk;
            }
            if let Some(prev) = &last
                && name <= *prev
            {
                return Err(CallError::Bad(Failure::Value(format!(
                    "OID not increasing: {} after {}",
                    ber::oid_string(&name),
                    ber::oid_string(prev)
                ))));
            }
            oids += 1;
            if first.is_none() {
                first = Some(name.clone());
            }
            last = Some(name);
        }
        if got == 0 {
            return Err(CallError::Bad(Failure::Value(
                "a GETBULK answer without bindings".into(),
            )));
        }
        match &last {
            Some(l) => current.clone_from(l),
            None => break,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Walk {
        oids,
        requests,
        retries: client.retries_used,
        seconds,
        per_oid_us: if oids > 0 {
            seconds * 1e6 / oids as f64
        } else {
            0.0
        },
        first: first.map(|o| ber::oid_string(&o)).unwrap_or_default(),
        last: last.map(|o| ber::oid_string(&o)).unwrap_or_default(),
    })
}
