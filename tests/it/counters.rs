//! `counters: animate`, polled with net-snmp: counters grow from their
//! recorded values at the rate the device's seed gives (bounded by the
//! interface's speed, consistent with sysUpTime), a Counter32 recorded near
//! 2^32 wraps, ifInOctets is the low 32 bits of ifHCInOctets, two devices
//! from one snapshot count differently, and a restarted device counts
//! again from the same seed.

use std::collections::HashMap;

use crate::harness::events::is;
use crate::harness::imports::{Animate, seed_of};
use crate::harness::{Fleet, agentcluster, free_port, snmp_ok, tempdir};

const SYS_UPTIME: &str = ".1.3.6.1.2.1.1.3.0";
const IF_SPEED: &str = ".1.3.6.1.2.1.2.2.1.5.1";
const IF_IN_OCTETS: &str = ".1.3.6.1.2.1.2.2.1.10.1";
const IF_OUT_OCTETS: &str = ".1.3.6.1.2.1.2.2.1.16.1";
const IF_HC_IN_OCTETS: &str = ".1.3.6.1.2.1.31.1.1.1.6.1";
const TCP_IN_SEGS: &str = ".1.3.6.1.2.1.6.10.0";

const NEAR_WRAP: u64 = (1 << 32) - 1000;
const SPEED: u64 = 1_000_000_000;

fn snapshot() -> String {
    format!(
        "1.3.6.1.2.1.1.1.0|4|counting box
1.3.6.1.2.1.2.2.1.1.1|2|1
1.3.6.1.2.1.2.2.1.5.1|66|{SPEED}
1.3.6.1.2.1.2.2.1.8.1|2|1
1.3.6.1.2.1.2.2.1.10.1|65|{NEAR_WRAP}
1.3.6.1.2.1.2.2.1.16.1|65|{NEAR_WRAP}
1.3.6.1.2.1.6.10.0|65|5000
1.3.6.1.2.1.31.1.1.1.6.1|70|{NEAR_WRAP}
"
    )
}

fn oid(text: &str) -> Vec<u32> {
    text.trim_start_matches('.')
        .split('.')
        .map(|a| a.parse().unwrap())
        .collect()
}

/// One GET of sysUpTime (ticks) and `oids`, as numbers.
fn poll(port: u16, oids: &[&str]) -> (u64, Vec<u64>) {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec![
        "-v2c", "-c", "public", "-On", "-Ot", "-Oq", &target, SYS_UPTIME,
    ];
    args.extend_from_slice(oids);
    let out = snmp_ok("snmpget", &args);
    let values: Vec<u64> = out
        .lines()
        .map(|l| {
            let v = l.split_whitespace().nth(1).unwrap_or_default();
            v.parse().unwrap_or_else(|_| panic!("not a number: {l}"))
        })
        .collect();
    assert_eq!(values.len(), oids.len() + 1, "{out}");
    (values[0], values[1..].to_vec())
}

/// The rate `name`'s seed gives the counter `of`, from the snapshot.
fn expected_rate(name: &str, of: &str) -> f64 {
    let recorded: HashMap<Vec<u32>, u64> = snapshot()
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let o = oid(f.next()?);
            let _ = f.next()?;
            Some((o, f.next()?.parse().ok()?))
        })
        .collect();
    Animate::new(seed_of(name)).rate(&oid(of), &|o: &[u32]| recorded.get(o).copied())
}

/// The value read at `ticks` is `recorded + floor(rate × uptime)` for an
/// uptime within that tick: what sysUpTime consistency means.
fn consistent(grown: u64, ticks: u64, rate: f64) -> bool {
    let (lo, hi) = (
        rate * ticks as f64 / 100.0,
        rate * (ticks + 1) as f64 / 100.0,
    );
    grown as f64 >= lo.floor() - 1.0 && grown as f64 <= hi.ceil() + 1.0
}

/// Polls until sysUpTime has moved on by `ticks` from `since` (each poll
/// is an answer waited for; bounded).
fn poll_after(port: u16, since: u64, ticks: u64, oids: &[&str]) -> (u64, Vec<u64>) {
    for _ in 0..10_000 {
        let (t, v) = poll(port, oids);
        if t >= since + ticks {
            return (t, v);
        }
    }
    panic!("sysUpTime did not move on");
}

#[test]
fn animated_counters_grow_wrap_and_follow_the_devices_seed() {
    let dir = tempdir();
    let data = dir.path().join("box.snmprec");
    std::fs::write(&data, snapshot()).unwrap();
    let (pa, pb, ps) = (free_port(), free_port(), free_port());
    let fleet = Fleet::start(&format!(
        "agents:
  - {{ name: cnt-a, listen: [\"127.0.0.1:{pa}\"], data: {d}, snmpv2c: {{ communities: [public] }}, counters: animate }}
  - {{ name: cnt-b, listen: [\"127.0.0.1:{pb}\"], data: {d}, snmpv2c: {{ communities: [public] }}, counters: animate }}
  - {{ name: still, listen: [\"127.0.0.1:{ps}\"], data: {d}, snmpv2c: {{ communities: [public] }} }}
",
        d = data.display()
    ));
    let all = [
        IF_IN_OCTETS,
        IF_OUT_OCTETS,
        IF_HC_IN_OCTETS,
        TCP_IN_SEGS,
        IF_SPEED,
    ];

    // Without `counters: animate` the recorded values are served.
    let (_, v) = poll(ps, &all);
    assert_eq!(v, [NEAR_WRAP, NEAR_WRAP, NEAR_WRAP, 5000, SPEED]);

    for (name, port) in [("cnt-a", pa), ("cnt-b", pb)] {
        let (t1, v1) = poll(port, &all);
        let (t2, v2) = poll_after(port, t1, 50, &all);
        let [in32, out32, hc, tcp, speed] = v2[..] else {
            unreachable!()
        };
        assert_eq!(speed, SPEED, "a Gauge32 does not count");
        // The HC counter grew past 2^32; its 32-bit twin wrapped and is
        // its low 32 bits.
        assert!(hc > 1 << 32, "{name}: {hc}");
        assert_eq!(in32, hc & 0xffff_ffff, "{name}");
        // A Counter32 without a twin wraps too.
        assert!(out32 < NEAR_WRAP, "{name}: {out32} wrapped");
        // Growth at the seeded rate, within the link's speed, in step
        // with sysUpTime.
        let rate = expected_rate(name, IF_HC_IN_OCTETS);
        assert!(rate > 0.0 && rate <= SPEED as f64 / 8.0 * 0.2, "{rate}");
        assert!(v2[2] > v1[2], "{name} grows");
        assert!(consistent(hc - NEAR_WRAP, t2, rate), "{name}: {hc} at {t2}");
        let tcp_rate = expected_rate(name, TCP_IN_SEGS);
        assert!(
            consistent(tcp - 5000, t2, tcp_rate),
            "{name}: {tcp} at {t2}"
        );
        assert!(tcp_rate <= 50.0);
    }
    let (ra, rb) = (
        expected_rate("cnt-a", IF_HC_IN_OCTETS),
        expected_rate("cnt-b", IF_HC_IN_OCTETS),
    );
    assert!(
        (ra - rb).abs() > ra * 0.01,
        "two devices, two rates: {ra} {rb}"
    );

    // Restarted, the device counts from its recorded values again at the
    // same rate: sysUpTime starts from 0 and the seed is its name's.
    let since = fleet.next_seq();
    let out = agentcluster(&["restart", "--control", &fleet.control(), "cnt-a"]);
    assert!(out.status.success(), "{out:?}");
    fleet.wait_event(since, "cnt-a restarted", |e| is(e, "cnt-a", "ready"));
    let (t, v) = poll(pa, &[IF_HC_IN_OCTETS]);
    assert!(consistent(v[0] - NEAR_WRAP, t, ra), "{} at {t}", v[0]);
}
