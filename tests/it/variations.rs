//! snmpsim's `delay`, `error` and `notification` variation modules, served
//! by agentcluster and by snmpsim 1.2.2 from the same `.snmprec`, queried
//! with net-snmp's clients: the same answers, error-statuses and failed
//! objects, the same hold measured from the client, the same trap at
//! snmptrapd (from the device's own endpoint, where snmpsim uses a port of
//! its own). Where snmpsim is wrong (docs/snapshots.md lists it) only
//! agentcluster is checked.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::trapd::Trapd;
use crate::harness::{Fleet, agentcluster, free_port, snmp, tempdir, text};
use crate::import::{snmpsim_python, start_snmpsim};

const PLAIN: &str = ".1.3.6.1.2.1.1.1.0";
const SLOW: &str = ".1.3.6.1.2.1.1.2.0";
const GEN_ERR: &str = ".1.3.6.1.2.1.1.5.0";
const AUTH_ERR: &str = ".1.3.6.1.2.1.1.6.0";
const SET_ERR: &str = ".1.3.6.1.2.1.1.7.0";
const GONE: &str = ".1.3.6.1.2.1.1.8.0";
const WRONG: &str = ".1.3.6.1.2.1.1.9.0";
const SLOWER: &str = ".1.3.6.1.2.1.2.2.0";
const TRAP: &str = ".1.3.6.1.4.1.9999.1.0";

/// The snapshot both serve; `trap_port` is snmptrapd's.
fn snapshot(trap_port: u16) -> String {
    format!(
        "1.3.6.1.2.1.1.1.0|4|plain
1.3.6.1.2.1.1.2.0|4:delay|value=slow,wait=300
1.3.6.1.2.1.1.5.0|4:error|op=get,status=genError,value=x
1.3.6.1.2.1.1.6.0|4:error|status=authorizationError,value=y
1.3.6.1.2.1.1.7.0|2:error|op=set,status=notWritable,value=7
1.3.6.1.2.1.1.8.0|4:error|op=get,status=noSuchInstance,value=z
1.3.6.1.2.1.1.9.0|4:error|op=get,status=wrongValue,value=z
1.3.6.1.2.1.2.1.0|2|5
1.3.6.1.2.1.2.2.0|4:delay|value=slower,wait=4000
1.3.6.1.4.1.9999.1.0|4:notification|op=get,version=2c,host=127.0.0.1,port={trap_port},trapoid=1.3.6.1.4.1.9.0.7,varbinds=1.3.6.1.2.1.1.1.0:s:hello:1.3.6.1.2.1.2.1.0:i:42,value=contact
"
    )
}

/// What a net-snmp tool said that both must agree on: the whole output
/// of a success; of an error, its reason and failed object (snmpsim's
/// error responses carry the values it had, ours the request's, as
/// RFC 3416 §4.2.1 has it: net-snmp prints those too).
fn said(out: &Output) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !all.contains("Error in packet") {
        return all;
    }
    all.lines()
        .filter(|l| l.starts_with("Reason:") || l.starts_with("Failed object:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn ask(tool: &str, version: &str, port: u16, args: &[&str]) -> (String, Duration) {
    ask_within(tool, version, 2, port, args)
}

/// [`ask`], waiting `timeout` seconds for each attempt.
fn ask_within(
    tool: &str,
    version: &str,
    timeout: u32,
    port: u16,
    args: &[&str],
) -> (String, Duration) {
    let target = format!("127.0.0.1:{port}");
    let timeout = timeout.to_string();
    let mut all = vec![version, "-t", &timeout, "-c", "public", "-On", &target];
    all.extend_from_slice(args);
    let begun = Instant::now();
    let out = snmp(tool, &all);
    (said(&out), begun.elapsed())
}

#[test]
fn delay_error_and_notification_answer_as_snmpsim_does() {
    let Some(python) = snmpsim_python() else {
        eprintln!(
            "SKIPPED: snmpsim is not installed (scripts/test installs it into target/pysnmp-venv)"
        );
        return;
    };
    let trapd = Trapd::start("disableAuthorization yes\n");
    let work = tempdir();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("public.snmprec");
    std::fs::write(&file, snapshot(trapd.port)).unwrap();
    let (ours, theirs) = (free_port(), free_port());
    let _sim = start_snmpsim(&python, &data, work.path(), theirs);
    let _fleet = Fleet::start(&format!(
        "agents:
  - name: varied
    listen: [\"127.0.0.1:{ours}\"]
    data: {}
    snmpv1: {{ communities: [public] }}
    snmpv2c: {{ communities: [public] }}
",
        file.display()
    ));

    let v2 = "-v2c";
    for (tool, version, args) in [
        ("snmpget", v2, &[PLAIN, GEN_ERR][..]),
        ("snmpget", v2, &[AUTH_ERR]),
        ("snmpget", v2, &[SET_ERR]),
        ("snmpget", v2, &[PLAIN, WRONG]),
        ("snmpget", "-v1", &[PLAIN, WRONG]),
        ("snmpget", "-v1", &[GEN_ERR]),
        // A GETNEXT landing on an `error` object fails as a GET does.
        ("snmpgetnext", v2, &[".1.3.6.1.2.1.1.4.0"]),
        ("snmpset", v2, &[SET_ERR, "i", "5"]),
    ] {
        let (a, _) = ask(tool, version, ours, args);
        let (b, _) = ask(tool, version, theirs, args);
        assert_eq!(a, b, "{tool} {version} {args:?}");
        if tool == "snmpget" && args.contains(&GEN_ERR) {
            assert!(a.contains("genError") && a.contains(GEN_ERR), "{a}");
        }
    }

    // The hold, from the client: at least `wait`, both alike.
    let (a, took_ours) = ask("snmpget", v2, ours, &[PLAIN, SLOW]);
    let (b, took_theirs) = ask("snmpget", v2, theirs, &[PLAIN, SLOW]);
    assert_eq!(a, b);
    assert!(a.contains("\"slow\""), "{a}");
    for took in [took_ours, took_theirs] {
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    // The notification: the same trap from both, ours from the device's
    // own endpoint.
    let (a, _) = ask("snmpget", v2, ours, &[TRAP]);
    let (b, _) = ask("snmpget", v2, theirs, &[TRAP]);
    assert_eq!(a, b);
    assert!(a.contains("\"contact\""), "{a}");
    let trap = |line: String| {
        // source | security | … | varbinds (sysUpTime's value left out)
        let fields: Vec<&str> = line.split('|').collect();
        let varbinds: Vec<&str> = fields[5]
            .split('\t')
            .filter(|v| !v.starts_with(".1.3.6.1.2.1.1.3.0"))
            .collect();
        (
            fields[0].to_string(),
            fields[1].to_string(),
            varbinds.join("\t"),
        )
    };
    let first = trap(trapd.expect(".1.3.6.1.4.1.9.0.7"));
    let second = trap(trapd.expect(".1.3.6.1.4.1.9.0.7"));
    let (from_ours, from_theirs) = if first.0.contains(&format!("]:{ours}->")) {
        (first, second)
    } else {
        (second, first)
    };
    assert!(
        from_ours
            .0
            .starts_with(&format!("UDP: [127.0.0.1]:{ours}->")),
        "sent from the device's endpoint: {from_ours:?}"
    );
    assert!(from_ours.1.contains("TRAP2, SNMP v2c, community public"));
    assert_eq!(from_ours.1, from_theirs.1);
    assert_eq!(from_ours.2, from_theirs.2);
    assert!(
        from_ours
            .2
            .contains(".1.3.6.1.2.1.1.1.0 = STRING: \"hello\"")
            && from_ours.2.contains(".1.3.6.1.2.1.2.1.0 = INTEGER: 42"),
        "{from_ours:?}"
    );
}

/// What agentcluster does where snmpsim does not: a held answer does not
/// hold up another request (snmpsim sleeps in its only thread), an `error`
/// naming an exception answers it in SNMPv2c (snmpsim answers genErr).
#[test]
fn a_held_answer_holds_up_nothing_else() {
    let work = tempdir();
    let file = work.path().join("varied.snmprec");
    std::fs::write(&file, snapshot(free_port())).unwrap();
    let port = free_port();
    let _fleet = Fleet::start(&format!(
        "agents:
  - {{ name: varied, listen: [\"127.0.0.1:{port}\"], data: {}, snmpv2c: {{ communities: [public] }} }}
",
        file.display()
    ));
    let slow = std::thread::spawn(move || ask_within("snmpget", "-v2c", 10, port, &[SLOWER]));
    // The plain answer comes while the held one (4 s) is still out.
    let (plain, _) = ask("snmpget", "-v2c", port, &[PLAIN]);
    assert!(plain.contains("\"plain\""), "{plain}");
    assert!(!slow.is_finished(), "the held answer came first");
    let (held, took) = slow.join().unwrap();
    assert!(held.contains("\"slower\""), "{held}");
    assert!(took >= Duration::from_secs(4), "{took:?}");

    let (gone, _) = ask("snmpget", "-v2c", port, &[GONE]);
    assert!(gone.contains("No Such Instance"), "{gone}");
}

/// `snapshot check` names every variation record whose parameters cannot
/// be served, by line.
#[test]
fn snapshot_check_names_bad_variation_params() {
    let work = tempdir();
    let file = work.path().join("bad.snmprec");
    std::fs::write(
        &file,
        "1.3.6.1.2.1.1.1.0|4|a
1.3.6.1.2.1.1.2.0|4:delay|wait=soon
1.3.6.1.2.1.1.3.0|4:notification|op=get
1.3.6.1.2.1.1.4.0|4:error|status=exploded
1.3.6.1.2.1.1.5.0|4:error|op=get,status=genError
",
    )
    .unwrap();
    let out = agentcluster(&["snapshot", "check", file.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("bad.snmprec:2: delay variation: wait=\"soon\" is not a number"),
        "{said}"
    );
    assert!(
        said.contains("bad.snmprec:3: notification variation: host= is required"),
        "{said}"
    );
    assert!(
        said.contains("bad.snmprec:4: error variation: status \"exploded\""),
        "{said}"
    );
    assert!(!said.contains("bad.snmprec:5"), "{said}");
}

/// A directory of two snapshots, `0.snmprec` and `1.snmprec`, of the
/// interfaces subtree; `1` lacks interface 2.
fn mux_dir(root: &std::path::Path) -> std::path::PathBuf {
    let dir = root.join("mux");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0.snmprec"),
        "1.3.6.1.2.1.2.1.0|2|2\n1.3.6.1.2.1.2.2.1.10.1|65|100\n1.3.6.1.2.1.2.2.1.10.2|65|111\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("1.snmprec"),
        "1.3.6.1.2.1.2.1.0|2|1\n1.3.6.1.2.1.2.2.1.10.1|65|200\n",
    )
    .unwrap();
    dir
}

/// `multiplex`: with a long period both serve the first snapshot of the
/// directory under the subtree, walked alike; with a period of a second
/// ours serves them in turn, each answer the snapshot sysUpTime says, the
/// object the second one lacks gone while it is served.
#[test]
fn multiplex_serves_a_directory_of_snapshots_in_turn() {
    let work = tempdir();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let dir = mux_dir(work.path());
    let snapshot = |period: u32| {
        format!(
            "1.3.6.1.2.1.1.1.0|4|outer\n1.3.6.1.2.1.2|:multiplex|dir={},period={period},wrap=1\n1.3.6.1.2.1.3.1.0|2|9\n",
            dir.display()
        )
    };
    let slow = data.join("public.snmprec");
    std::fs::write(&slow, snapshot(3600)).unwrap();
    let fast = work.path().join("fast.snmprec");
    std::fs::write(&fast, snapshot(1)).unwrap();
    let (ours, turning) = (free_port(), free_port());
    let _fleet = Fleet::start(&format!(
        "agents:
  - {{ name: mux, listen: [\"127.0.0.1:{ours}\"], data: {}, snmpv2c: {{ communities: [public] }} }}
  - {{ name: turning, listen: [\"127.0.0.1:{turning}\"], data: {}, snmpv2c: {{ communities: [public] }} }}
",
        slow.display(),
        fast.display()
    ));
    let walk = |port: u16, oid: &str| ask("snmpwalk", "-v2c", port, &[oid]).0;
    let first = walk(ours, ".1.3.6.1.2.1.2");
    assert_eq!(
        first,
        ".1.3.6.1.2.1.2.1.0 = INTEGER: 2\n.1.3.6.1.2.1.2.2.1.10.1 = Counter32: 100\n.1.3.6.1.2.1.2.2.1.10.2 = Counter32: 111\n"
    );
    assert!(
        walk(ours, ".1.3.6.1.2.1.3").contains("INTEGER: 9"),
        "the rest of the file"
    );
    if let Some(python) = snmpsim_python() {
        let theirs = free_port();
        let _sim = start_snmpsim(&python, &data, work.path(), theirs);
        assert_eq!(walk(theirs, ".1.3.6.1.2.1.2"), first, "as snmpsim");
    } else {
        eprintln!("snmpsim is not installed: compared with the snapshot only");
    }

    // In turn: a GET of sysUpTime and both interfaces, until both
    // snapshots were seen (each answer waited for; bounded).
    let mut seen = [false; 2];
    for _ in 0..5_000 {
        let (out, _) = ask(
            "snmpget",
            "-v2c",
            turning,
            &[
                "-Ot",
                ".1.3.6.1.2.1.1.3.0",
                ".1.3.6.1.2.1.2.2.1.10.1",
                ".1.3.6.1.2.1.2.2.1.10.2",
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        let ticks: u64 = lines[0].rsplit(' ').next().unwrap().parse().unwrap();
        let slot = (ticks / 100 % 2) as usize;
        seen[slot] = true;
        if slot == 0 {
            assert!(
                lines[1].ends_with("Counter32: 100") && lines[2].ends_with("Counter32: 111"),
                "{out}"
            );
        } else {
            assert!(lines[1].ends_with("Counter32: 200"), "{out}");
            assert!(lines[2].contains("No Such Instance"), "{out}");
        }
        if seen == [true, true] {
            return;
        }
    }
    panic!("both snapshots were not served in turn: {seen:?}");
}
