//! `agentcluster kvp dump [PATH]`: decodes a Hyper-V KVP pool file (ours,
//! cloud-init's, anyone's), one record per line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use agentcluster_supervisor::kvp;
use clap::{Args, Subcommand};

use crate::UserError;
use crate::ctl::one_line;

#[derive(Subcommand)]
pub enum KvpCommand {
    /// Decode a KVP pool file: `KEY = VALUE` per record (NULs stripped).
    Dump(DumpArgs),
}

#[derive(Args)]
pub struct DumpArgs {
    /// The pool file.
    #[arg(default_value = kvp::DEFAULT_POOL)]
    path: PathBuf,
    /// One JSON object per record: {"key": …, "value": …}.
    #[arg(long)]
    json: bool,
    /// Join values sliced over several records (`msg_i`) back into one.
    #[arg(long)]
    reassemble: bool,
}

pub fn run(command: KvpCommand) -> anyhow::Result<ExitCode> {
    match command {
        KvpCommand::Dump(args) => dump(&args),
    }
}

fn dump(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let bytes = kvp::read_pool(&args.path)
        .map_err(|e| UserError(format!("cannot read {}: {e}", args.path.display())))?;
    let pool = kvp::decode(&bytes);
    let entries = if args.reassemble {
        kvp::reassemble(&pool.records)
    } else {
        pool.records
            .into_iter()
            .map(|r| kvp::Entry {
                key: r.key,
                value: r.value,
                parts: 1,
                complete: true,
            })
            .collect()
    };
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let line = if args.json {
            let mut j = serde_json::json!({ "key": e.key, "value": e.value });
            if e.parts > 1 {
                j["parts"] = e.parts.into();
            }
            j.to_string()
        } else {
            format!("{} = {}", one_line(&e.key), one_line(&e.value))
        };
        if writeln!(out, "{line}").is_err() {
            // A closed pipe (`| head`) is not an error.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    for e in entries.iter().filter(|e| !e.complete) {
        eprintln!(
            "agentcluster: {}: {}: a slice whose other parts are missing",
            args.path.display(),
            one_line(&e.key)
        );
    }
    if pool.trailing > 0 {
        eprintln!(
            "agentcluster: {}: the last record is truncated ({} of {} bytes): a write cut short, or not a KVP pool",
            args.path.display(),
            pool.trailing,
            kvp::RECORD_SIZE
        );
    }
    Ok(ExitCode::SUCCESS)
}
