//! Fleet scenarios against the real `agentcluster run`: a fleet of N
//! agents on consecutive ports (or each at its own 127.x.y.z address on
//! one port, with its own sysName), timed from spawn to the ready block,
//! then (optionally) one checked GET to every agent, the memory of every
//! process, GETs spread over many agents against one agent's rate,
//! SIGKILL-to-answer restart latencies, and the time to stop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;

use crate::ber;
use crate::client::{Answer, Client};
use crate::procs::{self, TreeMemory};
use crate::snmp::{self, Expect, Op, Request, Security};
use crate::sweep::{self, Sweep};

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `agentcluster` binary to run.
    pub agentcluster: PathBuf,
    /// Work directory: fleet.yaml, cache, state, control socket and the
    /// supervisor's log (agents must be able to read it).
    pub dir: PathBuf,
    /// The snapshot every agent serves.
    pub snapshot: PathBuf,
    /// Agents in the fleet, `a-0`, `a-1`… (the sweep and the kills need at
    /// least one).
    pub count: u32,
    /// `cluster.agents_per_process` (0 is taken as 1).
    pub per_process: u32,
    /// Agent `i` listens on 127.0.0.1, port `base_port + i`; with
    /// [`Spec::spread_addresses`], on port `base_port` of its own address.
    pub base_port: u16,
    /// Agent `i` at 127.A.B.C:`base_port` ([`device_addr`]): one port,
    /// as many addresses as devices (127/8 is all local).
    pub spread_addresses: bool,
    /// Each agent's sysName.0 is its own (`dev-000042`, a template of
    /// `values:`), and the sweep checks each device's answer against it.
    pub own_names: bool,
    /// GETs spread over this many agents (the first ones), measured
    /// against the GET rate of agent 0 alone, each for `spread_for`.
    pub spread: Option<usize>,
    /// How long each of the two spread loads runs.
    pub spread_for: Duration,
    /// How many times the two spread loads run, alternating (one agent,
    /// spread, one agent, spread…): the rates and ratios reported are
    /// medians, each ratio taken within its pair, so that a host busy for
    /// a while skews one pair rather than the figure.
    pub spread_pairs: usize,
    /// Measure what the fleet costs while nobody asks it anything, for
    /// this long (after the sweep and the memory, before any load).
    pub quiet: Option<Duration>,
    /// `cluster.start_tokens`; `None`: the default.
    pub start_tokens: Option<u32>,
    /// `cluster.steering: false`: every device's socket receives its own
    /// datagrams.
    pub no_steering: bool,
    /// Run the spread loads' pairs a second time with the fleet on CPU 0
    /// and the load generator on CPU 1, as bench/run pins its other loads
    /// ([`Spread::pinned`]).
    pub pin_loads: bool,
    /// How long the supervisor may take to print its ready block.
    pub ready_timeout: Duration,
    /// Send one checked GET to every agent.
    pub sweep: bool,
    /// Measure the memory of the supervisor and every agent process.
    pub memory: bool,
    /// SIGKILL agent `a-0` this many times, timing each until its next
    /// answer.
    pub kills: u32,
    /// What the sweep and the restart probe GET.
    pub oid: Vec<u32>,
}

/// Restart latencies: SIGKILL of `a-0` to its next correct answer.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// How many kills were timed.
    pub kills: usize,
    /// Median latency, in milliseconds.
    pub median_ms: f64,
    /// Shortest latency.
    pub min_ms: f64,
    /// Longest latency.
    pub max_ms: f64,
    /// Every latency, in kill order.
    pub samples_ms: Vec<f64>,
}

/// GETs spread over many agents against one agent's GET rate, in the same
/// run, from the same client.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Agents the spread load went to, in turn.
    pub devices: usize,
    /// Answered GETs per second to agent 0 alone (the median of the
    /// pairs).
    pub single_per_s: f64,
    /// Answered GETs per second spread over [`Spread::devices`] (the
    /// median of the pairs).
    pub spread_per_s: f64,
    /// The median of [`Spread::ratios`].
    pub ratio: f64,
    /// Each pair's spread rate over its one-agent rate, in the order run.
    pub ratios: Vec<f64>,
    /// Wrong answers and timeouts, both loads.
    pub failed: u64,
    /// What the fleet's processes spent on a CPU per GET to agent 0 alone,
    /// in µs (the median of the pairs).
    pub single_cpu_us: f64,
    /// The same per GET spread over [`Spread::devices`].
    pub spread_cpu_us: f64,
    /// The median of the pairs' one-agent over spread CPU time per GET:
    /// the share of one agent's efficiency kept when the requests go to
    /// many devices, whatever the CPUs were left idle by.
    pub cpu_ratio: f64,
    /// How busy the machine was (all CPUs, percent) during the loads to
    /// agent 0 alone (the median of the pairs).
    pub single_busy_pct: f64,
    /// The same during the spread loads.
    pub spread_busy_pct: f64,
    /// What the load generator spent on a CPU per GET to agent 0 alone, in
    /// µs (the median of the pairs): its own share of the machine.
    pub single_client_us: f64,
    /// The same per GET spread over [`Spread::devices`].
    pub spread_client_us: f64,
    /// The same two loads against an echo fleet of the same shape (as
    /// many sockets at the same kind of addresses, as many per process),
    /// run after them: what the kernel and the client leave of a spread
    /// load before any agent runs.
    pub echo: Option<EchoSpread>,
    /// With [`Spec::pin_loads`] (and two CPUs or more): the same pairs
    /// again, every thread of the fleet on CPU 0 and the load generator on
    /// CPU 1, so that the scheduler's placement of the fleet's processes
    /// next to the generator's does not count, as in bench/run's other
    /// loads.
    pub pinned: Option<PinnedSpread>,
}

/// [`Spread`]'s pairs run pinned.
#[derive(Debug, Clone, Serialize)]
pub struct PinnedSpread {
    /// As [`Spread::single_per_s`].
    pub single_per_s: f64,
    /// As [`Spread::spread_per_s`].
    pub spread_per_s: f64,
    /// The median of [`PinnedSpread::ratios`].
    pub ratio: f64,
    /// Each pair's spread rate over its one-agent rate, in the order run.
    pub ratios: Vec<f64>,
    /// As [`Spread::cpu_ratio`].
    pub cpu_ratio: f64,
    /// As [`Spread::spread_busy_pct`].
    pub spread_busy_pct: f64,
}

/// The echo fleet's side of [`Spread`].
#[derive(Debug, Clone, Serialize)]
pub struct EchoSpread {
    /// Datagrams answered per second by its first socket alone (the
    /// median of the pairs).
    pub single_per_s: f64,
    /// Answered per second spread over all of its sockets (the median of
    /// the pairs).
    pub spread_per_s: f64,
    /// The median of the pairs' spread over one-socket rates: the ceiling
    /// of [`Spread::ratio`].
    pub ratio: f64,
    /// agentcluster's spread rate against the echo fleet's.
    pub agentcluster_vs_echo: f64,
    /// The echo fleet's [`Spread::cpu_ratio`].
    pub cpu_ratio: f64,
    /// The echo fleet's [`Spread::spread_busy_pct`].
    pub spread_busy_pct: f64,
    /// The load generator's CPU time per datagram to one socket, in µs.
    pub single_client_us: f64,
    /// The same spread over all of its sockets.
    pub spread_client_us: f64,
}

/// What one fleet scenario measured; the body of a `fleet` record, so its
/// field names are keys the report reads.
#[derive(Debug, Clone, Serialize)]
pub struct FleetResult {
    /// Agents in the fleet.
    pub agents: u32,
    /// Agents per process.
    pub agents_per_process: u32,
    /// Seconds from spawning `agentcluster run` to its ready block.
    pub ready_s: f64,
    /// With [`Spec::sweep`]: whether every agent answered.
    pub sweep: Option<Sweep>,
    /// With [`Spec::sweep`], when every agent answered: seconds from
    /// spawning `agentcluster run` to the last agent's checked answer.
    pub answering_s: Option<f64>,
    /// With [`Spec::spread`]: the spread load against one agent's.
    pub spread: Option<Spread>,
    /// With [`Spec::memory`]: the process tree's memory.
    pub memory: Option<TreeMemory>,
    /// With [`Spec::quiet`]: what the fleet costs unasked.
    pub quiet: Option<Quiet>,
    /// With [`Spec::kills`]: restart latencies.
    pub restart: Option<Restart>,
    /// Seconds from SIGTERM to the supervisor's exit (NaN: not within
    /// 60 s).
    pub stop_s: f64,
}

/// What a running fleet costs while nobody asks it anything: its
/// heartbeats, watchdog checks and timers.
#[derive(Debug, Clone, Serialize)]
pub struct Quiet {
    /// How long it was watched.
    pub seconds: f64,
    /// CPU time of all its processes (supervisor, helpers, holders,
    /// agents), in percent of one CPU.
    pub fleet_cpu_pct: f64,
    /// The supervisor's own share of that.
    pub supervisor_cpu_pct: f64,
    /// How busy the machine was meanwhile, in percent of all CPUs.
    pub machine_busy_pct: f64,
}

/// Watches the fleet of supervisor `pid` for `d` while nothing asks it
/// anything.
fn quiet(pid: u32, d: Duration) -> Quiet {
    let mut fleet = procs::descendants(pid);
    fleet.push(pid);
    let (machine0, cpu0, own0) = (
        procs::machine_ticks(),
        procs::cpu_ns_of(&fleet),
        procs::cpu_ns_of(&[pid]),
    );
    let t0 = Instant::now();
    std::thread::sleep(d);
    let seconds = t0.elapsed().as_secs_f64();
    let pct = |ns: u64| 100.0 * ns as f64 / 1e9 / seconds;
    Quiet {
        seconds,
        fleet_cpu_pct: pct(procs::cpu_ns_of(&fleet).saturating_sub(cpu0)),
        supervisor_cpu_pct: pct(procs::cpu_ns_of(&[pid]).saturating_sub(own0)),
        machine_busy_pct: machine0
            .zip(procs::machine_ticks())
            .map_or(f64::NAN, |(a, b)| procs::machine_busy(a, b).0),
    }
}

/// A child killed when dropped (and by the kernel if we die).
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Device `i`'s address with [`Spec::spread_addresses`]: 250 devices per
/// /24 from 127.1.0.1, as the template
/// `127.{i/62500+1}.{i/250%250}.{i%250+1}` gives them.
pub fn device_addr(i: u32, port: u16) -> SocketAddr {
    let a = (i / 62_500 + 1) as u8;
    let b = (i / 250 % 250) as u8;
    let c = (i % 250 + 1) as u8;
    SocketAddr::from(([127, a, b, c], port))
}

/// Device `i`'s sysName with [`Spec::own_names`].
pub fn device_name(i: u32) -> String {
    format!("dev-{i:06}")
}

/// The YAML of a fleet of `count` agents on `base_port…`.
pub fn fleet_yaml(spec: &Spec, snapshot: &Path) -> String {
    let dir = spec.dir.display();
    let mut y = format!(
        "cluster:\n  cache_dir: {dir}/cache\n  state_dir: {dir}/state\n  control_socket: {dir}/control.sock\n  agents_per_process: {}\n",
        spec.per_process.max(1)
    );
    if let Some(t) = spec.start_tokens {
        y.push_str(&format!("  start_tokens: {t}\n"));
    }
    if spec.no_steering {
        y.push_str("  steering: false\n");
    }
    if spec.kills > 0 {
        // A 1 s window makes every kill "the first failure after a stable
        // run": restarted at once, as the default policy does after 10 s.
        y.push_str("  restart: { policy: always, max_restarts: 1000, window: 1s }\n");
    }
    let listen = if spec.spread_addresses {
        format!(
            "127.{{i/62500+1}}.{{i/250%250}}.{{i%250+1}}:{}",
            spec.base_port
        )
    } else {
        format!("127.0.0.1:{{i+{}}}", spec.base_port)
    };
    y.push_str(&format!(
        "agents:\n  - name: \"a-{{i}}\"\n    count: {}\n    listen: [\"{listen}\"]\n    data: {}\n    snmpv2c: {{ communities: [public] }}\n",
        spec.count,
        snapshot.display()
    ));
    if spec.own_names {
        y.push_str("    values:\n      1.3.6.1.2.1.1.5.0: \"dev-{i:06d}\"\n");
    }
    if spec.spread_addresses || spec.own_names {
        // The devices' coldStarts would go nowhere; not sending them spares
        // the start.
        y.push_str("    notify: none\n");
    }
    y
}

/// One device's expected sysName.0 binding, as its answer carries it.
pub fn name_binding(req: &Request, name: &str) -> anyhow::Result<Expect> {
    let value = snmp::parse_value(&format!("s:{name}")).map_err(|e| anyhow!("{e}"))?;
    Ok(Expect::Exact(snmp::exact_bindings(req, &[value])))
}

/// Runs the scenario: starts the fleet, measures what `spec` asks, stops
/// it.
pub fn run(spec: &Spec) -> anyhow::Result<FleetResult> {
    if spec.spread_addresses && spec.count > 250 * 250 * 254 {
        bail!("at most {} devices on 127/8", 250 * 250 * 254);
    }
    if !spec.spread_addresses && u32::from(spec.base_port) + spec.count > 65_536 {
        bail!(
            "{} agents from port {} run past port 65535",
            spec.count,
            spec.base_port
        );
    }
    let snapshot = spec
        .snapshot
        .canonicalize()
        .with_context(|| format!("snapshot {}", spec.snapshot.display()))?;
    std::fs::create_dir_all(&spec.dir)?;
    let config = spec.dir.join("fleet.yaml");
    std::fs::write(&config, fleet_yaml(spec, &snapshot))?;
    let control = spec.dir.join("control.sock");
    let log = std::fs::File::create(spec.dir.join("agentcluster.log"))?;

    let mut cmd = Command::new(&spec.agentcluster);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    crate::sys::kill_with_parent(&mut cmd);
    let t0 = Instant::now();
    let mut child = Guard(
        cmd.spawn()
            .with_context(|| format!("cannot run {}", spec.agentcluster.display()))?,
    );
    let stdout = child.0.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let ready_s = loop {
        let left = spec.ready_timeout.saturating_sub(t0.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line == "Stop with Ctrl-C." => break t0.elapsed().as_secs_f64(),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Its stdout closed: it exited (or is about to).
                let code = child.0.wait()?;
                bail!(
                    "agentcluster exited ({code}) before it was ready, {:.1} s after the start; see {}",
                    t0.elapsed().as_secs_f64(),
                    spec.dir.join("agentcluster.log").display()
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "agentcluster was not ready within {:?}; see {}",
                spec.ready_timeout,
                spec.dir.join("agentcluster.log").display()
            ),
        }
    };
    // Keep draining stdout so the supervisor never blocks on it.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    let pid = child.0.id();

    let targets: Vec<SocketAddr> = (0..spec.count)
        .map(|i| {
            if spec.spread_addresses {
                device_addr(i, spec.base_port)
            } else {
                SocketAddr::from(([127, 0, 0, 1], spec.base_port + i as u16))
            }
        })
        .collect();
    let first = || {
        targets
            .first()
            .copied()
            .ok_or_else(|| anyhow!("the sweep and the kills need at least one agent"))
    };
    let req = Request::new(Op::Get, std::slice::from_ref(&spec.oid));

    let (sweep, answering_s) = if spec.sweep {
        let mut sec = Security::community(1, "public");
        let expect: Vec<Expect> = if spec.own_names {
            (0..spec.count)
                .map(|i| name_binding(&req, &device_name(i)))
                .collect::<anyhow::Result<_>>()?
        } else {
            vec![reference(first()?, &req)?]
        };
        let s = sweep::sweep_each(
            &targets,
            &mut sec,
            &req,
            |i| &expect[i.min(expect.len() - 1)],
            256,
            Duration::from_millis(500),
            Duration::from_secs(60) + spec.ready_timeout,
        )?;
        let all = s.answered == s.targets && s.wrong == 0;
        (Some(s), all.then(|| t0.elapsed().as_secs_f64()))
    } else {
        (None, None)
    };
    let memory = spec.memory.then(|| procs::tree_memory(pid));
    let quiet = spec.quiet.map(|d| quiet(pid, d));
    let spread = match spec.spread {
        Some(n) => {
            let n = n.min(targets.len());
            let mut fleet = procs::descendants(pid);
            fleet.push(pid);
            let mut s = spread_load(&targets[..n], &fleet, spec)?;
            s.echo = Some(echo_spread(spec, n, s.spread_per_s)?);
            Some(s)
        }
        None => None,
    };
    let restart = if spec.kills > 0 {
        Some(restarts(spec, &control, first()?, &req)?)
    } else {
        None
    };

    let t_stop = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let stop_deadline = t_stop + Duration::from_secs(60);
    let stop_s = loop {
        if child.0.try_wait()?.is_some() {
            break t_stop.elapsed().as_secs_f64();
        }
        if Instant::now() > stop_deadline {
            break f64::NAN;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(FleetResult {
        agents: spec.count,
        agents_per_process: spec.per_process.max(1),
        ready_s,
        sweep,
        answering_s,
        spread,
        memory,
        quiet,
        restart,
        stop_s,
    })
}

/// GETs of sysDescr.0 (the same on every device) to the first of
/// `targets` alone, then spread over all of them in turn, each for `d`,
/// 64 in flight, every answer checked; `pairs` times. `fleet`: the
/// fleet's processes, whose CPU time is counted.
fn spread_load(targets: &[SocketAddr], fleet: &[u32], spec: &Spec) -> anyhow::Result<Spread> {
    let (d, pairs) = (spec.spread_for, spec.spread_pairs);
    let oid = ber::parse_oid("1.3.6.1.2.1.1.1.0").unwrap_or_default();
    let req = Request::new(Op::Get, std::slice::from_ref(&oid));
    let first = *targets
        .first()
        .ok_or_else(|| anyhow!("the spread load needs at least one agent"))?;
    let expect = reference(first, &req)?;
    let run = |targets: Vec<SocketAddr>| {
        let plan = spread_plan(targets, d);
        crate::load::run(&plan, &mut Security::community(1, "public"), &req, &expect)
    };
    let paired = Paired::run(pairs, targets, fleet, &run)?;
    let pinned = if spec.pin_loads && procs::machine().nproc >= 2 {
        let p = pinned(fleet, || Paired::run(pairs, targets, fleet, &run))?;
        Some(PinnedSpread {
            single_per_s: p.single,
            spread_per_s: p.spread,
            ratio: p.ratio,
            ratios: p.ratios,
            cpu_ratio: p.cost.cpu_ratio,
            spread_busy_pct: p.cost.spread_busy_pct,
        })
    } else {
        None
    };
    Ok(Spread {
        devices: targets.len(),
        single_per_s: paired.single,
        spread_per_s: paired.spread,
        ratio: paired.ratio,
        ratios: paired.ratios,
        failed: paired.failed,
        single_cpu_us: paired.cost.single_cpu_us,
        spread_cpu_us: paired.cost.spread_cpu_us,
        cpu_ratio: paired.cost.cpu_ratio,
        single_busy_pct: paired.cost.single_busy_pct,
        spread_busy_pct: paired.cost.spread_busy_pct,
        single_client_us: paired.cost.single_client_us,
        spread_client_us: paired.cost.spread_client_us,
        echo: None,
        pinned,
    })
}

/// Runs `load` with every thread of `fleet` on CPU 0 and this thread (the
/// load generator's) on CPU 1, both as they were after.
fn pinned<T>(fleet: &[u32], load: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let every: Vec<usize> = (0..procs::machine().nproc).collect();
    let mine = procs::this_thread_cpus();
    procs::pin_all(fleet, &[0])?;
    procs::pin_this_thread(&[1])?;
    let r = load();
    let _ = procs::pin_all(fleet, &every);
    let _ = procs::pin_this_thread(if mine.is_empty() { &every } else { &mine });
    r
}

/// What alternating pairs of the two loads (one target, then spread)
/// measured: the medians of the rates, and each pair's ratio with their
/// median.
#[derive(Debug, PartialEq)]
pub struct Paired {
    /// The median of the one-target rates.
    pub single: f64,
    /// The median of the spread rates.
    pub spread: f64,
    /// The median of [`Paired::ratios`].
    pub ratio: f64,
    /// Each pair's spread rate over its one-target rate, in order.
    pub ratios: Vec<f64>,
    /// Wrong answers and timeouts, every load.
    pub failed: u64,
    /// What the servers spent on the loads.
    pub cost: PairedCost,
}

/// What the servers' processes spent on a CPU during alternating pairs
/// of loads, and how busy the machine was (medians of the pairs).
#[derive(Debug, PartialEq, Default)]
pub struct PairedCost {
    /// CPU time per request sent to one target, in µs.
    pub single_cpu_us: f64,
    /// CPU time per request spread, in µs.
    pub spread_cpu_us: f64,
    /// The median of the pairs' `single_cpu_us / spread_cpu_us`.
    pub cpu_ratio: f64,
    /// The machine's busy share during the one-target loads, in percent.
    pub single_busy_pct: f64,
    /// The same during the spread loads.
    pub spread_busy_pct: f64,
    /// The load generator's CPU time per request sent to one target, in µs.
    pub single_client_us: f64,
    /// The same spread.
    pub spread_client_us: f64,
}

/// One load's cost: the servers' CPU time per request sent, in µs, and
/// how busy the machine was, in percent.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// The servers' CPU time per request sent, in µs.
    pub cpu_us: f64,
    /// The machine's busy share, in percent of all CPUs.
    pub busy_pct: f64,
    /// The load generator's CPU time per request answered, in µs.
    pub client_us: f64,
}

impl PairedCost {
    /// From each pair's (one target, spread) costs.
    pub fn of(costs: &[(Cost, Cost)]) -> PairedCost {
        let med = |f: &dyn Fn(&(Cost, Cost)) -> f64| {
            crate::median(costs.iter().map(f)).unwrap_or(f64::NAN)
        };
        PairedCost {
            single_cpu_us: med(&|c| c.0.cpu_us),
            spread_cpu_us: med(&|c| c.1.cpu_us),
            cpu_ratio: med(&|c| rate_ratio(c.0.cpu_us, c.1.cpu_us)),
            single_busy_pct: med(&|c| c.0.busy_pct),
            spread_busy_pct: med(&|c| c.1.busy_pct),
            single_client_us: med(&|c| c.0.client_us),
            spread_client_us: med(&|c| c.1.client_us),
        }
    }
}

impl Paired {
    /// `pairs` (at least one) alternating loads by `run`: on the first of
    /// `targets` alone, then on all of them; the CPU time of `servers`
    /// (processes) counted around each.
    fn run(
        pairs: usize,
        targets: &[SocketAddr],
        servers: &[u32],
        run: &impl Fn(Vec<SocketAddr>) -> std::io::Result<crate::load::Outcome>,
    ) -> anyhow::Result<Paired> {
        let first = *targets
            .first()
            .ok_or_else(|| anyhow!("no target for the spread loads"))?;
        let costed = |targets: Vec<SocketAddr>| {
            let (machine0, cpu0) = (procs::machine_ticks(), procs::cpu_ns_of(servers));
            let outcome = run(targets)?;
            let cpu = procs::cpu_ns_of(servers).saturating_sub(cpu0);
            let busy_pct = machine0
                .zip(procs::machine_ticks())
                .map_or(f64::NAN, |(a, b)| procs::machine_busy(a, b).0);
            // The CPU time covers the warm-up too, as `sent` does.
            let cpu_us = rate_ratio(cpu as f64 / 1000.0, outcome.sent as f64);
            // Its share of a CPU over its rate, both measured.
            let client_us = rate_ratio(outcome.client_cpu_pct * 1e4, outcome.requests_per_s);
            let cost = Cost {
                cpu_us,
                busy_pct,
                client_us,
            };
            std::io::Result::Ok((outcome, cost))
        };
        let mut rates = Vec::new();
        let mut costs = Vec::new();
        let mut failed = 0;
        for _ in 0..pairs.max(1) {
            let (single, one_cost) = costed(vec![first])?;
            let (spread, spread_cost) = costed(targets.to_vec())?;
            failed += single.failed + single.timeouts + spread.failed + spread.timeouts;
            rates.push((single.requests_per_s, spread.requests_per_s));
            costs.push((one_cost, spread_cost));
        }
        Ok(Paired {
            failed,
            cost: PairedCost::of(&costs),
            ..Paired::of(&rates)
        })
    }

    /// From each pair's (one target, spread) rates.
    pub fn of(rates: &[(f64, f64)]) -> Paired {
        let ratios: Vec<f64> = rates
            .iter()
            .map(|(one, all)| rate_ratio(*all, *one))
            .collect();
        Paired {
            single: crate::median(rates.iter().map(|r| r.0)).unwrap_or(f64::NAN),
            spread: crate::median(rates.iter().map(|r| r.1)).unwrap_or(f64::NAN),
            ratio: crate::median(ratios.iter().copied()).unwrap_or(f64::NAN),
            ratios,
            failed: 0,
            cost: PairedCost::default(),
        }
    }
}

fn rate_ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The spread load's two runs against an echo fleet of `n` sockets shaped
/// like the fleet's first `n` agents (their kind of addresses, on the port
/// after the fleet's, or the ports after its last; as many per process),
/// started now and stopped after. `agentcluster_per_s`: the fleet's spread
/// rate, to compare.
fn echo_spread(spec: &Spec, n: usize, agentcluster_per_s: f64) -> anyhow::Result<EchoSpread> {
    let count = u32::try_from(n)?;
    let port = if spec.spread_addresses {
        u32::from(spec.base_port) + 1
    } else {
        u32::from(spec.base_port) + spec.count
    };
    let port = u16::try_from(port).map_err(|_| anyhow!("no port left for the echo fleet"))?;
    let exe = std::env::current_exe().context("cannot find this program")?;
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let pairs = spec.spread_pairs.max(1);
    let lifetime = spec.spread_for * 4 * u32::try_from(pairs)? + Duration::from_secs(60);
    let fleet = crate::echo::EchoFleet::spawn(
        &exe,
        listen,
        count,
        spec.per_process.max(1),
        spec.spread_addresses,
        lifetime,
    )
    .context("echo fleet")?;
    let req = Request::new(Op::Get, &[]);
    let run = |targets: Vec<SocketAddr>| {
        let plan = spread_plan(targets, spec.spread_for);
        let plan = crate::load::Plan {
            expect_any: true,
            ..plan
        };
        crate::load::run(
            &plan,
            &mut Security::community(1, "public"),
            &req,
            &Expect::Structure,
        )
    };
    let paired = Paired::run(pairs, &fleet.addrs, &fleet.pids(), &run)?;
    drop(fleet);
    Ok(EchoSpread {
        single_per_s: paired.single,
        spread_per_s: paired.spread,
        ratio: paired.ratio,
        agentcluster_vs_echo: rate_ratio(agentcluster_per_s, paired.spread),
        cpu_ratio: paired.cost.cpu_ratio,
        spread_busy_pct: paired.cost.spread_busy_pct,
        single_client_us: paired.cost.single_client_us,
        spread_client_us: paired.cost.spread_client_us,
    })
}

/// The spread load's plan: `targets` in turn, 64 in flight, for `d`
/// after 300 ms of warm-up, no retries.
fn spread_plan(targets: Vec<SocketAddr>, d: Duration) -> crate::load::Plan {
    crate::load::Plan {
        targets,
        inflight: 64,
        count: None,
        duration: Some(d),
        warmup: Duration::from_millis(300),
        timeout: Duration::from_secs(1),
        retries: 0,
        rate: None,
        expect_any: false,
        batch: 64,
        // Both loads of a pair alike (see `Plan::unconnected`).
        unconnected: true,
    }
}

/// Learns the expected answer from one agent (waiting up to 10 s for it).
pub fn reference(target: SocketAddr, req: &Request) -> anyhow::Result<Expect> {
    let mut c = Client::new(target, Security::community(1, "public"))?;
    let a = c
        .call(req, Duration::from_millis(200), 50)
        .map_err(|e| anyhow!("reference GET to {target}: {e}"))?;
    expect_from(req, &a)
}

/// The exact bindings of a checked reference answer.
pub fn expect_from(req: &Request, a: &Answer) -> anyhow::Result<Expect> {
    let pdu = answer_pdu(a);
    snmp::check(req, &Expect::Structure, &pdu).map_err(|f| anyhow!("reference answer: {f}"))?;
    Ok(Expect::Exact(a.varbinds.clone()))
}

fn answer_pdu(a: &Answer) -> snmp::Pdu<'_> {
    snmp::Pdu {
        tag: a.tag,
        rid: a.rid,
        error_status: a.error_status,
        error_index: a.error_index,
        varbinds: &a.varbinds,
    }
}

#[derive(serde::Deserialize)]
struct Status {
    name: String,
    state: String,
    pid: Option<u32>,
    uptime_ms: Option<u64>,
}

fn status(bin: &Path, control: &Path, name: &str) -> anyhow::Result<Option<Status>> {
    let out = Command::new(bin)
        .args(["status", "--json", "--control"])
        .arg(control)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "agentcluster status: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let all: Vec<Status> = serde_json::from_slice(&out.stdout).context("status --json")?;
    Ok(all.into_iter().find(|s| s.name == name))
}

/// SIGKILL of agent `a-0` to its next answered GET, `spec.kills` times.
fn restarts(
    spec: &Spec,
    control: &Path,
    target: SocketAddr,
    req: &Request,
) -> anyhow::Result<Restart> {
    let expect = reference(target, req)?;
    let mut client = Client::new(target, Security::community(1, "public"))?;
    let mut samples = Vec::new();
    let mut previous: Option<u32> = None;
    for _ in 0..spec.kills {
        // Wait for a fresh process that has run long enough to count as
        // stable (the policy's window is 1 s).
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            if let Some(s) = status(&spec.agentcluster, control, "a-0")?
                && s.state == "running"
                && s.pid.is_some()
                && s.pid != previous
                && s.uptime_ms.unwrap_or(0) >= 1100
            {
                break s.pid.unwrap_or_default();
            }
            if Instant::now() > deadline {
                bail!("agent a-0 did not come back to a stable running state");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        previous = Some(pid);
        let killed = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        // Only ask once it is really dead, so the old process cannot answer.
        let dead_by = Instant::now() + Duration::from_secs(5);
        while matches!(procs::state(pid), Some(c) if c != 'Z' && c != 'X') {
            if Instant::now() > dead_by {
                bail!("pid {pid} survived SIGKILL");
            }
            std::thread::yield_now();
        }
        // Resend every 2 ms for up to 10 s; an answer to any attempt counts.
        let a = client
            .call(req, Duration::from_millis(2), 5000)
            .map_err(|e| anyhow!("no answer after the kill: {e}"))?;
        let took = killed.elapsed();
        snmp::check(req, &expect, &answer_pdu(&a))
            .map_err(|f| anyhow!("answer after the kill: {f}"))?;
        samples.push(took.as_secs_f64() * 1000.0);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Restart {
        kills: samples.len(),
        median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN),
        min_ms: sorted.first().copied().unwrap_or(f64::NAN),
        max_ms: sorted.last().copied().unwrap_or(f64::NAN),
        samples_ms: samples,
    })
}

/// The OID the fleet scenarios ask: sysName.0 unless told otherwise.
pub fn default_oid() -> Vec<u32> {
    ber::parse_oid("1.3.6.1.2.1.1.5.0").unwrap_or_default()
}
