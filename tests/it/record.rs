//! `agentcluster record`: walks of a real net-snmp `snmpd` (v2c and v3
//! authPriv) served back by agentcluster and walked again with net-snmp;
//! recordings of agentcluster's own agents (v1 GETNEXT, `.snmpwalk`,
//! `--subtree`/`--exclude`, `--rates`); and fake devices on a UDP socket
//! of the test that loop or stop answering.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::imports::snapshot;
use crate::harness::imports::{Oid, Value, ber};
use crate::harness::snmpd::Snmpd;
use crate::harness::walk::{Walked, assert_walk_matches, snapshot_map, walk_map};
use crate::harness::{Fleet, agentcluster, free_port, mib, snmp_ok, tempdir, text};

/// snmpd's configuration: a community and an SHA/AES authPriv user.
const SNMPD_CONF: &str = "rocommunity public 127.0.0.1\n\
                          createUser ops SHA authpass1 AES privpass1\n\
                          rouser ops priv\n";

/// The subtrees compared: system, interfaces, ipAddrTable, ifXTable.
const SUBTREES: &[&str] = &[
    "1.3.6.1.2.1.1",
    "1.3.6.1.2.1.2",
    "1.3.6.1.2.1.4.20",
    "1.3.6.1.2.1.31.1.1",
];

fn record(args: &[&str]) -> std::process::Output {
    let mut all = vec!["record"];
    all.extend_from_slice(args);
    agentcluster(&all)
}

fn record_ok(args: &[&str]) -> String {
    let out = record(args);
    assert!(
        out.status.success(),
        "record {args:?} failed: {}",
        text(&out)
    );
    text(&out)
}

fn subtree_args() -> Vec<&'static str> {
    SUBTREES.iter().flat_map(|s| ["--subtree", *s]).collect()
}

/// A v2c walk (`-On`, values in our `.snmpwalk` reading) of `SUBTREES`.
fn walk_subtrees(port: u16) -> Vec<(Oid, Value)> {
    let target = format!("127.0.0.1:{port}");
    let mut all = Vec::new();
    for s in SUBTREES {
        let out = snmp_ok(
            "snmpwalk",
            &[
                "-v2c", "-c", "public", "-On", "-Oe", "-Ot", "-Ox", "-OU", &target, s,
            ],
        );
        if !out.contains("No Such Object") {
            all.extend(walk_map(&out));
        }
    }
    all
}

/// Values that change on their own between two walks of a live host.
fn is_volatile(oid: &[u32], v: &Value) -> bool {
    matches!(
        v,
        Value::Counter32(_) | Value::Counter64(_) | Value::TimeTicks(_)
    ) || oid == [1, 3, 6, 1, 2, 1, 1, 3, 0]
}

fn assert_same_walk(what: &str, got: &[(Oid, Value)], want: &[(Oid, Value)]) {
    let oids = |w: &[(Oid, Value)]| w.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>();
    assert_eq!(
        oids(got),
        oids(want),
        "{what}: the same OIDs in the same order"
    );
    for ((o, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(
            std::mem::discriminant(g),
            std::mem::discriminant(w),
            "{what}: type of {o:?}: {g:?} vs {w:?}"
        );
        if !is_volatile(o, w) {
            assert_eq!(g, w, "{what}: value of {o:?}");
        }
    }
}

fn agent_yaml(name: &str, port: u16, data: &Path) -> String {
    format!(
        "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv1: {{ communities: [public] }}\n    snmpv2c: {{ communities: {{ public: {{}} }} }}\n",
        data.display()
    )
}

#[test]
fn recordings_of_snmpd_v2c_and_v3_authpriv_walk_back_like_snmpd() {
    let snmpd = Snmpd::start(SNMPD_CONF);
    let dir = tempdir();
    let target = format!("127.0.0.1:{}", snmpd.port);
    let v2c = dir.path().join("v2c.snmprec");
    let v3 = dir.path().join("v3.snmprec");
    let mut args = vec![
        "-v",
        "2c",
        "-c",
        "public",
        &target,
        "-o",
        v2c.to_str().unwrap(),
    ];
    args.extend(subtree_args());
    let summary = record_ok(&args);
    assert!(summary.contains("recorded "), "{summary}");
    let mut args = vec![
        "-v",
        "3",
        "-u",
        "ops",
        "-l",
        "authPriv",
        "-a",
        "SHA",
        "-A",
        "authpass1",
        "-x",
        "AES",
        "-X",
        "privpass1",
        &target,
        "-o",
        v3.to_str().unwrap(),
    ];
    args.extend(subtree_args());
    record_ok(&args);
    let real = walk_subtrees(snmpd.port);
    assert!(real.len() > 20, "snmpd serves those subtrees: {real:?}");

    let ports = [free_port(), free_port()];
    let _fleet = Fleet::start(&format!(
        "agents:\n{}{}",
        agent_yaml("from-v2c", ports[0], &v2c),
        agent_yaml("from-v3", ports[1], &v3)
    ));
    assert_same_walk("recorded over v2c", &walk_subtrees(ports[0]), &real);
    assert_same_walk("recorded over v3 authPriv", &walk_subtrees(ports[1]), &real);
}

#[test]
fn recordings_of_an_agent_give_back_its_snapshot() {
    let port = free_port();
    let data = mib("linux-host.snmprec");
    let _fleet = Fleet::start(&format!("agents:\n{}", agent_yaml("host", port, &data)));
    let dir = tempdir();
    let target = format!("udp:127.0.0.1:{port}");
    let expected = snapshot_map(&data);
    let records = |path: &Path| -> Vec<(Oid, Value)> {
        snapshot::load(path)
            .unwrap()
            .records
            .into_iter()
            .map(|r| (r.oid, r.value))
            .collect()
    };

    // SNMPv1: GETNEXT, the whole tree.
    let v1 = dir.path().join("v1.snmprec");
    record_ok(&[
        "-v",
        "1",
        "-c",
        "public",
        &target,
        "-o",
        v1.to_str().unwrap(),
    ]);
    assert_walk_matches("v1 record", Walked::V1, &records(&v1), &expected);

    // SNMPv2c into .snmpwalk: `snapshot check` reads it back, the same
    // records.
    let walk = dir.path().join("v2c.snmpwalk");
    record_ok(&[&target, "-o", walk.to_str().unwrap()]);
    let check = agentcluster(&["snapshot", "check", walk.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check));
    let first = std::fs::read_to_string(&walk).unwrap();
    assert!(
        first.starts_with(".1.3.6.1.2.1.1.1.0 = STRING: "),
        "{first:.200}"
    );
    assert_walk_matches("v2c record", Walked::V2c, &records(&walk), &expected);

    // --subtree (twice, one inside the other) and --exclude.
    let part = dir.path().join("part.snmprec");
    let out = record_ok(&[
        &target,
        "-o",
        part.to_str().unwrap(),
        "--subtree",
        "1.3.6.1.2.1.2",
        "--subtree",
        ".1.3.6.1.2.1.1",
        "--subtree",
        "1.3.6.1.2.1.2.2",
        "--exclude",
        "1.3.6.1.2.1.2.2.1.2",
    ]);
    let kept: Vec<Oid> = records(&part).into_iter().map(|(o, _)| o).collect();
    let system = [1, 3, 6, 1, 2, 1, 1];
    let interfaces = [1, 3, 6, 1, 2, 1, 2];
    let excluded = [1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
    let want: Vec<Oid> = expected
        .keys()
        .filter(|o| o.starts_with(&system) || o.starts_with(&interfaces))
        .filter(|o| !o.starts_with(&excluded))
        .cloned()
        .collect();
    assert!(want.iter().any(|o| o.starts_with(&interfaces)));
    assert!(expected.keys().any(|o| o.starts_with(&excluded)));
    assert_eq!(kept, want);
    let in_system = want.iter().filter(|o| o.starts_with(&system)).count();
    assert!(
        out.contains("1.3.6.1.2.1.1 ") && out.contains(&format!(" {in_system}\n")),
        "per subtree counts: {out}"
    );
}

#[test]
fn rates_make_moving_counters_numeric_records_with_their_rate() {
    let dir = tempdir();
    let data = dir.path().join("counting.snmprec");
    std::fs::write(
        &data,
        "1.3.6.1.2.1.1.1.0|4|counting device\n\
         1.3.6.1.2.1.1.3.0|67|0\n\
         1.3.6.1.2.1.2.2.1.10.1|65:numeric|rate=1000,initial=5000,wrap=1\n\
         1.3.6.1.2.1.2.2.1.14.1|65|7\n\
         1.3.6.1.2.1.31.1.1.1.6.1|70:numeric|rate=250000,initial=1000000\n\
         1.3.6.1.2.1.99.1.0|67:numeric|rate=100,initial=0\n",
    )
    .unwrap();
    let port = free_port();
    let _fleet = Fleet::start(&format!("agents:\n{}", agent_yaml("dev", port, &data)));
    let out_path = dir.path().join("rec.snmprec");
    let out = record_ok(&[
        &format!("127.0.0.1:{port}"),
        "-o",
        out_path.to_str().unwrap(),
        "--rates",
        "2",
        // the agent's own snmp group counts requests: it moves too
        "--exclude",
        "1.3.6.1.2.1.11",
    ]);
    assert!(out.contains("3 counters moved"), "{out}");
    let snap = snapshot::load(&out_path).unwrap();
    let by_oid: BTreeMap<String, &snapshot::Record> = snap
        .records
        .iter()
        .map(|r| {
            let o: Vec<String> = r.oid.iter().map(u32::to_string).collect();
            (o.join("."), r)
        })
        .collect();
    let rate_of = |oid: &str| -> f64 {
        let r = by_oid[oid];
        let v = r
            .variation
            .as_ref()
            .unwrap_or_else(|| panic!("{oid}: {r:?}"));
        assert_eq!(v.name, "numeric");
        let rate = v
            .params
            .split(',')
            .find_map(|kv| kv.strip_prefix("rate="))
            .unwrap();
        rate.parse().unwrap()
    };
    for (oid, truth) in [
        ("1.3.6.1.2.1.2.2.1.10.1", 1000.0),
        ("1.3.6.1.2.1.31.1.1.1.6.1", 250_000.0),
        ("1.3.6.1.2.1.99.1.0", 100.0),
    ] {
        let got = rate_of(oid);
        assert!(
            (got - truth).abs() <= truth * 0.1,
            "{oid}: rate {got}, truly {truth}"
        );
    }
    // Static values stay static; sysUpTime is served live, never numeric.
    for oid in [
        "1.3.6.1.2.1.1.1.0",
        "1.3.6.1.2.1.1.3.0",
        "1.3.6.1.2.1.2.2.1.14.1",
    ] {
        assert!(by_oid[oid].variation.is_none(), "{oid}: {:?}", by_oid[oid]);
    }
    assert_eq!(by_oid["1.3.6.1.2.1.2.2.1.14.1"].value, Value::Counter32(7));
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        text.contains("1.3.6.1.2.1.2.2.1.10.1|65:numeric|rate="),
        "{text}"
    );
}

/// A fake SNMPv2c device on a socket of the test: `answer` gets each
/// request's first OID and the number of requests answered before, and
/// gives the varbind to answer with, or `None` to stay silent.
struct FakeDevice {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeDevice {
    fn start(
        answer: impl Fn(&[u32], usize) -> Option<(Oid, Option<i64>)> + Send + 'static,
    ) -> FakeDevice {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let answered = AtomicUsize::new(0);
            let mut buf = [0u8; 2048];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Some((rid, oid)) = read_request(&buf[..len]) else {
                    continue;
                };
                let Some((name, value)) = answer(&oid, answered.load(Ordering::Relaxed)) else {
                    continue;
                };
                answered.fetch_add(1, Ordering::Relaxed);
                let _ = socket.send_to(&response(rid, &name, value), from);
            }
        });
        FakeDevice {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request-id and first OID of a v2c request.
fn read_request(datagram: &[u8]) -> Option<(i64, Vec<u32>)> {
    let mut msg = ber::Reader::new(datagram).enter(0x30, "message").ok()?;
    msg.integer("version").ok()?;
    msg.octets("community").ok()?;
    let pdu = msg.tlv().ok()?;
    let mut pdu = ber::Reader::new(pdu.raw).enter(pdu.tag, "pdu").ok()?;
    let rid = pdu.integer("request-id").ok()?;
    pdu.integer("non-repeaters").ok()?;
    pdu.integer("max-repetitions").ok()?;
    let mut vbs = pdu.enter(0x30, "varbinds").ok()?;
    let mut vb = vbs.enter(0x30, "varbind").ok()?;
    let oid = vb.expect(0x06, "name").ok()?;
    Some((rid, ber::decode_oid(oid.value)?))
}

/// A v2c Response with one varbind: an INTEGER, or endOfMibView.
fn response(rid: i64, name: &[u32], value: Option<i64>) -> Vec<u8> {
    let mut vb = Vec::new();
    ber::push_tlv(&mut vb, 0x06, &ber::encode_oid(name));
    match value {
        Some(v) => ber::push_int(&mut vb, 0x02, v),
        None => vb.extend_from_slice(&[0x82, 0]),
    }
    let mut vbs = Vec::new();
    ber::push_tlv(&mut vbs, 0x30, &vb);
    let mut list = Vec::new();
    ber::push_tlv(&mut list, 0x30, &vbs);
    let mut pdu = Vec::new();
    ber::push_int(&mut pdu, 0x02, rid);
    ber::push_int(&mut pdu, 0x02, 0);
    ber::push_int(&mut pdu, 0x02, 0);
    pdu.extend_from_slice(&list);
    let mut msg = Vec::new();
    ber::push_int(&mut msg, 0x02, 1);
    ber::push_tlv(&mut msg, 0x04, b"public");
    ber::push_tlv(&mut msg, 0xa2, &pdu);
    let mut out = Vec::new();
    ber::push_tlv(&mut out, 0x30, &msg);
    out
}

const ENTERPRISE: &[u32] = &[1, 3, 6, 1, 4, 1, 9999];

/// `1.3.6.1.4.1.9999.N.0` for N in 1..=10, then endOfMibView.
fn ten_objects(asked: &[u32]) -> (Oid, Option<i64>) {
    let n = if asked.starts_with(ENTERPRISE) && asked.len() > ENTERPRISE.len() {
        asked[ENTERPRISE.len()] + 1
    } else {
        1
    };
    let mut name = ENTERPRISE.to_vec();
    name.extend([n, 0]);
    (name, (n <= 10).then_some(i64::from(n)))
}

#[test]
fn an_agent_that_answers_the_same_oid_again_stops_the_walk_with_an_error() {
    let device = FakeDevice::start(|_, _| Some((vec![1, 3, 6, 1, 2, 1, 1, 5, 0], Some(1))));
    let dir = tempdir();
    let path = dir.path().join("loop.snmprec");
    let out = record(&[
        &format!("127.0.0.1:{}", device.port),
        "-o",
        path.to_str().unwrap(),
        "-t",
        "1",
        "-r",
        "0",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("OID not increasing: 1.3.6.1.2.1.1.5.0 after 1.3.6.1.2.1.1.5.0"),
        "{said}"
    );
}

#[test]
fn a_walk_cut_by_a_timeout_keeps_its_part_and_resumes_from_there() {
    // Answers 4 requests, then nothing until `answering` is set again.
    let answering = Arc::new(AtomicBool::new(true));
    let on = answering.clone();
    let asked_log = Arc::new(std::sync::Mutex::new(Vec::<Oid>::new()));
    let log = asked_log.clone();
    let device = FakeDevice::start(move |asked, answered| {
        log.lock().unwrap().push(asked.to_vec());
        if answered >= 4 && !on.load(Ordering::Relaxed) {
            return None;
        }
        if answered == 3 {
            on.store(false, Ordering::Relaxed);
        }
        Some(ten_objects(asked))
    });
    let dir = tempdir();
    let path = dir.path().join("part.snmprec");
    let target = format!("127.0.0.1:{}", device.port);
    let args = [
        &target,
        "-o",
        path.to_str().unwrap(),
        "-t",
        "0.3",
        "-r",
        "1",
    ];
    let out = record(&args);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("no answer from"), "{said}");
    assert!(
        said.contains("stopped after 1.3.6.1.4.1.9999.4.0"),
        "{said}"
    );
    assert!(said.contains("--resume"), "{said}");
    let part = snapshot::load(&path).unwrap();
    assert_eq!(part.records.len(), 4, "{:?}", part.records);

    let asked_before = asked_log.lock().unwrap().len();
    answering.store(true, Ordering::Relaxed);
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    record_ok(&resumed);
    // It went on from the last object kept, not from the start.
    let mut last_kept = ENTERPRISE.to_vec();
    last_kept.extend([4, 0]);
    assert_eq!(asked_log.lock().unwrap()[asked_before], last_kept);
    let all = snapshot::load(&path).unwrap();
    let got: Vec<(Oid, Value)> = all.records.into_iter().map(|r| (r.oid, r.value)).collect();
    let want: Vec<(Oid, Value)> = (1..=10)
        .map(|n: u32| {
            let mut o = ENTERPRISE.to_vec();
            o.extend([n, 0]);
            (o, Value::Integer(i64::from(n)))
        })
        .collect();
    assert_eq!(got, want);
}
