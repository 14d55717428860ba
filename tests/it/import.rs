//! Other simulators' data served as they serve it: `serve` and `import
//! snmpsim` on a copy of the snmpsim-data package's own tree, compared
//! answer by answer with snmpsim itself serving the same directory; and
//! `import agentcluster` of a tree of legacy `.agent` files, whose fleet
//! checks and answers as a fleet that `include`s the tree.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::imports::snapshot::{self, Format};
use crate::harness::imports::{Oid, Value, load_fleet_file};
use crate::harness::walk::Walked;
use crate::harness::{
    BIN, Fleet, Process, agentcluster, free_block, free_port, ipv6_loopback, mib, repo_file, snmp,
    tempdir, text,
};

/// The files of snmpsim-data 1.0.1 the comparison serves: plain and
/// compressed ones, in subdirectories, with `writecache` and `numeric`
/// records, and one name longer than an SNMPv3 context name may be.
const SAMPLE: &[&str] = &[
    "UPS/apc-8932.snmprec",
    "UPS/apc-7902b.snmprec",
    "UPS/eastpower-istars-swv053.snmprec.bz2",
    "iot/geist-temperature-sensor.snmprec",
    "network/appliance/tripplite-poweralert.snmprec",
    "network/appliance/vss-monitoring-optimizer-2400-span.snmprec.bz2",
    "network/appliance/network-research-squid.snmprec.bz2",
    "network/switch/cts-media-converter.snmprec.bz2",
    "network/wifi/ubiquiti-m5.snmprec.bz2",
    "camera/hikvision.snmprec.bz2",
    "camera/hikvision-network-video-recorder.snmprec.bz2",
    "unclassified/03.snmprec.bz2",
];

/// Served by both, left out of the comparison: its records are not in OID
/// order, which snmpsim's search relies on (its GETNEXT follows the file's
/// order), while agentcluster sorts every snapshot.
const UNSORTED: &str = "network/appliance/network-research-squid";

/// snmpsim's default SNMPv3 user, which `serve` gives every device too.
const V3: &[&str] = &[
    "-v3",
    "-l",
    "authPriv",
    "-u",
    "simulator",
    "-a",
    "MD5",
    "-A",
    "auctoritas",
    "-x",
    "DES",
    "-X",
    "privatus",
];

/// How many objects one GETBULK asks for (snmpsim answers at most 64).
const WINDOW: &str = "-Cr60";

/// The Python of the venv `scripts/test` makes in `target/pysnmp-venv`
/// (`$AGENTCLUSTER_PYSNMP` instead), when it has snmpsim and snmpsim-data.
pub(crate) fn snmpsim_python() -> Option<PathBuf> {
    let p = std::env::var_os("AGENTCLUSTER_PYSNMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_file("target/pysnmp-venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import snmpsim, snmpsim_data"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

/// A copy of [`SAMPLE`] from the snmpsim-data package into `to`, paths
/// kept, `.bz2` files decompressed (agentcluster does not read them; the
/// names snmpsim gives are the same either way).
fn copy_sample(python: &Path, to: &Path) {
    let script = r#"
import bz2, os, shutil, sys, snmpsim_data
src = os.path.join(os.path.dirname(snmpsim_data.__file__), "data")
dst = sys.argv[1]
for rel in sys.argv[2:]:
    out = os.path.join(dst, rel[:-4] if rel.endswith(".bz2") else rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    opener = bz2.open if rel.endswith(".bz2") else open
    with opener(os.path.join(src, rel), "rb") as i, open(out, "wb") as o:
        shutil.copyfileobj(i, o)
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(to)
        .args(SAMPLE)
        .output()
        .unwrap();
    assert!(out.status.success(), "copy: {}", text(&out));
}

/// The community snmpsim serves a sample file as.
fn community(rel: &str) -> String {
    rel.trim_end_matches(".bz2")
        .trim_end_matches(".snmprec")
        .to_string()
}

/// snmpsim-command-responder on `data`, waited for until it listens.
pub(crate) fn start_snmpsim(python: &Path, data: &Path, work: &Path, port: u16) -> Process {
    let responder = python.with_file_name("snmpsim-command-responder");
    let mut cmd = Command::new(responder);
    cmd.arg(format!("--data-dir={}", data.display()))
        .arg(format!(
            "--cache-dir={}",
            work.join("snmpsim-cache").display()
        ))
        .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"))
        // It refuses root unless told; it binds a loopback port only.
        .env("SNMPSIM_ALLOW_ROOT", "true");
    let sim = Process::spawn(cmd);
    // It indexes every file before it listens.
    let listening = sim.stderr.wait_for(0, Duration::from_secs(120), |l| {
        l.contains("Listening at UDP/IPv4 endpoint")
    });
    assert!(
        listening.is_some(),
        "snmpsim did not start: {}",
        sim.stderr.tail(30)
    );
    sim
}

/// What one GETBULK of [`WINDOW`] objects from `start` answers, as (OID,
/// value): objects agentcluster serves live (sysUpTime, the snmp group,
/// the SNMPv3 engine and statistics objects: docs/snapshots.md) left out,
/// and the endOfMibView that ends a short answer too.
fn bulk(auth: &[&str], port: u16, start: &str) -> Vec<(Oid, Value)> {
    let target = format!("127.0.0.1:{port}");
    let mut args: Vec<&str> = auth.to_vec();
    args.extend(["-On", "-Cn0", WINDOW, &target, start]);
    let out = snmp("snmpbulkget", &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "snmpbulkget {args:?}: {}", text(&out));
    let kept: String = stdout
        .lines()
        .filter(|l| !l.contains("No more variables left in this MIB View"))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.is_empty() {
        return Vec::new();
    }
    let snap = snapshot::parse(kept.as_bytes(), Format::Snmpwalk, Path::new("bulk"))
        .unwrap_or_else(|e| panic!("net-snmp output parses: {e}\n{kept}"));
    snap.records
        .into_iter()
        .map(|r| (r.oid, r.value))
        .filter(|(o, _)| !Walked::V3.is_live(o))
        .collect()
}

/// The OIDs of a `.snmprec` whose value a variation module computes
/// (`OID|TAG:MODULE|…`) other than `writecache`: their values move with
/// time, so only their types are compared.
fn computed(file: &Path) -> HashSet<Oid> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '|');
            let oid = parts.next()?;
            let tag = parts.next()?;
            let module = tag.split_once(':')?.1;
            (module != "writecache").then(|| {
                let arcs: Oid = oid.split('.').map(|a| a.parse().unwrap()).collect();
                arcs
            })
        })
        .collect()
}

/// Two answers to one request agree: one is a prefix of the other once
/// the live objects are out (they take room in agentcluster's answer), the
/// same OIDs with the same types and values (types only for `computed`).
fn assert_agree(what: &str, sim: &[(Oid, Value)], ours: &[(Oid, Value)], computed: &HashSet<Oid>) {
    let n = sim.len().min(ours.len());
    assert!(
        n > 0 || sim.len() == ours.len(),
        "{what}: snmpsim answered {} objects, agentcluster {}",
        sim.len(),
        ours.len()
    );
    for ((so, sv), (oo, ov)) in sim.iter().zip(ours).take(n) {
        assert_eq!(so, oo, "{what}: OID order");
        if computed.contains(so) {
            assert_eq!(
                std::mem::discriminant(sv),
                std::mem::discriminant(ov),
                "{what}: type of {so:?} ({sv:?} / {ov:?})"
            );
        } else {
            assert_eq!(sv, ov, "{what}: value of {so:?}");
        }
    }
}

/// `agentcluster serve DIR` and the fleet `import snmpsim DIR` writes answer
/// every community of the snmpsim-data sample, and SNMPv3 contexts, as
/// snmpsim serving the same directory does.
#[test]
fn serve_and_import_snmpsim_answer_as_snmpsim_on_its_own_data() {
    let Some(python) = snmpsim_python() else {
        eprintln!(
            "SKIPPED: snmpsim is not installed (scripts/test installs it into target/pysnmp-venv)"
        );
        return;
    };
    let work = tempdir();
    let data = work.path().join("data");
    copy_sample(&python, &data);
    let sim_port = free_port();
    let sim = start_snmpsim(&python, &data, work.path(), sim_port);

    let port = free_port();
    let dir = tempdir();
    let control = dir.path().join("control.sock");
    let mut cmd = Command::new(BIN);
    cmd.arg("--control")
        .arg(&control)
        .arg("serve")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let served = Fleet::spawn(cmd, dir);
    let banner = served.banner.join("\n");
    assert!(
        banner.contains(&format!(
            "snmpwalk -v2c -c UPS/apc-7902b -On 127.0.0.1:{port} 1.3.6.1.2.1.1"
        )),
        "{banner}"
    );

    // Each file compiled once, into one store.
    let stores = std::fs::read_dir(served.dir.path().join("cache"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "store"))
        })
        .count();
    assert_eq!(stores, SAMPLE.len());

    let mut compared = 0;
    for rel in SAMPLE {
        let c = community(rel);
        if c == UNSORTED {
            continue;
        }
        let computed = computed(&data.join(format!("{c}.snmprec")));
        let v2c = ["-v2c", "-c", &c];
        for start in ["1.3.6.1", "1.3.6.1.4.1"] {
            let what = format!("community {c} from {start}");
            let sim_answer = bulk(&v2c, sim_port, start);
            let ours = bulk(&v2c, port, start);
            assert_agree(&what, &sim_answer, &ours, &computed);
            compared += 1;
        }
    }
    assert!(compared >= 20, "{compared} requests compared");

    // SNMPv3 contexts: a short name as it is, a long one by its MD5 digest
    // (python3 -c "import hashlib; print(hashlib.md5(b'…').hexdigest())").
    for (context, file) in [
        ("UPS/apc-8932", "UPS/apc-8932"),
        (
            "60aeb8e4df1fd6394f2c16ade59a85e5",
            "network/appliance/vss-monitoring-optimizer-2400-span",
        ),
    ] {
        let mut auth = V3.to_vec();
        auth.extend(["-n", context]);
        let computed = computed(&data.join(format!("{file}.snmprec")));
        let what = format!("SNMPv3 context {context}");
        assert_agree(
            &what,
            &bulk(&auth, sim_port, "1.3.6.1.4.1"),
            &bulk(&auth, port, "1.3.6.1.4.1"),
            &computed,
        );
    }
    drop(sim);

    // The fleet `import snmpsim` writes passes `check` and answers as
    // `serve` does.
    let imported = tempdir();
    let yaml = imported.path().join("conf").join("fleet.yaml");
    std::fs::create_dir_all(yaml.parent().unwrap()).unwrap();
    let import_port = free_port();
    let out = agentcluster(&[
        "import",
        "snmpsim",
        data.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{import_port}"),
        "-o",
        yaml.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&yaml).unwrap();
    // Relative to the written file, which is readable by its owner only.
    let work_name = work.path().file_name().unwrap().to_string_lossy();
    assert!(
        written.contains(&format!("data_dir: \"../../{work_name}/data\"")),
        "{written}"
    );
    let out = agentcluster(&["check", "-c", yaml.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "data_dir {} expands to {} snapshot files: {} communities (v1 and v2c), {} SNMPv3 contexts",
            data.display(),
            SAMPLE.len(),
            SAMPLE.len(),
            SAMPLE.len()
        )),
        "{}",
        text(&out)
    );
    // Run it with the test's own cache, state and control socket.
    let control = imported.path().join("control.sock");
    std::fs::write(
        &yaml,
        format!(
            "{written}cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\n",
            imported.path().join("cache").display(),
            imported.path().join("state").display(),
            control.display()
        ),
    )
    .unwrap();
    let run = Fleet::run(&yaml, control.to_str().unwrap());
    for c in ["UPS/apc-8932", "camera/hikvision", "unclassified/03"] {
        let v2c = ["-v2c", "-c", c];
        let what = format!("imported fleet, community {c}");
        assert_eq!(
            bulk(&v2c, import_port, "1.3.6.1"),
            bulk(&v2c, port, "1.3.6.1"),
            "{what}"
        );
    }
    let mut auth = V3.to_vec();
    auth.extend(["-n", "iot/geist-temperature-sensor"]);
    let serve_answer = bulk(&auth, port, "1.3.6.1.2.1.1");
    assert!(!serve_answer.is_empty());
    assert_eq!(
        bulk(&auth, import_port, "1.3.6.1.2.1.1").len(),
        serve_answer.len()
    );
    drop(run);
    drop(served);
}

/// `serve FILE…`: one device per file on consecutive ports, community
/// `public`, and snmpsim's v3 user on the default context.
#[test]
fn serve_files_on_consecutive_ports() {
    let ports = free_block(2);
    let dir = tempdir();
    let control = dir.path().join("control.sock");
    let mut cmd = Command::new(BIN);
    cmd.arg("--control")
        .arg(&control)
        .arg("serve")
        .arg(mib("linux-host.snmprec"))
        .arg(mib("apc-ups.snmprec"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{ports}"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let served = Fleet::spawn(cmd, dir);
    let names: Vec<String> = served
        .status()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["apc-ups", "linux-host"]);
    for (i, file) in ["linux-host.snmprec", "apc-ups.snmprec"].iter().enumerate() {
        let want = snapshot::load(&mib(file)).unwrap();
        let descr = want
            .records
            .iter()
            .find(|r| r.oid == [1, 3, 6, 1, 2, 1, 1, 1, 0])
            .map(|r| r.value.clone())
            .unwrap();
        let port = ports + i as u16;
        for auth in [
            &["-v1", "-c", "public"][..],
            &["-v2c", "-c", "public"][..],
            V3,
        ] {
            let got = bulk_get(auth, port, "1.3.6.1.2.1.1.1.0");
            assert_eq!(got, descr, "{file} with {auth:?}");
        }
    }
}

/// One GET, its value.
fn bulk_get(auth: &[&str], port: u16, oid: &str) -> Value {
    let target = format!("127.0.0.1:{port}");
    let mut args: Vec<&str> = auth.to_vec();
    args.extend(["-On", &target, oid]);
    let out = snmp("snmpget", &args);
    assert!(out.status.success(), "snmpget {args:?}: {}", text(&out));
    let snap = snapshot::parse(&out.stdout, Format::Snmpwalk, Path::new("get")).unwrap();
    snap.records.into_iter().next().unwrap().value
}

/// A tree of legacy `.agent` files in subdirectories: v1, v2c and v3
/// agents, udp and udp6, engine IDs as text and as `0x` hex, an inactive
/// agent, snapshots beside the files and in a shared directory.
fn legacy_tree(root: &Path, ports: u16) {
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::copy(mib("apc-ups.snmprec"), shared.join("ups.snmprec")).unwrap();
    let write = |rel: &str, text: String| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    std::fs::create_dir_all(root.join("linux")).unwrap();
    std::fs::copy(mib("linux-host.snmprec"), root.join("linux/linux.snmprec")).unwrap();
    let udp6 = if ipv6_loopback() {
        format!(", \"udp6\": \"[::1]:{}\"", ports)
    } else {
        String::new()
    };
    write(
        "linux/linux.agent",
        format!(
            r#"{{
  "__comment__": ["v1 and v2c, engine ID as text"],
  "name": "linux", "engineID": "linux-engine", "active": "True",
  "listen": {{ "udp": "127.0.0.1:{ports}"{udp6} }},
  "snmpv1": {{ "users": [{{ "name": "public" }}], "mib": {{ "public": "linux.snmprec" }} }},
  "snmpv2c": {{ "users": [{{ "name": "public" }}, {{ "name": "ups" }}],
               "mib": {{ "public": "linux.snmprec", "ups": "../shared/ups.snmprec" }} }}
}}"#
        ),
    );
    std::fs::create_dir_all(root.join("racks/a")).unwrap();
    std::fs::copy(
        mib("cisco-c3750.snmprec"),
        root.join("racks/a/c3750.snmprec"),
    )
    .unwrap();
    write(
        "racks/a/switch.agent",
        format!(
            r#"{{
  "name": "switch", "engineID": "0x80001f8804737769746368",
  "listen": {{ "udp": ["127.0.0.1:{}"] }},
  "snmpv2c": {{ "users": [{{ "name": "private" }}], "mib": "c3750.snmprec" }},
  "snmpv3": {{ "users": [
      {{ "name": "ops", "authAlgo": "sha", "authPass": "auth-password", "privAlgo": "aes", "privPass": "priv-password" }},
      {{ "name": "mon", "authAlgo": "md5", "authPass": "auth-password", "privAlgo": "des", "privPass": "priv-password" }},
      {{ "name": "plain", "authAlgo": "none", "privAlgo": "none" }} ],
    "mib": {{ "": "c3750.snmprec", "ups": "../../shared/ups.snmprec" }} }}
}}"#,
            ports + 1
        ),
    );
    write(
        "racks/b/spare.agent",
        format!(
            r#"{{ "name": "spare", "active": "False", "listen": {{ "udp": "127.0.0.1:{}" }},
  "snmpv2c": {{ "users": ["public"], "mib": "../../shared/ups.snmprec" }} }}"#,
            ports + 2
        ),
    );
}

/// What the legacy tree answers: a few objects per agent, community,
/// context and user.
fn legacy_answers(ports: u16) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let objects = [
        "1.3.6.1.2.1.1.1.0",
        "1.3.6.1.2.1.1.2.0",
        "1.3.6.1.2.1.1.5.0",
    ];
    let v3 = |user: &str, a: &str, x: &str, ctx: &str| -> Vec<String> {
        let mut v = vec![
            "-v3".to_string(),
            "-u".into(),
            user.into(),
            "-n".into(),
            ctx.into(),
        ];
        if a.is_empty() {
            v.extend(["-l".into(), "noAuthNoPriv".into()]);
        } else {
            v.extend(
                [
                    "-l",
                    "authPriv",
                    "-a",
                    a,
                    "-A",
                    "auth-password",
                    "-x",
                    x,
                    "-X",
                    "priv-password",
                ]
                .map(String::from),
            );
        }
        v
    };
    let asks: Vec<(u16, Vec<String>)> = vec![
        (ports, vec!["-v1".into(), "-c".into(), "public".into()]),
        (ports, vec!["-v2c".into(), "-c".into(), "public".into()]),
        (ports, vec!["-v2c".into(), "-c".into(), "ups".into()]),
        (
            ports + 1,
            vec!["-v2c".into(), "-c".into(), "private".into()],
        ),
        (ports + 1, v3("ops", "SHA", "AES", "")),
        (ports + 1, v3("mon", "MD5", "DES", "ups")),
        (ports + 1, v3("plain", "", "", "")),
    ];
    for (port, auth) in asks {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        for oid in objects {
            out.push((format!("{port} {auth:?} {oid}"), bulk_get(&auth, port, oid)));
        }
    }
    if ipv6_loopback() {
        let target = format!("udp6:[::1]:{ports}");
        let out6 = snmp(
            "snmpget",
            &["-v2c", "-c", "public", "-On", &target, objects[0]],
        );
        assert!(out6.status.success(), "{}", text(&out6));
        out.push(("udp6".into(), Value::OctetString(out6.stdout)));
    }
    out
}

/// `import agentcluster ROOT` writes a fleet that checks to the same agents
/// as a fleet that `include`s the tree, and answers the same.
#[test]
fn import_agentcluster_tree_answers_as_its_include() {
    let ports = free_block(3);
    let work = tempdir();
    let root = work.path().join("legacy");
    legacy_tree(&root, ports);

    // The tree as it runs today: included.
    let including = Fleet::start(&format!(
        "include: [\"{0}/*/*.agent\", \"{0}/*/*/*.agent\"]\n",
        root.display()
    ));
    let included_agents = load_fleet_file(&including.config()).unwrap().fleet.agents;
    assert_eq!(included_agents.len(), 3);
    let status: Vec<(String, String)> = including
        .status()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().into(),
                a["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    let before = legacy_answers(ports);
    drop(including);

    // Imported into another directory: snapshot paths relative to it.
    let out_dir = work.path().join("converted");
    std::fs::create_dir_all(&out_dir).unwrap();
    let yaml = out_dir.join("fleet.yaml");
    let out = agentcluster(&[
        "import",
        "agentcluster",
        root.to_str().unwrap(),
        "-o",
        yaml.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&yaml).unwrap();
    assert!(
        written.contains("\"../legacy/shared/ups.snmprec\""),
        "{written}"
    );
    assert!(
        written.contains("engine_id: \"0x6c696e75782d656e67696e65\""),
        "{written}"
    );
    assert!(written.contains("password: \"priv-password\""), "{written}");
    let out = agentcluster(&["check", "-c", yaml.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok, 3 agents"), "{}", text(&out));
    // The same agents, field by field (paths resolve to the same files).
    let imported_agents = load_fleet_file(&yaml).unwrap().fleet.agents;
    assert_eq!(imported_agents, included_agents);

    let dir = tempdir();
    let control = dir.path().join("control.sock");
    std::fs::write(
        &yaml,
        format!(
            "{written}cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\n",
            dir.path().join("cache").display(),
            dir.path().join("state").display(),
            control.display()
        ),
    )
    .unwrap();
    let imported = Fleet::run(&yaml, control.to_str().unwrap());
    let status_after: Vec<(String, String)> = imported
        .status()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().into(),
                a["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(status_after, status);
    assert!(
        status.contains(&("spare".into(), "inactive".into())),
        "{status:?}"
    );
    assert_eq!(legacy_answers(ports), before);
}

/// A reload expands `data_dir` again: a file added since is served under
/// its name, a removed one no longer is, and the agent (whose communities
/// changed) restarts like any changed agent.
#[test]
fn reload_expands_data_dir_again() {
    let port = free_port();
    let files = tempdir();
    let data = files.path().join("data");
    std::fs::create_dir_all(data.join("rack")).unwrap();
    std::fs::copy(mib("linux-host.snmprec"), data.join("rack/host.snmprec")).unwrap();
    std::fs::copy(mib("apc-ups.snmprec"), data.join("ups.snmprec")).unwrap();
    let fleet = Fleet::start(&format!(
        "agents:\n  - {{ name: lab, listen: [\"127.0.0.1:{port}\"], data_dir: {} }}\n",
        data.display()
    ));
    let descr = |community: &str| {
        let out = snmp(
            "snmpget",
            &[
                "-v2c",
                "-c",
                community,
                "-On",
                &format!("127.0.0.1:{port}"),
                "1.3.6.1.2.1.1.2.0",
            ],
        );
        out.status.success().then(|| text(&out))
    };
    // An unknown community is dropped: one try is enough to see no answer.
    let unknown = |community: &str| {
        let target = format!("127.0.0.1:{port}");
        let args = [
            "-r",
            "0",
            "-t",
            "1",
            "-v2c",
            "-c",
            community,
            &target,
            "1.3.6.1.2.1.1.2.0",
        ];
        !snmp("snmpget", &args).status.success()
    };
    assert!(descr("rack/host").is_some());
    assert!(descr("ups").is_some());
    assert!(unknown("switch"));

    std::fs::copy(mib("cisco-c3750.snmprec"), data.join("switch.snmprec")).unwrap();
    std::fs::remove_file(data.join("ups.snmprec")).unwrap();
    let since = fleet.next_seq();
    let out = agentcluster(&["reload", "--control", &fleet.control()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 changed"), "{}", text(&out));
    fleet.wait_event(since, "lab ready again", |e| {
        crate::harness::is(e, "lab", "ready")
    });
    let switch = descr("switch").expect("the added file is served");
    assert!(
        switch.contains(".1.3.6.1.4.1.9."),
        "Cisco sysObjectID: {switch}"
    );
    assert!(descr("rack/host").is_some());
    assert!(
        descr("ups").is_none(),
        "the removed file is no longer served"
    );
}
