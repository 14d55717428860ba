//! `agentcluster completions SHELL` and `agentcluster man`: generated from
//! the command-line definition itself (clap_complete, clap_mangen), so they
//! cannot drift from what the binary accepts.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Prints the completion script of `shell` on stdout.
pub fn completions(cmd: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = with_record_options(cmd);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "agentcluster", &mut out);
    write_stdout(&out)
}

/// `cmd` with `record`'s own options (its parser is its own: net-snmp's
/// letters clash with the global options) added to its subcommand, for
/// completion only. A letter that is also a global option's (`-v`, `-c`)
/// is completed as that one; record's other options all complete.
fn with_record_options(cmd: clap::Command) -> clap::Command {
    let global: Vec<char> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter_map(clap::Arg::get_short)
        .collect();
    cmd.mut_subcommand("record", |mut sub| {
        for arg in crate::record_cmd::command().get_arguments() {
            let clash = arg.get_short().is_some_and(|c| global.contains(&c));
            if arg.get_id() == "help" || (clash && arg.get_long().is_none()) {
                continue;
            }
            let arg = if clash {
                arg.clone().short(None)
            } else {
                arg.clone()
            };
            sub = sub.arg(arg);
        }
        sub
    })
}

/// Prints agentcluster(1) on stdout, or with `dir` writes it and one page
/// per command (`agentcluster-status.1`, `agentcluster-snapshot-check.1`, …)
/// there.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> anyhow::Result<()> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the manual pages to {}", dir.display()))?;
            // `record` parses its own arguments (net-snmp's letters clash
            // with the global options): its page comes from its own parser.
            let record = crate::record_cmd::command().name("agentcluster-record");
            let path = dir.join("agentcluster-record.1");
            let mut out = Vec::new();
            clap_mangen::Man::new(record).render(&mut out)?;
            std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = Vec::new();
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            write_stdout(&out)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
