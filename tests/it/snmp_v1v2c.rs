//! SNMPv1/v2c end to end: the real binary, net-snmp's real clients, real
//! device snapshots. Walks are compared OID by OID and value by value with
//! the snapshot they serve (net-snmp's output is read back with our own
//! `.snmpwalk` parser, an independent path from the `.snmprec` one).

use std::net::UdpSocket;
use std::time::Duration;

use crate::harness::walk::{Walked, assert_walk_matches, snapshot_map, walk_map};
use crate::harness::{
    Fleet, GETBULK_200, alone, free_port, free_ports, ipv6_loopback, mib, snmp, snmp_ok,
};

fn agent(name: &str, port: u16, data: &str) -> String {
    format!(
        "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv1: {{ communities: [public] }}\n    snmpv2c:\n      communities:\n        public: {{}}\n        private: {{ write: true }}\n",
        mib(data).display()
    )
}

const WALK_OPTS: &[&str] = &["-On", "-Oe", "-Ot", "-Ox", "-OU"];

#[test]
fn bulkwalk_of_a_27k_object_switch_matches_the_snapshot() {
    let _alone = alone();
    let port = free_port();
    let _fleet = Fleet::start(&format!(
        "agents:\n{}",
        agent("sw", port, "cisco-c3750.snmprec")
    ));
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["-v2c", "-c", "public", "-Cr25"];
    args.extend_from_slice(WALK_OPTS);
    args.extend_from_slice(&[&target, ".1"]);
    let out = snmp_ok("snmpbulkwalk", &args);
    let walk = walk_map(&out);
    assert!(walk.len() > 20_000, "{} objects", walk.len());
    assert_walk_matches(
        "cisco",
        Walked::V2c,
        &walk,
        &snapshot_map(&mib("cisco-c3750.snmprec")),
    );
}

#[test]
fn getnext_walks_in_v2c_and_v1_match_the_snapshot() {
    let port = free_port();
    let _fleet = Fleet::start(&format!(
        "agents:\n{}",
        agent("host", port, "linux-host.snmprec")
    ));
    let target = format!("127.0.0.1:{port}");
    let expected = snapshot_map(&mib("linux-host.snmprec"));
    for (version, walked) in [("-v2c", Walked::V2c), ("-v1", Walked::V1)] {
        let mut args = vec![version, "-c", "public"];
        args.extend_from_slice(WALK_OPTS);
        args.extend_from_slice(&[&target, ".1"]);
        let walk = walk_map(&snmp_ok("snmpwalk", &args));
        assert_walk_matches(version, walked, &walk, &expected);
    }
}

#[test]
fn get_getnext_exceptions_and_uptime() {
    let port = free_port();
    let _fleet = Fleet::start(&format!(
        "agents:\n{}",
        agent("sw", port, "cisco-c3750.snmprec")
    ));
    let target = format!("127.0.0.1:{port}");
    let out = snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-On",
            &target,
            ".1.3.6.1.2.1.1.5.0",
            ".1.3.6.1.2.1.1.5",
            ".1.3.6.1.2.1.1.5.7",
            ".1.3.6.1.2.1.1.3.0",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with(".1.3.6.1.2.1.1.5.0 = STRING: "),
        "{out}"
    );
    assert!(lines[1].contains("No Such Object"), "{out}");
    assert!(lines[2].contains("No Such Instance"), "{out}");
    // sysUpTime counts from the agent's start, not the recorded value
    let ticks: u64 = lines[3]
        .split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("timeticks in {out}"));
    assert!(ticks < 60 * 100, "uptime {ticks} ticks");

    let out = snmp_ok(
        "snmpgetnext",
        &["-v2c", "-c", "public", "-On", &target, ".1.3.6.1.2.1.1.5"],
    );
    assert!(out.starts_with(".1.3.6.1.2.1.1.5.0 = "), "{out}");

    // v1: a missing object is an error naming it
    let out = snmp(
        "snmpget",
        &["-v1", "-c", "public", "-On", &target, ".1.3.6.1.2.1.1.5.7"],
    );
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("noSuchName"), "{text}");
    // an unknown community gets no answer at all
    let out = snmp(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "wrong",
            "-r",
            "0",
            "-t",
            "1",
            &target,
            ".1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Timeout"));
}

#[test]
fn set_follows_writecache_and_community_rights() {
    let [ups, sw] = free_ports(2)[..] else {
        unreachable!()
    };
    let _fleet = Fleet::start(&format!(
        "agents:\n{}{}",
        agent("ups", ups, "apc-ups.snmprec"),
        agent("sw", sw, "cisco-c3750.snmprec")
    ));
    let ups_t = format!("127.0.0.1:{ups}");
    let sw_t = format!("127.0.0.1:{sw}");
    // a writecache object: anyone may write it, and it reads back
    let oid = ".1.3.6.1.4.1.318.1.1.4.4.2.1.4.1";
    snmp_ok(
        "snmpset",
        &["-v2c", "-c", "public", &ups_t, oid, "s", "rack-7 feed A"],
    );
    let out = snmp_ok("snmpget", &["-v2c", "-c", "public", "-On", &ups_t, oid]);
    assert!(out.contains("\"rack-7 feed A\""), "{out}");
    // a plain object with a read-only community: notWritable (v2c)…
    let out = snmp(
        "snmpset",
        &[
            "-v2c",
            "-c",
            "public",
            &sw_t,
            ".1.3.6.1.2.1.1.5.0",
            "s",
            "x",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notWritable"),
        "{out:?}"
    );
    // … noSuchName (v1, RFC 2576)
    let out = snmp(
        "snmpset",
        &["-v1", "-c", "public", &sw_t, ".1.3.6.1.2.1.1.5.0", "s", "x"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("noSuchName"),
        "{out:?}"
    );
    // the write community may set it; a wrong type is refused
    snmp_ok(
        "snmpset",
        &[
            "-v2c",
            "-c",
            "private",
            &sw_t,
            ".1.3.6.1.2.1.1.5.0",
            "s",
            "renamed",
        ],
    );
    let out = snmp_ok(
        "snmpget",
        &["-v2c", "-c", "public", "-On", &sw_t, ".1.3.6.1.2.1.1.5.0"],
    );
    assert!(out.contains("\"renamed\""), "{out}");
    let out = snmp(
        "snmpset",
        &[
            "-v2c",
            "-c",
            "private",
            &sw_t,
            ".1.3.6.1.2.1.1.5.0",
            "i",
            "5",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrongType"),
        "{out:?}"
    );
}

#[test]
fn malformed_datagrams_are_dropped_and_the_agent_keeps_answering() {
    let port = free_port();
    let _fleet = Fleet::start(&format!(
        "agents:\n{}",
        agent("host", port, "linux-host.snmprec")
    ));
    let target = format!("127.0.0.1:{port}");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let good: Vec<u8> = vec![
        0x30, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x19,
        0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08,
        0x2b, 6, 1, 2, 1, 1, 1, 0, 0x05, 0x00,
    ];
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    let mut unknown_pdu = good.clone();
    unknown_pdu[13] = 0xaf;
    let mut long_len = good.clone();
    long_len[1] = 0x84;
    let garbage: Vec<Vec<u8>> = vec![
        good[..10].to_vec(),
        trailing,
        unknown_pdu,
        long_len,
        vec![0xff; 1400],
        vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff],
        vec![],
    ];
    for g in &garbage {
        sock.send_to(g, &target).unwrap();
    }
    let mut buf = [0u8; 2048];
    // None of the garbage gets an answer…
    assert!(sock.recv_from(&mut buf).is_err(), "garbage was answered");
    // … and the next good request does.
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&good, &target).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("answer to a good request");
    assert_eq!(buf[0], 0x30);
    assert!(n > 30);
    // snmpInASNParseErrs counted them
    let out = snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-On",
            &target,
            ".1.3.6.1.2.1.11.6.0",
        ],
    );
    let n: u32 = out.rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(n >= 5, "snmpInASNParseErrs = {n}");
    // A GETBULK asking for 2^31-1 repetitions gets one bounded answer.
    let huge_bulk: Vec<u8> = vec![
        0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa5, 0x1c,
        0x02, 0x01, 0x02, 0x02, 0x01, 0x00, 0x02, 0x04, 0x7f, 0xff, 0xff, 0xff, 0x30, 0x0e, 0x30,
        0x0c, 0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0, 0x05, 0x00,
    ];
    let mut big = vec![0u8; 70_000];
    sock.send_to(&huge_bulk, &target).unwrap();
    let (n, _) = sock.recv_from(&mut big).expect("answer to a huge GETBULK");
    assert!(n <= 65_507, "{n} bytes");
}

#[test]
fn ipv6_and_several_endpoints_per_agent() {
    if !ipv6_loopback() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let [a, b] = free_ports(2)[..] else {
        unreachable!()
    };
    let yaml = format!(
        "agents:\n  - name: dual\n    listen: [\"127.0.0.1:{a}\", \"[::1]:{a}\", \"127.0.0.1:{b}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        mib("linux-host.snmprec").display()
    );
    let _fleet = Fleet::start(&yaml);
    for target in [
        format!("127.0.0.1:{a}"),
        format!("udp6:[::1]:{a}"),
        format!("127.0.0.1:{b}"),
    ] {
        let out = snmp_ok(
            "snmpget",
            &["-v2c", "-c", "public", "-On", &target, ".1.3.6.1.2.1.1.5.0"],
        );
        assert!(out.contains("STRING"), "{target}: {out}");
    }
}

#[test]
fn the_response_size_limit_and_the_per_source_rate_limit_reach_the_agents() {
    let port = free_port();
    let yaml = format!(
        "  max_response_bytes: 1200\n  rate_limit: {{ per_source: 5, burst: 5 }}\nagents:\n{}",
        agent("small", port, "linux-host.snmprec")
    );
    let _fleet = Fleet::start(&yaml);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // GETBULK for 200 repetitions of the whole tree: cut to 1200 bytes.
    let bulk = GETBULK_200;
    sock.send_to(&bulk, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 65_536];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    assert!(n <= 1200 && n > 200, "{n} bytes");
    // 40 requests at once from one address: about the burst gets answered.
    for _ in 0..40 {
        sock.send_to(&bulk, ("127.0.0.1", port)).unwrap();
    }
    let mut answered = 0;
    while sock.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert!((1..=10).contains(&answered), "{answered} of 40 answered");
}
