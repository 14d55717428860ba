//! `agentcluster-bench`: the load generator and the measuring tools of
//! `bench/run` — SNMP load (v1/v2c/v3 GET, GETNEXT, GETBULK) with every
//! answer checked, walks, a UDP echo ceiling, fleet start/memory/restart
//! scenarios against the real `agentcluster run`, snapshot compile rate,
//! and the report table. Each measurement prints one JSON record on stdout
//! (and appends it to `--out`) and a human summary on stderr.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use agentcluster_bench::client::{self, Client};
use agentcluster_bench::snmp::{self, Expect, Op, Request, Security};
use agentcluster_bench::{
    ber, compile, echo, fleet, load, parse_duration, parse_targets, procs, report, sweep, usm,
};

#[derive(Parser)]
#[command(
    name = "agentcluster-bench",
    version,
    about = "SNMP load generator and benchmark tools for agentcluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load: requests in flight against one or many agents, every answer checked.
    Load(LoadArgs),
    /// A GETBULK walk (like `snmpbulkwalk -Cr25`), timed and checked.
    Walk(WalkArgs),
    /// A trivial UDP responder: a fixed 50-byte reply to every datagram.
    Echo(EchoArgs),
    /// One checked GET to each of many endpoints, resent until each answers.
    Sweep(SweepArgs),
    /// Run `agentcluster run` with a generated fleet and measure it.
    Fleet(FleetArgs),
    /// Compile a snapshot into a store (cold), then re-check and open it (warm).
    Compile(CompileArgs),
    /// Print the first of N consecutive UDP ports free on every IPv4 address.
    Ports(PortsArgs),
    /// Print the pid of the process serving an agent (from `agentcluster status`).
    AgentPid(AgentPidArgs),
    /// Run a command, record its wall time and stdout line count.
    #[command(name = "time-cmd")]
    Time(TimeCmdArgs),
    /// Render the table from the records of a run.
    Report(ReportArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Version {
    #[value(name = "1")]
    V1,
    #[value(name = "2c")]
    V2c,
    #[value(name = "3")]
    V3,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OpArg {
    Get,
    Getnext,
    Getbulk,
}

/// Where to send and how to authenticate.
#[derive(Args, Clone)]
struct Peer {
    /// Agent address, `HOST:PORT` or `HOST:FIRST-LAST` for a port range;
    /// repeat for more.
    #[arg(short, long = "target", required = true, value_name = "ADDR")]
    targets: Vec<String>,
    #[arg(short = 'v', long, value_enum, default_value = "2c")]
    version: Version,
    #[arg(short, long, default_value = "public")]
    community: String,
    /// SNMPv3 user (authPriv with SHA and AES128 when --priv-password is
    /// given, authNoPriv SHA otherwise).
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(short = 'A', long)]
    auth_password: Option<String>,
    #[arg(short = 'X', long)]
    priv_password: Option<String>,
    /// SNMPv3 authentication protocol (only SHA is implemented).
    #[arg(long, default_value = "SHA")]
    auth_protocol: String,
    /// SNMPv3 privacy protocol (only AES128 is implemented).
    #[arg(long, default_value = "AES128")]
    priv_protocol: String,
    /// SNMPv3 context name (snmpsim serves a data file as the context of its name).
    #[arg(short = 'n', long, default_value = "")]
    context: String,
    /// Time to wait for an answer, e.g. `1s`, `500ms`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Args)]
struct Record {
    /// Tag of the JSON record, `scenario/server` (e.g. `get-v2c/snmpd`).
    #[arg(long, default_value = "")]
    tag: String,
    /// Append the JSON record to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    peer: Peer,
    #[arg(long, value_enum, default_value = "get")]
    op: OpArg,
    /// OID to ask for; repeat for several varbinds (default sysName.0).
    #[arg(short, long = "oid")]
    oids: Vec<String>,
    #[arg(long, default_value_t = 0)]
    non_repeaters: u32,
    #[arg(long, default_value_t = 10)]
    max_repetitions: u32,
    /// Requests in flight.
    #[arg(short, long, default_value_t = 64)]
    inflight: usize,
    /// Stop after this many requests (after the warm-up).
    #[arg(long)]
    count: Option<u64>,
    /// Stop sending after this long (after the warm-up).
    #[arg(short, long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Send a request again after a timeout, up to this many times (same
    /// request-id and expected answer); it is a timeout only when every try
    /// went unanswered. 0: no retransmission (the benchmark).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Most new requests per second (default: as many as the window allows).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests during this time are not counted.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    warmup: Duration,
    /// Expected value of each OID, in order: `s:TEXT`, `i:N`, `o:OID` or
    /// `x:HEX` (a whole TLV). Default: learned from a first reference request.
    #[arg(short, long = "expect")]
    expect: Vec<String>,
    /// Check request-id, error-status and names, not values (for live objects).
    #[arg(long)]
    no_value_check: bool,
    /// Accept any datagram as the answer to the oldest request (the echo responder).
    #[arg(long)]
    expect_any: bool,
    /// Most datagrams per sendmmsg/recvmmsg call (1: one send and one
    /// receive per request; capped at the requests in flight).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Send unconnected to a single target too (as to many, with the
    /// don't-fragment bit): a one-target load then costs the generator
    /// what a spread one does.
    #[arg(long)]
    unconnected: bool,
    /// Pid of the server process(es): their CPU time is reported per request.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    #[command(flatten)]
    record: Record,
}

#[derive(Args)]
struct WalkArgs {
    #[command(flatten)]
    peer: Peer,
    /// Subtree to walk (`1` walks everything, like net-snmp's `.1`).
    #[arg(long, default_value = "1")]
    root: String,
    #[arg(long, default_value_t = 25)]
    max_repetitions: u32,
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Most requests (a bound, not a target).
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    #[command(flatten)]
    record: Record,
}

#[derive(Args)]
struct EchoArgs {
    /// The address (of the first socket, with --count).
    #[arg(short, long, default_value = "127.0.0.1:16161")]
    listen: SocketAddr,
    /// Exit after this long.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    lifetime: Duration,
    /// An echo fleet of this many sockets: on consecutive ports from
    /// --listen, or with --spread-addresses one port at the fleet
    /// scenario's device addresses (127.A.B.C).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Sockets per process of an echo fleet (each process one thread
    /// waiting on all of its sockets with epoll). Default: all in one.
    #[arg(long)]
    per_process: Option<u32>,
    /// Socket i at 127.A.B.C on --listen's port, as `fleet --spread-addresses`.
    #[arg(long)]
    spread_addresses: bool,
    /// Serve only this part of the fleet (the processes an echo fleet
    /// starts of itself).
    #[arg(long, hide = true)]
    part: Option<u32>,
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    peer: Peer,
    #[arg(short, long = "oid")]
    oids: Vec<String>,
    #[arg(short, long, default_value_t = 256)]
    inflight: usize,
    /// Give up on endpoints still silent after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    deadline: Duration,
    #[arg(short, long = "expect")]
    expect: Vec<String>,
    #[arg(long)]
    no_value_check: bool,
    #[command(flatten)]
    record: Record,
}

#[derive(Args)]
struct FleetArgs {
    /// The agentcluster binary.
    #[arg(long)]
    agentcluster: PathBuf,
    /// Work directory (fleet.yaml, cache, state, log); agents must be able
    /// to read it.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    snapshot: PathBuf,
    #[arg(long)]
    count: u32,
    #[arg(long, default_value_t = 1)]
    per_process: u32,
    #[arg(long)]
    base_port: u16,
    #[arg(long)]
    start_tokens: Option<u32>,
    /// `cluster.steering: false`: each device's socket receives its own
    /// datagrams (no BPF program steers them to one socket per process).
    #[arg(long)]
    no_steering: bool,
    /// Run the spread loads' pairs again with the fleet on CPU 0 and the
    /// load generator on CPU 1, as bench/run pins its other loads.
    #[arg(long)]
    pin_loads: bool,
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    ready_timeout: Duration,
    /// Send a checked GET to every agent.
    #[arg(long)]
    sweep: bool,
    /// Measure PSS of the supervisor and every agent process.
    #[arg(long)]
    memory: bool,
    /// SIGKILL agent a-0 this many times, timing each until its next answer.
    #[arg(long, default_value_t = 0)]
    kills: u32,
    /// Agent i at 127.A.B.C:BASE_PORT (250 per /24 from 127.1.0.1) instead
    /// of 127.0.0.1:BASE_PORT+i.
    #[arg(long)]
    spread_addresses: bool,
    /// Each agent's own sysName (dev-000042), checked by the sweep.
    #[arg(long)]
    own_names: bool,
    /// GETs spread over this many agents, against agent 0's GET rate alone.
    #[arg(long)]
    spread: Option<usize>,
    /// Length of each spread load.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    spread_duration: Duration,
    /// Pairs of the spread loads (one agent, then spread), alternating;
    /// medians are reported.
    #[arg(long, default_value_t = 3)]
    spread_pairs: usize,
    /// Watch the fleet this long while nothing asks it anything (after the
    /// sweep and the memory): its processes' CPU time and the machine's.
    #[arg(long, value_parser = parse_duration)]
    quiet: Option<Duration>,
    #[command(flatten)]
    record: Record,
}

#[derive(Args)]
struct CompileArgs {
    snapshot: PathBuf,
    /// Cache directory to compile into (emptied first).
    #[arg(long)]
    cache: PathBuf,
    #[arg(long, default_value_t = 20)]
    opens: usize,
    #[command(flatten)]
    record: Record,
}

#[derive(Args)]
struct PortsArgs {
    #[arg(long)]
    count: u16,
    #[arg(long, default_value_t = 20_000)]
    from: u16,
}

#[derive(Args)]
struct AgentPidArgs {
    #[arg(long)]
    agentcluster: PathBuf,
    #[arg(long)]
    control: PathBuf,
    #[arg(long)]
    agent: String,
}

#[derive(Args)]
struct TimeCmdArgs {
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    limit: Duration,
    #[command(flatten)]
    record: Record,
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct ReportArgs {
    /// The JSON records of the run, one per line.
    input: PathBuf,
    /// Write the table and records as one JSON document here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Write the Markdown table here as well.
    #[arg(long)]
    markdown_out: Option<PathBuf>,
}

fn echo_cmd(a: &EchoArgs) -> anyhow::Result<bool> {
    let per = a.per_process.unwrap_or(a.count);
    if let Some(part) = a.part {
        echo::serve_part(a.listen, a.count, per, a.spread_addresses, part, a.lifetime)?;
        return Ok(true);
    }
    if a.count <= 1 {
        echo::serve(a.listen, a.lifetime)?;
        return Ok(true);
    }
    let exe = std::env::current_exe().context("cannot find this program")?;
    let fleet =
        echo::EchoFleet::spawn(&exe, a.listen, a.count, per, a.spread_addresses, a.lifetime)?;
    println!(
        "echo: {} sockets in processes of {per}, until {:?} from now",
        fleet.addrs.len(),
        a.lifetime
    );
    std::thread::sleep(a.lifetime);
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Load(a) => load_cmd(a),
        Cmd::Walk(a) => walk_cmd(a),
        Cmd::Echo(a) => echo_cmd(&a),
        Cmd::Sweep(a) => sweep_cmd(a),
        Cmd::Fleet(a) => fleet_cmd(a),
        Cmd::Compile(a) => compile_cmd(a),
        Cmd::Ports(a) => ports_cmd(&a),
        Cmd::AgentPid(a) => agent_pid_cmd(&a),
        Cmd::Time(a) => time_cmd(a),
        Cmd::Report(a) => report_cmd(&a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("agentcluster-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse_oids(oids: &[String]) -> anyhow::Result<Vec<Vec<u32>>> {
    if oids.is_empty() {
        return Ok(vec![fleet::default_oid()]);
    }
    oids.iter()
        .map(|o| ber::parse_oid(o).map_err(|e| anyhow!(e)))
        .collect()
}

/// The message wrapping for `peer`, after engine discovery for v3.
fn security(peer: &Peer, target: SocketAddr) -> anyhow::Result<Security> {
    match peer.version {
        Version::V1 => Ok(Security::community(0, &peer.community)),
        Version::V2c => Ok(Security::community(1, &peer.community)),
        Version::V3 => {
            if !peer.auth_protocol.eq_ignore_ascii_case("SHA") {
                bail!("only SHA authentication is implemented in the load generator");
            }
            if peer.priv_password.is_some() && !peer.priv_protocol.eq_ignore_ascii_case("AES128") {
                bail!("only AES128 privacy is implemented in the load generator");
            }
            let user = peer
                .user
                .as_deref()
                .ok_or_else(|| anyhow!("v3 needs --user"))?;
            let auth = peer.auth_password.as_deref().ok_or_else(|| {
                anyhow!("v3 needs --auth-password (noAuthNoPriv is not measured)")
            })?;
            let engine = client::discover(target, peer.timeout, 3)
                .map_err(|e| anyhow!("engine discovery at {target}: {e}"))?;
            let session = usm::Session::new(
                engine,
                user,
                auth,
                peer.priv_password.as_deref(),
                &peer.context,
            )
            .map_err(|e| anyhow!(e))?;
            Ok(Security::usm(session))
        }
    }
}

/// Builds the expectation: from `--expect`, none (`--no-value-check`), or a
/// reference request to the first target.
fn expectation(
    peer: &Peer,
    targets: &[SocketAddr],
    req: &Request,
    expect: &[String],
    no_value_check: bool,
) -> anyhow::Result<Expect> {
    if !expect.is_empty() {
        if req.op != Op::Get || expect.len() != req.oids.len() {
            bail!("--expect gives one value per --oid, for --op get");
        }
        let values: Result<Vec<Vec<u8>>, String> =
            expect.iter().map(|e| snmp::parse_value(e)).collect();
        return Ok(Expect::Exact(snmp::exact_bindings(
            req,
            &values.map_err(|e| anyhow!(e))?,
        )));
    }
    if no_value_check {
        return Ok(Expect::Structure);
    }
    let sec = security(peer, targets[0])?;
    let mut c = Client::new(targets[0], sec)?;
    let a = c
        .call(req, peer.timeout, 3)
        .map_err(|e| anyhow!("reference request to {}: {e}", targets[0]))?;
    fleet::expect_from(req, &a)
}

fn emit(record: &Record, kind: &str, mut v: Value) -> anyhow::Result<()> {
    if let Value::Object(m) = &mut v {
        m.insert("tag".into(), json!(record.tag));
        m.insert("kind".into(), json!(kind));
        m.insert("loadavg1".into(), json!(procs::loadavg1()));
        m.insert(
            "unix_time".into(),
            json!(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ),
        );
    }
    let line = serde_json::to_string(&v)?;
    println!("{line}");
    if let Some(path) = &record.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn load_cmd(a: LoadArgs) -> anyhow::Result<bool> {
    let targets = parse_targets(&a.peer.targets)?;
    if a.count.is_none() && a.duration.is_none() {
        bail!("give --count, --duration or both: every run is bounded");
    }
    let oids = parse_oids(&a.oids)?;
    let op = match a.op {
        OpArg::Get => Op::Get,
        OpArg::Getnext => Op::GetNext,
        OpArg::Getbulk => Op::GetBulk {
            non_repeaters: a.non_repeaters,
            max_repetitions: a.max_repetitions,
        },
    };
    let req = Request::new(op, &oids);
    let expect = if a.expect_any {
        Expect::Structure
    } else {
        expectation(&a.peer, &targets, &req, &a.expect, a.no_value_check)?
    };
    let mut sec = security(&a.peer, targets[0])?;
    let plan = load::Plan {
        targets: targets.clone(),
        inflight: a.inflight,
        count: a.count,
        duration: a.duration,
        warmup: a.warmup,
        timeout: a.peer.timeout,
        retries: a.retries,
        rate: a.rate,
        expect_any: a.expect_any,
        batch: a.batch,
        unconnected: a.unconnected,
    };
    let cpu0: Vec<Option<u64>> = a.server_pids.iter().map(|p| procs::cpu_ns(*p)).collect();
    let machine0 = procs::machine_ticks();
    let t0 = Instant::now();
    let out = load::run(&plan, &mut sec, &req, &expect)?;
    let wall = t0.elapsed().as_secs_f64();
    let machine = machine0
        .zip(procs::machine_ticks())
        .map(|(a, b)| procs::machine_busy(a, b));
    let server_cpu_s: Option<f64> = if a.server_pids.is_empty() {
        None
    } else {
        // A process that ended meanwhile counts nothing.
        let mut total = 0u64;
        for (p, t0) in a.server_pids.iter().zip(&cpu0) {
            if let (Some(t0), Some(t1)) = (t0, procs::cpu_ns(*p)) {
                total += t1.saturating_sub(*t0);
            }
        }
        Some(total as f64 / 1e9)
    };
    eprintln!(
        "{}: {} {} ×{} in flight → {:.0} req/s, {:.0} varbinds/s, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; ok {}, failed {}, timeouts {}, late {}, retransmits {}; client CPU {:.0}%{}",
        if a.record.tag.is_empty() {
            "load"
        } else {
            &a.record.tag
        },
        op.name(),
        targets.len(),
        a.inflight,
        out.requests_per_s,
        out.varbinds_per_s,
        out.p50_us,
        out.p99_us,
        out.max_us,
        out.ok,
        out.failed,
        out.timeouts,
        out.late,
        out.retransmits,
        out.client_cpu_pct,
        server_cpu_s
            .map(|s| format!(", server CPU {:.0}%", 100.0 * s / wall))
            .unwrap_or_default()
    );
    for s in &out.samples {
        eprintln!("  failure: {s}");
    }
    let mut v = serde_json::to_value(&out)?;
    if let Value::Object(m) = &mut v {
        m.insert("op".into(), json!(op.name()));
        m.insert("targets".into(), json!(targets.len()));
        m.insert("inflight".into(), json!(a.inflight));
        m.insert("expect_any".into(), json!(a.expect_any));
        if let Some((busy, steal)) = machine {
            // Everything the machine did meanwhile, in % of all its CPUs:
            // what neither the client nor the server used was someone else.
            m.insert("machine_busy_pct".into(), json!(busy));
            m.insert("steal_pct".into(), json!(steal));
        }
        if let Some(s) = server_cpu_s {
            m.insert("server_cpu_pct".into(), json!(100.0 * s / wall));
            m.insert(
                "server_cpu_us_per_req".into(),
                json!(if out.sent > 0 {
                    s * 1e6 / out.sent as f64
                } else {
                    0.0
                }),
            );
        }
    }
    emit(&a.record, "load", v)?;
    Ok(out.failed == 0 && out.ok > 0)
}

fn walk_cmd(a: WalkArgs) -> anyhow::Result<bool> {
    let targets = parse_targets(&a.peer.targets)?;
    let root = ber::parse_oid(&a.root).map_err(|e| anyhow!(e))?;
    let sec = security(&a.peer, targets[0])?;
    let mut c = Client::new(targets[0], sec)?;
    let w = client::walk(
        &mut c,
        &root,
        a.max_repetitions,
        a.peer.timeout,
        a.retries,
        a.max_requests,
    )
    .map_err(|e| anyhow!("walk of {}: {e}", targets[0]))?;
    eprintln!(
        "{}: {} OIDs in {:.3} s ({} requests, {} retries) = {:.2} µs per OID",
        if a.record.tag.is_empty() {
            "walk"
        } else {
            &a.record.tag
        },
        w.oids,
        w.seconds,
        w.requests,
        w.retries,
        w.per_oid_us
    );
    emit(&a.record, "walk", serde_json::to_value(&w)?)?;
    Ok(w.oids > 0)
}

fn sweep_cmd(a: SweepArgs) -> anyhow::Result<bool> {
    let targets = parse_targets(&a.peer.targets)?;
    let oids = parse_oids(&a.oids)?;
    let req = Request::new(Op::Get, &oids);
    // The reference comes from the first endpoint: wait for it to answer.
    let expect = if a.expect.is_empty() && !a.no_value_check {
        let sec = security(&a.peer, targets[0])?;
        let mut c = Client::new(targets[0], sec)?;
        let tries = (a.deadline.as_millis() / a.peer.timeout.as_millis().max(1)) as u32;
        let ans = c
            .call(&req, a.peer.timeout, tries)
            .map_err(|e| anyhow!("reference request to {}: {e}", targets[0]))?;
        fleet::expect_from(&req, &ans)?
    } else {
        expectation(&a.peer, &targets, &req, &a.expect, a.no_value_check)?
    };
    let mut sec = security(&a.peer, targets[0])?;
    let s = sweep::sweep(
        &targets,
        &mut sec,
        &req,
        &expect,
        a.inflight,
        a.peer.timeout,
        a.deadline,
    )?;
    eprintln!(
        "{}: {}/{} answered, {} wrong, in {:.3} s ({} sends)",
        if a.record.tag.is_empty() {
            "sweep"
        } else {
            &a.record.tag
        },
        s.answered,
        s.targets,
        s.wrong,
        s.seconds,
        s.sends
    );
    for x in &s.samples {
        eprintln!("  failure: {x}");
    }
    let ok = s.answered == s.targets;
    emit(&a.record, "sweep", serde_json::to_value(&s)?)?;
    Ok(ok)
}

fn fleet_cmd(a: FleetArgs) -> anyhow::Result<bool> {
    let spec = fleet::Spec {
        agentcluster: a.agentcluster,
        dir: a.dir,
        snapshot: a.snapshot,
        count: a.count,
        per_process: a.per_process,
        base_port: a.base_port,
        start_tokens: a.start_tokens,
        no_steering: a.no_steering,
        pin_loads: a.pin_loads,
        ready_timeout: a.ready_timeout,
        sweep: a.sweep,
        memory: a.memory,
        kills: a.kills,
        oid: fleet::default_oid(),
        spread_addresses: a.spread_addresses,
        own_names: a.own_names,
        spread: a.spread,
        spread_for: a.spread_duration,
        spread_pairs: a.spread_pairs,
        quiet: a.quiet,
    };
    let r = fleet::run(&spec)?;
    let mut line = format!(
        "{}: {} agents ({} per process) ready in {:.3} s",
        if a.record.tag.is_empty() {
            "fleet"
        } else {
            &a.record.tag
        },
        r.agents,
        r.agents_per_process,
        r.ready_s
    );
    if let Some(s) = &r.sweep {
        line.push_str(&format!(
            "; {}/{} answered a checked GET in {:.3} s",
            s.answered, s.targets, s.seconds
        ));
    }
    if let Some(t) = r.answering_s {
        line.push_str(&format!("; all answering {t:.3} s after `run`"));
    }
    if let Some(s) = &r.spread {
        line.push_str(&format!(
            "; GETs over {} agents {:.0}/s vs one agent {:.0}/s ({:.2}×, {} failed)",
            s.devices, s.spread_per_s, s.single_per_s, s.ratio, s.failed
        ));
    }
    if let Some(m) = &r.memory {
        line.push_str(&format!(
            "; {} agent processes, PSS median {:.2} MiB, max {:.2} MiB, total with supervisor and {} helpers {:.1} MiB",
            m.processes,
            m.pss_median_kib as f64 / 1024.0,
            m.pss_max_kib as f64 / 1024.0,
            m.helpers,
            m.total_pss_kib as f64 / 1024.0
        ));
    }
    if let Some(q) = &r.quiet {
        line.push_str(&format!(
            "; unasked for {:.0} s: {:.1} % of a CPU (supervisor {:.1} %), machine {:.1} % busy",
            q.seconds, q.fleet_cpu_pct, q.supervisor_cpu_pct, q.machine_busy_pct
        ));
    }
    if let Some(k) = &r.restart {
        line.push_str(&format!(
            "; restart median {:.1} ms (min {:.1}, max {:.1}, {} kills)",
            k.median_ms, k.min_ms, k.max_ms, k.kills
        ));
    }
    line.push_str(&format!("; stopped in {:.3} s", r.stop_s));
    eprintln!("{line}");
    let ok = r
        .sweep
        .as_ref()
        .is_none_or(|s| s.answered == s.targets && s.wrong == 0)
        && r.spread.as_ref().is_none_or(|s| s.failed == 0);
    emit(&a.record, "fleet", serde_json::to_value(&r)?)?;
    Ok(ok)
}

fn compile_cmd(a: CompileArgs) -> anyhow::Result<bool> {
    let c = compile::run(&a.snapshot, &a.cache, a.opens)?;
    eprintln!(
        "{}: {} records ({} MB) compiled in {:.3} s = {:.0} records/s; cached check {:.1} ms; open {:.3} ms",
        if a.record.tag.is_empty() {
            "compile"
        } else {
            &a.record.tag
        },
        c.records,
        c.source_bytes / 1_000_000,
        c.cold_s,
        c.records_per_s,
        c.cached_check_ms,
        c.open_ms
    );
    emit(&a.record, "compile", serde_json::to_value(&c)?)?;
    Ok(true)
}

fn ports_cmd(a: &PortsArgs) -> anyhow::Result<bool> {
    let base = agentcluster_bench::free_ports(a.from, a.count).ok_or_else(|| {
        anyhow!(
            "no {} consecutive free UDP ports from {}",
            a.count.max(1),
            a.from
        )
    })?;
    println!("{base}");
    Ok(true)
}

fn agent_pid_cmd(a: &AgentPidArgs) -> anyhow::Result<bool> {
    let out = Command::new(&a.agentcluster)
        .args(["status", "--json", "--control"])
        .arg(&a.control)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "agentcluster status: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let all: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    let pid = all
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(a.agent.as_str()))
        .and_then(|s| s.get("pid").and_then(Value::as_u64))
        .ok_or_else(|| anyhow!("no running agent {:?}", a.agent))?;
    println!("{pid}");
    Ok(true)
}

fn time_cmd(a: TimeCmdArgs) -> anyhow::Result<bool> {
    let (prog, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow!("no command"))?;
    let t0 = Instant::now();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {prog}"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let counter = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut lines = 0u64;
        let mut buf = [0u8; 65_536];
        let mut r = stdout;
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        }
        lines
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if t0.elapsed() > a.limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let seconds = t0.elapsed().as_secs_f64();
    let lines = counter.join().unwrap_or(0);
    let ok = status.is_some_and(|s| s.success());
    eprintln!(
        "{}: {prog} took {seconds:.3} s, {lines} lines{}",
        if a.record.tag.is_empty() {
            "time"
        } else {
            &a.record.tag
        },
        if ok { "" } else { " (FAILED)" }
    );
    emit(
        &a.record,
        "time",
        json!({
            "seconds": seconds,
            "lines": lines,
            "per_line_us": if lines > 0 { seconds * 1e6 / lines as f64 } else { 0.0 },
            "ok": ok,
        }),
    )?;
    Ok(ok)
}

fn report_cmd(a: &ReportArgs) -> anyhow::Result<bool> {
    let text =
        std::fs::read_to_string(&a.input).with_context(|| format!("{}", a.input.display()))?;
    let records = report::Records::parse(&text)?;
    let rows = report::rows(&records);
    let machine = procs::machine();
    let md = report::markdown(&rows, &machine);
    print!("{md}");
    if let Some(p) = &a.markdown_out {
        std::fs::write(p, &md)?;
    }
    if let Some(p) = &a.json_out {
        let all: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let doc = json!({ "machine": machine, "rows": rows, "records": all });
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(true)
}
