//! Template expressions end to end: one entry makes devices that each
//! listen at their own loopback address on one port, with their own
//! community, user and engine ID, queried with net-snmp.

use crate::harness::{Fleet, free_port, mib, snmp, snmp_ok};

const DEVICES: u32 = 20;

/// Device `i`'s address: `127.3.{i/10}.{i%10+1}`.
fn address(i: u32) -> String {
    format!("127.3.{}.{}", i / 10, i % 10 + 1)
}

#[test]
fn each_copy_answers_at_its_own_address_with_its_own_identity() {
    let port = free_port();
    let fleet = Fleet::start(&format!(
        "  agents_per_process: 4
agents:
  - name: \"dev-{{i:02d}}\"
    count: {DEVICES}
    listen: [\"127.3.{{i/10}}.{{i%10+1}}:{port}\"]
    engine_id: \"80001f8804{{i:08x}}\"
    data: {}
    snmpv2c: {{ communities: [\"c{{i}}\"] }}
    snmpv3: {{ users: [{{ name: \"u{{i%256:02X}}\" }}] }}
",
        mib("linux-host.snmprec").display()
    ));
    let mut names: Vec<String> = fleet
        .status()
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    let expected: Vec<String> = (0..DEVICES).map(|i| format!("dev-{i:02}")).collect();
    assert_eq!(names, expected);
    for i in 0..DEVICES {
        let target = format!("{}:{port}", address(i));
        let community = format!("c{i}");
        let out = snmp_ok(
            "snmpget",
            &[
                "-v2c",
                "-c",
                &community,
                "-On",
                "-Ov",
                &target,
                "1.3.6.1.2.1.1.5.0",
            ],
        );
        assert_eq!(out.trim(), "STRING: \"tt\"", "device {i} at {target}");
        let user = format!("u{i:02X}");
        let out = snmp_ok(
            "snmpget",
            &[
                "-v3",
                "-l",
                "noAuthNoPriv",
                "-u",
                &user,
                "-On",
                "-Ov",
                "-Ox",
                &target,
                "1.3.6.1.6.3.10.2.1.1.0",
            ],
        );
        let id: String = out
            .trim()
            .strip_prefix("Hex-STRING: ")
            .unwrap_or_else(|| panic!("engine ID of device {i} in {out}"))
            .split_whitespace()
            .collect::<String>()
            .to_lowercase();
        assert_eq!(id, format!("80001f8804{i:08x}"), "device {i}");
    }
    // Another device's community gets no answer: each address is one
    // device.
    let out = snmp(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "c1",
            "-r",
            "0",
            "-t",
            "1",
            &format!("{}:{port}", address(0)),
            "1.3.6.1.2.1.1.5.0",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Timeout"),
        "{out:?}"
    );
}
