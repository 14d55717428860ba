//! The `agentcluster` command line: parses arguments, sets up logging, hands
//! over to the library crates and maps their errors to exit codes. Nothing
//! else lives here.

mod check_cmd;
mod ctl;
mod default_fleet;
mod kvp_cmd;
mod record_cmd;
mod signals;
mod snapshot_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes (docs/cli.md).
const EXIT_USER: u8 = 1;
const EXIT_RUNTIME: u8 = 2;

/// An error caused by the user's input (config, arguments, files): exit 1.
#[derive(Debug)]
struct UserError(String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

#[derive(Parser)]
#[command(
    name = "agentcluster",
    version,
    about = "Run a fleet of simulated SNMP devices"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less log output.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,
    /// Control socket of the supervisor (default: the config's
    /// `cluster.control_socket`, else a per-user runtime path).
    #[arg(long, global = true, value_name = "PATH")]
    control: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the supervisor in the foreground (without -c: the embedded default fleet).
    Run {
        /// Fleet configuration file.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print every problem.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate, convert and sort snapshot files.
    Snapshot {
        #[command(subcommand)]
        command: snapshot_cmd::SnapshotCommand,
    },
    /// Decode a Hyper-V KVP pool file.
    Kvp {
        #[command(subcommand)]
        command: kvp_cmd::KvpCommand,
    },
    /// Walk a live SNMP device into a snapshot file (`record --help`: its options).
    ///
    /// Everything after `record` is its own: net-snmp's option letters
    /// (`-v 2c -c public`), read by the command itself.
    Record,
    /// Show the agents of the running supervisor.
    Status(ctl::StatusArgs),
    /// Restart agents of the running supervisor.
    Restart(ctl::NamesArgs),
    /// Stop agents of the running supervisor.
    Stop(ctl::NamesArgs),
    /// Start stopped or failed agents of the running supervisor.
    Start(ctl::NamesArgs),
    /// Make the running supervisor re-read its configuration.
    Reload(ctl::Target),
    /// Show lifecycle events of the running supervisor (follow with -f).
    Events(ctl::EventsArgs),
    /// Internal: an agent process, started by the supervisor only.
    #[command(hide = true)]
    Agent,
    /// Internal: the supervisor's spawn helper, started by it only.
    #[command(hide = true)]
    Spawner { program: PathBuf, parent: i32 },
}

fn main() -> ExitCode {
    let (argv, record_args) = record_cmd::split_args(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; bad arguments are user
            // errors (exit 1), not clap's default 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USER)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli);
    let result = match cli.command {
        Command::Run { config } => run(config.as_deref(), cli.control.as_deref()),
        Command::Check { config } => Ok(check_cmd::check(&config, cli.control.as_deref())),
        Command::Snapshot { command } => snapshot_cmd::run(command),
        Command::Kvp { command } => kvp_cmd::run(command),
        Command::Record => record_cmd::run(record_args),
        Command::Status(args) => ctl::status(cli.control.as_deref(), &args),
        Command::Restart(args) => ctl::act(cli.control.as_deref(), ctl::Action::Restart, args),
        Command::Stop(args) => ctl::act(cli.control.as_deref(), ctl::Action::Stop, args),
        Command::Start(args) => ctl::act(cli.control.as_deref(), ctl::Action::Start, args),
        Command::Reload(target) => ctl::reload(cli.control.as_deref(), &target),
        Command::Events(args) => ctl::events(cli.control.as_deref(), &args),
        Command::Agent => {
            return ExitCode::from(agentcluster_agent::process::main().clamp(0, 255) as u8);
        }
        Command::Spawner { program, parent } => {
            return ExitCode::from(
                agentcluster_supervisor::spawn_helper_main(&program, parent).clamp(0, 255) as u8,
            );
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentcluster: {e:#}");
            if e.downcast_ref::<UserError>().is_some() {
                ExitCode::from(EXIT_USER)
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match i16::from(cli.verbose) - i16::from(cli.quiet) {
        i16::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Under systemd, lifecycle events go to the journal as structured
    // entries of their own; the plain log line would repeat them.
    let level = if agentcluster_supervisor::journal_socket().is_some() {
        format!("{level},agentcluster_supervisor::events::bus=warn")
    } else {
        level.to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads a fleet, printing warnings; every error becomes one `UserError`.
/// A fleet the host cannot carry is refused before its templates are
/// expanded.
fn load_fleet(path: &Path) -> anyhow::Result<agentcluster_conf::Fleet> {
    let fits =
        &mut |fleet: &agentcluster_conf::Fleet| agentcluster_supervisor::check_capacity(fleet).0;
    match agentcluster_conf::load_within(path, fits) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            Ok(loaded.fleet)
        }
        Err(problems) => {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            Err(UserError(text.join("\n")).into())
        }
    }
}

fn run(config: Option<&Path>, control: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (fleet, default) = match config {
        Some(path) => (load_fleet(path)?, false),
        None => (default_fleet::load()?, true),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agentcluster")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let triggers = signals::install()?;
        let node = fleet.cluster.node.clone();
        let control = control
            .map(Path::to_path_buf)
            .or_else(|| fleet.cluster.control_socket.clone())
            .unwrap_or_else(agentcluster_supervisor::protocol::default_control_socket);
        agentcluster_supervisor::run(fleet, control, triggers, |ready| {
            print_ready(&node, ready, default);
        })
        .await
        .map_err(|e| match e {
            agentcluster_supervisor::Error::Bind(_)
            | agentcluster_supervisor::Error::Store(_)
            | agentcluster_supervisor::Error::Capacity(_)
            | agentcluster_supervisor::Error::Control(_)
            | agentcluster_supervisor::Error::Metrics { .. } => {
                anyhow::Error::new(UserError(e.to_string()))
            }
            other => anyhow::Error::new(other),
        })
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_ready(node: &str, ready: &agentcluster_supervisor::Ready, default: bool) {
    use std::io::Write as _;
    let n = ready.agents.len();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "agentcluster: {n} agent{} ready on node {node}",
        if n == 1 { "" } else { "s" }
    );
    if !ready.failed.is_empty() {
        let _ = writeln!(
            out,
            "agentcluster: {} agent(s) failed to start: {}",
            ready.failed.len(),
            ready.failed.join(", ")
        );
    }
    if default {
        let _ = writeln!(out, "Query them with net-snmp, for example:");
    }
    for a in ready
        .agents
        .iter()
        .take(if default { usize::MAX } else { 10 })
    {
        for ep in &a.endpoints {
            let _ = writeln!(out, "  snmpwalk -v2c -c public {ep} system    # {}", a.name);
        }
    }
    if !default && n > 10 {
        let _ = writeln!(out, "  … and {} more (agentcluster status)", n - 10);
    }
    let _ = writeln!(out, "Stop with Ctrl-C.");
    let _ = out.flush();
}
