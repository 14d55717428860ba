//! Listen addresses the host does not have (`cluster.addresses`): the
//! supervisor runs in a network namespace of the test's own (`ip netns
//! add`, deleted when the test ends, pass or fail), adds the missing
//! addresses to an interface there, net-snmp answers from each of them in
//! that namespace, and the addresses it added (only those) are gone after
//! shutdown. Without the setting, a missing address is a startup error that
//! says what to do; an interface that cannot be created is one too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::harness::fleet::READY_WITHIN;
use crate::harness::{BIN, Fleet, Process, agentcluster, free_port, mib, output, tempdir, text};

/// How long a supervisor that cannot start may take to say so.
const FAIL_WITHIN: Duration = Duration::from_secs(60);

/// A network namespace of the test's own, deleted when dropped.
struct Netns(String);

impl Netns {
    /// A new namespace with its loopback up.
    fn new() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ac-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS…`, which must succeed; its stdout.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The addresses of interface `dev`, as `ADDRESS/PREFIX`.
    fn addresses(&self, dev: &str) -> Vec<String> {
        self.ip(&["-o", "addr", "show", "dev", dev])
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet" || *w == "inet6")?;
                words.next().map(str::to_string)
            })
            .collect()
    }

    /// `program` run inside the namespace (`ip netns exec` execs it: the
    /// process is the program's own).
    fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, program]);
        cmd
    }

    /// `agentcluster run` inside the namespace on a fleet in `dir` (see
    /// [`write_fleet`]), not waited for.
    fn run(&self, dir: &Path, yaml: &str) -> Process {
        let mut cmd = self.exec(BIN);
        cmd.arg("run").arg("-c").arg(write_fleet(dir, yaml));
        Process::spawn(cmd)
    }

    /// [`Netns::run`] in a directory of its own, waited for until ready.
    fn start(&self, yaml: &str) -> Fleet {
        let dir = tempdir();
        let mut cmd = self.exec(BIN);
        cmd.arg("run").arg("-c").arg(write_fleet(dir.path(), yaml));
        Fleet::spawn(cmd, dir)
    }

    /// sysName.0 from `endpoint` (community `public`), asked by net-snmp's
    /// snmpget inside the namespace.
    fn sys_name(&self, endpoint: &str) -> String {
        let mut cmd = self.exec("timeout");
        cmd.args([
            "60",
            "snmpget",
            "-m",
            "",
            "-M",
            "/dev/null",
            "-r",
            "2",
            "-t",
            "2",
        ])
        .args([
            "-v2c",
            "-c",
            "public",
            "-Oqv",
            endpoint,
            ".1.3.6.1.2.1.1.5.0",
        ])
        .env("MIBS", "")
        .env("SNMPCONFPATH", "/dev/null");
        let out = output(&mut cmd).expect("run snmpget");
        assert!(out.status.success(), "snmpget {endpoint}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = output(Command::new("ip").args(["netns", "del", &self.0]));
    }
}

/// `ip ARGS…`, which must succeed; its stdout.
fn ip(args: &[&str]) -> String {
    let out = output(Command::new("ip").args(args)).expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `dir/fleet.yaml`: the cluster lines of a fleet in `dir` (cache,
/// state, and the control socket [`Fleet`] expects there), then `yaml`
/// (which may go on with `  key: value` cluster lines).
fn write_fleet(dir: &Path, yaml: &str) -> PathBuf {
    let text = format!(
        "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\n{}",
        dir.join("cache").display(),
        dir.join("state").display(),
        dir.join("control.sock").display(),
        yaml
    );
    let path = dir.join("fleet.yaml");
    std::fs::write(&path, text).expect("write fleet");
    path
}

/// An `agents:` entry named `name` on `endpoint`, serving the linux-host
/// snapshot.
fn agent_yaml(name: &str, endpoint: &str) -> String {
    format!(
        "  - name: {name}\n    listen: [\"{endpoint}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        mib("linux-host.snmprec").display()
    )
}

/// The snapshot's sysName, which every agent of these tests answers, as
/// `snmpget -Oqv` prints it.
fn expected_sys_name() -> String {
    let snap = std::fs::read_to_string(mib("linux-host.snmprec")).unwrap();
    let value = snap
        .lines()
        .find_map(|l| l.strip_prefix("1.3.6.1.2.1.1.5.0|4|"))
        .expect("the snapshot has a sysName");
    format!("\"{value}\"")
}

/// The exit status and the whole stderr of a supervisor that stops on
/// its own (a failed start).
fn exit_of(run: &mut Process) -> (std::process::ExitStatus, String) {
    let status = run.wait_exit(FAIL_WITHIN).expect("run exits");
    // The pipe ends once every process that inherited it is gone.
    assert!(run.stderr.wait_end(FAIL_WITHIN), "stderr still open");
    (status, run.stderr.text())
}

fn has(addresses: &[String], a: &str) -> bool {
    addresses.iter().any(|x| x == a)
}

#[test]
fn missing_addresses_are_added_served_and_removed_at_shutdown_and_others_stay() {
    let ns = Netns::new();
    // There before the start: used as it is, never removed.
    ns.ip(&["addr", "add", "10.61.0.9/32", "dev", "lo"]);
    let yaml = format!(
        "  addresses: {{ interface: lo, create: true }}\nagents:\n  - name: \"d-{{i}}\"\n    count: 2\n    listen: [\"10.61.0.{{i+1}}:161\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n{}{}{}",
        mib("linux-host.snmprec").display(),
        agent_yaml("kept", "10.61.0.9:161"),
        agent_yaml("six", "[fd00::61:1]:161"),
        agent_yaml("local", "127.0.0.1:161"),
    );
    let fleet = ns.start(&yaml);
    let added = "10.61.0.1, 10.61.0.2, fd00::61:1";
    assert!(
        fleet.banner.iter().any(|l| *l
            == format!(
                "agentcluster: added 3 listen addresses to lo (removed at shutdown): {added}"
            )),
        "{:?}",
        fleet.banner
    );
    let lo = ns.addresses("lo");
    for a in [
        "10.61.0.1/32",
        "10.61.0.2/32",
        "10.61.0.9/32",
        "fd00::61:1/128",
    ] {
        assert!(has(&lo, a), "{a} not on lo: {lo:?}");
    }
    let started = fleet
        .events()
        .into_iter()
        .find(|e| e["event"] == "supervisor-started")
        .expect("supervisor-started");
    assert!(
        started["reason"]
            .as_str()
            .unwrap()
            .ends_with(&format!("; added 3 listen addresses to lo: {added}")),
        "{started}"
    );
    let name = expected_sys_name();
    for endpoint in [
        "10.61.0.1:161",
        "10.61.0.2:161",
        "10.61.0.9:161",
        "udp6:[fd00::61:1]:161",
        "127.0.0.1:161",
    ] {
        assert_eq!(ns.sys_name(endpoint), name, "{endpoint}");
    }

    let (status, stderr) = fleet.stop();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("removed 3 addresses added for agents: {added}")),
        "{stderr}"
    );
    let lo = ns.addresses("lo");
    for gone in ["10.61.0.1/32", "10.61.0.2/32", "fd00::61:1/128"] {
        assert!(!has(&lo, gone), "{gone} still on lo: {lo:?}");
    }
    for stays in ["10.61.0.9/32", "127.0.0.1/8", "::1/128"] {
        assert!(has(&lo, stays), "{stays} gone from lo: {lo:?}");
    }
}

#[test]
fn a_reload_adds_the_addresses_of_new_agents_and_removes_those_of_removed_ones() {
    let ns = Netns::new();
    let fleet = ns.start(&format!(
        "  addresses: {{ interface: lo }}\nagents:\n{}{}",
        agent_yaml("a", "10.62.0.1:161"),
        agent_yaml("b", "10.62.0.2:161")
    ));
    let lo = ns.addresses("lo");
    assert!(
        has(&lo, "10.62.0.1/32") && has(&lo, "10.62.0.2/32"),
        "{lo:?}"
    );
    // b goes, c comes, at an address of its own.
    let path = fleet.config();
    let before = std::fs::read_to_string(&path).unwrap();
    let after = before.replace(
        &agent_yaml("b", "10.62.0.2:161"),
        &agent_yaml("c", "[fd00::62:3]:161"),
    );
    assert_ne!(before, after);
    std::fs::write(&path, after).unwrap();
    let since = fleet.next_seq();
    let out = agentcluster(&["reload", "--control", &fleet.control()]);
    assert!(out.status.success(), "{}", text(&out));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("1 added, 1 removed"), "{msg}");
    assert!(
        msg.contains(
            "; 1 listen address added to lo: fd00::62:3; 1 listen address removed from lo: 10.62.0.2"
        ),
        "{msg}"
    );
    fleet.wait_event(since, "c ready", |e| {
        e["agent"] == "c" && e["event"] == "ready"
    });
    let lo = ns.addresses("lo");
    assert!(has(&lo, "fd00::62:3/128"), "{lo:?}");
    assert!(!has(&lo, "10.62.0.2/32"), "{lo:?}");
    assert_eq!(ns.sys_name("udp6:[fd00::62:3]:161"), expected_sys_name());
    assert_eq!(ns.sys_name("10.62.0.1:161"), expected_sys_name());

    let (status, stderr) = fleet.stop();
    assert!(status.success(), "{status:?}\n{stderr}");
    let lo = ns.addresses("lo");
    assert!(
        !lo.iter()
            .any(|x| x.starts_with("10.62.") || x.starts_with("fd00::62:")),
        "{lo:?}"
    );
}

#[test]
fn an_address_not_on_the_host_without_cluster_addresses_is_a_clear_error() {
    // 192.0.2.0/24 is for documentation: on no host.
    let dir = tempdir();
    let endpoint = format!("192.0.2.77:{}", free_port());
    let yaml = format!(
        "agents:\n{}{}",
        agent_yaml("here", &format!("127.0.0.1:{}", free_port())),
        agent_yaml("far", &endpoint)
    );
    let config = write_fleet(dir.path(), &yaml);

    // `check` warns, and passes.
    let out = agentcluster(&["check", "-c", config.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(
            "warning: 1 listen address not on this host: 192.0.2.77 (agent far): run would fail to bind it; add it to an interface, or set cluster.addresses to have it added"
        ),
        "{t}"
    );

    // `run` stops before any agent starts, naming the agent and the
    // address, and saying what to do.
    let mut run = Process::run(&config);
    let (status, stderr) = exit_of(&mut run);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "agent far: cannot listen on udp {endpoint}: 192.0.2.77 is not an address of this host"
        )) && stderr.contains("add it to an interface, or set cluster.addresses to have it added"),
        "{stderr}"
    );
}

#[test]
fn an_interface_that_is_absent_or_cannot_be_created_is_a_clear_error() {
    let ns = Netns::new();
    let agents = format!("agents:\n{}", agent_yaml("d", "10.63.0.1:161"));

    // Absent, and not to be created.
    let dir = tempdir();
    let mut run = ns.run(
        dir.path(),
        &format!("  addresses: {{ interface: acdummy0 }}\n{agents}"),
    );
    let (status, stderr) = exit_of(&mut run);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "cluster.addresses: interface `acdummy0` does not exist: create it (ip link add acdummy0 type dummy), name an existing interface such as lo, or set `create: true`"
        ),
        "{stderr}"
    );

    // To be created: a dummy interface, which needs the kernel's `dummy`
    // module. Where it is missing (as on the machines these tests were
    // written on) that is a clear error; where it is there, the interface
    // gets the address, and is deleted at shutdown.
    let dir = tempdir();
    let run = ns.run(
        dir.path(),
        &format!("  addresses: {{ interface: acdummy0, create: true }}\n{agents}"),
    );
    match run.wait_ready(READY_WITHIN) {
        Ok(_) => {
            let on = ns.addresses("acdummy0");
            assert!(has(&on, "10.63.0.1/32"), "{on:?}");
            assert_eq!(ns.sys_name("10.63.0.1:161"), expected_sys_name());
            let (status, stderr) = run.stop();
            assert!(status.success(), "{status:?}\n{stderr}");
            let links = ns.ip(&["-o", "link", "show"]);
            assert!(!links.contains("acdummy0"), "{links}");
        }
        Err(_) => {
            let (status, stderr) = run.finish();
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert!(
                stderr
                    .contains("cluster.addresses: cannot create the dummy interface `acdummy0`: ")
                    && stderr.contains(
                        ": create the interface yourself, or name an existing one such as lo"
                    ),
                "{stderr}"
            );
        }
    }
    let lo = ns.addresses("lo");
    assert!(!lo.iter().any(|a| a.starts_with("10.63.")), "{lo:?}");
}
