//! Secrets (communities, SNMPv3 passwords, notification credentials) never
//! leave the configuration file except over the agents' private channel:
//! not in any process's arguments or environment, not in the logs (at the
//! most verbose level), events, the KVP pool or `status`. A configuration
//! file holding secrets that every user can read gets a warning.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::imports::Signal;
use crate::harness::{
    Fleet, WAIT, agentcluster, free_ports, is, kill, mib, pid_in, pid_of, snmp_ok, tempdir,
};

const COMMUNITY: &str = "c0mmunity-Sekret";
const AUTH: &str = "authpass-Sekret";
const PRIV: &str = "privpass-Sekret";
const TRAP_AUTH: &str = "trapauth-Sekret";
const TRAP_PRIV: &str = "trappriv-Sekret";
const TRAP_COMMUNITY: &str = "trapcommunity-Sekret";
const SECRETS: [&str; 6] = [COMMUNITY, AUTH, PRIV, TRAP_AUTH, TRAP_PRIV, TRAP_COMMUNITY];

fn leaks(what: &str, text: &str) -> Vec<String> {
    SECRETS
        .iter()
        .filter(|s| text.contains(*s))
        .map(|s| format!("{s} in {what}"))
        .collect()
}

fn fleet_yaml(ports: &[u16], kvp: &std::path::Path) -> String {
    format!(
        "events:
  kvp: {{ path: {kvp} }}
  notify:
    - {{ target: \"127.0.0.1:{t1}\", version: 2c, community: {TRAP_COMMUNITY}, type: inform, timeout: 200ms, retries: 0 }}
    - target: \"127.0.0.1:{t2}\"
      version: 3
      type: inform
      user: trapper
      auth: {{ protocol: SHA256, password: {TRAP_AUTH} }}
      priv: {{ protocol: AES128, password: {TRAP_PRIV} }}
      timeout: 200ms
      retries: 0
agents:
  - name: vault
    listen: [\"127.0.0.1:{p}\"]
    data: {data}
    notify: inherit
    snmpv2c: {{ communities: [{COMMUNITY}] }}
    snmpv3:
      users:
        - name: ops
          auth: {{ protocol: SHA, password: {AUTH} }}
          priv: {{ protocol: AES128, password: {PRIV} }}
",
        kvp = kvp.display(),
        t1 = ports[1],
        t2 = ports[2],
        p = ports[0],
        data = mib("linux-host.snmprec").display(),
    )
}

#[test]
fn a_readable_file_with_secrets_gets_a_warning() {
    let dir = tempdir();
    let ports = free_ports(3);
    let path = dir.path().join("fleet.yaml");
    std::fs::write(&path, fleet_yaml(&ports, &dir.path().join("kvp"))).unwrap();
    let check = || {
        let out = agentcluster(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = check();
    assert!(
        text.contains("holds secrets") && text.contains("mode 644"),
        "{text}"
    );
    assert!(leaks("check's output", &text).is_empty(), "{text}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = check();
    assert!(!text.contains("holds secrets"), "{text}");
    // Only `public` and no SNMPv3 user: nothing secret, no warning.
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        format!(
            "agents:\n  - name: p\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            ports[0],
            mib("linux-host.snmprec").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = agentcluster(&["check", "-c", plain.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("holds secrets"));
}

#[test]
fn secrets_appear_in_no_log_event_status_argument_or_environment() {
    let ports = free_ports(3);
    let kvp_dir = tempdir();
    let kvp = kvp_dir.path().join("kvp_pool");
    // The most verbose logs, as JSON (every field).
    let fleet = Fleet::start_args(
        &["-vvv", "--log-format", "json"],
        &fleet_yaml(&ports, &kvp),
        &[],
    );
    let target = format!("127.0.0.1:{}", ports[0]);

    // The agent serves with those secrets (so they did reach it).
    snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            COMMUNITY,
            "-r",
            "1",
            &target,
            "1.3.6.1.2.1.1.5.0",
        ],
    );
    snmp_ok(
        "snmpget",
        &[
            "-v3",
            "-l",
            "authPriv",
            "-u",
            "ops",
            "-a",
            "SHA",
            "-A",
            AUTH,
            "-x",
            "AES",
            "-X",
            PRIV,
            "-r",
            "1",
            &target,
            "1.3.6.1.2.1.1.5.0",
        ],
    );
    // A wrong community and a wrong password: logged and counted, not echoed.
    let _ = Command::new("snmpget")
        .args([
            "-v2c",
            "-c",
            "not-it",
            "-r",
            "0",
            "-t",
            "0.3",
            &target,
            "1.3.6.1.2.1.1.5.0",
        ])
        .output();

    let control = fleet.control();
    let pid = pid_of(&fleet.status(), "vault");
    let mut seen = Vec::new();
    for p in [fleet.pid(), pid] {
        for file in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{p}/{file}")).unwrap();
            seen.extend(leaks(
                &format!("/proc/{p}/{file}"),
                &String::from_utf8_lossy(&bytes),
            ));
        }
    }
    // A restart: died/restarting/starting/ready events, informs that fail.
    let since = fleet.next_seq();
    kill(pid, Signal::SIGKILL);
    let ready = fleet.wait_event(since, "vault ready again", |e| is(e, "vault", "ready"));
    let log = fleet.stderr().len();
    let new_pid = pid_in(&ready);
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{new_pid}/{file}")).unwrap();
        seen.extend(leaks(
            &format!("/proc/{new_pid}/{file}"),
            &String::from_utf8_lossy(&bytes),
        ));
    }
    // The informs of the restart to the silent targets time out (200 ms,
    // no retry), and each target's failure is logged.
    for port in [ports[1], ports[2]] {
        let target = format!("127.0.0.1:{port}");
        assert!(
            fleet
                .stderr()
                .wait_for(log, WAIT, |l| l.contains("informs not acknowledged")
                    && l.contains(&target))
                .is_some(),
            "no failed delivery to {target} logged within {WAIT:?}; the log ends with:\n{}",
            fleet.stderr().tail(20)
        );
    }

    let status_text =
        String::from_utf8_lossy(&agentcluster(&["status", "--control", &control]).stdout)
            .into_owned();
    seen.extend(leaks("status", &status_text));
    seen.extend(leaks(
        "status --json",
        &serde_json::to_string(&fleet.status()).unwrap(),
    ));
    let events = agentcluster(&["events", "--json", "--control", &control]);
    let events_text = String::from_utf8_lossy(&events.stdout).into_owned();
    assert!(events_text.contains("\"died\""), "{events_text}");
    seen.extend(leaks("events", &events_text));
    let pool = std::fs::read(&kvp).unwrap_or_default();
    assert!(!pool.is_empty(), "no KVP records");
    seen.extend(leaks("the KVP pool", &String::from_utf8_lossy(&pool)));

    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{code:?}");
    assert!(stderr.lines().count() > 10, "few logs: {stderr}");
    assert!(
        stderr.contains("DEBUG") || stderr.contains("TRACE"),
        "{stderr}"
    );
    seen.extend(leaks("the logs", &stderr));
    assert!(seen.is_empty(), "{seen:?}");
}
