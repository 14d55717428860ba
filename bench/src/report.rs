//! The table of a `bench/run`: the JSON records of every measurement
//! (one per line, tagged `scenario/server`), medians per tag, the ratios
//! issue 6 sets as targets, and whether each is met.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::procs::Machine;

/// Records grouped by tag.
pub struct Records {
    by_tag: BTreeMap<String, Vec<Value>>,
}

impl Records {
    /// Reads JSON lines (blank lines skipped); a record without `tag` is
    /// `untagged`.
    pub fn parse(text: &str) -> anyhow::Result<Records> {
        let mut by_tag: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("record on line {}: {e}", i + 1))?;
            let tag = v
                .get("tag")
                .and_then(Value::as_str)
                .unwrap_or("untagged")
                .to_owned();
            by_tag.entry(tag).or_default().push(v);
        }
        Ok(Records { by_tag })
    }

    /// Median over the runs of `tag` of the number at JSON `pointer`.
    pub fn med(&self, tag: &str, pointer: &str) -> Option<f64> {
        crate::median(
            self.by_tag
                .get(tag)?
                .iter()
                .filter_map(|v| v.pointer(pointer).and_then(Value::as_f64)),
        )
    }

    /// The largest (`max`) or smallest value over the runs of `tag`.
    pub fn extreme(&self, tag: &str, pointer: &str, max: bool) -> Option<f64> {
        let xs = self
            .by_tag
            .get(tag)?
            .iter()
            .filter_map(|v| v.pointer(pointer).and_then(Value::as_f64))
            .filter(|x| x.is_finite());
        if max {
            xs.max_by(f64::total_cmp)
        } else {
            xs.min_by(f64::total_cmp)
        }
    }

    /// The numbers of the arrays at JSON `pointer` over the runs of `tag`,
    /// one after the other.
    pub fn all(&self, tag: &str, pointer: &str) -> Vec<f64> {
        self.by_tag.get(tag).map_or_else(Vec::new, |runs| {
            runs.iter()
                .filter_map(|v| v.pointer(pointer).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_f64)
                .collect()
        })
    }

    /// How many runs `tag` has.
    pub fn runs(&self, tag: &str) -> usize {
        self.by_tag.get(tag).map_or(0, Vec::len)
    }

    /// Sum of `pointer` over every record.
    pub fn sum_all(&self, pointer: &str) -> f64 {
        self.by_tag
            .values()
            .flatten()
            .filter_map(|v| v.pointer(pointer).and_then(Value::as_f64))
            // Not `sum()`: over nothing, a float sum is -0, which the
            // table would print as "-0".
            .fold(0.0, |a, b| a + b)
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The row's label, with the unit where the values have one.
    pub measure: String,
    /// agentcluster's value (`None`: not measured).
    pub agentcluster: Option<f64>,
    /// net-snmp snmpd's value.
    pub snmpd: Option<f64>,
    /// snmpsim's value.
    pub snmpsim: Option<f64>,
    /// The UDP echo responder's value: the machine's ceiling.
    pub echo: Option<f64>,
    /// The figure the target is about (a ratio or an absolute value).
    pub figure: Option<f64>,
    /// The target, in words (empty: none).
    pub target: String,
    /// `met`, `MISSED`, `n/a` (not measured) or empty (no target).
    pub verdict: String,
}

#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    None,
}

fn verdict(figure: Option<f64>, goal: Goal) -> String {
    match (figure, goal) {
        (_, Goal::None) => String::new(),
        (None, _) => "n/a".into(),
        (Some(f), Goal::AtLeast(t)) if f >= t => "met".into(),
        (Some(f), Goal::AtMost(t)) if f <= t => "met".into(),
        _ => "MISSED".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

struct Builder<'a> {
    r: &'a Records,
    rows: Vec<Row>,
}

impl Builder<'_> {
    fn servers_extreme(&self, scenario: &str, pointer: &str, max: bool) -> [Option<f64>; 4] {
        ["agentcluster", "snmpd", "snmpsim", "echo"]
            .map(|s| self.r.extreme(&format!("{scenario}/{s}"), pointer, max))
    }

    /// A row of values without a target.
    fn info(&mut self, measure: &str, values: [Option<f64>; 4]) {
        self.row(measure, values, None, "", Goal::None);
    }

    /// A row whose only number is the figure a target is about.
    fn goal(&mut self, measure: &str, figure: Option<f64>, target: &str, goal: Goal) {
        self.row(measure, [None; 4], figure, target, goal);
    }

    fn goal_with(
        &mut self,
        measure: &str,
        values: [Option<f64>; 4],
        figure: Option<f64>,
        target: &str,
        goal: Goal,
    ) {
        self.row(measure, values, figure, target, goal);
    }

    /// A row of per-server values of `scenario` at `pointer`.
    fn servers(&self, scenario: &str, pointer: &str) -> [Option<f64>; 4] {
        ["agentcluster", "snmpd", "snmpsim", "echo"]
            .map(|s| self.r.med(&format!("{scenario}/{s}"), pointer))
    }

    fn row(
        &mut self,
        measure: &str,
        values: [Option<f64>; 4],
        figure: Option<f64>,
        target: &str,
        goal: Goal,
    ) {
        self.rows.push(Row {
            measure: measure.to_owned(),
            agentcluster: values[0],
            snmpd: values[1],
            snmpsim: values[2],
            echo: values[3],
            figure,
            target: target.to_owned(),
            verdict: verdict(figure, goal),
        });
    }
}

/// Builds the rows from the records.
pub fn rows(r: &Records) -> Vec<Row> {
    let mut b = Builder {
        r,
        rows: Vec::new(),
    };
    let none = [None; 4];
    let one = |x: Option<f64>| [x, None, None, None];

    // Single agent, v2c GET.
    let get = b.servers("get-v2c", "/requests_per_s");
    b.info("v2c GET, 1 varbind, 64 in flight: requests/s (median)", get);
    b.goal(
        "  agentcluster / snmpd",
        ratio(get[0], get[1]),
        "≥ 3",
        Goal::AtLeast(3.0),
    );
    b.goal(
        "  agentcluster / snmpsim",
        ratio(get[0], get[2]),
        "≥ 30",
        Goal::AtLeast(30.0),
    );
    b.goal(
        "  agentcluster / echo ceiling",
        ratio(get[0], get[3]),
        "≥ 0.6",
        Goal::AtLeast(0.6),
    );
    let worst = b.servers_extreme("get-v2c", "/requests_per_s", false);
    b.info("  worst run (requests/s)", worst);
    let best = b.servers_extreme("get-v2c", "/requests_per_s", true);
    b.info("  best run (requests/s)", best);
    b.info("  latency p50 (µs)", b.servers("get-v2c", "/p50_us"));
    b.info("  latency p99 (µs)", b.servers("get-v2c", "/p99_us"));
    b.info("  latency max (µs)", b.servers("get-v2c", "/max_us"));
    let cost = b.servers("get-v2c", "/server_cpu_us_per_req");
    b.info("  server CPU per request (µs)", cost);
    b.info(
        "  client CPU (% of one core)",
        b.servers("get-v2c", "/client_cpu_pct"),
    );
    b.info(
        "  machine busy, all CPUs (%)",
        b.servers("get-v2c", "/machine_busy_pct"),
    );
    // CPU time per request hardly depends on what else the machine runs:
    // the throughput each would reach on a core of its own, compared.
    b.goal(
        "  by CPU cost: snmpd / agentcluster",
        ratio(cost[1], cost[0]),
        "≥ 3",
        Goal::AtLeast(3.0),
    );
    b.goal(
        "  by CPU cost: snmpsim / agentcluster",
        ratio(cost[2], cost[0]),
        "≥ 30",
        Goal::AtLeast(30.0),
    );
    b.goal(
        "  by CPU cost: echo / agentcluster",
        ratio(cost[3], cost[0]),
        "≥ 0.6",
        Goal::AtLeast(0.6),
    );

    // v3.
    let v3 = b.servers("get-v3", "/requests_per_s");
    b.info("v3 authPriv SHA/AES128 GET: requests/s (median)", v3);
    b.goal(
        "  agentcluster v3 / own v2c",
        ratio(v3[0], get[0]),
        "≥ 0.5",
        Goal::AtLeast(0.5),
    );
    b.goal(
        "  agentcluster / snmpd (v3)",
        ratio(v3[0], v3[1]),
        "≥ 3",
        Goal::AtLeast(3.0),
    );
    b.info("  latency p99 (µs)", b.servers("get-v3", "/p99_us"));
    let cost3 = b.servers("get-v3", "/server_cpu_us_per_req");
    b.info("  server CPU per request (µs)", cost3);
    b.info(
        "  client CPU (% of one core)",
        b.servers("get-v3", "/client_cpu_pct"),
    );
    b.goal(
        "  by CPU cost: own v2c / v3",
        ratio(cost[0], cost3[0]),
        "≥ 0.5",
        Goal::AtLeast(0.5),
    );
    b.goal(
        "  by CPU cost: snmpd / agentcluster (v3)",
        ratio(cost3[1], cost3[0]),
        "≥ 3",
        Goal::AtLeast(3.0),
    );

    // GETBULK load (no target; shows the per-varbind cost).
    b.info(
        "v2c GETBULK max-rep 25, 64 in flight: varbinds/s",
        b.servers("bulk-v2c", "/varbinds_per_s"),
    );
    b.info(
        "  server CPU per request (µs)",
        b.servers("bulk-v2c", "/server_cpu_us_per_req"),
    );

    // Walks.
    let walk = b.servers("walk", "/seconds");
    b.info(
        "bulkwalk -Cr25 of c3750 (snmpd: its own tree): seconds",
        walk,
    );
    b.info("  OIDs walked", b.servers("walk", "/oids"));
    b.goal(
        "  agentcluster / snmpsim time",
        ratio(walk[0], walk[2]),
        "≤ 0.1",
        Goal::AtMost(0.1),
    );
    let per = b.servers("walk", "/per_oid_us");
    b.info("  per OID (µs)", per);
    b.goal(
        "  agentcluster / snmpd per OID",
        ratio(per[0], per[1]),
        "≤ 1",
        Goal::AtMost(1.0),
    );
    b.info(
        "  net-snmp snmpbulkwalk -Cr25: seconds",
        b.servers("bulkwalk-netsnmp", "/seconds"),
    );

    // Fleets.
    for (tag, ready_goal, mem_goal) in [
        ("fleet-1000", 3.0, None),
        ("fleet-10000", 10.0, Some(2048.0)),
    ] {
        if r.runs(tag) == 0 {
            b.info(&format!("{tag}: not run"), none);
            continue;
        }
        let n = r.med(tag, "/agents").unwrap_or(0.0);
        let per_process = r.med(tag, "/agents_per_process").unwrap_or(1.0);
        let ready = r.med(tag, "/ready_s");
        let title = if per_process > 1.0 {
            format!("{n} agents, agents_per_process {per_process}: `run` → ready (s)")
        } else {
            format!("{n} agents, one process each: `run` → ready (s)")
        };
        b.goal_with(
            &title,
            one(ready),
            ready,
            &format!("≤ {ready_goal}"),
            Goal::AtMost(ready_goal),
        );
        let answered = r.med(tag, "/sweep/answered");
        b.goal_with(
            &format!("  answered a checked GET (of {n})"),
            one(answered),
            answered,
            &format!("= {n}"),
            Goal::AtLeast(n),
        );
        b.info("  agent processes", one(r.med(tag, "/memory/processes")));
        let pss = r.med(tag, "/memory/pss_median_kib").map(|k| k / 1024.0);
        if per_process <= 1.0 {
            b.goal_with(
                "  PSS per agent process, median (MiB)",
                one(pss),
                pss,
                "≤ 2",
                Goal::AtMost(2.0),
            );
            let max = r.med(tag, "/memory/pss_max_kib").map(|k| k / 1024.0);
            b.info("  PSS per agent process, max (MiB)", one(max));
        } else {
            b.info("  PSS per agent process, median (MiB)", one(pss));
        }
        let sup = r.med(tag, "/memory/root_pss_kib").map(|k| k / 1024.0);
        b.info("  supervisor PSS, with its spawn helpers (MiB)", one(sup));
        let total = r.med(tag, "/memory/total_pss_kib").map(|k| k / 1024.0);
        let label = "  total PSS, supervisor + agents (MiB)";
        match mem_goal {
            Some(g) => b.goal_with(label, one(total), total, "≤ 2048", Goal::AtMost(g)),
            None => b.info(label, one(total)),
        }
        b.info("  stop (SIGTERM to exit) (s)", one(r.med(tag, "/stop_s")));
    }

    // Scale: devices each at its own address, with its own sysName.
    let tag = "fleet-scale";
    if r.runs(tag) == 0 {
        b.info("devices at 127.x.y.z: not run", none);
    } else {
        let n = r.med(tag, "/agents").unwrap_or(0.0);
        let per_process = r.med(tag, "/agents_per_process").unwrap_or(1.0);
        let answering = r.med(tag, "/answering_s");
        b.goal_with(
            &format!(
                "{n} devices at 127.x.y.z (own sysName), {per_process} per process: `run` → all answer a checked GET (s)"
            ),
            one(answering),
            answering,
            "≤ 15 (at 100,000)",
            Goal::AtMost(15.0),
        );
        let answered = r.med(tag, "/sweep/answered");
        b.goal_with(
            &format!("  answered with their own sysName (of {n})"),
            one(answered),
            answered,
            &format!("= {n}"),
            Goal::AtLeast(n),
        );
        b.info("  `run` → ready (s)", one(r.med(tag, "/ready_s")));
        let total = r.med(tag, "/memory/total_pss_kib").map(|k| k / 1024.0);
        b.info(
            "  total PSS, supervisor + helpers + agents (MiB)",
            one(total),
        );
        let per_device = r
            .med(tag, "/memory/total_pss_kib")
            .filter(|_| n > 0.0)
            .map(|k| k / n);
        b.goal_with(
            "  total PSS per device (KiB)",
            one(per_device),
            per_device,
            "≤ 31.5 (3 GiB / 100,000)",
            Goal::AtMost(3.0 * 1024.0 * 1024.0 / 100_000.0),
        );
        let stop = r.med(tag, "/stop_s");
        b.goal_with(
            "  stop (SIGTERM to exit) (s)",
            one(stop),
            stop,
            "≤ 10",
            Goal::AtMost(10.0),
        );
        if let Some(cpu) = r.med(tag, "/quiet/fleet_cpu_pct") {
            b.info(
                "  running unasked: CPU of all its processes (% of one CPU)",
                one(Some(cpu)),
            );
            b.info(
                "  running unasked: the supervisor's share (% of one CPU)",
                one(r.med(tag, "/quiet/supervisor_cpu_pct")),
            );
        }
        let devices = r.med(tag, "/spread/devices").unwrap_or(0.0);
        b.info(
            "  GET/s to one agent of the fleet",
            one(r.med(tag, "/spread/single_per_s")),
        );
        b.info(
            &format!("  GET/s spread over {devices} devices"),
            one(r.med(tag, "/spread/spread_per_s")),
        );
        let spread = r.med(tag, "/spread/ratio");
        let pairs_of = |pointer: &str| {
            let pairs: Vec<String> = r
                .all(tag, pointer)
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect();
            if pairs.is_empty() {
                String::new()
            } else {
                format!(" (median of alternating pairs: {})", pairs.join(", "))
            }
        };
        let pairs = pairs_of("/spread/ratios");
        b.goal_with(
            &format!("  spread over {devices} devices / one agent{pairs}"),
            one(spread),
            spread,
            "≥ 0.7",
            Goal::AtLeast(0.7),
        );
        let spread_over =
            format!("  the fleet's CPU time per GET spread over {devices} devices (µs)");
        let echo_ratio =
            format!("  echo fleet of {devices} sockets, same shape: spread / one socket");
        for (label, pointer) in [
            (
                "  the fleet's CPU time per GET to one agent (µs)",
                "/spread/single_cpu_us",
            ),
            (spread_over.as_str(), "/spread/spread_cpu_us"),
            (
                "  CPU time per GET, one agent / spread (the efficiency kept)",
                "/spread/cpu_ratio",
            ),
            (
                "  the load generator's CPU time per GET to one agent (µs)",
                "/spread/single_client_us",
            ),
            (
                "  the load generator's CPU time per GET spread (µs)",
                "/spread/spread_client_us",
            ),
            (
                "  machine busy during the one-agent loads (% of all CPUs)",
                "/spread/single_busy_pct",
            ),
            (
                "  machine busy during the spread loads (% of all CPUs)",
                "/spread/spread_busy_pct",
            ),
            (echo_ratio.as_str(), "/spread/echo/ratio"),
            (
                "  echo fleet: CPU time per datagram, one socket / spread",
                "/spread/echo/cpu_ratio",
            ),
            (
                "  echo fleet: machine busy during its spread loads (%)",
                "/spread/echo/spread_busy_pct",
            ),
            (
                "  echo fleet: the load generator's CPU time per datagram to one socket (µs)",
                "/spread/echo/single_client_us",
            ),
            (
                "  echo fleet: the load generator's CPU time per datagram spread (µs)",
                "/spread/echo/spread_client_us",
            ),
        ] {
            b.info(label, one(r.med(tag, pointer)));
        }
        b.info(
            "  agentcluster's spread GET/s / the echo fleet's",
            one(r.med(tag, "/spread/echo/agentcluster_vs_echo")),
        );
        if let Some(pinned) = r.med(tag, "/spread/pinned/ratio") {
            b.info(
                &format!(
                    "  pinned as the loads above (the fleet on CPU 0, the generator on CPU 1): spread / one agent{}",
                    pairs_of("/spread/pinned/ratios")
                ),
                one(Some(pinned)),
            );
            b.info(
                "  pinned: machine busy during the spread loads (%)",
                one(r.med(tag, "/spread/pinned/spread_busy_pct")),
            );
        }
    }

    let restart = r.med("restart", "/restart/median_ms");
    b.goal_with(
        "restart: SIGKILL → next answered GET, median (ms)",
        one(restart),
        restart,
        "≤ 50",
        Goal::AtMost(50.0),
    );
    b.info("  max (ms)", one(r.med("restart", "/restart/max_ms")));

    for (tag, label) in [
        ("compile/huawei", "huawei-unknown-002"),
        ("compile/c3750", "cisco-c3750"),
    ] {
        if r.runs(tag) == 0 {
            continue;
        }
        let records = r.med(tag, "/records").unwrap_or(0.0);
        let rate = r.med(tag, "/records_per_s");
        let title = format!("compile {label} ({records} records): records/s");
        if tag == "compile/huawei" {
            b.goal_with(&title, one(rate), rate, "≥ 1,000,000", Goal::AtLeast(1e6));
        } else {
            b.info(&title, one(rate));
        }
        b.info(
            "  store open + first lookup (ms)",
            one(r.med(tag, "/open_ms")),
        );
        b.info(
            "  supervisor's cached-store check (ms)",
            one(r.med(tag, "/cached_check_ms")),
        );
    }
    if r.runs("warm-start") > 0 {
        let warm = r.med("warm-start", "/restart/median_ms");
        b.goal_with(
            "warm start on the compiled huawei store: SIGKILL → answered GET, median (ms)",
            one(warm),
            warm,
            "≤ 20",
            Goal::AtMost(20.0),
        );
        b.info(
            "  `run` → ready with the store cached (s)",
            one(r.med("warm-start", "/ready_s")),
        );
    }

    b.info(
        "wrong answers, all load runs and servers",
        one(Some(r.sum_all("/failed"))),
    );
    b.info(
        "timeouts, all load runs and servers",
        one(Some(r.sum_all("/timeouts"))),
    );
    b.rows
}

fn cell(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if v.abs() >= 100_000.0 => group(v.round() as i64),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn group(v: i64) -> String {
    let s = v.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

/// The table as Markdown.
pub fn markdown(rows: &[Row], machine: &Machine) -> String {
    let mut s = format!(
        "Machine: {} × {} ({} MiB RAM, Linux {}), load average at the end {}\n\n",
        machine.nproc,
        machine.cpu,
        machine.mem_total_kib / 1024,
        machine.kernel,
        machine.loadavg
    );
    s.push_str("| measure | agentcluster | snmpd | snmpsim | echo | figure | target | verdict |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---|---|\n");
    for r in rows {
        let figure = match r.figure {
            Some(f)
                if r.target.starts_with('≥')
                    || r.target.starts_with('≤')
                    || r.target.starts_with('=') =>
            {
                cell(Some(f))
            }
            _ => String::new(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.measure,
            cell(r.agentcluster),
            cell(r.snmpd),
            cell(r.snmpsim),
            cell(r.echo),
            figure,
            r.target,
            r.verdict
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_ratios_and_verdicts() {
        let text = [
            r#"{"tag":"get-v2c/agentcluster","requests_per_s":90000,"failed":0}"#,
            r#"{"tag":"get-v2c/agentcluster","requests_per_s":100000,"failed":0}"#,
            r#"{"tag":"get-v2c/agentcluster","requests_per_s":95000,"failed":1}"#,
            r#"{"tag":"get-v2c/snmpd","requests_per_s":20000,"failed":0}"#,
            r#"{"tag":"get-v2c/echo","requests_per_s":200000}"#,
        ]
        .join("\n");
        let r = Records::parse(&text).unwrap();
        assert_eq!(
            r.med("get-v2c/agentcluster", "/requests_per_s"),
            Some(95000.0)
        );
        let rows = rows(&r);
        let find = |m: &str| rows.iter().find(|x| x.measure.contains(m)).unwrap().clone();
        assert_eq!(find("/ snmpd").verdict, "met");
        assert_eq!(find("/ echo").verdict, "MISSED");
        assert_eq!(find("/ snmpsim").verdict, "n/a");
        assert_eq!(find("wrong answers").agentcluster, Some(1.0));
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn the_pinned_spread_rows_show_their_pairs() {
        let text = r#"{"tag":"fleet-scale","kind":"fleet","agents":100000,"spread":{"devices":10000,"ratio":0.6,"ratios":[0.6],"pinned":{"ratio":0.77,"ratios":[0.8,0.77,0.7],"spread_busy_pct":91.0}}}"#;
        let rows = rows(&Records::parse(text).unwrap());
        let row = |prefix: &str| rows.iter().find(|x| x.measure.starts_with(prefix));
        let pinned = row("  pinned as the loads above").expect("a pinned row");
        assert!(
            pinned
                .measure
                .ends_with("(median of alternating pairs: 0.80, 0.77, 0.70)"),
            "{}",
            pinned.measure
        );
        assert_eq!(pinned.agentcluster, Some(0.77));
        assert_eq!(
            row("  pinned: machine busy").and_then(|x| x.agentcluster),
            Some(91.0)
        );
        // Without pinned pairs, no such rows.
        let text = r#"{"tag":"fleet-scale","kind":"fleet","agents":100000,"spread":{"devices":10000,"ratio":0.6,"ratios":[0.6]}}"#;
        let rows = super::rows(&Records::parse(text).unwrap());
        assert!(!rows.iter().any(|x| x.measure.contains("pinned")));
    }

    #[test]
    fn the_spread_row_shows_the_pairs_its_median_came_from() {
        let text = r#"{"tag":"fleet-scale","kind":"fleet","agents":100000,"spread":{"devices":10000,"single_per_s":300000,"spread_per_s":180000,"ratio":0.6,"ratios":[0.5,0.8,0.6]}}"#;
        let rows = rows(&Records::parse(text).unwrap());
        let row = rows
            .iter()
            .find(|x| x.measure.contains("/ one agent"))
            .unwrap();
        assert!(
            row.measure
                .ends_with("(median of alternating pairs: 0.50, 0.80, 0.60)"),
            "{}",
            row.measure
        );
        assert_eq!((row.figure, row.verdict.as_str()), (Some(0.6), "MISSED"));
        // A run without load records (only this scenario) counts no wrong
        // answer: "0", not "-0".
        let wrong = rows
            .iter()
            .find(|x| x.measure.contains("wrong answers"))
            .unwrap();
        assert_eq!(cell(wrong.agentcluster), "0");
    }

    #[test]
    fn the_spread_rows_show_the_fleets_cpu_time_and_the_machines_idle() {
        let text = r#"{"tag":"fleet-scale","kind":"fleet","agents":100000,"spread":{"devices":10000,"single_per_s":300000,"spread_per_s":180000,"ratio":0.6,"ratios":[0.6],"single_cpu_us":2.5,"spread_cpu_us":3.5,"cpu_ratio":0.71,"single_busy_pct":93.0,"spread_busy_pct":75.0,"echo":{"ratio":0.8,"cpu_ratio":1.0,"spread_busy_pct":78.0,"agentcluster_vs_echo":0.85}}}"#;
        let rows = rows(&Records::parse(text).unwrap());
        let figure = |m: &str| {
            rows.iter()
                .find(|x| x.measure.contains(m))
                .unwrap_or_else(|| panic!("no row {m}"))
                .agentcluster
        };
        assert_eq!(figure("CPU time per GET to one agent"), Some(2.5));
        assert_eq!(figure("CPU time per GET spread"), Some(3.5));
        assert_eq!(
            figure("one agent / spread (the efficiency kept)"),
            Some(0.71)
        );
        assert_eq!(figure("busy during the one-agent loads"), Some(93.0));
        assert_eq!(figure("busy during the spread loads"), Some(75.0));
        assert_eq!(figure("echo fleet: CPU time per datagram"), Some(1.0));
        assert_eq!(figure("echo fleet: machine busy"), Some(78.0));
    }
}
