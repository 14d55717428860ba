//! What a clean stop delivers: after SIGTERM every sink gets every event,
//! `supervisor-stopping` and each agent's `stopped` included — the KVP
//! pool (read back with `agentcluster kvp dump`) and an `events --follow`
//! subscriber, whose stream then ends cleanly; and the next run on the same
//! state numbers its events on from there, alike in every sink.

use std::fs::File;
use std::process::Command;

use rustix::process::Signal;

use serde_json::Value as Json;

use crate::harness::{BIN, Fleet, Process, WAIT, agentcluster, free_block, mib, tempdir};

/// The events a follower printed (as JSON lines).
fn printed(follower: &Process) -> Vec<Json> {
    follower
        .stdout
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `n` agents `dev-0`… on a block of free ports, after `events:` lines.
fn fleet_yaml(events: &str, n: u16) -> String {
    let base = free_block(n);
    format!(
        "{events}agents:\n  - name: \"dev-{{i}}\"\n    count: {n}\n    listen: [\"127.0.0.1:{{i+{base}}}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n    notify: none\n",
        mib("linux-host.snmprec").display()
    )
}

/// Our events in the pool at `pool`, as `kvp dump --reassemble --json`
/// shows them: (key, event).
pub fn pool_events(pool: &std::path::Path) -> Vec<(String, Json)> {
    let path = pool.display().to_string();
    let out = agentcluster(&["kvp", "dump", "--reassemble", "--json", &path]);
    assert!(out.status.success(), "kvp dump: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|r| {
            r["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("AGENTCLUSTER|"))
        })
        .map(|r| {
            let value = r["value"].as_str().unwrap_or_default();
            let event = serde_json::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            (r["key"].as_str().unwrap_or_default().to_string(), event)
        })
        .collect()
}

/// `events --follow --json --since 1` on `fleet`, once it has printed the
/// last event the supervisor had published: it is connected and streaming.
fn follower(fleet: &Fleet) -> Process {
    let last = fleet.next_seq() - 1;
    let mut cmd = Command::new(BIN);
    cmd.args(["events", "--follow", "--json", "--since", "1", "--control"])
        .arg(fleet.control());
    let follower = Process::spawn(cmd);
    let caught_up = follower.stdout.wait_for(0, WAIT, |l| {
        serde_json::from_str::<Json>(l).is_ok_and(|e| e["seq"].as_u64() >= Some(last))
    });
    assert!(
        caught_up.is_some(),
        "the follower did not replay up to seq {last}: {}; {}",
        follower.stdout.text(),
        follower.stderr.text()
    );
    follower
}

/// SIGTERM to a fleet of twenty agents with a KVP pool and a follower: the
/// pool holds `supervisor-stopping` and one `stopped` per agent, the
/// follower prints the same events and then ends (exit 0), and neither
/// misses an event: their seqs run without a hole. Another writer holds
/// the pool's lock while the agents stop (as `hv_kvp_daemon` or
/// cloud-init may), so the `stopped` events come while the sink still
/// waits to write `supervisor-stopping`.
#[test]
fn a_clean_stop_delivers_every_event_to_the_pool_and_to_followers() {
    let pool_dir = tempdir();
    let pool = pool_dir.path().join("kvp_pool_1");
    let n = 20;
    let fleet = Fleet::start(&fleet_yaml(
        &format!("events:\n  kvp:\n    path: {}\n", pool.display()),
        n,
    ));
    let mut follower = follower(&fleet);

    let busy = File::open(&pool).expect("the pool exists");
    busy.lock().expect("flock the pool");
    assert!(fleet.signal(Signal::TERM));
    // The stream ends once the bus is closed, after the last event: only
    // then does the other writer let go of the pool.
    let exit = follower.wait_exit(WAIT);
    assert!(
        exit.is_some_and(|s| s.success()),
        "the follower's stream did not end cleanly: {exit:?}; {}",
        follower.stderr.text()
    );
    busy.unlock().expect("unlock the pool");
    let (status, stderr) = fleet.finish();
    assert!(status.success(), "{status:?}: {stderr}");

    let streamed = printed(&follower);
    assert!(
        streamed.iter().all(|e| e.get("seq").is_some()),
        "only events, no gap or overflow: {streamed:?}"
    );

    let pooled: Vec<Json> = pool_events(&pool).into_iter().map(|(_, e)| e).collect();
    for (what, events) in [("the pool", &pooled), ("the stream", &streamed)] {
        let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs.first() == Some(&1),
            "{what}: every event from 1 on, none missing: {seqs:?}"
        );
        let stopping = events
            .iter()
            .position(|e| e["event"] == "supervisor-stopping")
            .unwrap_or_else(|| panic!("{what}: no supervisor-stopping: {events:?}"));
        let mut stopped: Vec<&str> = events[stopping..]
            .iter()
            .filter(|e| e["event"] == "stopped")
            .filter_map(|e| e["agent"].as_str())
            .collect();
        stopped.sort();
        let mut want: Vec<String> = (0..n).map(|i| format!("dev-{i}")).collect();
        want.sort();
        assert_eq!(stopped, want, "{what}: one stopped per agent: {events:?}");
        // Each names the process that stopped and how, as its text does.
        for e in events[stopping..]
            .iter()
            .filter(|e| e["event"] == "stopped")
        {
            let ready = events
                .iter()
                .rfind(|r| r["event"] == "ready" && r["agent"] == e["agent"])
                .unwrap_or_else(|| panic!("{what}: no ready before {e}"));
            assert_eq!(e["pid"], ready["pid"], "{what}: {e}");
            assert_eq!(
                (&e["exit_code"], &e["reason"]),
                (&Json::from(0), &Json::from("exited with code 0")),
                "{what}: {e}"
            );
        }
        assert_eq!(
            events.last().map(|e| &e["event"]),
            Some(&Json::from("stopped")),
            "{what}: the agents' stopped are the last events: {events:?}"
        );
    }
    assert_eq!(
        pooled, streamed,
        "the pool and the stream hold the same events"
    );
}

/// Three runs of a supervisor on one state directory and one KVP pool:
/// each run's events go on from the seq where the last one ended (a clean
/// stop skips none), so the stream and the pool number every event alike,
/// and no KVP key repeats.
#[test]
fn event_numbers_go_on_across_restarts_alike_in_the_stream_and_the_pool() {
    let dir = tempdir();
    let pool = dir.path().join("kvp_pool_1");
    let control = dir.path().join("control.sock").display().to_string();
    let config = dir.path().join("fleet.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster:\n  cache_dir: {}\n  state_dir: {}\n  control_socket: {control}\n{}",
            dir.path().join("cache").display(),
            dir.path().join("state").display(),
            fleet_yaml(
                &format!("events:\n  kvp:\n    path: {}\n", pool.display()),
                2
            )
        ),
    )
    .expect("write the fleet");

    let mut streamed: Vec<Json> = Vec::new();
    for run in 1..=3 {
        let fleet = Fleet::run(&config, &control);
        let mut follower = follower(&fleet);
        let (status, stderr) = fleet.stop();
        assert!(status.success(), "run {run}: {status:?}: {stderr}");
        let exit = follower.wait_exit(WAIT);
        assert!(exit.is_some_and(|s| s.success()), "run {run}: {exit:?}");
        let events = printed(&follower);
        assert_eq!(
            events[0]["event"], "supervisor-started",
            "run {run}: {events:?}"
        );
        if let Some(before) = streamed.last() {
            assert_eq!(
                events[0]["seq"].as_u64(),
                before["seq"].as_u64().map(|s| s + 1),
                "run {run} starts right after the last run's last event {before}"
            );
        }
        streamed.extend(events);
    }
    let seqs: Vec<u64> = streamed.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "one number per event, none twice, none skipped");

    let pooled = pool_events(&pool);
    for (key, event) in &pooled {
        assert!(
            key.ends_with(&format!("|{}", event["seq"])),
            "the key names the value's seq: {key} = {event}"
        );
    }
    let pooled: Vec<Json> = pooled.into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        pooled, streamed,
        "the pool holds what the stream showed, numbered alike"
    );
}
