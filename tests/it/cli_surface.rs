//! The command line's surface: `-c` before the command, options only where
//! they apply, `--version`, the hidden `agent`, what `start` reports,
//! globs in `events --filter`, `events --json` as the supervisor sends it,
//! a closed stdout, colour only on a terminal, completions and the manual
//! page. Each test runs the real binary.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};

use serde_json::Value as Json;

use crate::harness::{
    BIN, Fleet, agentcluster, free_port, is, mib, output, repo_file, tempdir, text,
};

fn agents(names: &[&str]) -> String {
    let mut y = String::from("agents:\n");
    for name in names {
        y += &format!(
            "  - name: {name}\n    listen: [\"127.0.0.1:{}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            free_port(),
            mib("linux-host.snmprec").display()
        );
    }
    y
}

/// `agentcluster ARGS` with its stdout a pipe whose reader is already
/// gone, as in `… | head -1` once head has its line.
fn closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    output(Command::new(BIN).args(args).stdout(writer)).unwrap()
}

/// Exit 0, or killed by SIGPIPE: the quiet ends of a closed pipe.
fn quiet_end(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.code() == Some(0) || status.signal() == Some(libc_sigpipe())
}

fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempdir();
    let pool = dir.path().join("kvp_pool_1");
    let fleet = Fleet::start(&format!(
        "events:\n  kvp:\n    path: {}\n{}",
        pool.display(),
        agents(&["pipe-a", "pipe-b"])
    ));
    let sock = fleet.control();
    let snap = mib("cisco-c3750.snmprec");
    let snap = snap.to_str().unwrap();
    let pool = pool.to_str().unwrap();
    for args in [
        &["status", "--control", &sock][..],
        &["status", "--json", "--control", &sock],
        &["events", "--control", &sock],
        &["events", "--json", "--control", &sock],
        &["kvp", "dump", pool],
        &["kvp", "dump", "--json", pool],
        &["snapshot", "convert", snap, "--to", "snmpwalk"],
        &["snapshot", "check", snap],
    ] {
        let out = closed_stdout(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            quiet_end(out.status),
            "{args:?}: {:?}: {stderr}",
            out.status
        );
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `-c FILE` before the command is `-c FILE` after it, for every command
/// that reads a configuration; a command that reads none refuses it.
#[test]
fn config_before_the_command_works_for_every_command_that_reads_one() {
    let dir = tempdir();
    let config = dir.path().join("fleet.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\n{}",
            dir.path().join("cache").display(),
            dir.path().join("state").display(),
            dir.path().join("control.sock").display(),
            agents(&["early"])
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["-c", c, "run"]);
    let fleet = Fleet::spawn(cmd, dir);

    let out = agentcluster(&["-c", c, "check"]);
    assert!(out.status.success(), "check: {}", text(&out));
    let out = agentcluster(&["-c", c, "status", "--json"]);
    assert!(out.status.success(), "status: {}", text(&out));
    let status: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["name"], "early", "{status}");
    let out = agentcluster(&["-c", c, "events", "--json"]);
    assert!(out.status.success(), "events: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("supervisor-started"));

    let mut events = fleet.follow(fleet.next_seq());
    let out = agentcluster(&["-c", c, "stop", "early"]);
    assert!(out.status.success(), "stop: {}", text(&out));
    events.wait("early stopped", |e| is(e, "early", "stopped"));
    let out = agentcluster(&["-c", c, "start", "early"]);
    assert!(out.status.success(), "start: {}", text(&out));
    events.wait("early ready", |e| is(e, "early", "ready"));
    let out = agentcluster(&["-c", c, "restart", "early"]);
    assert!(out.status.success(), "restart: {}", text(&out));
    events.wait("early restarted", |e| is(e, "early", "restarting"));
    let out = agentcluster(&["-c", c, "reload"]);
    assert!(out.status.success(), "reload: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("reloaded"));

    // The old spelling: --control before the command.
    let sock = fleet.control();
    let out = agentcluster(&["--control", &sock, "status"]);
    assert!(out.status.success(), "{}", text(&out));

    for args in [
        &["-c", c, "snapshot", "check", "x.snmprec"][..],
        &["--control", &sock, "kvp", "dump", "x"],
    ] {
        let out = agentcluster(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("does not apply"), "{}", text(&out));
    }
}

/// `--control` (and `-c`) are shown, and accepted, only where they apply.
#[test]
fn options_are_shown_only_where_they_apply() {
    for args in [
        &["snapshot", "--help"][..],
        &["snapshot", "check", "--help"],
        &["snapshot", "convert", "--help"],
        &["kvp", "dump", "--help"],
        &["completions", "--help"],
        &["man", "--help"],
    ] {
        let out = agentcluster(args);
        let t = text(&out);
        assert!(out.status.success(), "{args:?}: {t}");
        assert!(!t.contains("--control"), "{args:?}: {t}");
        assert!(!t.contains("--config"), "{args:?}: {t}");
    }
    for cmd in [
        "run", "check", "status", "start", "stop", "restart", "reload", "events",
    ] {
        let out = agentcluster(&[cmd, "--help"]);
        let t = text(&out);
        assert!(
            t.contains("--control") && t.contains("--config"),
            "{cmd}: {t}"
        );
    }
    let out = agentcluster(&["snapshot", "check", "--control", "/x", "f.snmprec"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn version_names_the_git_commit() {
    let out = agentcluster(&["--version"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.starts_with(&format!("agentcluster {}", env!("CARGO_PKG_VERSION"))),
        "{shown}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_file("."))
        .output();
    match head {
        Ok(h) if h.status.success() => {
            let commit = String::from_utf8_lossy(&h.stdout).trim().to_string();
            assert!(
                shown.contains(&format!("(git {commit})")),
                "{shown} vs {commit}"
            );
        }
        // Built outside git: the version alone.
        _ => assert_eq!(
            shown.trim(),
            format!("agentcluster {}", env!("CARGO_PKG_VERSION"))
        ),
    }
}

/// Typed by hand, `agentcluster agent` says it is internal and exits 1 at
/// once, whether fd 3 is closed or something else than its channel.
#[test]
fn the_agent_command_run_by_hand_says_it_is_internal() {
    for script in [r#"exec "$0" agent"#, r#"exec "$0" agent 3</dev/null"#] {
        let out = output(
            Command::new("timeout")
                .args(["60", "sh", "-c", script, BIN])
                .stdout(Stdio::piped()),
        )
        .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{script}: {t}");
        assert!(
            t.contains("is internal") && t.contains("agentcluster run"),
            "{t}"
        );
    }
}

/// `start` of a running agent does not report it as started; `start` of a
/// stopped one among running ones reports only that one.
#[test]
fn start_reports_only_what_it_started() {
    let fleet = Fleet::start(&agents(&["up-1", "up-2"]));
    let sock = fleet.control();
    let out = agentcluster(&["start", "--control", &sock, "up-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nothing to start; left alone: up-1 (running)\n"
    );
    let mut events = fleet.follow(fleet.next_seq());
    let out = agentcluster(&["stop", "--control", &sock, "up-2"]);
    assert!(out.status.success(), "{}", text(&out));
    events.wait("up-2 stopped", |e| is(e, "up-2", "stopped"));
    let out = agentcluster(&["start", "--control", &sock, "up-*"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "start requested for 1 agent; left alone: up-1 (running)\n  up-2\n"
    );
    events.wait("up-2 back", |e| is(e, "up-2", "ready"));
}

/// `[...]` in `events --filter` is the `[...]` of `stop`.
#[test]
fn event_filters_glob_like_stop() {
    let fleet = Fleet::start(&agents(&["dev-a", "rtr-b", "sw-c"]));
    let sock = fleet.control();
    let mut events = fleet.follow(fleet.next_seq());
    let out = agentcluster(&["stop", "--control", &sock, "[dr]*"]);
    assert!(out.status.success(), "{}", text(&out));
    let stopped: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(stopped, ["dev-a", "rtr-b"]);
    events.wait_all("dev-a and rtr-b stopped", |e| {
        ["dev-a", "rtr-b"]
            .iter()
            .all(|n| e.iter().any(|x| is(x, n, "stopped")))
    });
    let json = |filter: &str| -> Vec<Json> {
        let out = agentcluster(&["events", "--json", "--control", &sock, "--filter", filter]);
        assert!(out.status.success(), "{filter}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut of: Vec<String> = json("*|agent|*|[dr]*")
        .iter()
        .map(|e| e["agent"].as_str().unwrap().to_string())
        .collect();
    of.sort();
    of.dedup();
    assert_eq!(of, ["dev-a", "rtr-b"]);
    let kinds = json("*|agent|[!s]*|*");
    assert!(!kinds.is_empty());
    assert!(
        kinds
            .iter()
            .all(|e| !e["event"].as_str().unwrap().starts_with('s')),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|e| e["event"] == "ready"), "{kinds:?}");
}

/// A stand-in supervisor on `sock` that answers one request (read, then
/// ignored) with `lines` and closes.
fn fake_supervisor(sock: &Path, lines: Vec<String>) -> std::thread::JoinHandle<String> {
    let listener = UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        let mut w = &stream;
        for l in lines {
            w.write_all(l.as_bytes()).unwrap();
            w.write_all(b"\n").unwrap();
        }
        request
    })
}

/// `events --json` prints the records as the supervisor sent them: the gap
/// record with its `oldest`, events byte for byte (fields in the server's
/// order, and ones this client does not know), pings when asked, and the
/// final overflow record.
#[test]
fn events_json_prints_records_as_the_supervisor_sends_them() {
    let dir = tempdir();
    let sock = dir.path().join("fake.sock");
    let s = sock.to_str().unwrap();
    let event = r#"{"seq":7,"ts":"2026-12-05T05:26:37.543Z","node":"lab-a","agent":"a","event":"ready","pid":12,"exit_code":null,"signal":null,"restarts":0,"state":"running","reason":"handshake complete","later":{"z":1,"a":2}}"#;

    let server = fake_supervisor(
        &sock,
        vec![format!(
            r#"{{"result":"events","events":[{event}],"gap":true,"oldest":7}}"#
        )],
    );
    let out = agentcluster(&["events", "--json", "--since", "1", "--control", s]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(server.join().unwrap().contains(r#""since":1"#));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [r#"{"gap":true,"oldest":7}"#, event]
    );

    let stream = vec![
        r#"{"gap":true,"oldest":7}"#.to_string(),
        event.to_string(),
        r#"{"last_seq":7,"ping":"2026-12-05T05:26:52.543Z"}"#.to_string(),
        r#"{"last_seq":7,"overflow":true,"reason":"too slow"}"#.to_string(),
    ];
    for pings in [false, true] {
        std::fs::remove_file(&sock).ok();
        let server = fake_supervisor(&sock, stream.clone());
        let mut args = vec!["events", "-f", "--json", "--since", "1", "--control", s];
        if pings {
            args.push("--pings");
        }
        let out = agentcluster(&args);
        server.join().unwrap();
        // The overflow ends the command with exit 2, after its record.
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let want: Vec<&str> = stream
            .iter()
            .map(String::as_str)
            .filter(|l| pings || !l.contains("\"ping\""))
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            want
        );
    }
    // --pings only means something with --follow --json.
    let out = agentcluster(&["events", "--pings", "--control", s]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// Logs carry colour only on a terminal, and not with NO_COLOR. A run that
/// fails at once (its port is taken) logs at debug level first; `script`
/// gives it a terminal.
#[test]
fn logs_are_coloured_only_on_a_terminal_without_no_color() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempdir();
    let config = dir.path().join("fleet.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {}\nagents:\n  - name: taken\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
            dir.path().join("cache").display(),
            dir.path().join("state").display(),
            dir.path().join("control.sock").display(),
            mib("linux-host.snmprec").display()
        ),
    )
    .unwrap();
    let line = format!("{BIN} -v run -c {}", config.display());

    // A pipe: no escape codes.
    let out = output(Command::new(BIN).args(["-v", "run", "-c"]).arg(&config)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEBUG"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");

    // A terminal: colour, unless NO_COLOR says no.
    let on_tty = |no_color: Option<&str>| {
        let mut cmd = Command::new("timeout");
        cmd.args(["120", "script", "-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = output(&mut cmd).unwrap();
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(t.contains("DEBUG"), "{t}");
        t
    };
    assert!(on_tty(None).contains("\x1b["), "a terminal gets colour");
    assert!(!on_tty(Some("1")).contains('\x1b'), "NO_COLOR=1");
    drop(held);
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _agentcluster"),
        ("zsh", "#compdef agentcluster"),
        ("fish", "complete -c agentcluster"),
    ] {
        let out = agentcluster(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        assert!(script.contains(marker), "{shell}: {script}");
        for cmd in ["status", "events", "snapshot", "completions", "man"] {
            assert!(script.contains(cmd), "{shell} lacks {cmd}");
        }
        // `record` parses its own options; they complete all the same.
        for opt in ["subtree", "max-repetitions", "resume", "rates"] {
            assert!(script.contains(opt), "{shell} lacks record's --{opt}");
        }
    }
    let dir = tempdir();
    let script = dir.path().join("agentcluster.bash");
    std::fs::write(&script, agentcluster(&["completions", "bash"]).stdout).unwrap();
    let out = output(Command::new("bash").arg("-n").arg(&script)).unwrap();
    assert!(out.status.success(), "bash -n: {}", text(&out));
    // Completing `agentcluster sta` offers `start` and `status`.
    let complete = format!(
        r#"source {}; complete -p agentcluster >/dev/null || exit 9
COMP_WORDS=(agentcluster sta); COMP_CWORD=1; COMP_LINE="agentcluster sta"; COMP_POINT=${{#COMP_LINE}}
_agentcluster agentcluster sta agentcluster; printf '%s\n' "${{COMPREPLY[@]}}""#,
        script.display()
    );
    let out = output(Command::new("bash").args(["-c", &complete])).unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let mut offered: Vec<&str> = t.lines().map(str::trim).collect();
    offered.sort();
    assert_eq!(offered, ["start", "status"], "{t}");
    // Completing `agentcluster record --s` offers `--subtree`.
    let complete = format!(
        r#"source {}; COMP_WORDS=(agentcluster record --s); COMP_CWORD=2; COMP_LINE="agentcluster record --s"; COMP_POINT=${{#COMP_LINE}}
_agentcluster agentcluster --s record; printf '%s\n' "${{COMPREPLY[@]}}""#,
        script.display()
    );
    let out = output(Command::new("bash").args(["-c", &complete])).unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(t.trim(), "--subtree", "{t}");
}

const COMMANDS: [&str; 12] = [
    "run",
    "check",
    "snapshot",
    "kvp",
    "status",
    "restart",
    "stop",
    "start",
    "reload",
    "events",
    "completions",
    "man",
];

#[test]
fn man_is_valid_roff_naming_every_command() {
    let out = agentcluster(&["man"]);
    assert!(out.status.success(), "{}", text(&out));
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(page.contains(".TH agentcluster 1"), "{page}");
    for cmd in COMMANDS {
        assert!(
            page.contains(&format!("agentcluster\\-{cmd}(1)")),
            "{cmd}: {page}"
        );
    }
    assert!(!page.contains("agentcluster\\-agent") && !page.contains("spawner"));
    // groff renders it without a warning (all of them on).
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff installed");
    groff
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let rendered = groff.wait_with_output().unwrap();
    assert!(rendered.status.success(), "{}", text(&rendered));
    assert!(rendered.stderr.is_empty(), "{}", text(&rendered));

    // One page per command with --dir.
    let dir = tempdir();
    let pages = dir.path().join("man1");
    let out = agentcluster(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for cmd in COMMANDS {
        assert!(
            pages.join(format!("agentcluster-{cmd}.1")).is_file(),
            "{cmd}"
        );
    }
    for page in [
        "agentcluster.1",
        "agentcluster-snapshot-check.1",
        "agentcluster-kvp-dump.1",
    ] {
        assert!(pages.join(page).is_file(), "{page}");
    }
    assert!(!pages.join("agentcluster-agent.1").exists());
}
