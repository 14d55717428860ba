//! Lifecycle events as SNMP, end to end with the real binary and net-snmp:
//! AGENTCLUSTER-MIB notifications received by real `snmptrapd`s (v2c trap,
//! v2c inform, v3 authPriv inform) for an agent killed with SIGKILL; an
//! inform target that is down, across a supervisor restart, that receives
//! every inform once it comes up; refused reloads (`reloadFailed`); and the
//! supervisor's own SNMP agent walked with `snmpwalk`.
//!
//! Waits are on snmptrapd's log lines, on the event stream, and on a
//! bounded poll of the supervisor's own agent (whose table follows the
//! status within about a second, and says nothing when it does), never on
//! sleeps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::imports::{DEFAULT_MIB_ROOT, Signal};
use crate::harness::trapd::Trapd;
use crate::harness::{
    EventStream, Fleet, agentcluster, alone, free_port, is, kill, mib, pid_in, pid_of, poll_until,
    snmp_ok, status, tempdir,
};

/// The default MIB root, dotted with a leading dot, as snmptrapd logs it.
fn root() -> String {
    let arcs: Vec<String> = DEFAULT_MIB_ROOT.iter().map(u32::to_string).collect();
    format!(".{}", arcs.join("."))
}

/// The needle of notification `n` in a logged line (the tab that follows
/// keeps .0.1 from matching .0.12).
fn trap(n: u32) -> String {
    format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: {}.0.{n}\t", root())
}

/// One agent with SNMPv2c on `port` that sends no coldStart of its own.
fn agent_yaml(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n",
        mib("linux-host.snmprec").display()
    )
}

/// The new pid of agent `name` once it is ready again, as the events
/// from `events`' start on tell.
fn ready_again(events: &mut EventStream, name: &str) -> u32 {
    pid_in(&events.wait(&format!("{name} ready again"), |e| {
        is(e, name, "ready") && e["restarts"] == 1
    }))
}

/// The died, restarting and started notifications of `victim` (pid `old`),
/// in that order, with the name and the signal in the varbinds.
fn assert_kill_cycle(trapd: &Trapd, what: &str, victim: &str, old: u32) {
    let r = root();
    let died = trapd.expect(&trap(3));
    for want in [
        format!("{r}.1.1.1.0 = STRING: \"{victim}\""),
        format!("{r}.1.1.2.0 = Gauge32: {old}"),
        format!("{r}.1.1.5.0 = INTEGER: -1"),
        format!("{r}.1.1.6.0 = STRING: \"SIGKILL\""),
    ] {
        assert!(died.contains(&want), "{what}: {want} in {died}");
    }
    let restarting = trapd.expect(&trap(5));
    assert!(
        restarting.contains(&format!("{r}.1.1.1.0 = STRING: \"{victim}\"")),
        "{what}: {restarting}"
    );
    let started = trapd.expect(&trap(1));
    assert!(
        started.contains(&format!("{r}.1.1.1.0 = STRING: \"{victim}\""))
            && started.contains(&format!("{r}.1.1.3.0 = INTEGER: 3")),
        "{what}: running after the restart: {started}"
    );
}

#[test]
fn a_killed_agent_is_died_restarting_started_for_traps_and_informs() {
    let v2c = Trapd::start("authCommunity log public\n");
    let inform = Trapd::start("authCommunity log public\n");
    let v3 = Trapd::start(
        "createUser opsuser SHA-256 ops-auth-pass AES ops-priv-pass\nauthUser log opsuser priv\n",
    );
    let yaml = format!(
        "events:
  notify:
    - {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: trap, events: [died, restarting, ready] }}
    - {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: inform, retries: 3, timeout: 1s }}
    - target: \"127.0.0.1:{}\"
      version: 3
      type: inform
      user: opsuser
      auth: {{ protocol: SHA256, password: ops-auth-pass }}
      priv: {{ protocol: AES128, password: ops-priv-pass }}
      events: [died, restarting, ready, supervisor-started]
agents:
{}",
        v2c.port,
        inform.port,
        v3.port,
        agent_yaml("victim", free_port())
    );
    let fleet = Fleet::start(&yaml);
    let control = fleet.control();
    // Everyone heard the first start before the kill.
    let line = v3.expect(&trap(8));
    assert!(line.contains("INFORM, SNMP v3, user opsuser"), "{line}");
    for (t, kind) in [
        (&v2c, "TRAP2, SNMP v2c, community public"),
        (&inform, "INFORM, SNMP v2c, community public"),
        (&v3, "INFORM, SNMP v3, user opsuser"),
    ] {
        let line = t.expect(&trap(1));
        assert!(line.contains(kind), "{kind}: {line}");
    }
    let old = pid_of(&status(&control), "victim");
    let mut events = fleet.follow(fleet.next_seq());
    kill(old, Signal::SIGKILL);
    assert_kill_cycle(&v2c, "v2c trap", "victim", old);
    assert_kill_cycle(&inform, "v2c inform", "victim", old);
    assert_kill_cycle(&v3, "v3 inform", "victim", old);
    ready_again(&mut events, "victim");
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{stderr}");
    assert!(!stderr.contains("ops-auth-pass") && !stderr.contains("ops-priv-pass"));
}

/// (notification number, acNotifySeq, sysUpTime) of a logged line.
fn identity(line: &str) -> (u32, String, String) {
    let r = root();
    let field = |prefix: &str| {
        line.split('\t')
            .find_map(|vb| vb.strip_prefix(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let number = field(&format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: {r}.0."))
        .parse()
        .unwrap_or(0);
    let uptime = line
        .split('|')
        .nth(5)
        .and_then(|vbs| vbs.split('\t').next())
        .unwrap_or_default()
        .to_string();
    (number, field(&format!("{r}.1.1.9.0 = Gauge32: ")), uptime)
}

fn pending_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("informs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn informs_to_a_target_that_is_down_all_arrive_even_across_a_restart() {
    let _alone = alone();
    let dir = tempdir();
    let state = dir.path().join("state");
    let control = dir.path().join("control.sock").display().to_string();
    let target_port = free_port();
    let config = dir.path().join("fleet.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster:
  cache_dir: {}
  state_dir: {}
  control_socket: {control}
events:
  notify:
    - target: \"127.0.0.1:{target_port}\"
      type: inform
      retries: 1
      timeout: 200ms
      events: [supervisor-started, ready, died, restarting, supervisor-stopping]
agents:
{}",
            dir.path().join("cache").display(),
            state.display(),
            agent_yaml("victim", free_port())
        ),
    )
    .expect("write the fleet");

    // First run: the target is down the whole time.
    let fleet = Fleet::run(&config, &control);
    let old = pid_of(&fleet.status(), "victim");
    let mut events = fleet.follow(fleet.next_seq());
    kill(old, Signal::SIGKILL);
    ready_again(&mut events, "victim");
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{stderr}");
    let files = pending_files(&state);
    assert_eq!(files.len(), 1, "one file of pending informs: {files:?}");
    let kept = std::fs::read_to_string(&files[0]).expect("read pending informs");
    for kind in ["\"died\"", "\"restarting\"", "\"supervisor-stopping\""] {
        assert!(kept.contains(kind), "{kind} kept: {kept}");
    }

    // Second run, still down for a while; then the target comes up.
    let fleet = Fleet::run(&config, &control);
    let trapd = Trapd::start_on("authCommunity log public\n", target_port);
    // First run: started, ready, died, restarting, ready, stopping;
    // second run: started, ready. In order, each once (a resend whose
    // acknowledgement was lost would repeat a line: those are folded).
    let want = [8, 1, 3, 5, 1, 9, 8, 1];
    let mut got: Vec<(u32, String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while got.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = trapd.next(left) else {
            panic!("informs missing: got {got:?}, want {want:?}");
        };
        if !line.contains("INFORM, SNMP v2c") {
            continue;
        }
        let id = identity(&line);
        if got.last() != Some(&id) {
            got.push(id);
        }
    }
    let numbers: Vec<u32> = got.iter().map(|g| g.0).collect();
    assert_eq!(numbers, want, "{got:?}");
    let seqs: Vec<u64> = got.iter().map(|g| g.1.parse().unwrap_or(0)).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "the second run numbers on from the first: {got:?}"
    );

    // Stopped with the target up: its last inform goes out, nothing is left.
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{stderr}");
    trapd.expect(&trap(9));
    assert_eq!(pending_files(&state), Vec::<PathBuf>::new());
}

/// A refused snapshot reload is a `reloadFailed` (ROOT.0.14) per agent
/// serving the file, a refused configuration reload one about the
/// supervisor; a target that asks for `reload-failed` only gets these.
#[test]
fn refused_reloads_are_reload_failed_notifications() {
    let trapd = Trapd::start("authCommunity log public\n");
    let dir = tempdir();
    let snap = dir.path().join("dev.snmprec");
    std::fs::write(&snap, "1.3.6.1.2.1.1.5.0|4|dev\n").unwrap();
    let yaml = format!(
        "events:
  notify:
    - {{ target: \"127.0.0.1:{}\", version: 2c, community: public, type: trap, events: [reload-failed] }}
agents:
  - name: hot
    listen: [\"127.0.0.1:{}\"]
    data: {}
    snmpv2c: {{ communities: [public] }}
    notify: none
",
        trapd.port,
        free_port(),
        snap.display()
    );
    let fleet = Fleet::start(&yaml);
    let pid = pid_of(&fleet.status(), "hot");
    let r = root();

    std::fs::File::create(&snap).unwrap();
    let line = trapd.expect(&trap(14));
    for want in [
        format!("{r}.1.1.1.0 = STRING: \"hot\""),
        format!("{r}.1.1.2.0 = Gauge32: {pid}"),
        format!("{r}.1.1.3.0 = INTEGER: 3"),
        format!(
            "{r}.1.1.7.0 = STRING: \"snapshot {} not reloaded: {}: no records: the file is empty or holds only blank lines and comments; the old data stays served\"",
            snap.display(),
            snap.display()
        ),
    ] {
        assert!(line.contains(&want), "{want} in {line}");
    }

    let config = fleet.config();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("  - name: hot", "  - nme: hot")).unwrap();
    let out = agentcluster(&["reload", "--control", &fleet.control()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = trapd.expect(&trap(14));
    for want in [
        // (snmptrapd shows an empty string without its type)
        format!("{r}.1.1.1.0 = \"\"\t"),
        format!("{r}.1.1.2.0 = Gauge32: {}", fleet.pid()),
        format!(
            "{r}.1.1.7.0 = STRING: \"configuration {} not reloaded: ",
            config.display()
        ),
    ] {
        assert!(line.contains(&want), "{want} in {line}");
    }
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{stderr}");
    // Nothing but the two refusals went to this target.
    assert!(trapd.next(Duration::ZERO).is_none());
}

#[test]
fn snmpwalk_of_the_supervisor_shows_the_agent_table() {
    let port = free_port();
    let site_root = ".1.3.6.1.4.1.99999.42";
    let yaml = format!(
        "  node: walk-node
  snmp:
    listen: [\"127.0.0.1:{port}\"]
    community: fleetview
events:
  mib_root: \"{site_root}\"
agents:
{}{}  - name: zeta
    active: false
    listen: [\"127.0.0.1:{}\"]
    data: {}
    snmpv2c: {{ communities: [public] }}
    notify: none
",
        agent_yaml("alpha", free_port()),
        agent_yaml("beta", free_port()),
        free_port(),
        mib("linux-host.snmprec").display()
    );
    let fleet = Fleet::start(&yaml);
    let control = fleet.control();
    let endpoint = format!("127.0.0.1:{port}");
    let walk = || {
        snmp_ok(
            "snmpwalk",
            &["-v2c", "-c", "fleetview", "-On", &endpoint, site_root],
        )
    };
    // The table follows the supervisor's status within about a second;
    // only a walk shows when it has.
    let until = |what: &str, pred: &dyn Fn(&str) -> bool| -> String {
        poll_until(
            &format!("the agent table to show {what}"),
            Duration::from_secs(15),
            Duration::from_millis(100),
            || {
                let out = walk();
                if pred(&out) { Ok(out) } else { Err(out) }
            },
        )
    };
    let s = status(&control);
    let alpha = pid_of(&s, "alpha");
    let beta = pid_of(&s, "beta");
    let t = format!("{site_root}.1.2.1");
    let out = until("all running", &|out| {
        out.contains(&format!("{t}.4.1 = Gauge32: {alpha}\n"))
            && out.contains(&format!("{t}.4.2 = Gauge32: {beta}\n"))
    });
    for want in [
        format!("{t}.2.1 = STRING: \"alpha\""),
        format!("{t}.2.2 = STRING: \"beta\""),
        format!("{t}.2.3 = STRING: \"zeta\""),
        format!("{t}.3.1 = INTEGER: 3"),
        format!("{t}.3.2 = INTEGER: 3"),
        format!("{t}.3.3 = INTEGER: 1"),
        format!("{t}.4.3 = Gauge32: 0"),
        format!("{t}.5.1 = Counter32: 0"),
        format!("{site_root}.1.3.0 = Gauge32: 3"),
        format!("{site_root}.1.4.0 = STRING: \"walk-node\""),
    ] {
        assert!(out.contains(&want), "{want} in:\n{out}");
    }
    let sys = snmp_ok(
        "snmpget",
        &[
            "-v1",
            "-c",
            "fleetview",
            "-On",
            &endpoint,
            ".1.3.6.1.2.1.1.2.0",
            ".1.3.6.1.2.1.1.5.0",
            ".1.3.6.1.2.1.1.3.0",
        ],
    );
    assert!(
        sys.contains(&format!(".1.3.6.1.2.1.1.2.0 = OID: {site_root}\n"))
            && sys.contains(".1.3.6.1.2.1.1.5.0 = STRING: \"walk-node\"")
            && sys.contains(".1.3.6.1.2.1.1.3.0 = Timeticks: "),
        "{sys}"
    );

    // alpha is killed: its row shows the new process and one restart.
    let mut events = fleet.follow(fleet.next_seq());
    kill(alpha, Signal::SIGKILL);
    let new = ready_again(&mut events, "alpha");
    // The table is rebuilt from status once a second: wait for the row
    // that shows the new process running.
    let out = until("alpha restarted", &|out| {
        out.contains(&format!("{t}.4.1 = Gauge32: {new}\n"))
            && out.contains(&format!("{t}.3.1 = INTEGER: 3\n"))
    });
    assert!(out.contains(&format!("{t}.3.1 = INTEGER: 3")), "{out}");
    assert!(out.contains(&format!("{t}.5.1 = Counter32: 1")), "{out}");
    assert!(
        !out.contains(&format!("{t}.6.1 = Timeticks: (0)")),
        "alpha's last change is stamped: {out}"
    );
    let (code, stderr) = fleet.stop();
    assert!(code.success(), "{stderr}");
    assert!(
        !stderr.contains("fleetview"),
        "the community is never logged"
    );
}
