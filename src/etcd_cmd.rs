//! `agentcluster etcd push|get`: the fleet in etcd (docs/scale-out.md).
//! Built with the cargo feature `etcd`; without it the commands say so.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::UserError;

/// `etcd`'s commands.
#[derive(Subcommand)]
pub enum EtcdCommand {
    /// Validate a fleet (as `check`, but not against this host's capacity:
    /// nodes share it) and write it to etcd in one write (its
    /// `cluster.etcd` says where).
    Push(PushArgs),
    /// Show the fleet in etcd, SNMPv3 passwords masked.
    Get(GetArgs),
}

/// `etcd push`'s options.
#[derive(clap::Args)]
pub struct PushArgs {
    /// The fleet to push.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

/// `etcd get`'s options.
#[derive(clap::Args)]
pub struct GetArgs {
    /// A configuration whose `cluster.etcd` says where etcd is.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// One JSON object: key, revision, source, yaml (masked).
    #[arg(long)]
    pub json: bool,
}

/// Runs an `etcd` command; `config` is the global `-c`.
pub fn run(command: EtcdCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (file, json, push) = match &command {
        EtcdCommand::Push(a) => (a.config.as_deref().or(config), false, true),
        EtcdCommand::Get(a) => (a.config.as_deref().or(config), a.json, false),
    };
    let Some(file) = file else {
        return Err(UserError("etcd: name the configuration with -c FILE".into()).into());
    };
    imp::run(file, push, json)
}

#[cfg(feature = "etcd")]
pub(crate) use imp::etcd_and_runtime;

#[cfg(not(feature = "etcd"))]
mod imp {
    use super::*;

    pub fn run(_file: &Path, _push: bool, _json: bool) -> anyhow::Result<ExitCode> {
        Err(UserError(
            "this agentcluster was built without etcd support (cargo feature `etcd`)".into(),
        )
        .into())
    }
}

#[cfg(feature = "etcd")]
mod imp {
    use agentcluster_supervisor::cluster::{fleet, keys::Keys};
    use anyhow::Context as _;

    use super::*;

    /// `fleet`'s `cluster.etcd` (read from `file`: named when it has
    /// none) and a runtime to talk to it from.
    pub fn etcd_and_runtime(
        file: &Path,
        fleet: &agentcluster_conf::Fleet,
    ) -> anyhow::Result<(agentcluster_conf::Etcd, tokio::runtime::Runtime)> {
        let Some(etcd) = fleet.cluster.etcd.clone() else {
            return Err(UserError(format!(
                "{}: no `cluster.etcd`: it says where etcd is",
                file.display()
            ))
            .into());
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        Ok((etcd, runtime))
    }

    /// When this host could not serve the whole of `fleet`: how many agents
    /// it carries (under the pushed file's cluster settings, as `check`
    /// counts, each agent with one endpoint), and so how many nodes like
    /// it the fleet needs at least.
    fn nodes_needed(fleet: &agentcluster_conf::Fleet) -> Option<String> {
        let (short, _) = agentcluster_supervisor::check_capacity(fleet);
        if short.is_empty() {
            return None;
        }
        let agents = fleet.agents.len() as u64;
        let carries = agentcluster_supervisor::agents_this_host_carries(fleet);
        Some(if carries == 0 {
            "this host could not serve even one of them under the pushed file's cluster settings \
             (`check -c` on a node's own file says why)"
                .to_string()
        } else {
            format!(
                "this host could not serve all of them: it carries about {carries} agents under the \
                 pushed file's cluster settings, so the fleet needs at least {} nodes like it \
                 (each node checks its own share when it starts)",
                agents.div_ceil(carries)
            )
        })
    }

    pub fn run(file: &Path, push: bool, json: bool) -> anyhow::Result<ExitCode> {
        // The fleet is shared by the nodes: whether this host could serve
        // all of it is no reason to refuse it (said below instead).
        let fleet = crate::load_shared_fleet(file)?;
        let (etcd, runtime) = etcd_and_runtime(file, &fleet)?;
        let key = Keys::new(&etcd.prefix).fleet();
        if push {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let source = std::path::absolute(file)
                .with_context(|| format!("cannot resolve {}", file.display()))?;
            let revision = runtime.block_on(fleet::push(&etcd, &source, &text))?;
            println!(
                "pushed {} agent{} to {key} (revision {revision})",
                fleet.agents.len(),
                if fleet.agents.len() == 1 { "" } else { "s" }
            );
            if let Some(line) = nodes_needed(&fleet) {
                println!("{line}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        let got: Option<(fleet::Pushed, i64)> = runtime.block_on(fleet::get(&etcd))?;
        let Some((pushed, revision)) = got else {
            return Err(UserError(format!(
                "nothing pushed at {key}: `agentcluster etcd push -c FLEET` first"
            ))
            .into());
        };
        let yaml = fleet::mask(&pushed.yaml);
        if json {
            let out = serde_json::json!({
                "key": key,
                "revision": revision,
                "source": pushed.source,
                "yaml": yaml,
            });
            println!("{out}");
        } else {
            println!(
                "# {key} (revision {revision}), pushed from {}",
                pushed.source.display()
            );
            print!("{yaml}");
            if !yaml.ends_with('\n') {
                println!();
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
