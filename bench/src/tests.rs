//! The generator against tiny in-test responders: the right answer passes;
//! a wrong value, a wrong request-id, an error-status, a wrong address are
//! each reported as failures, never as fast successes.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ber::{self, Reader};
use crate::load::{self, Plan};
use crate::snmp::{self, Expect, Op, Request, Security};
use crate::sweep;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Good,
    WrongValue,
    WrongRequestId,
    ErrorStatus,
    /// Every other answer is wrong: a mix must not average out.
    HalfWrong,
    /// The first datagram of each request is lost (not answered), a
    /// retransmission of it (the same bytes) is answered.
    DropFirst,
    /// Answers from another socket (another port) than the one asked.
    FromElsewhere,
}

const NAME: &str = "DUMSYS-90";

/// A v2c responder on 127.0.0.1 answering `sysName.0`-style GETs with
/// `NAME` (or not, per mode). Stops when dropped.
struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn responder(mode: Mode) -> Responder {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let elsewhere = UdpSocket::bind("127.0.0.1:0").unwrap();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        let mut seen: std::collections::HashSet<Vec<u8>> = Default::default();
        // Bounded: tests finish in well under this.
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < end {
            let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            n += 1;
            if mode == Mode::DropFirst && seen.insert(buf[..len].to_vec()) {
                continue;
            }
            let wrong = match mode {
                Mode::HalfWrong => n.is_multiple_of(2),
                m => m == Mode::WrongValue,
            };
            if let Some(reply) = answer(&buf[..len], mode, wrong) {
                let from = if mode == Mode::FromElsewhere {
                    &elsewhere
                } else {
                    &sock
                };
                let _ = from.send_to(&reply, peer);
            }
        }
    });
    Responder {
        addr,
        stop,
        thread: Some(thread),
    }
}

fn answer(req: &[u8], mode: Mode, wrong_value: bool) -> Option<Vec<u8>> {
    let mut r = Reader::new(req);
    let mut msg = r.enter(ber::SEQUENCE, "msg").ok()?;
    let version = msg.integer("v").ok()?;
    let community = msg.octets("c").ok()?.value.to_vec();
    let pdu = msg.tlv().ok()?;
    let mut p = Reader::new(pdu.value);
    let rid = p.integer("rid").ok()?;
    let _ = p.integer("a").ok()?;
    let _ = p.integer("b").ok()?;
    let vbs = p.expect(ber::SEQUENCE, "vbs").ok()?;
    let mut out_vbs = Vec::new();
    for vb in snmp::VarBinds::new(vbs.value) {
        let (name, _) = vb.ok()?;
        let mut one = Vec::new();
        ber::push_tlv(&mut one, ber::OID, name);
        let value: &[u8] = if wrong_value {
            b"DUMSYS-91"
        } else {
            NAME.as_bytes()
        };
        ber::push_tlv(&mut one, ber::OCTET_STRING, value);
        ber::push_tlv(&mut out_vbs, ber::SEQUENCE, &one);
    }
    let rid = if mode == Mode::WrongRequestId {
        rid + 1
    } else {
        rid
    };
    let status = if mode == Mode::ErrorStatus { 5 } else { 0 };
    let mut body = Vec::new();
    ber::push_int(&mut body, ber::INTEGER, rid);
    ber::push_int(&mut body, ber::INTEGER, status);
    ber::push_int(&mut body, ber::INTEGER, if status != 0 { 1 } else { 0 });
    ber::push_tlv(&mut body, ber::SEQUENCE, &out_vbs);
    let mut m = Vec::new();
    ber::push_int(&mut m, ber::INTEGER, version);
    ber::push_tlv(&mut m, ber::OCTET_STRING, &community);
    ber::push_tlv(&mut m, ber::RESPONSE, &body);
    let mut out = Vec::new();
    ber::push_tlv(&mut out, ber::SEQUENCE, &m);
    Some(out)
}

fn sys_name() -> Request {
    Request::new(Op::Get, &[ber::parse_oid("1.3.6.1.2.1.1.5.0").unwrap()])
}

fn expect_name(req: &Request) -> Expect {
    Expect::Exact(snmp::exact_bindings(
        req,
        &[snmp::parse_value(&format!("s:{NAME}")).unwrap()],
    ))
}

fn plan(addr: SocketAddr, count: u64, inflight: usize) -> Plan {
    Plan {
        targets: vec![addr],
        inflight,
        count: Some(count),
        duration: Some(Duration::from_secs(5)),
        warmup: Duration::ZERO,
        timeout: Duration::from_millis(150),
        retries: 0,
        rate: None,
        expect_any: false,
        batch: 4,
        unconnected: false,
    }
}

fn run(mode: Mode, count: u64, inflight: usize, expect: Option<Expect>) -> load::Outcome {
    let r = responder(mode);
    let req = sys_name();
    let expect = expect.unwrap_or_else(|| expect_name(&req));
    let mut sec = Security::community(1, "public");
    load::run(&plan(r.addr, count, inflight), &mut sec, &req, &expect).unwrap()
}

#[test]
fn the_right_answer_passes() {
    let o = run(Mode::Good, 500, 16, None);
    assert_eq!((o.ok, o.failed, o.timeouts), (500, 0, 0), "{o:?}");
    assert_eq!(o.varbinds, 500);
    assert!(o.requests_per_s > 0.0 && o.p50_us > 0.0 && o.max_us >= o.p99_us);
}

#[test]
fn one_target_asked_unconnected_is_answered_and_an_answer_from_elsewhere_is_a_failure() {
    let unconnected = |mode, count| {
        let r = responder(mode);
        let req = sys_name();
        let plan = Plan {
            unconnected: true,
            ..plan(r.addr, count, 8)
        };
        load::run(
            &plan,
            &mut Security::community(1, "public"),
            &req,
            &expect_name(&req),
        )
        .unwrap()
    };
    let o = unconnected(Mode::Good, 300);
    assert_eq!((o.ok, o.failed, o.timeouts), (300, 0, 0), "{o:?}");
    // A connected socket never sees such an answer (the kernel drops it);
    // an unconnected one must check the source itself.
    let o = unconnected(Mode::FromElsewhere, 20);
    assert_eq!(o.ok, 0, "{o:?}");
    assert_eq!(o.failures.get("source"), Some(&20), "{o:?}");
}

#[test]
fn a_wrong_value_is_a_failure() {
    let o = run(Mode::WrongValue, 200, 16, None);
    assert_eq!(o.ok, 0, "{o:?}");
    assert_eq!(o.failed, 200);
    assert_eq!(o.failures.get("value"), Some(&200));
    assert!(
        o.samples[0].contains("1.3.6.1.2.1.1.5.0"),
        "{:?}",
        o.samples
    );
    assert_eq!(o.requests_per_s, 0.0);
}

#[test]
fn without_an_expected_value_only_the_structure_is_checked() {
    // Without an expected value only the structure is checked, and a
    // wrong string passes: that is what --no-value-check means.
    let o = run(Mode::WrongValue, 50, 8, Some(Expect::Structure));
    assert_eq!((o.ok, o.failed), (50, 0), "{o:?}");
}

#[test]
fn half_wrong_answers_are_counted_one_by_one() {
    let o = run(Mode::HalfWrong, 400, 16, None);
    assert_eq!(o.ok + o.failed, 400, "{o:?}");
    assert_eq!(o.failed, 200);
}

#[test]
fn a_wrong_request_id_is_a_failure_and_the_request_times_out() {
    let o = run(Mode::WrongRequestId, 40, 40, None);
    assert_eq!(o.ok, 0, "{o:?}");
    assert_eq!(o.failures.get("request_id"), Some(&40), "{o:?}");
    assert_eq!(o.timeouts, 40);
}

#[test]
fn an_error_status_is_a_failure() {
    let o = run(Mode::ErrorStatus, 100, 16, None);
    assert_eq!(o.ok, 0, "{o:?}");
    assert_eq!(o.failures.get("error_status"), Some(&100));
}

#[test]
fn silence_is_counted_as_timeouts() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = sys_name();
    let mut sec = Security::community(1, "public");
    let o = load::run(
        &plan(silent.local_addr().unwrap(), 10, 10),
        &mut sec,
        &req,
        &expect_name(&req),
    )
    .unwrap();
    assert_eq!((o.ok, o.failed, o.timeouts), (0, 0, 10), "{o:?}");
}

#[test]
fn the_echo_ceiling_needs_expect_any() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        crate::echo::serve_on(
            &sock,
            Duration::from_millis(1500),
            &[0x5a; crate::echo::REPLY],
        )
    });
    let req = sys_name();
    let mut sec = Security::community(1, "public");
    let mut p = plan(addr, 300, 16);
    p.expect_any = true;
    let o = load::run(&p, &mut sec, &req, &Expect::Structure).unwrap();
    assert_eq!((o.ok, o.failed), (300, 0), "{o:?}");
    // Without --expect-any its replies are not SNMP: every one fails.
    let mut p = plan(addr, 30, 30);
    p.timeout = Duration::from_millis(100);
    let o = load::run(&p, &mut sec, &req, &expect_name(&req)).unwrap();
    assert_eq!(o.ok, 0);
    assert_eq!(o.failures.get("malformed"), Some(&30), "{o:?}");
    assert!(echo.join().unwrap().unwrap() >= 330);
}

#[test]
fn getbulk_answers_are_checked_against_the_reference() {
    let r = responder(Mode::Good);
    let req = Request::new(
        Op::GetBulk {
            non_repeaters: 0,
            max_repetitions: 5,
        },
        &[ber::parse_oid("1.3.6.1.2.1.1").unwrap()],
    );
    let mut sec = Security::community(1, "public");
    // The responder echoes the asked OID with NAME: learn that as reference.
    let mut c = crate::client::Client::new(r.addr, Security::community(1, "public")).unwrap();
    let a = c.call(&req, Duration::from_millis(200), 2).unwrap();
    let expect = crate::fleet::expect_from(&req, &a).unwrap();
    let o = load::run(&plan(r.addr, 100, 8), &mut sec, &req, &expect).unwrap();
    assert_eq!((o.ok, o.failed), (100, 0), "{o:?}");
    let wrong = responder(Mode::WrongValue);
    let o = load::run(&plan(wrong.addr, 50, 8), &mut sec, &req, &expect).unwrap();
    assert_eq!(
        (o.ok, o.failures.get("value").copied()),
        (0, Some(50)),
        "{o:?}"
    );
}

#[test]
fn a_sweep_finds_the_one_endpoint_that_answers_wrong() {
    let good: Vec<Responder> = (0..4).map(|_| responder(Mode::Good)).collect();
    let bad = responder(Mode::WrongValue);
    let mut targets: Vec<SocketAddr> = good.iter().map(|r| r.addr).collect();
    targets.insert(2, bad.addr);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    targets.push(silent.local_addr().unwrap());
    let req = sys_name();
    let mut sec = Security::community(1, "public");
    let s = sweep::sweep(
        &targets,
        &mut sec,
        &req,
        &expect_name(&req),
        4,
        Duration::from_millis(50),
        Duration::from_millis(400),
    )
    .unwrap();
    assert_eq!((s.answered, s.wrong), (4, 1), "{s:?}");
    assert_eq!(s.silent, vec![targets[5].to_string()]);
}

#[test]
fn durations_and_targets_parse() {
    assert_eq!(
        crate::parse_duration("250ms").unwrap(),
        Duration::from_millis(250)
    );
    assert_eq!(crate::parse_duration("2").unwrap(), Duration::from_secs(2));
    assert!(crate::parse_duration("2x").is_err());
    let t = crate::parse_targets(&["127.0.0.1:100-102".into(), "[::1]:5".into()]).unwrap();
    assert_eq!(t.len(), 4);
    assert_eq!(t[2].port(), 102);
    assert!(t[3].is_ipv6());
}

#[test]
fn spread_pairs_report_medians_and_each_pairs_own_ratio() {
    // A pair measured while the host was busy (the second) skews its own
    // ratio only: the figure is the median of the pairs' ratios, not the
    // ratio of the medians.
    let p = crate::fleet::Paired::of(&[(400.0, 200.0), (150.0, 120.0), (300.0, 180.0)]);
    assert_eq!(p.ratios, [0.5, 0.8, 0.6]);
    assert_eq!((p.single, p.spread, p.ratio), (300.0, 180.0, 0.6));
    let one = crate::fleet::Paired::of(&[(100.0, 50.0)]);
    assert_eq!((one.single, one.spread, one.ratio), (100.0, 50.0, 0.5));
    assert_eq!(crate::median([4.0, f64::NAN, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(crate::median([]), None);
}

#[test]
fn spread_costs_are_medians_of_the_pairs_and_their_own_cpu_ratios() {
    use crate::fleet::{Cost, PairedCost};
    let c = |cpu_us, busy_pct, client_us| Cost {
        cpu_us,
        busy_pct,
        client_us,
    };
    let p = PairedCost::of(&[
        (c(2.0, 90.0, 2.1), c(4.0, 70.0, 2.6)),
        (c(3.0, 95.0, 2.0), c(4.0, 60.0, 2.9)),
        (c(2.5, 92.0, 2.2), c(5.0, 80.0, 2.8)),
    ]);
    assert_eq!(p.single_cpu_us, 2.5);
    assert_eq!(p.spread_cpu_us, 4.0);
    // Each pair's own ratio (0.5, 0.75, 0.5), not 2.5 / 4.0.
    assert_eq!(p.cpu_ratio, 0.5);
    assert_eq!((p.single_busy_pct, p.spread_busy_pct), (92.0, 70.0));
    assert_eq!((p.single_client_us, p.spread_client_us), (2.1, 2.8));
}

#[test]
fn a_process_cpu_time_is_counted_in_nanoseconds() {
    let me = std::process::id();
    let before = crate::procs::cpu_ns(me).expect("schedstat of this process");
    let t = std::time::Instant::now();
    let mut x = 0u64;
    while t.elapsed() < std::time::Duration::from_millis(30) {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    let spent = crate::procs::cpu_ns(me).unwrap_or(0).saturating_sub(before);
    // 30 ms of spinning, on a shared machine: at least some of it on a CPU,
    // and in nanoseconds, not in ticks.
    assert!(spent >= 1_000_000, "{spent} ns");
    // A process that is not there counts nothing.
    assert_eq!(crate::procs::cpu_ns(u32::MAX), None);
    assert_eq!(crate::procs::cpu_ns_of(&[u32::MAX]), 0);
    assert!(crate::procs::cpu_ns_of(&[me, u32::MAX]) >= before + spent);
}

#[test]
fn a_port_held_at_any_one_address_is_not_free() {
    // A socket at 127.3.4.5 (a device of an earlier run, say) holds port
    // P there only: P is still not offered, nor a range through it.
    let held = UdpSocket::bind("127.3.4.5:0").unwrap();
    let p = held.local_addr().unwrap().port();
    let from = p.saturating_sub(2).max(1024);
    let base = crate::free_ports(from, 4).unwrap();
    assert!(
        base > p || base + 4 <= p,
        "{base}..{} includes {p}",
        base + 4
    );
    assert_ne!(crate::free_ports(p, 1), Some(p));
}

#[test]
fn a_lost_request_is_answered_within_the_retry_budget() {
    let r = responder(Mode::DropFirst);
    let req = sys_name();
    let expect = expect_name(&req);
    let mut sec = Security::community(1, "public");
    let mut p = plan(r.addr, 40, 8);
    p.retries = 1;
    let o = load::run(&p, &mut sec, &req, &expect).unwrap();
    assert_eq!((o.ok, o.failed, o.timeouts), (40, 0, 0), "{o:?}");
    assert_eq!((o.retransmits, o.answered_after_retry), (40, 40), "{o:?}");
    // Latency runs from the first try: every answer took a timeout at least.
    assert!(o.p50_us >= 150_000.0, "{o:?}");
    // Without a retry budget the same losses are timeouts (a fresh
    // responder: this run's request-ids repeat the first run's).
    let r = responder(Mode::DropFirst);
    let o = load::run(&plan(r.addr, 40, 8), &mut sec, &req, &expect).unwrap();
    assert_eq!((o.ok, o.timeouts, o.retransmits), (0, 40, 0), "{o:?}");
}

#[test]
fn a_request_is_a_timeout_only_when_every_try_is_unanswered() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let req = sys_name();
    let mut sec = Security::community(1, "public");
    let mut p = plan(silent.local_addr().unwrap(), 10, 10);
    p.timeout = Duration::from_millis(50);
    p.retries = 2;
    let t0 = std::time::Instant::now();
    let o = load::run(&p, &mut sec, &req, &expect_name(&req)).unwrap();
    assert_eq!((o.ok, o.timeouts, o.retransmits), (0, 10, 20), "{o:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "three tries each"
    );
    // Each retransmission carries the request-id of its first try.
    let mut buf = [0u8; 2048];
    let mut copies: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    while let Ok(n) = silent.recv(&mut buf) {
        *copies.entry(buf[..n].to_vec()).or_default() += 1;
    }
    assert_eq!(copies.len(), 10, "{copies:?}");
    assert!(copies.values().all(|c| *c == 3), "{copies:?}");
}

#[test]
fn a_rate_paces_new_requests() {
    let r = responder(Mode::Good);
    let req = sys_name();
    let mut sec = Security::community(1, "public");
    let mut p = plan(r.addr, 1_000_000, 16);
    p.count = None;
    p.duration = Some(Duration::from_millis(500));
    p.rate = Some(200.0);
    let o = load::run(&p, &mut sec, &req, &expect_name(&req)).unwrap();
    assert_eq!((o.failed, o.timeouts), (0, 0), "{o:?}");
    assert!(o.sent <= 102 && o.sent >= 50, "about 100 in 0.5 s: {o:?}");
    assert_eq!(o.ok, o.sent);
}

/// Each endpoint's answer is checked against its own expectation: the one
/// expected to say another name is wrong.
#[test]
fn a_sweep_checks_each_endpoint_against_its_own_value() {
    let good: Vec<Responder> = (0..3).map(|_| responder(Mode::Good)).collect();
    let targets: Vec<SocketAddr> = good.iter().map(|r| r.addr).collect();
    let req = sys_name();
    let expect = [
        crate::fleet::name_binding(&req, NAME).unwrap(),
        crate::fleet::name_binding(&req, "another").unwrap(),
        expect_name(&req),
    ];
    let mut sec = Security::community(1, "public");
    let s = sweep::sweep_each(
        &targets,
        &mut sec,
        &req,
        |i| &expect[i],
        4,
        Duration::from_millis(50),
        Duration::from_millis(400),
    )
    .unwrap();
    assert_eq!((s.answered, s.wrong), (2, 1), "{s:?}");
}

/// The scale scenario's addresses are those of its listen template,
/// `127.{i/62500+1}.{i/250%250}.{i%250+1}`.
#[test]
fn devices_are_250_per_24_from_127_1_0_1() {
    let at = |i| crate::fleet::device_addr(i, 161).to_string();
    assert_eq!(at(0), "127.1.0.1:161");
    assert_eq!(at(249), "127.1.0.250:161");
    assert_eq!(at(250), "127.1.1.1:161");
    assert_eq!(at(62_499), "127.1.249.250:161");
    assert_eq!(at(62_500), "127.2.0.1:161");
    assert_eq!(at(99_999), "127.2.149.250:161");
    assert_eq!(crate::fleet::device_name(42), "dev-000042");
}

/// A fleet that does not start is a failure that says why, at once, not a
/// wait for the ready timeout.
#[test]
fn a_fleet_that_does_not_start_fails_at_once_saying_so() {
    let dir = std::env::temp_dir().join(format!("bench-no-start-{}", std::process::id()));
    let spec = crate::fleet::Spec {
        agentcluster: "/bin/false".into(),
        dir: dir.clone(),
        snapshot: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../mibs/cisco-c3750.snmprec"),
        count: 3,
        per_process: 500,
        base_port: 161,
        spread_addresses: true,
        own_names: true,
        spread: Some(3),
        spread_for: Duration::from_secs(1),
        spread_pairs: 3,
        quiet: Some(Duration::from_secs(1)),
        start_tokens: None,
        no_steering: false,
        pin_loads: true,
        ready_timeout: Duration::from_secs(600),
        sweep: true,
        memory: true,
        kills: 0,
        oid: crate::fleet::default_oid(),
    };
    let t = std::time::Instant::now();
    let e = crate::fleet::run(&spec).unwrap_err().to_string();
    assert!(
        e.contains("exited") && e.contains("before it was ready"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(60), "{e}");
    let yaml = std::fs::read_to_string(dir.join("fleet.yaml")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        yaml.contains("listen: [\"127.{i/62500+1}.{i/250%250}.{i%250+1}:161\"]"),
        "{yaml}"
    );
    assert!(
        yaml.contains("1.3.6.1.2.1.1.5.0: \"dev-{i:06d}\""),
        "{yaml}"
    );
}
