use super::*;

/// etcd's default request limit (`--max-request-bytes`).
const ETCD_LIMIT: usize = 1536 * 1024;

fn entry(agent: &str, state: State, pid: Option<u32>, restarts: u32) -> Entry {
    Entry {
        agent: agent.into(),
        state,
        pid,
        restarts,
        since: None,
    }
}

/// The layout, pinned: the integration tests write these bytes to etcd as
/// a node would.
pub const PINNED: &str = r#"{"v":1,"node":"n1","pid":4242,"updated":1700000000000,"counts":{"running":4,"failed":1,"stopped":1},"running":{"names":["r-[1-4]"],"pids":[101,1,1,1],"restarts":{"r-3":2}},"agents":{"r-5":{"state":"failed","restarts":5,"since":1699999990000},"r-6":{"state":"stopped"}}}"#;

fn pinned_roster() -> Vec<Entry> {
    vec![
        entry("r-6", State::Stopped, None, 0),
        entry("r-2", State::Running, Some(102), 0),
        entry("r-1", State::Running, Some(101), 0),
        Entry {
            since: Some(1_699_999_990_000),
            ..entry("r-5", State::Failed, None, 5)
        },
        entry("r-3", State::Running, Some(103), 2),
        entry("r-4", State::Running, Some(104), 0),
    ]
}

#[test]
fn the_value_is_pinned_and_reads_back_every_agent() {
    let bytes = encode("n1", 4242, 1_700_000_000_000, &pinned_roster());
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), PINNED);
    let back = NodeStatus::decode("/k", &bytes).unwrap();
    let agents = back.agents();
    assert_eq!(agents.len(), 6);
    for e in pinned_roster() {
        let r = &agents[&e.agent];
        assert_eq!(
            (r.state, r.pid, r.restarts, r.since),
            (e.state, e.pid, e.restarts, e.since),
            "{}",
            e.agent
        );
    }
}

#[test]
fn fifty_thousand_agents_stay_far_below_the_request_limit() {
    // Templated names, one process each with pids all over the range,
    // one in a hundred not running.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let roster: Vec<Entry> = (1..=50_000)
        .map(|i| {
            let pid = Some(300 + (next() % 4_000_000) as u32);
            if i % 100 == 0 {
                Entry {
                    since: Some(1_700_000_000_000 + i),
                    ..entry(&format!("router-{i}"), State::Backoff, None, 3)
                }
            } else {
                entry(
                    &format!("router-{i}"),
                    State::Running,
                    pid,
                    (i % 7 == 0) as u32,
                )
            }
        })
        .collect();
    let bytes = encode("node-a", 1, 1_700_000_000_000, &roster);
    assert!(
        bytes.len() < ETCD_LIMIT / 2,
        "{} bytes for 50,000 agents",
        bytes.len()
    );
    let back = NodeStatus::decode("/k", &bytes).unwrap().agents();
    assert_eq!(back.len(), 50_000);
    for e in &roster {
        let r = &back[&e.agent];
        assert_eq!((r.state, r.pid, r.restarts), (e.state, e.pid, e.restarts));
    }
    // Several templates, as a larger fleet has them.
    let roster: Vec<Entry> = (0..50_000)
        .map(|i| {
            entry(
                &format!("site{}-switch-{:05}", i % 10, i / 10),
                State::Running,
                Some(1000 + i as u32),
                0,
            )
        })
        .collect();
    let bytes = encode("node-a", 1, 0, &roster);
    assert!(bytes.len() < ETCD_LIMIT / 4, "{} bytes", bytes.len());
    assert_eq!(
        NodeStatus::decode("/k", &bytes).unwrap().agents().len(),
        50_000
    );
}

#[test]
fn a_broken_value_is_an_error_naming_the_key() {
    let bad = |value: &str| match NodeStatus::decode("/lab/status/n2", value.as_bytes()) {
        Err(ClusterError::Data { key, why }) => {
            assert_eq!(key, "/lab/status/n2");
            why
        }
        other => panic!("{value}: {other:?}"),
    };
    assert!(bad("{not json").contains("not a node status"));
    assert!(bad(&PINNED.replace("\"v\":1", "\"v\":9")).contains("layout 9"));
    assert!(
        bad(&PINNED.replace("[101,1,1,1]", "[101,1,1]")).contains("4 running agents but 3 pids")
    );
    assert!(bad(&PINNED.replace("r-[1-4]", "r-[4-1]")).contains("above"));
    assert!(bad(&PINNED.replace("r-[1-4]", "r-[1-99999999]")).contains("more than"));
    assert!(bad(&PINNED.replace("\"failed\"", "\"sleeping\"")).contains("not a node status"));
}

#[test]
fn a_status_line_becomes_an_entry() {
    let line = crate::protocol::AgentStatus {
        name: "a".into(),
        state: State::Running,
        pid: Some(7),
        endpoints: vec![],
        restarts: 1,
        uptime_ms: Some(5_000),
        rss_bytes: None,
        requests: 0,
        process: "a".into(),
        faults: vec![],
    };
    let e = Entry::of(&line, 1_000_000);
    assert_eq!(
        e,
        Entry {
            agent: "a".into(),
            state: State::Running,
            pid: Some(7),
            restarts: 1,
            since: Some(995_000),
        }
    );
}
