//! Distinct devices from one snapshot: a template whose copies each have
//! their own `values:` (sysName, sysLocation, an added enterprise object)
//! or derive them with `identity: true`, queried with net-snmp's real
//! clients. Every copy answers its own values, a bulk walk of one is the
//! snapshot with its values in place (sorted, complete, no OID twice), and
//! the cache holds one compiled store for all of them.

use crate::harness::imports::{Oid, Value};
use crate::harness::walk::{Walked, assert_walk_matches, snapshot_map, walk_map};
use crate::harness::{Fleet, free_port, mib, snmp_ok};

const SYS_NAME: &str = ".1.3.6.1.2.1.1.5.0";
const SYS_LOCATION: &str = ".1.3.6.1.2.1.1.6.0";

/// Under the enterprise tree, between the snapshot's 2021 and 8072 subtrees.
fn added(i: u32) -> String {
    format!(".1.3.6.1.4.1.5000.{i}.1.0")
}

fn oid(text: &str) -> Oid {
    text.trim_start_matches('.')
        .split('.')
        .map(|a| a.parse().unwrap())
        .collect()
}

fn get(target: &str, oids: &[&str]) -> Vec<String> {
    let mut args = vec!["-v2c", "-c", "public", "-On", "-Oe", target];
    args.extend_from_slice(oids);
    snmp_ok("snmpget", &args)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn template_copies_answer_their_own_values_over_one_shared_store() {
    let port = free_port();
    let data = mib("linux-host.snmprec");
    let fleet = Fleet::start(&format!(
        "agents:
  - name: \"printer-{{i}}\"
    count: 3
    listen: [\"127.3.0.{{i+1}}:{port}\"]
    data: {data}
    snmpv2c: {{ communities: [public] }}
    values:
      1.3.6.1.2.1.1.5.0: \"printer-{{i}}\"
      1.3.6.1.2.1.1.6.0: \"room {{i+100}}\"
      1.3.6.1.4.1.5000.{{i}}.1.0: {{ type: 2, value: \"{{i+7}}\" }}
  - name: \"ident-{{i}}\"
    count: 3
    listen: [\"127.3.1.{{i+1}}:{port}\"]
    data: {data}
    snmpv2c: {{ communities: [public] }}
    identity: true
",
        data = data.display()
    ));
    for i in 0..3u32 {
        let target = format!("127.3.0.{}:{port}", i + 1);
        let lines = get(&target, &[SYS_NAME, SYS_LOCATION, &added(i)]);
        assert_eq!(
            lines,
            [
                format!("{SYS_NAME} = STRING: \"printer-{i}\""),
                format!("{SYS_LOCATION} = STRING: \"room {}\"", i + 100),
                format!("{} = INTEGER: {}", added(i), i + 7),
            ],
            "{target}"
        );
    }

    // A bulk walk of one copy is the snapshot with its values in place:
    // the added object in order, the overridden ones once.
    let target = "127.3.0.2:".to_string() + &port.to_string();
    let out = snmp_ok(
        "snmpbulkwalk",
        &[
            "-v2c", "-c", "public", "-Cr25", "-On", "-Oe", "-Ot", "-Ox", "-OU", &target, ".1",
        ],
    );
    let walk = walk_map(&out);
    let mut expected = snapshot_map(&data);
    let before = expected.len();
    expected.insert(oid(SYS_NAME), Value::OctetString(b"printer-1".to_vec()));
    expected.insert(oid(SYS_LOCATION), Value::OctetString(b"room 101".to_vec()));
    expected.insert(oid(&added(1)), Value::Integer(8));
    assert_eq!(expected.len(), before + 1, "one object added");
    assert_walk_matches("printer-1", Walked::V2c, &walk, &expected);

    // identity: each device its own name, address row and MACs.
    let mut macs = Vec::new();
    for i in 0..3u32 {
        let ip = format!("127.3.1.{}", i + 1);
        let target = format!("{ip}:{port}");
        let lines = get(
            &target,
            &[
                SYS_NAME,
                &format!(".1.3.6.1.2.1.4.20.1.1.{ip}"),
                &format!(".1.3.6.1.2.1.4.20.1.2.{ip}"),
                ".1.3.6.1.2.1.2.2.1.6.2",
                // The recorded address belongs to the recorded device.
                ".1.3.6.1.2.1.4.20.1.1.195.218.254.105",
            ],
        );
        assert_eq!(lines[0], format!("{SYS_NAME} = STRING: \"ident-{i}\""));
        assert_eq!(
            lines[1],
            format!(".1.3.6.1.2.1.4.20.1.1.{ip} = IpAddress: {ip}")
        );
        assert!(lines[2].contains("= INTEGER: 1"), "loopback row: {lines:?}");
        let mac = lines[3]
            .split_once("STRING: ")
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| panic!("a MAC: {lines:?}"));
        assert!(mac.starts_with("2:") || mac.starts_with("02"), "{mac}");
        macs.push(mac);
        assert!(lines[4].contains("No Such Instance"), "{lines:?}");
    }
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 3, "distinct MACs: {macs:?}");

    // Six devices, one snapshot, one compiled store.
    let cache = fleet.config().with_file_name("cache");
    let stores: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".store"))
        .collect();
    assert_eq!(stores.len(), 1, "{stores:?}");
}

#[test]
fn a_plain_value_that_does_not_fit_the_snapshots_type_fails_the_start_naming_it() {
    let port = free_port();
    let fleet = Fleet::start(&format!(
        "  restart: {{ max_restarts: 0 }}
agents:
  - name: misfit
    listen: [\"127.0.0.1:{port}\"]
    data: {}
    snmpv2c: {{ communities: [public] }}
    values:
      1.3.6.1.2.1.2.2.1.1.1: eth0
",
        mib("linux-host.snmprec").display()
    ));
    fleet.wait_events("misfit start-failed", |e| {
        e.iter()
            .any(|x| x["agent"] == "misfit" && x["event"] == "start-failed")
    });
    // The event's reason is the process's own `failed` answer or its exit,
    // whichever the supervisor meets first; the process logs why.
    let why = fleet
        .stderr()
        .wait_for(0, std::time::Duration::from_secs(60), |l| {
            l.contains("agent misfit: value of 1.3.6.1.2.1.2.2.1.1.1")
                && l.contains("Integer32")
                && l.contains("give `type`")
        });
    assert!(why.is_some(), "{}", fleet.stderr().text());
}

#[test]
fn check_reports_plain_values_that_do_not_fit_the_snapshot() {
    let dir = crate::harness::tempdir();
    let path = dir.path().join("fleet.yaml");
    let data = mib("linux-host.snmprec");
    std::fs::write(
        &path,
        format!(
            "agents:
  - name: \"p-{{i}}\"
    count: 3
    listen: [\"127.0.0.1:{{i+21000}}\"]
    data: {}
    snmpv2c: {{ communities: [public] }}
    values:
      1.3.6.1.2.1.1.5.0: \"p-{{i}}\"
      1.3.6.1.2.1.2.2.1.1.1: eth0
",
            data.display()
        ),
    )
    .unwrap();
    let out = crate::harness::agentcluster(&["check", "-c", path.to_str().unwrap()]);
    let t = crate::harness::text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let hits: Vec<&str> = t
        .lines()
        .filter(|l| {
            l.contains(
                "error: agent `p-0`: `values` 1.3.6.1.2.1.2.2.1.1.1: bad Integer32 value \"eth0\"",
            )
        })
        .collect();
    assert_eq!(hits.len(), 1, "{t}");
    assert!(hits[0].ends_with("(and 2 more agents)"), "{t}");
    assert!(!t.contains("1.3.6.1.2.1.1.5.0"), "{t}");
}

/// The figure: 1,000 devices at `127.3.{i/250}.{i%250+1}:161` from
/// one snapshot with `identity: true`, each answering net-snmp's `snmpget`
/// with its own sysName and its own ifPhysAddress, over one compiled store.
#[test]
fn a_thousand_devices_at_their_own_addresses_each_answer_as_themselves() {
    let _alone = crate::harness::alone();
    let data = mib("linux-host.snmprec");
    let fleet = Fleet::start(&format!(
        "  agents_per_process: 100
agents:
  - name: \"dev-{{i:04d}}\"
    count: 1000
    listen: [\"127.3.{{i/250}}.{{i%250+1}}:161\"]
    data: {}
    snmpv2c: {{ communities: [public] }}
    identity: true
",
        data.display()
    ));
    // ifIndex 2 is the recorded interface with a MAC (00:12:79:62:f9:40).
    const IF_PHYS_ADDRESS_2: &str = ".1.3.6.1.2.1.2.2.1.6.2";
    let answers = std::sync::Mutex::new(Vec::with_capacity(1000));
    std::thread::scope(|s| {
        for lane in 0..4u32 {
            let answers = &answers;
            s.spawn(move || {
                for i in (lane..1000).step_by(4) {
                    let target = format!("127.3.{}.{}:161", i / 250, i % 250 + 1);
                    let lines = get(&target, &[SYS_NAME, IF_PHYS_ADDRESS_2]);
                    answers.lock().unwrap().push((i, lines));
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), 1000);
    let mut macs = std::collections::HashSet::new();
    for (i, lines) in &answers {
        assert_eq!(lines.len(), 2, "device {i}: {lines:?}");
        assert!(
            lines[0].ends_with(&format!("STRING: \"dev-{i:04}\"")),
            "device {i}: {lines:?}"
        );
        let mac = lines[1]
            .split_once("Hex-STRING: ")
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| panic!("device {i}: {lines:?}"));
        assert!(
            mac.starts_with("02 "),
            "device {i}: a locally administered MAC: {mac}"
        );
        assert!(
            macs.insert(mac.clone()),
            "device {i}: MAC {mac} seen before"
        );
    }
    let cache = fleet.config().with_file_name("cache");
    let stores: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".store"))
        .collect();
    assert_eq!(stores.len(), 1, "{stores:?}");
}
