//! SNMP messages as the load generator sends and checks them: requests
//! encoded around a pre-built PDU tail (only the request-id changes per
//! request), responses decoded without copying (v1/v2c) or after one HMAC
//! check and one decryption (v3), and the checks that make a fast wrong
//! answer a failure.

use std::fmt;

use crate::ber::{self, Malformed, Reader};
use crate::usm::{self, Session, V3Error};

/// The operation a request performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// GetRequest.
    Get,
    /// GetNextRequest.
    GetNext,
    /// GETBULK with non-repeaters and max-repetitions.
    GetBulk {
        /// Leading varbinds answered once, like GETNEXT.
        non_repeaters: u32,
        /// Successors asked for each of the other varbinds.
        max_repetitions: u32,
    },
}

impl Op {
    /// The PDU tag.
    pub fn tag(self) -> u8 {
        match self {
            Op::Get => ber::GET,
            Op::GetNext => ber::GET_NEXT,
            Op::GetBulk { .. } => ber::GET_BULK,
        }
    }

    /// The name records and summaries use (`get`, `getnext`, `getbulk`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetNext => "getnext",
            Op::GetBulk { .. } => "getbulk",
        }
    }
}

/// A request without its request-id: everything after it, pre-encoded.
#[derive(Debug, Clone)]
pub struct Request {
    /// What the request does.
    pub op: Op,
    /// The OIDs asked for, as contents octets.
    pub oids: Vec<Vec<u8>>,
    /// error-status/non-repeaters, error-index/max-repetitions, varbinds.
    tail: Vec<u8>,
}

impl Request {
    /// Pre-encodes a request for `oids` (each a list of arcs).
    pub fn new(op: Op, oids: &[Vec<u32>]) -> Request {
        let enc: Vec<Vec<u8>> = oids.iter().map(|o| ber::encode_oid(o)).collect();
        let (a, b) = match op {
            Op::GetBulk {
                non_repeaters,
                max_repetitions,
            } => (i64::from(non_repeaters), i64::from(max_repetitions)),
            _ => (0, 0),
        };
        let mut vbs = Vec::new();
        for o in &enc {
            let mut vb = Vec::with_capacity(o.len() + 4);
            ber::push_tlv(&mut vb, ber::OID, o);
            vb.extend_from_slice(&[ber::NULL, 0]);
            ber::push_tlv(&mut vbs, ber::SEQUENCE, &vb);
        }
        let mut tail = Vec::new();
        ber::push_int(&mut tail, ber::INTEGER, a);
        ber::push_int(&mut tail, ber::INTEGER, b);
        ber::push_tlv(&mut tail, ber::SEQUENCE, &vbs);
        Request {
            op,
            oids: enc,
            tail,
        }
    }

    /// The PDU TLV with `rid`.
    pub fn write_pdu(&self, rid: i32, out: &mut Vec<u8>) {
        let mut b = [0u8; 8];
        let rid = ber::int_bytes(i64::from(rid), &mut b);
        let body = 2 + rid.len() + self.tail.len();
        out.push(self.op.tag());
        ber::push_len(out, body);
        out.push(ber::INTEGER);
        out.push(rid.len() as u8);
        out.extend_from_slice(rid);
        out.extend_from_slice(&self.tail);
    }
}

/// How messages are wrapped: a community (v1/v2c) or a USM user (v3).
pub enum Security {
    /// SNMPv1 or v2c; build it with [`Security::community`].
    Community {
        /// 0 = v1, 1 = v2c.
        version: i64,
        /// Sent in each request and required in each answer.
        community: Vec<u8>,
        /// version and community TLVs, pre-encoded.
        head: Vec<u8>,
    },
    /// SNMPv3; build it with [`Security::usm`].
    Usm {
        /// The user's keys and the discovered engine.
        session: Box<Session>,
        /// When the session began: requests add the time since to the
        /// engine time learned at discovery.
        start: std::time::Instant,
    },
}

impl Security {
    /// SNMPv1 (`version` 0) or v2c (1) with `community`.
    pub fn community(version: i64, community: &str) -> Security {
        let mut head = Vec::new();
        ber::push_int(&mut head, ber::INTEGER, version);
        ber::push_tlv(&mut head, ber::OCTET_STRING, community.as_bytes());
        Security::Community {
            version,
            community: community.as_bytes().to_vec(),
            head,
        }
    }

    /// SNMPv3 through a discovered USM session.
    pub fn usm(session: Session) -> Security {
        Security::Usm {
            session: Box::new(session),
            start: std::time::Instant::now(),
        }
    }
}

/// Scratch buffers reused for every message, so the hot path allocates
/// nothing for v1/v2c.
#[derive(Default)]
pub struct Scratch {
    pdu: Vec<u8>,
    a: Vec<u8>,
    /// v3: the decrypted scoped PDU of the last answer.
    pub plain: Vec<u8>,
}

/// Encodes `req` with `rid` into `out`.
pub fn encode(sec: &mut Security, req: &Request, rid: i32, out: &mut Vec<u8>, s: &mut Scratch) {
    out.clear();
    match sec {
        Security::Community { head, .. } => {
            s.pdu.clear();
            req.write_pdu(rid, &mut s.pdu);
            out.push(ber::SEQUENCE);
            ber::push_len(out, head.len() + s.pdu.len());
            out.extend_from_slice(head);
            out.extend_from_slice(&s.pdu);
        }
        Security::Usm { session, start } => {
            s.pdu.clear();
            req.write_pdu(rid, &mut s.pdu);
            let elapsed = start.elapsed().as_secs() as i64;
            session.encode(i64::from(rid), &s.pdu, elapsed, out, &mut s.a);
        }
    }
}

/// A decoded response PDU; slices point into the datagram or the
/// decryption buffer.
#[derive(Debug, Clone)]
pub struct Pdu<'a> {
    /// Response or Report.
    pub tag: u8,
    /// request-id.
    pub rid: i64,
    /// error-status (0: noError).
    pub error_status: i64,
    /// error-index (1-based varbind the error is about).
    pub error_index: i64,
    /// The contents of the variable-bindings SEQUENCE.
    pub varbinds: &'a [u8],
}

/// Why a datagram is not an acceptable answer. Every one is a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not a well-formed answer to what was sent (BER, version, community,
    /// PDU type, trailing bytes).
    Malformed(String),
    /// v3: HMAC wrong or missing, or privacy missing or undecryptable.
    Auth(String),
    /// v3: the agent answered a Report (usmStats…), not a Response.
    Report(String),
    /// The request-id matches no request in flight.
    RequestId(i64),
    /// error-status ≠ 0.
    ErrorStatus {
        /// The error-status.
        status: i64,
        /// The error-index.
        index: i64,
    },
    /// Wrong names, an exception value, a different value than expected.
    Value(String),
    /// A datagram from an address no request went to.
    Source(String),
}

impl Failure {
    /// Counter name in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Malformed(_) => "malformed",
            Failure::Auth(_) => "auth",
            Failure::Report(_) => "report",
            Failure::RequestId(_) => "request_id",
            Failure::ErrorStatus { .. } => "error_status",
            Failure::Value(_) => "value",
            Failure::Source(_) => "source",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Malformed(m) => write!(f, "malformed answer: {m}"),
            Failure::Auth(m) => write!(f, "USM: {m}"),
            Failure::Report(m) => write!(f, "Report instead of Response: {m}"),
            Failure::RequestId(r) => write!(f, "request-id {r} matches no request in flight"),
            Failure::ErrorStatus { status, index } => {
                write!(f, "error-status {status} at index {index}")
            }
            Failure::Value(m) => write!(f, "wrong value: {m}"),
            Failure::Source(m) => write!(f, "answer from an unexpected address: {m}"),
        }
    }
}

impl From<Malformed> for Failure {
    fn from(m: Malformed) -> Failure {
        Failure::Malformed(m.0.to_string())
    }
}

/// Decodes a response to a request sent with `sec`.
pub fn decode<'a>(
    sec: &Security,
    datagram: &'a [u8],
    plain: &'a mut Vec<u8>,
) -> Result<Pdu<'a>, Failure> {
    match sec {
        Security::Community {
            version, community, ..
        } => {
            let mut r = Reader::new(datagram);
            let mut msg = r.enter(ber::SEQUENCE, "message is not a SEQUENCE")?;
            if !r.is_empty() {
                return Err(Failure::Malformed("bytes after the message".into()));
            }
            let v = msg.integer("version")?;
            if v != *version {
                return Err(Failure::Malformed(format!("version {v}, sent {version}")));
            }
            let c = msg.octets("community")?;
            if c.value != community.as_slice() {
                return Err(Failure::Malformed("another community".into()));
            }
            let pdu = pdu(&mut msg)?;
            if !msg.is_empty() {
                return Err(Failure::Malformed("bytes after the PDU".into()));
            }
            Ok(pdu)
        }
        Security::Usm { session, .. } => {
            let rx = match session.open(datagram, plain) {
                Ok(rx) => rx,
                Err(V3Error::Malformed(m)) => return Err(m.into()),
                Err(V3Error::Auth) => {
                    // An unauthenticated Report (unknown user, wrong
                    // digest, not in time window) is the agent's way of
                    // refusing: say which.
                    return Err(report_reason(datagram)
                        .map(Failure::Report)
                        .unwrap_or_else(|| Failure::Auth("authentication failed".into())));
                }
                Err(V3Error::Privacy) => {
                    return Err(Failure::Auth("response not encrypted".into()));
                }
            };
            let msg_id = rx.msg_id;
            let mut r = Reader::new(plain.as_slice());
            let mut scoped = r.enter(ber::SEQUENCE, "scoped PDU is not a SEQUENCE")?;
            let _ceid = scoped.octets("contextEngineID")?;
            let _cname = scoped.octets("contextName")?;
            let p = pdu(&mut scoped)?;
            if p.tag == ber::REPORT {
                return Err(Failure::Report(first_oid(p.varbinds)));
            }
            if p.rid != msg_id {
                return Err(Failure::Malformed(format!(
                    "msgID {msg_id} differs from request-id {}",
                    p.rid
                )));
            }
            Ok(p)
        }
    }
}

fn pdu<'a>(msg: &mut Reader<'a>) -> Result<Pdu<'a>, Failure> {
    let t = msg.tlv()?;
    if t.tag != ber::RESPONSE && t.tag != ber::REPORT {
        return Err(Failure::Malformed(format!("PDU type 0x{:02x}", t.tag)));
    }
    let mut p = Reader::new(t.value);
    let rid = p.integer("request-id")?;
    let error_status = p.integer("error-status")?;
    let error_index = p.integer("error-index")?;
    let vbs = p.expect(ber::SEQUENCE, "variable-bindings")?;
    if !p.is_empty() {
        return Err(Failure::Malformed(
            "bytes after the variable-bindings".into(),
        ));
    }
    Ok(Pdu {
        tag: t.tag,
        rid,
        error_status,
        error_index,
        varbinds: vbs.value,
    })
}

/// A plaintext Report's first OID (the usmStats counter saying why).
fn report_reason(datagram: &[u8]) -> Option<String> {
    let rx = usm::parse_header(datagram).ok()?;
    if rx.data.tag != ber::SEQUENCE {
        return None;
    }
    let mut r = Reader::new(rx.data.value);
    let _ = r.octets("ceid").ok()?;
    let _ = r.octets("cname").ok()?;
    let p = pdu(&mut r).ok()?;
    (p.tag == ber::REPORT).then(|| first_oid(p.varbinds))
}

fn first_oid(varbinds: &[u8]) -> String {
    VarBinds::new(varbinds)
        .next()
        .and_then(Result::ok)
        .and_then(|(name, _)| ber::decode_oid(name))
        .map(|o| ber::oid_string(&o))
        .unwrap_or_else(|| "no varbind".into())
}

/// Iterates (name contents octets, value TLV) over a varbind list.
pub struct VarBinds<'a> {
    r: Reader<'a>,
}

impl<'a> VarBinds<'a> {
    /// Over the contents of a variable-bindings SEQUENCE.
    pub fn new(contents: &'a [u8]) -> VarBinds<'a> {
        VarBinds {
            r: Reader::new(contents),
        }
    }
}

impl<'a> Iterator for VarBinds<'a> {
    type Item = Result<(&'a [u8], ber::Tlv<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        Some((|| {
            let mut vb = self.r.enter(ber::SEQUENCE, "varbind is not a SEQUENCE")?;
            let name = vb.expect(ber::OID, "varbind name is not an OID")?;
            let value = vb.tlv()?;
            if !vb.is_empty() {
                return Err(Malformed("bytes after a varbind value"));
            }
            Ok((name.value, value))
        })())
    }
}

/// What an answer must contain beyond a matching request-id and
/// error-status 0.
#[derive(Debug, Clone)]
pub enum Expect {
    /// These exact variable-bindings (names and values), byte for byte:
    /// values given on the command line or learned from a reference request.
    Exact(Vec<u8>),
    /// Structure only: for GET the names asked for and no exception values;
    /// for GETNEXT/GETBULK well-formed bindings, as many as asked for at
    /// least (unless the walk ends).
    Structure,
}

/// Checks a decoded response PDU against the request and the expectation.
/// Returns the number of variable-bindings.
pub fn check(req: &Request, expect: &Expect, pdu: &Pdu<'_>) -> Result<usize, Failure> {
    if pdu.tag != ber::RESPONSE {
        return Err(Failure::Report(first_oid(pdu.varbinds)));
    }
    if pdu.error_status != 0 {
        return Err(Failure::ErrorStatus {
            status: pdu.error_status,
            index: pdu.error_index,
        });
    }
    if let Expect::Exact(want) = expect
        && pdu.varbinds == want.as_slice()
    {
        // The common case: one comparison, no parsing. Count the bindings
        // cheaply: one per requested OID for GET/GETNEXT.
        return Ok(match req.op {
            Op::GetBulk { .. } => VarBinds::new(pdu.varbinds).count(),
            _ => req.oids.len(),
        });
    }
    let mut n = 0usize;
    for (i, vb) in VarBinds::new(pdu.varbinds).enumerate() {
        let (name, value) = vb?;
        n += 1;
        if req.op == Op::Get {
            match req.oids.get(i) {
                Some(asked) if asked.as_slice() == name => {}
                _ => {
                    return Err(Failure::Value(format!(
                        "binding {} names {}, not the OID asked for",
                        i + 1,
                        ber::decode_oid(name)
                            .map(|o| ber::oid_string(&o))
                            .unwrap_or_else(|| ber::hex(name))
                    )));
                }
            }
            if matches!(
                value.tag,
                ber::NO_SUCH_OBJECT | ber::NO_SUCH_INSTANCE | ber::END_OF_MIB_VIEW
            ) {
                return Err(Failure::Value(format!(
                    "{} for {}",
                    exception_name(value.tag),
                    ber::decode_oid(name)
                        .map(|o| ber::oid_string(&o))
                        .unwrap_or_default()
                )));
            }
        }
    }
    if let Expect::Exact(want) = expect {
        return Err(Failure::Value(describe_difference(want, pdu.varbinds)));
    }
    let too_few = match req.op {
        Op::Get | Op::GetNext => n != req.oids.len(),
        Op::GetBulk { .. } => n == 0,
    };
    if too_few {
        return Err(Failure::Value(format!(
            "{n} variable-bindings for {} OIDs",
            req.oids.len()
        )));
    }
    Ok(n)
}

fn exception_name(tag: u8) -> &'static str {
    match tag {
        ber::NO_SUCH_OBJECT => "noSuchObject",
        ber::NO_SUCH_INSTANCE => "noSuchInstance",
        _ => "endOfMibView",
    }
}

/// The first binding that differs, for the failure sample.
fn describe_difference(want: &[u8], got: &[u8]) -> String {
    let mut w = VarBinds::new(want);
    let mut g = VarBinds::new(got);
    for i in 1.. {
        match (w.next(), g.next()) {
            (None, None) => return "bindings differ".into(),
            (Some(Ok((wn, wv))), Some(Ok((gn, gv)))) => {
                if wn != gn || wv.raw != gv.raw {
                    let name = ber::decode_oid(gn)
                        .map(|o| ber::oid_string(&o))
                        .unwrap_or_default();
                    return format!(
                        "binding {i} ({name}): got {}, expected {}",
                        ber::hex(gv.raw),
                        ber::hex(wv.raw)
                    );
                }
            }
            (Some(_), None) => return format!("only {} bindings", i - 1),
            (None, Some(_)) => return format!("more than {} bindings", i - 1),
            (_, Some(Err(e))) | (Some(Err(e)), _) => return e.to_string(),
        }
    }
    unreachable!("the loop returns")
}

/// Parses a command-line expected value: `s:TEXT` (OCTET STRING), `i:N`
/// (INTEGER), `o:OID` (OBJECT IDENTIFIER) or `x:HEX` (a whole TLV in hex).
pub fn parse_value(spec: &str) -> Result<Vec<u8>, String> {
    let (kind, text) = spec
        .split_once(':')
        .ok_or_else(|| format!("{spec:?}: expected s:TEXT, i:N, o:OID or x:HEX"))?;
    let mut out = Vec::new();
    match kind {
        "s" => ber::push_tlv(&mut out, ber::OCTET_STRING, text.as_bytes()),
        "i" => ber::push_int(
            &mut out,
            ber::INTEGER,
            text.parse()
                .map_err(|_| format!("{spec:?}: not an integer"))?,
        ),
        "o" => ber::push_tlv(&mut out, ber::OID, &ber::encode_oid(&ber::parse_oid(text)?)),
        "x" => {
            if text.len() % 2 != 0 {
                return Err(format!("{spec:?}: odd number of hex digits"));
            }
            for i in (0..text.len()).step_by(2) {
                out.push(
                    u8::from_str_radix(&text[i..i + 2], 16)
                        .map_err(|_| format!("{spec:?}: not hex"))?,
                );
            }
            let mut r = Reader::new(&out);
            r.tlv().map_err(|e| format!("{spec:?}: {e}"))?;
            if !r.is_empty() {
                return Err(format!("{spec:?}: more than one TLV"));
            }
        }
        _ => return Err(format!("{spec:?}: unknown kind {kind:?} (s, i, o or x)")),
    }
    Ok(out)
}

/// The exact variable-bindings contents for a GET of `oids` answered with
/// `values` (value TLVs).
pub fn exact_bindings(req: &Request, values: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (o, v) in req.oids.iter().zip(values) {
        let mut vb = Vec::new();
        ber::push_tlv(&mut vb, ber::OID, o);
        vb.extend_from_slice(v);
        ber::push_tlv(&mut out, ber::SEQUENCE, &vb);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(rid: i32, status: i64, varbinds: &[u8]) -> Vec<u8> {
        let mut pdu_body = Vec::new();
        ber::push_int(&mut pdu_body, ber::INTEGER, i64::from(rid));
        ber::push_int(&mut pdu_body, ber::INTEGER, status);
        ber::push_int(&mut pdu_body, ber::INTEGER, 0);
        ber::push_tlv(&mut pdu_body, ber::SEQUENCE, varbinds);
        let mut body = Vec::new();
        ber::push_int(&mut body, ber::INTEGER, 1);
        ber::push_tlv(&mut body, ber::OCTET_STRING, b"public");
        ber::push_tlv(&mut body, ber::RESPONSE, &pdu_body);
        let mut out = Vec::new();
        ber::push_tlv(&mut out, ber::SEQUENCE, &body);
        out
    }

    #[test]
    fn a_get_request_is_the_textbook_encoding() {
        // snmpget -v2c -c public … 1.3.6.1.2.1.1.5.0 with request-id 0x1234
        let req = Request::new(Op::Get, &[ber::parse_oid("1.3.6.1.2.1.1.5.0").unwrap()]);
        let mut sec = Security::community(1, "public");
        let mut out = Vec::new();
        encode(&mut sec, &req, 0x1234, &mut out, &mut Scratch::default());
        let want =
            "302702010104067075626c6963a01a02021234020100020100300e300c06082b060102010105000500";
        assert_eq!(ber::hex(&out), want);
    }

    #[test]
    fn checks_accept_the_right_answer_and_name_every_wrong_one() {
        let req = Request::new(Op::Get, &[ber::parse_oid("1.3.6.1.2.1.1.5.0").unwrap()]);
        let good = exact_bindings(&req, &[parse_value("s:DUMSYS-90").unwrap()]);
        let expect = Expect::Exact(good.clone());
        let sec = Security::community(1, "public");
        let mut plain = Vec::new();

        let d = response(7, 0, &good);
        let p = decode(&sec, &d, &mut plain).unwrap();
        assert_eq!(p.rid, 7);
        assert_eq!(check(&req, &expect, &p), Ok(1));
        assert_eq!(check(&req, &Expect::Structure, &p), Ok(1));

        let wrong = exact_bindings(&req, &[parse_value("s:DUMSYS-91").unwrap()]);
        let d = response(7, 0, &wrong);
        let p = decode(&sec, &d, &mut plain).unwrap();
        let e = check(&req, &expect, &p).unwrap_err();
        assert_eq!(e.kind(), "value", "{e}");
        assert!(e.to_string().contains("1.3.6.1.2.1.1.5.0"), "{e}");

        let d = response(7, 2, &good);
        let p = decode(&sec, &d, &mut plain).unwrap();
        assert_eq!(check(&req, &expect, &p).unwrap_err().kind(), "error_status");

        let nso = exact_bindings(&req, &[vec![ber::NO_SUCH_OBJECT, 0]]);
        let d = response(7, 0, &nso);
        let p = decode(&sec, &d, &mut plain).unwrap();
        assert_eq!(
            check(&req, &Expect::Structure, &p).unwrap_err().kind(),
            "value"
        );

        let mut d = response(7, 0, &good);
        d.push(0);
        assert_eq!(
            decode(&sec, &d, &mut plain).unwrap_err().kind(),
            "malformed"
        );
        let d = response(7, 0, &good);
        let v1 = Security::community(0, "public");
        assert_eq!(decode(&v1, &d, &mut plain).unwrap_err().kind(), "malformed");
    }

    #[test]
    fn expected_values_parse() {
        assert_eq!(parse_value("i:42").unwrap(), [2, 1, 42]);
        assert_eq!(parse_value("s:ab").unwrap(), [4, 2, b'a', b'b']);
        assert_eq!(parse_value("x:4300").unwrap(), [0x43, 0]);
        assert!(parse_value("x:43").is_err());
        assert!(parse_value("q:1").is_err());
    }
}
