//! `scenarios:`: scheduled faults as the loader reads them, and every
//! problem one can have, with its place.

use std::time::Duration;

use agentcluster_conf::{Fault, Scenario, When};

use crate::common::{Dir, error_at, show};

const AGENTS: &str = "agents:
  - name: \"sw-{i}\"
    count: 3
    listen: [\"127.0.0.1:{i+20000}\"]
    data: mibs/a.snmprec
    snmpv2c: { communities: [public] }
";

#[test]
fn scenarios_read_with_their_defaults() {
    let d = Dir::new();
    let l = d.ok(&format!(
        "{AGENTS}scenarios:
  - {{ agents: \"sw-*\", fault: link-down, arg: 2, every: 60s, for: 10s, jitter: 5s, seed: 7 }}
  - agents: sw-1
    fault: reboot
    at: 90s
  - {{ agents: sw-2, fault: latency, arg: 200ms±50ms, at: 0s }}
"
    ));
    assert!(l.warnings.is_empty(), "{}", show(&l.warnings));
    assert_eq!(
        l.fleet.scenarios,
        vec![
            Scenario {
                agents: "sw-*".into(),
                fault: Fault::LinkDown(2),
                when: When::Every(Duration::from_secs(60)),
                duration: Some(Duration::from_secs(10)),
                jitter: Duration::from_secs(5),
                seed: 7,
            },
            Scenario {
                agents: "sw-1".into(),
                fault: Fault::Reboot(agentcluster_conf::REBOOT_OUTAGE),
                when: When::At(Duration::from_secs(90)),
                duration: None,
                jitter: Duration::ZERO,
                seed: 0,
            },
            Scenario {
                agents: "sw-2".into(),
                fault: Fault::Latency {
                    base: Duration::from_millis(200),
                    jitter: Duration::from_millis(50)
                },
                when: When::At(Duration::ZERO),
                duration: None,
                jitter: Duration::ZERO,
                seed: 0,
            },
        ]
    );
}

#[test]
fn every_scenario_problem_is_reported_with_its_place() {
    let d = Dir::new();
    let ps = d.fails(&format!(
        "{AGENTS}scenarios:
  - {{ agents: \"sw-*\", fault: melt, every: 60s }}
  - {{ agents: \"sw-*\", fault: link-down, arg: eth0, every: 60s }}
  - {{ agents: \"sw-*\", fault: hang, at: 1s, every: 60s }}
  - {{ agents: \"sw-*\", fault: hang }}
  - {{ agents: \"sw-*\", fault: hang, every: 1x }}
  - {{ agents: \"sw-*\", fault: hang, every: 60s, for: 50s, jitter: 20s }}
  - {{ agents: \"sw-[\", fault: hang, at: 1s }}
  - {{ agents: \"sw-*\", fault: reboot, at: 1s, for: 5s }}
  - {{ fault: hang, at: 1s, color: red }}
"
    ));
    let f = "fleet.yaml";
    error_at(&ps, f, 8, 30, "unknown fault `melt`");
    error_at(&ps, f, 9, 46, "bad ifIndex \"eth0\"");
    error_at(&ps, f, 10, 40, "not both");
    error_at(&ps, f, 11, 5, "needs `at` (once) or `every`");
    error_at(&ps, f, 12, 43, "`every`: `1x` is not a duration");
    error_at(&ps, f, 13, 53, "longer than `every` (1m)");
    error_at(&ps, f, 14, 15, "bad glob");
    error_at(&ps, f, 15, 51, "a reboot takes no `for`");
    error_at(&ps, f, 16, 28, "unknown field `color`");
}

#[test]
fn a_scenario_that_matches_no_agent_is_a_warning() {
    let d = Dir::new();
    let l = d.ok(&format!(
        "{AGENTS}scenarios:\n  - {{ agents: \"printer-*\", fault: hang, at: 1s }}\n"
    ));
    let w = &l.warnings;
    assert_eq!(w.len(), 1, "{}", show(w));
    assert!(w[0].message.contains("matches no agent"), "{}", show(w));
    assert_eq!((w[0].line, w[0].column), (8, 15));
}

#[test]
fn scenarios_belong_in_the_main_file() {
    let d = Dir::new();
    d.write(
        "more.yaml",
        "agents: []\nscenarios:\n  - { agents: a, fault: hang, at: 1s }\n",
    );
    let ps = d.fails(&format!("include: [more.yaml]\n{AGENTS}"));
    error_at(
        &ps,
        "more.yaml",
        3,
        3,
        "only allowed in the main configuration file",
    );
}
