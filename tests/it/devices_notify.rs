//! A device's own coldStart and warmStart, end to end with the real binary
//! and a real `snmptrapd`: they leave from the device's own endpoint (the
//! socket it serves on: its address and port), an SNMPv1 Trap's agent-addr
//! is the device's address (for a device on 0.0.0.0, the address it sends
//! from), and an inform — v2c, and v3 with the receiver's engine
//! discovered — is acknowledged through the device's serving socket at the
//! first attempt.
//!
//! Waits are on snmptrapd's log (a trap of the test's own marks how far it
//! is), the agents' log and the event stream.

use std::ffi::OsStr;

use crate::harness::trapd::Trapd;
use crate::harness::{Fleet, agentcluster, free_port, is, mib};

/// Each notification as `SOURCE|AGENT-ADDR|SECURITY|TRAP-TYPE|VARBINDS`:
/// `UDP: [127.0.0.1]:1234->[127.0.0.1]:162|127.0.0.1|TRAP, SNMP v1, …`.
const FORMAT: &str = "%b|%a|%P|%w|%v\n";

/// The source (`[ip]:port`) of a logged notification.
fn source(line: &str) -> &str {
    line.strip_prefix("UDP: ")
        .and_then(|l| l.split_once("->"))
        .map_or("", |(from, _)| from)
}

/// The v1 agent-addr of a logged notification.
fn agent_addr(line: &str) -> &str {
    line.split('|').nth(1).unwrap_or_default()
}

/// One agent serving v2c on `listen`, sending its own notifications to
/// `notify` (YAML flow sequence of targets).
fn agent(name: &str, listen: &str, notify: &str) -> String {
    format!(
        "  - name: {name}\n    listen: [\"{listen}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n    notify: {notify}\n",
        mib("linux-host.snmprec").display()
    )
}

#[test]
fn cold_and_warm_starts_leave_from_the_device_endpoint() {
    let trapd = Trapd::start_format("authCommunity log public\n", FORMAT);
    let to = format!("127.0.0.1:{}", trapd.port);
    let targets = format!(
        "[{{ target: \"{to}\", version: 1, community: public }}, {{ target: \"{to}\", version: 2c, community: public }}]"
    );
    let (port, any_port) = (free_port(), free_port());
    let yaml = format!(
        "agents:\n{}{}",
        agent("dev", &format!("127.0.0.1:{port}"), &targets),
        agent("anywhere", &format!("0.0.0.0:{any_port}"), &targets)
    );
    let fleet = Fleet::start(&yaml);
    let here = format!("[127.0.0.1]:{port}");
    let there = format!("[127.0.0.1]:{any_port}");
    // coldStart: v1 generic-trap 0 and v2c snmpTraps.1, two per device.
    let mut cold = Vec::new();
    while cold.len() < 4 {
        let line = trapd.expect("|");
        if line.contains("|TRAP, SNMP v1") && line.contains("|0|")
            || line.contains("OID: .1.3.6.1.6.3.1.1.5.1")
        {
            cold.push(line);
        }
    }
    for line in &cold {
        assert!(
            source(line) == here || source(line) == there,
            "from a device's endpoint: {line}"
        );
        if line.contains("SNMP v1") {
            assert_eq!(agent_addr(line), "127.0.0.1", "{line}");
        }
    }
    for from in [&here, &there] {
        assert_eq!(
            cold.iter().filter(|l| source(l) == from.as_str()).count(),
            2,
            "a v1 and a v2c coldStart from {from}: {cold:#?}"
        );
    }

    // warmStart after a restart, from the same endpoint.
    let mut events = fleet.follow(fleet.next_seq());
    let out = agentcluster(&["restart", "--control", &fleet.control(), "dev"]);
    assert!(out.status.success(), "{out:?}");
    events.wait("dev back", |e| is(e, "dev", "ready"));
    let mut warm = Vec::new();
    while warm.len() < 2 {
        let line = trapd.expect("|");
        if line.contains("|TRAP, SNMP v1") && line.contains("|1|")
            || line.contains("OID: .1.3.6.1.6.3.1.1.5.2")
        {
            warm.push(line);
        }
    }
    for line in &warm {
        assert_eq!(source(line), here, "{line}");
        if line.contains("SNMP v1") {
            assert_eq!(agent_addr(line), "127.0.0.1", "{line}");
        }
    }
}

#[test]
fn a_device_inform_is_acknowledged_through_its_serving_socket() {
    let trapd = Trapd::start_format(
        "authCommunity log public\ncreateUser devuser SHA dev-auth-pass AES dev-priv-pass\nauthUser log devuser priv\n",
        FORMAT,
    );
    let to = format!("127.0.0.1:{}", trapd.port);
    // Long timeouts: a retry would be a lost acknowledgement, not a slow
    // machine.
    let targets = format!(
        "[{{ target: \"{to}\", version: 2c, community: public, type: inform, retries: 2, timeout: 10s }}, \
         {{ target: \"{to}\", version: 3, type: inform, user: devuser, auth: {{ protocol: SHA, password: dev-auth-pass }}, priv: {{ protocol: AES, password: dev-priv-pass }}, retries: 2, timeout: 10s }}]"
    );
    let port = free_port();
    let yaml = format!(
        "agents:\n{}",
        agent("dev", &format!("127.0.0.1:{port}"), &targets)
    );
    let fleet = Fleet::start_with(
        &yaml,
        &[("RUST_LOG", OsStr::new("info,agentcluster_agent=debug"))],
    );
    // snmptrapd gets them from the device's endpoint…
    for kind in ["INFORM, SNMP v2c", "INFORM, SNMP v3, user devuser"] {
        let line = trapd.expect(kind);
        assert_eq!(source(&line), format!("[127.0.0.1]:{port}"), "{line}");
    }
    // …the device says each was acknowledged (it sends them in order)…
    let mut from = 0;
    for target in ["v2c", "v3"] {
        let acked = fleet.stderr().wait_for(from, crate::harness::WAIT, |l| {
            l.contains("coldStart inform acknowledged")
        });
        let Some(i) = acked else {
            panic!(
                "{target}: no acknowledgement; the log ends with:\n{}",
                fleet.stderr().tail(20)
            );
        };
        from = i + 1;
    }
    // …and snmptrapd got each once: no retry.
    trapd.sync();
    let informs: Vec<String> = trapd
        .logged()
        .into_iter()
        .filter(|l| l.contains("|INFORM, SNMP v"))
        .collect();
    assert_eq!(informs.len(), 2, "{informs:#?}");
    assert!(
        informs[0].contains("INFORM, SNMP v2c")
            && informs[1].contains("INFORM, SNMP v3, user devuser"),
        "{informs:#?}"
    );
    for line in &informs {
        assert_eq!(source(line), format!("[127.0.0.1]:{port}"), "{line}");
        assert!(line.contains("OID: .1.3.6.1.6.3.1.1.5.1"), "{line}");
    }
    assert!(
        !fleet
            .stderr()
            .text()
            .contains("start notification not delivered"),
        "{}",
        fleet.stderr().tail(20)
    );
}
