//! SNMPv3 end to end: the real binary against net-snmp's `snmpget`,
//! `snmpbulkwalk` and `snmpset` for every authentication × privacy pair
//! net-snmp 5.9 speaks (MD5, SHA, SHA-224…512 × none, DES, AES, AES-192,
//! AES-256, AES-192-C, AES-256-C) and noAuthNoPriv, and against pysnmp as a
//! second, independent client (which adds 3DES). Walks are compared with
//! the snapshot they serve, as in `snmp_v1v2c.rs`. Also: engine discovery,
//! derived and configured engine IDs, snmpEngineBoots across a restart,
//! every failure a manager can see, contexts, security levels and the
//! per-user write flag.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value as Json;

use crate::harness::imports::{Oid, Value, derive_engine_id};
use crate::harness::walk::{Walked, assert_walk_matches, snapshot_map, walk_map};
use crate::harness::{
    Fleet, agentcluster, alone_among, free_port, is, mib, repo_file, snmp, snmp_ok, tempdir,
};

/// (YAML name, net-snmp `-a` name, pysnmp name).
const AUTHS: [(&str, &str); 6] = [
    ("MD5", "MD5"),
    ("SHA", "SHA"),
    ("SHA224", "SHA-224"),
    ("SHA256", "SHA-256"),
    ("SHA384", "SHA-384"),
    ("SHA512", "SHA-512"),
];

/// (YAML name, net-snmp `-x` name; `None`: net-snmp lacks it).
const PRIVS: [(&str, Option<&str>); 7] = [
    ("DES", Some("DES")),
    ("3DES", None),
    ("AES128", Some("AES")),
    ("AES192", Some("AES-192")),
    ("AES256", Some("AES-256")),
    ("AES192C", Some("AES-192-C")),
    ("AES256C", Some("AES-256-C")),
];

const AUTH_PASS: &str = "auth-secret-1";
const PRIV_PASS: &str = "priv-secret-1";
const WALK_OPTS: &[&str] = &["-On", "-Oe", "-Ot", "-Ox", "-OU"];

/// A small snapshot (system, interfaces, ifXTable of the Linux host) in a
/// directory the agent processes can read.
fn small_snapshot(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(mib("linux-host.snmprec")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["1.3.6.1.2.1.1.", "1.3.6.1.2.1.2.", "1.3.6.1.2.1.31."]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert!(lines.len() > 100);
    let path = dir.join("small.snmprec");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// A second small snapshot: the UPS's system group.
fn ups_snapshot(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(mib("apc-ups.snmprec")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("1.3.6.1.2.1.1."))
        .collect();
    let path = dir.join("ups.snmprec");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn user_name(auth: &str, privacy: &str) -> String {
    format!("u-{auth}-{privacy}")
}

fn user_yaml(name: &str, auth: Option<&str>, privacy: Option<&str>, write: bool) -> String {
    let mut y = format!("        - name: {name}\n");
    if let Some(a) = auth {
        y += &format!("          auth: {{ protocol: {a}, password: \"{AUTH_PASS}\" }}\n");
    }
    if let Some(p) = privacy {
        y += &format!("          priv: {{ protocol: {p}, password: \"{PRIV_PASS}\" }}\n");
    }
    if write {
        y += "          write: true\n";
    }
    y
}

/// Every auth × priv user (and `-none` ones without privacy) plus `plain`.
fn matrix_users() -> String {
    let mut y = user_yaml("plain", None, None, true);
    for (a, _) in AUTHS {
        y += &user_yaml(&user_name(a, "none"), Some(a), None, true);
        for (p, _) in PRIVS {
            y += &user_yaml(&user_name(a, p), Some(a), Some(p), true);
        }
    }
    y
}

/// net-snmp arguments for a user at the level its keys give.
fn v3_args(user: &str, auth: Option<&str>, privacy: Option<&str>) -> Vec<String> {
    let mut a = vec!["-v3".to_string(), "-u".into(), user.into()];
    match (auth, privacy) {
        (None, _) => a.extend(["-l".into(), "noAuthNoPriv".into()]),
        (Some(au), None) => a.extend([
            "-l".into(),
            "authNoPriv".into(),
            "-a".into(),
            au.into(),
            "-A".into(),
            AUTH_PASS.into(),
        ]),
        (Some(au), Some(p)) => a.extend([
            "-l".into(),
            "authPriv".into(),
            "-a".into(),
            au.into(),
            "-A".into(),
            AUTH_PASS.into(),
            "-x".into(),
            p.into(),
            "-X".into(),
            PRIV_PASS.into(),
        ]),
    }
    a
}

fn run(tool: &str, base: &[String], rest: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend_from_slice(rest);
    snmp(tool, &args)
}

fn run_ok(tool: &str, base: &[String], rest: &[&str]) -> String {
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend_from_slice(rest);
    snmp_ok(tool, &args)
}

fn agent_yaml(name: &str, port: u16, data: &Path, extra: &str, users: &str) -> String {
    format!(
        "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n{extra}    snmpv3:\n      users:\n{users}",
        data.display()
    )
}

#[test]
fn net_snmp_interop_matrix() {
    let _siblings = alone_among("snmp_v3");
    let files = tempdir();
    let small = small_snapshot(files.path());
    let port = free_port();
    let _fleet = Fleet::start(&format!(
        "agents:\n{}",
        agent_yaml("matrix", port, &small, "", &matrix_users())
    ));
    let target = format!("127.0.0.1:{port}");
    let expected = snapshot_map(&small);
    let mut combos: Vec<(String, Option<&str>, Option<&str>)> = vec![("plain".into(), None, None)];
    for (a, na) in AUTHS {
        combos.push((user_name(a, "none"), Some(na), None));
        for (p, np) in PRIVS {
            if let Some(np) = np {
                combos.push((user_name(a, p), Some(na), Some(np)));
            }
        }
    }
    assert_eq!(combos.len(), 1 + 6 * 7);
    std::thread::scope(|s| {
        for (user, auth, privacy) in &combos {
            let (target, expected) = (&target, &expected);
            s.spawn(move || {
                let what = format!("{user} ({auth:?}, {privacy:?})");
                let base = v3_args(user, *auth, *privacy);
                let out = run_ok(
                    "snmpget",
                    &base,
                    &["-On", "-Ov", target, "1.3.6.1.2.1.1.5.0"],
                );
                assert_eq!(out.trim(), "STRING: \"tt\"", "{what}");
                let mut rest = vec!["-Cr25"];
                rest.extend_from_slice(WALK_OPTS);
                rest.extend_from_slice(&[target, ".1"]);
                let walk = walk_map(&run_ok("snmpbulkwalk", &base, &rest));
                assert_walk_matches(&what, Walked::V3, &walk, expected);
                // A SET that leaves the value as it was (the other walks
                // run at the same time).
                let out = run_ok(
                    "snmpset",
                    &base,
                    &["-On", "-Ov", target, "1.3.6.1.2.1.1.5.0", "s", "tt"],
                );
                assert_eq!(out.trim(), "STRING: \"tt\"", "{what}");
            });
        }
    });
    // Not one failure on the agent's side.
    let base = v3_args("u-SHA-AES128", Some("SHA"), Some("AES"));
    let out = run_ok(
        "snmpget",
        &base,
        &[
            "-On",
            &target,
            "1.3.6.1.6.3.15.1.1.2.0",
            "1.3.6.1.6.3.15.1.1.3.0",
            "1.3.6.1.6.3.15.1.1.5.0",
            "1.3.6.1.6.3.15.1.1.6.0",
            "1.3.6.1.2.1.11.6.0",
        ],
    );
    for line in out.lines() {
        assert!(line.ends_with("Counter32: 0"), "{line}");
    }
}

#[test]
fn bulkwalk_of_the_27k_object_switch_over_sha_aes() {
    let _siblings = alone_among("snmp_v3");
    let port = free_port();
    let data = mib("cisco-c3750.snmprec");
    let _fleet = Fleet::start(&format!(
        "agents:\n{}",
        agent_yaml(
            "sw",
            port,
            &data,
            "",
            &user_yaml("ops", Some("SHA"), Some("AES128"), false)
        )
    ));
    let target = format!("127.0.0.1:{port}");
    let base = v3_args("ops", Some("SHA"), Some("AES"));
    let mut rest = vec!["-Cr25"];
    rest.extend_from_slice(WALK_OPTS);
    rest.extend_from_slice(&[&target, ".1"]);
    let walk = walk_map(&run_ok("snmpbulkwalk", &base, &rest));
    assert!(walk.len() > 20_000, "{} objects", walk.len());
    assert_walk_matches(
        "cisco over SHA/AES",
        Walked::V3,
        &walk,
        &snapshot_map(&data),
    );
}

/// snmpEngineID (hex) and snmpEngineBoots as served to a noAuthNoPriv user.
fn engine_of(target: &str) -> (String, u32) {
    let out = snmp_ok(
        "snmpget",
        &[
            "-v3",
            "-l",
            "noAuthNoPriv",
            "-u",
            "plain",
            "-On",
            "-Ov",
            "-Ox",
            target,
            "1.3.6.1.6.3.10.2.1.1.0",
            "1.3.6.1.6.3.10.2.1.2.0",
        ],
    );
    // net-snmp wraps long Hex-STRINGs over several lines.
    let (id, boots) = out
        .split_once("INTEGER: ")
        .unwrap_or_else(|| panic!("boots in {out}"));
    let id = id
        .strip_prefix("Hex-STRING: ")
        .unwrap_or_else(|| panic!("engine ID in {out}"))
        .split_whitespace()
        .collect::<String>()
        .to_lowercase();
    let boots = boots
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("boots in {out}"));
    (id, boots)
}

#[test]
fn engine_ids_discovery_and_boots_across_a_restart() {
    let files = tempdir();
    let small = small_snapshot(files.path());
    let (p1, p2) = (free_port(), free_port());
    let users = user_yaml("plain", None, None, false)
        + &user_yaml("ops", Some("SHA256"), Some("AES256"), false);
    let fleet = Fleet::start(&format!(
        "  node: lab-v3\nagents:\n{}{}",
        agent_yaml("derived", p1, &small, "", &users),
        agent_yaml(
            "configured",
            p2,
            &small,
            "    engine_id: \"80001f8804636f6e66696775726564\"\n",
            &users
        ),
    ));
    let (t1, t2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let derived: String = derive_engine_id("lab-v3", "derived")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(engine_of(&t1), (derived.clone(), 1));
    assert_eq!(
        engine_of(&t2),
        ("80001f8804636f6e66696775726564".to_string(), 1)
    );
    // A manager that knows the engine ID skips discovery.
    let mut base = v3_args("ops", Some("SHA-256"), Some("AES-256"));
    base.extend(["-e".into(), "80001f8804636f6e66696775726564".into()]);
    let out = run_ok("snmpget", &base, &["-On", "-Ov", &t2, "1.3.6.1.2.1.1.5.0"]);
    assert_eq!(out.trim(), "STRING: \"tt\"");
    // A wrong engine ID is reported and the agent keeps serving.
    let mut base = v3_args("ops", Some("SHA-256"), Some("AES-256"));
    base.extend(["-e".into(), "80001f8804ffffffff".into()]);
    let out = run("snmpget", &base, &["-r", "0", &t2, "1.3.6.1.2.1.1.5.0"]);
    assert!(!out.status.success());
    // Restart: one boot more, the same engine ID.
    let since = fleet.next_seq();
    let out = agentcluster(&["restart", "--control", &fleet.control(), "derived"]);
    assert!(out.status.success(), "{out:?}");
    let ready = fleet.wait_event(since, "derived restarted", |e| is(e, "derived", "ready"));
    assert_eq!(ready["restarts"], 1, "{ready}");
    assert_eq!(engine_of(&t1), (derived, 2));
    assert_eq!(engine_of(&t2).1, 1, "the other agent did not restart");
    // The authenticated path resynchronizes to the new boots.
    let base = v3_args("ops", Some("SHA-256"), Some("AES-256"));
    let out = run_ok(
        "snmpget",
        &base,
        &["-On", "-Ov", &t1, "1.3.6.1.6.3.10.2.1.2.0"],
    );
    assert_eq!(out.trim(), "INTEGER: 2");
    let boots = std::fs::read_to_string(fleet.dir.path().join("state/engine/derived.boots"));
    assert_eq!(boots.unwrap().trim(), "2");
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn failures_seen_by_net_snmp_and_counted() {
    let files = tempdir();
    let small = small_snapshot(files.path());
    let ups = ups_snapshot(files.path());
    let port = free_port();
    let users = user_yaml("ops", Some("SHA"), Some("AES128"), true)
        + &user_yaml("reader", Some("SHA"), Some("AES128"), false)
        + &user_yaml("monitor", Some("MD5"), None, false);
    let extra = format!(
        "    snmpv2c: {{ communities: [public] }}\n    snmpv3:\n      contexts: {{ \"\": {}, vlan10: {} }}\n",
        small.display(),
        ups.display()
    );
    // `snmpv3:` is written by agent_yaml; contexts go in the same mapping.
    let yaml = format!(
        "  - name: ctx\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n{}      users:\n{users}",
        small.display(),
        extra
    );
    let _fleet = Fleet::start(&format!("agents:\n{yaml}"));
    let target = format!("127.0.0.1:{port}");
    let ops = v3_args("ops", Some("SHA"), Some("AES"));
    let q = ["-r", "0", "-On", "-Ov", target.as_str()];
    let get = |base: &[String], extra: &[&str], oid: &str| {
        let mut rest: Vec<&str> = extra.to_vec();
        rest.extend_from_slice(&q);
        rest.push(oid);
        run("snmpget", base, &rest)
    };
    // Contexts select the snapshot.
    let out = get(&ops, &["-n", "vlan10", "-Ox"], "1.3.6.1.2.1.1.5.0");
    assert!(
        stderr_of(&out).contains("70 77 72 2D 64 63 30 31"),
        "{}",
        stderr_of(&out)
    );
    let out = get(&ops, &[], "1.3.6.1.2.1.1.5.0");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "STRING: \"tt\""
    );
    let out = get(&ops, &["-n", "nope"], "1.3.6.1.2.1.1.5.0");
    assert!(
        !out.status.success() && stderr_of(&out).contains("context"),
        "{}",
        stderr_of(&out)
    );
    // Wrong passwords, wrong user, levels.
    let mut wrong = ops.clone();
    let at = wrong.iter().position(|a| a == "-A").unwrap() + 1;
    wrong[at] = "not-the-password".into();
    let out = get(&wrong, &[], "1.3.6.1.2.1.1.5.0");
    assert!(
        stderr_of(&out).contains("Authentication failure"),
        "{}",
        stderr_of(&out)
    );
    let mut wrong = ops.clone();
    let at = wrong.iter().position(|a| a == "-X").unwrap() + 1;
    wrong[at] = "not-the-password".into();
    let out = get(&wrong, &[], "1.3.6.1.2.1.1.5.0");
    assert!(
        stderr_of(&out).contains("Decryption error"),
        "{}",
        stderr_of(&out)
    );
    let out = get(
        &v3_args("nobody", Some("SHA"), Some("AES")),
        &[],
        "1.3.6.1.2.1.1.5.0",
    );
    assert!(
        stderr_of(&out).contains("Unknown user name"),
        "{}",
        stderr_of(&out)
    );
    let out = get(
        &v3_args("monitor", Some("MD5"), Some("DES")),
        &[],
        "1.3.6.1.2.1.1.5.0",
    );
    assert!(
        stderr_of(&out).contains("Unsupported security level"),
        "{}",
        stderr_of(&out)
    );
    let out = get(&v3_args("ops", Some("SHA"), None), &[], "1.3.6.1.2.1.1.5.0");
    assert!(
        stderr_of(&out).contains("authorizationError"),
        "{}",
        stderr_of(&out)
    );
    // The write flag.
    let mut rest: Vec<&str> = q.to_vec();
    rest.extend_from_slice(&["1.3.6.1.2.1.1.5.0", "s", "renamed"]);
    let out = run(
        "snmpset",
        &v3_args("reader", Some("SHA"), Some("AES")),
        &rest,
    );
    assert!(
        stderr_of(&out).contains("notWritable"),
        "{}",
        stderr_of(&out)
    );
    let out = run_ok("snmpset", &ops, &rest);
    assert_eq!(out.trim(), "STRING: \"renamed\"");
    let out = get(
        &v3_args("reader", Some("SHA"), Some("AES")),
        &[],
        "1.3.6.1.2.1.1.5.0",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "STRING: \"renamed\""
    );
    // Each failure moved its counter; the agent still serves v2c too.
    let out = snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-On",
            &target,
            "1.3.6.1.6.3.15.1.1.1.0",
            "1.3.6.1.6.3.15.1.1.3.0",
            "1.3.6.1.6.3.15.1.1.5.0",
            "1.3.6.1.6.3.15.1.1.6.0",
            "1.3.6.1.6.3.12.1.5.0",
        ],
    );
    let counts: Vec<u32> = out
        .lines()
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    // unsupported level, unknown user, wrong digest, decryption error,
    // unknown context: each at least once (net-snmp retries some).
    assert!(counts.iter().all(|c| *c >= 1), "{out}");
}

/// The pysnmp interpreter: `$AGENTCLUSTER_PYSNMP`, else the venv
/// `scripts/test` makes in `target/pysnmp-venv`.
fn pysnmp_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AGENTCLUSTER_PYSNMP") {
        return Some(PathBuf::from(p));
    }
    let p = repo_file("target/pysnmp-venv/bin/python");
    let ok = Command::new(&p)
        .args(["-c", "import pysnmp, cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(p)
}

#[test]
fn pysnmp_interop_matrix_with_3des_and_both_aes_extensions() {
    let _siblings = alone_among("snmp_v3");
    let Some(python) = pysnmp_python() else {
        eprintln!(
            "SKIPPED: pysnmp is not installed (scripts/test installs it into target/pysnmp-venv)"
        );
        return;
    };
    let files = tempdir();
    let small = small_snapshot(files.path());
    let port = free_port();
    let _fleet = Fleet::start(&format!(
        "agents:\n{}",
        agent_yaml("pysnmp", port, &small, "", &matrix_users())
    ));
    let mut jobs = vec![serde_json::json!({
        "user": "plain", "get": ["1.3.6.1.2.1.1.5.0"], "walk": "1.3.6.1.2.1"
    })];
    for (a, _) in AUTHS {
        jobs.push(serde_json::json!({
            "user": user_name(a, "none"), "auth": a, "auth_key": AUTH_PASS,
            "get": ["1.3.6.1.2.1.1.5.0"], "walk": "1.3.6.1.2.1"
        }));
        for (p, _) in PRIVS {
            jobs.push(serde_json::json!({
                "user": user_name(a, p), "auth": a, "auth_key": AUTH_PASS,
                "priv": p, "priv_key": PRIV_PASS,
                "get": ["1.3.6.1.2.1.1.5.0"], "walk": "1.3.6.1.2.1"
            }));
        }
    }
    let request = serde_json::json!({ "host": "127.0.0.1", "port": port, "jobs": jobs });
    let script = repo_file("tests/pysnmp/v3_client.py");
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pysnmp");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pysnmp client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Json> = serde_json::from_slice(&out.stdout).expect("pysnmp JSON");
    assert_eq!(results.len(), 1 + 6 * 8);
    let expected = snapshot_map(&small);
    for r in &results {
        let user = r["user"].as_str().unwrap();
        assert!(r["error"].is_null(), "{user}: {}", r["error"]);
        assert_eq!(
            r["get"][0],
            serde_json::json!(["1.3.6.1.2.1.1.5.0", "OctetString", "7474"]),
            "{user}"
        );
        let walk: Vec<(Oid, Value)> = r["walk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|vb| pysnmp_varbind(vb).unwrap_or_else(|| panic!("{user}: {vb}")))
            .collect();
        let want: BTreeMap<Oid, Value> = expected
            .iter()
            .filter(|(o, _)| o.starts_with(&[1, 3, 6, 1, 2, 1]))
            .map(|(o, v)| (o.clone(), v.clone()))
            .collect();
        let got: Vec<_> = walk
            .iter()
            .filter(|(o, _)| !Walked::V3.is_live(o))
            .collect();
        let want: Vec<_> = want
            .iter()
            .filter(|(o, _)| !Walked::V3.is_live(o))
            .collect();
        assert_eq!(got.len(), want.len(), "{user}: objects walked");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.0, &g.1), (w.0, w.1), "{user}");
        }
    }
}

/// A varbind as the pysnmp client prints it.
fn pysnmp_varbind(vb: &Json) -> Option<(Oid, Value)> {
    let oid: Oid = vb[0]
        .as_str()?
        .split('.')
        .map(|a| a.parse().ok())
        .collect::<Option<_>>()?;
    let hex = |s: &str| -> Option<Vec<u8>> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect()
    };
    let v = &vb[2];
    let value = match vb[1].as_str()? {
        "OctetString" => Value::OctetString(hex(v.as_str()?)?),
        "Opaque" => Value::Opaque(hex(v.as_str()?)?),
        "Integer" | "Integer32" => Value::Integer(v.as_i64()?),
        "Counter32" => Value::Counter32(v.as_u64()? as u32),
        "Gauge32" | "Unsigned32" => Value::Gauge32(v.as_u64()? as u32),
        "TimeTicks" => Value::TimeTicks(v.as_u64()? as u32),
        "Counter64" => Value::Counter64(v.as_u64()?),
        "ObjectIdentifier" => Value::ObjectId(
            v.as_str()?
                .split('.')
                .map(|a| a.parse().ok())
                .collect::<Option<_>>()?,
        ),
        "IpAddress" => {
            let b: Vec<u8> = v
                .as_str()?
                .split('.')
                .map(|a| a.parse().ok())
                .collect::<Option<_>>()?;
            Value::IpAddress(b.try_into().ok()?)
        }
        _ => return None,
    };
    Some((oid, value))
}
