//! The supervisor's loop never blocks: while a snapshot of 3 million
//! records recompiles (seconds of CPU), systemd's watchdog keeps being fed,
//! control requests keep being answered and agents keep their heartbeats.

use std::io::{BufWriter, Write as _};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::process::Command;

use crate::harness::{BIN, Fleet, free_port, kinds_for, mib, slot, snmp_ok, tempdir};

/// Records in the big snapshot.
const RECORDS: u32 = 3_000_000;

/// Writes a snapshot of `RECORDS` records (and the system group) to `path`.
fn big_snapshot(path: &std::path::Path) {
    let mut f = BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(
        b"1.3.6.1.2.1.1.1.0|4|big device\n1.3.6.1.2.1.1.3.0|67|100\n1.3.6.1.2.1.1.5.0|4|big\n",
    )
    .unwrap();
    for i in 0..RECORDS {
        writeln!(
            f,
            "1.3.6.1.4.1.99999.1.{}.{}|4|value-{i}",
            i / 1000,
            i % 1000
        )
        .unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn heartbeats_requests_and_the_watchdog_go_on_while_a_huge_snapshot_recompiles() {
    let _machine = slot::alone();
    let dir = tempdir();
    // systemd's side: a notify socket, and a watchdog of 400 ms, so the
    // supervisor pings every 200 ms from its loop.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let pings: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (pings, done) = (pings.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = notify.recv(&mut buf)
                    && String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1")
                {
                    pings.lock().unwrap().push(Instant::now());
                }
            }
        })
    };

    let port = free_port();
    let snap = dir.path().join("dev.snmprec");
    std::fs::copy(mib("linux-host.snmprec"), &snap).unwrap();
    let yaml = format!(
        "  heartbeat: 200ms\n  inactive_after: 1s\nagents:\n  - name: dev\n    listen: [\"127.0.0.1:{port}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        snap.display()
    );
    // systemd names the process the watchdog is for: the shell execs
    // into the supervisor, so its pid is the supervisor's.
    std::fs::write(
        dir.path().join("fleet.yaml"),
        format!(
            "cluster:\n  cache_dir: {d}/cache\n  state_dir: {d}/state\n  control_socket: {d}/control.sock\n{yaml}",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" run -c "$1""#)
        .arg(BIN)
        .arg(dir.path().join("fleet.yaml"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000");
    let fleet = Fleet::spawn(cmd, dir);
    let dir = &fleet.dir;
    let since = fleet.next_seq();

    // As an editor does: write the new file beside, rename it over.
    let tmp = dir.path().join(".dev.snmprec.new");
    big_snapshot(&tmp);
    std::fs::rename(&tmp, &snap).unwrap();
    let renamed = Instant::now();

    // Ask for the status again and again until the new data is in: how
    // these are answered is what the test is about.
    let mut answers = Vec::new();
    let reloaded = loop {
        let asked = Instant::now();
        let status = fleet.status();
        answers.push(asked.elapsed());
        assert_eq!(status.len(), 1);
        let events = fleet.events();
        if kinds_for(&events, "dev").contains(&"data-reloaded") {
            break Instant::now();
        }
        assert!(
            renamed.elapsed() < Duration::from_secs(300),
            "no data-reloaded within 300 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    let window = reloaded - renamed;

    // The compile took long enough for a blocked loop to show.
    assert!(
        window > Duration::from_secs(2),
        "the recompile took only {window:?}: too short to tell"
    );
    // Control requests were answered throughout.
    let slowest = answers.iter().max().copied().unwrap_or_default();
    assert!(
        answers.len() >= 10 && slowest < Duration::from_secs(2),
        "{} status answers in {window:?}, the slowest in {slowest:?}",
        answers.len()
    );
    // The watchdog was fed from the loop throughout.
    let pings = pings.lock().unwrap();
    let during: Vec<Instant> = pings
        .iter()
        .copied()
        .filter(|t| *t >= renamed && *t <= reloaded)
        .collect();
    let mut gaps: Vec<Duration> = during.windows(2).map(|w| w[1] - w[0]).collect();
    if let (Some(first), Some(last)) = (during.first(), during.last()) {
        gaps.push(*first - renamed);
        gaps.push(reloaded - *last);
    }
    let widest = gaps.iter().max().copied().unwrap_or(window);
    assert!(
        widest < Duration::from_secs(2),
        "{} watchdog pings in {window:?}, the widest gap {widest:?}",
        during.len()
    );
    // The agent kept its heartbeats: no fault, no restart.
    let events = fleet.wait_event(since, "data-reloaded", |e| e["event"] == "data-reloaded");
    let after: Vec<String> = fleet
        .events()
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap_or(0) >= since)
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(after, ["data-reloaded"], "{events}");
    // And the new data is served.
    let out = snmp_ok(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            &format!("127.0.0.1:{port}"),
            ".1.3.6.1.4.1.99999.1.2999.999",
        ],
    );
    assert!(out.contains("value-2999999"), "{out}");
}
