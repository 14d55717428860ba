//! The `agentcluster` command line: parses arguments, sets up logging, hands
//! over to the library crates and maps their errors to exit codes. Nothing
//! else lives here.

mod cache_cmd;
mod check_cmd;
mod cluster_status;
mod ctl;
mod default_fleet;
mod etcd_cmd;
mod import_cmd;
mod kvp_cmd;
mod manual;
mod progress;
mod ready;
mod record_cmd;
mod serve_cmd;
mod signals;
mod snapshot_cmd;
mod status_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::IsTerminal as _;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

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

/// `--version`: the crate version and the git commit it was built from
/// (build.rs; just the version when built outside git).
const VERSION: &str = env!("AGENTCLUSTER_VERSION");

#[derive(Parser)]
#[command(
    name = "agentcluster",
    version = VERSION,
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
    /// Fleet configuration file, for the commands that read one (run,
    /// check, status, start, stop, restart, reload, events, cache); the
    /// same as `-c` after the command.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control socket of the supervisor, for the commands that use one
    /// (run, check, status, start, stop, restart, reload, events); the same
    /// as `--control` after the command.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `run`'s and `check`'s options.
#[derive(clap::Args)]
struct ConfigArgs {
    /// Fleet configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Control socket of the supervisor (default: the configuration's
    /// `cluster.control_socket`, else a per-user runtime path).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

/// `run`'s options.
#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// This node's name, overriding `cluster.node` (several nodes of a
    /// fleet shared through etcd on one host).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the supervisor in the foreground (without -c: the embedded default fleet).
    Run(RunArgs),
    /// Serve snapshot files or snmpsim data directories, without a fleet file.
    Serve(serve_cmd::ServeArgs),
    /// Write a fleet YAML equivalent to an snmpsim data directory or a tree
    /// of legacy `.agent` files.
    Import {
        #[command(subcommand)]
        command: import_cmd::ImportCommand,
    },
    /// Validate a configuration (-c FILE) and print every problem.
    Check(ConfigArgs),
    /// Validate, convert and sort snapshot files.
    Snapshot {
        #[command(subcommand)]
        command: snapshot_cmd::SnapshotCommand,
    },
    /// List the compiled snapshot stores in the cache directory, or remove
    /// those unused for a while.
    Cache {
        #[command(subcommand)]
        command: cache_cmd::CacheCommand,
    },
    /// The fleet in etcd, for nodes that share it (docs/scale-out.md).
    Etcd {
        #[command(subcommand)]
        command: etcd_cmd::EtcdCommand,
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
    Status(status_cmd::StatusArgs),
    /// Restart agents of the running supervisor.
    Restart(ctl::NamesArgs),
    /// Stop agents of the running supervisor.
    Stop(ctl::NamesArgs),
    /// Start stopped or failed agents of the running supervisor.
    Start(ctl::NamesArgs),
    /// Make the running supervisor re-read its configuration.
    Reload(ctl::Target),
    /// Inject a fault into running agents (reboot, hang, link-down/up,
    /// latency, loss) or clear their faults.
    Fault(ctl::FaultArgs),
    /// Show lifecycle events of the running supervisor (follow with -f).
    Events(ctl::EventsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page agentcluster(1), or write it with one page per
    /// command to a directory.
    Man {
        /// Write agentcluster.1 and agentcluster-COMMAND.1 pages into DIR
        /// instead of printing agentcluster(1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Internal: an agent process, started by the supervisor only.
    #[command(hide = true)]
    Agent,
    /// Internal: the supervisor's spawn helper, started by it only.
    #[command(hide = true)]
    Spawner { program: PathBuf, parent: i32 },
    /// Internal: a socket holder of the supervisor, started by it only.
    #[command(hide = true)]
    Holder,
}

impl Command {
    /// The name of a command that reads neither a configuration nor a
    /// control socket.
    fn without_config(&self) -> Option<&'static str> {
        match self {
            Command::Snapshot { .. } => Some("snapshot"),
            Command::Kvp { .. } => Some("kvp"),
            Command::Completions { .. } => Some("completions"),
            Command::Man { .. } => Some("man"),
            Command::Import { .. } => Some("import"),
            Command::Record => Some("record"),
            Command::Agent => Some("agent"),
            Command::Spawner { .. } => Some("spawner"),
            Command::Holder => Some("holder"),
            _ => None,
        }
    }
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
    if let Command::Agent = cli.command
        && !agentcluster_agent::process::started_by_supervisor()
    {
        eprintln!(
            "agentcluster: `agentcluster agent` is internal: the supervisor starts it, with its \
             control channel on fd 3. Run a fleet with `agentcluster run` instead."
        );
        return ExitCode::from(EXIT_USER);
    }
    init_logging(&cli);
    // What the commands print on stdout is their output; `run`'s failures
    // are the supervisor's, whatever their cause.
    let prints = !matches!(cli.command, Command::Run(_));
    let result = dispatch(cli, record_args);
    match result {
        Ok(code) => code,
        // A reader that went away (`| head`) wants no more: not an error.
        Err(e) if prints && broken_pipe(&e) => ExitCode::SUCCESS,
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

/// Runs the command, with `-c`/`--control` given before it applied where
/// none was given after it.
fn dispatch(cli: Cli, record_args: Vec<std::ffi::OsString>) -> anyhow::Result<ExitCode> {
    let (config, control) = (cli.config.as_deref(), cli.control.as_deref());
    if let Some(name) = cli.command.without_config() {
        let given = match (config, control) {
            (Some(_), _) => Some("-c/--config"),
            (None, Some(_)) => Some("--control"),
            (None, None) => None,
        };
        if let Some(option) = given {
            return Err(UserError(format!(
                "{option} does not apply to `{name}`, which reads no fleet configuration"
            ))
            .into());
        }
    }
    let with = |mut target: ctl::Target| {
        target.or(config, control);
        target
    };
    match cli.command {
        Command::Run(args) => run(
            args.config.config.as_deref().or(config),
            args.config.control.as_deref().or(control),
            args.node,
        ),
        Command::Check(args) => {
            let Some(file) = args.config.as_deref().or(config) else {
                return Err(UserError(
                    "check: name the configuration to check with -c FILE".into(),
                )
                .into());
            };
            check_cmd::check(file, args.control.as_deref().or(control))
        }
        Command::Serve(args) => {
            if config.is_some() {
                return Err(UserError(
                    "-c/--config does not apply to `serve`, which builds its own fleet".into(),
                )
                .into());
            }
            serve_cmd::serve(args, control)
        }
        Command::Import { command } => import_cmd::run(command),
        Command::Record => record_cmd::run(record_args),
        Command::Snapshot { command } => snapshot_cmd::run(command),
        Command::Cache { command } => {
            if control.is_some() {
                return Err(UserError(
                    "--control does not apply to `cache`, which asks no supervisor".into(),
                )
                .into());
            }
            cache_cmd::run(command, config)
        }
        Command::Kvp { command } => kvp_cmd::run(command),
        Command::Etcd { command } => etcd_cmd::run(command, config),
        Command::Status(mut args) => {
            args.target = with(args.target);
            status_cmd::status(&args)
        }
        Command::Restart(mut args) => {
            args.target = with(args.target);
            ctl::act(ctl::Action::Restart, args)
        }
        Command::Stop(mut args) => {
            args.target = with(args.target);
            ctl::act(ctl::Action::Stop, args)
        }
        Command::Start(mut args) => {
            args.target = with(args.target);
            ctl::act(ctl::Action::Start, args)
        }
        Command::Reload(target) => ctl::reload(&with(target)),
        Command::Fault(mut args) => {
            args.target = with(args.target);
            ctl::fault(args)
        }
        Command::Events(mut args) => {
            args.target = with(args.target);
            ctl::events(&args)
        }
        Command::Completions { shell } => {
            manual::completions(Cli::command(), shell)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            manual::man(Cli::command(), dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent => Ok(ExitCode::from(
            agentcluster_agent::process::main().clamp(0, 255) as u8,
        )),
        Command::Spawner { program, parent } => Ok(ExitCode::from(
            agentcluster_supervisor::spawn_helper_main(&program, parent).clamp(0, 255) as u8,
        )),
        Command::Holder => Ok(ExitCode::from(
            agentcluster_supervisor::socket_holder_main().clamp(0, 255) as u8,
        )),
    }
}

/// Whether writing to stdout failed because its reader went away.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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
    // Colour only for a person at a terminal, and not when NO_COLOR is set
    // (https://no-color.org: present and not empty).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(progress::LogWriter);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads a fleet, printing warnings; every error becomes one `UserError`.
/// A fleet the host cannot carry is refused before its templates are
/// expanded.
fn load_fleet(path: &Path) -> anyhow::Result<agentcluster_conf::Fleet> {
    load_fleet_within(path, &mut |fleet| {
        agentcluster_supervisor::check_capacity(fleet).0
    })
}

/// [`load_fleet`] for a fleet this host does not run by itself (pushed to
/// etcd and shared by nodes, or only read): every problem but this host's
/// capacity.
fn load_shared_fleet(path: &Path) -> anyhow::Result<agentcluster_conf::Fleet> {
    load_fleet_within(path, &mut |_| Vec::new())
}

fn load_fleet_within(
    path: &Path,
    fits: &mut dyn FnMut(&agentcluster_conf::Fleet) -> Vec<String>,
) -> anyhow::Result<agentcluster_conf::Fleet> {
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

fn run(
    config: Option<&Path>,
    control: Option<&Path>,
    node: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (mut fleet, default) = match config {
        Some(path) => (load_fleet(path)?, false),
        None => (default_fleet::load()?, true),
    };
    if let Some(node) = node {
        if node.trim().is_empty() {
            return Err(UserError("run --node: the node name is empty".into()).into());
        }
        fleet.cluster.node = node;
    }
    if fleet.cluster.etcd.is_some() && fleet.agents.is_empty() && !cfg!(feature = "etcd") {
        return Err(UserError(
            "this configuration is a cluster node (`cluster.etcd`, no agents), but this agentcluster was built without etcd support (cargo feature `etcd`)".into(),
        )
        .into());
    }
    supervise(fleet, control, move |node, up, files| {
        ready::print(node, up, default, files);
    })
}

/// Runs `fleet` until it is told to stop; `on_ready` prints what the start
/// gave (with where its files are).
fn supervise(
    fleet: agentcluster_conf::Fleet,
    control: Option<&Path>,
    on_ready: impl FnOnce(&str, &agentcluster_supervisor::Ready, &ready::Files),
) -> anyhow::Result<ExitCode> {
    // Per-thread arenas only hold on to freed per-agent state: one for all.
    agentcluster_agent::sys::one_malloc_arena();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agentcluster")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let triggers = signals::install()?;
        // On a terminal, the start's progress on stderr until the ready block.
        let shown = progress::show(triggers.progress.subscribe());
        let node = fleet.cluster.node.clone();
        let control = control
            .map(Path::to_path_buf)
            .or_else(|| fleet.cluster.control_socket.clone())
            .unwrap_or_else(agentcluster_supervisor::protocol::default_control_socket);
        let files = ready::Files::of(&fleet, &control);
        agentcluster_supervisor::run(fleet, control, triggers, |up| {
            shown.as_ref().map(progress::Shown::finish);
            on_ready(&node, up, &files);
        })
        .await
        .map_err(|e| match e {
            agentcluster_supervisor::Error::Bind(_)
            | agentcluster_supervisor::Error::Addresses(_)
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
