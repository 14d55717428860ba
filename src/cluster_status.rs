//! `agentcluster status --cluster [--json]`: every agent of the fleet in
//! etcd, with the node that owns it and its state as that node reports it
//! (docs/scale-out.md), read in one transaction. The table, filters,
//! order and colours are `status`'s own. Built with the cargo feature
//! `etcd`; without it the command says so.

use std::process::ExitCode;

use crate::UserError;
use crate::status_cmd::StatusArgs;

/// Runs `status --cluster`.
pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(file) = args.target.config.as_deref() else {
        return Err(UserError(
            "status --cluster: name a configuration whose `cluster.etcd` says where etcd is, \
             with -c FILE"
                .into(),
        )
        .into());
    };
    imp::status(file, args)
}

#[cfg(not(feature = "etcd"))]
mod imp {
    use super::*;

    pub fn status(_file: &std::path::Path, _args: &StatusArgs) -> anyhow::Result<ExitCode> {
        Err(UserError(
            "this agentcluster was built without etcd support (cargo feature `etcd`): \
             `status --cluster` reads etcd"
                .into(),
        )
        .into())
    }
}

#[cfg(feature = "etcd")]
mod imp {
    use std::path::Path;
    use std::time::Duration;

    use agentcluster_supervisor::cluster::keys::Keys;
    use agentcluster_supervisor::cluster::status::{
        AgentRow, ClusterStatus, NodeRow, RowState, read_cluster,
    };
    use anyhow::Context as _;

    use super::*;
    use crate::ctl::{self, Column, Row};
    use crate::status_cmd::{self, Pick, Sortable};

    /// The most the read may take, connecting included: the client gives
    /// up on an unreachable etcd after its connect timeout; this bounds
    /// anything else.
    const READ_LIMIT: Duration = Duration::from_secs(20);

    pub fn status(file: &Path, args: &StatusArgs) -> anyhow::Result<ExitCode> {
        let fleet = crate::load_shared_fleet(file)?;
        let (etcd, runtime) = crate::etcd_cmd::etcd_and_runtime(file, &fleet)?;
        let endpoints = etcd.endpoints.join(",");
        let read =
            runtime.block_on(async { tokio::time::timeout(READ_LIMIT, read_cluster(&etcd)).await });
        let cluster: ClusterStatus = match read {
            Err(_) => {
                return Err(UserError(format!(
                    "etcd at {endpoints} did not answer within {}s",
                    READ_LIMIT.as_secs()
                ))
                .into());
            }
            Ok(Err(e)) => {
                return Err(UserError(format!(
                    "cannot read the cluster: {e}\nhint: is etcd running? `cluster.etcd.endpoints` \
                     in {} says where it is",
                    file.display()
                ))
                .into());
            }
            Ok(Ok(c)) => c,
        };
        let key = Keys::new(&etcd.prefix).fleet();
        let Some(pushed) = cluster.fleet.as_ref() else {
            return Err(UserError(format!(
                "nothing pushed at {key}: `agentcluster etcd push -c FLEET` first"
            ))
            .into());
        };
        let pushed_fleet = pushed
            .load()
            .map_err(|e| UserError(format!("{key}: {e}")))?;
        let (nodes, agents) = cluster.rows(&pushed_fleet);
        if let Some(message) = args.unmatched(agents.iter().map(|a| a.agent.as_str())) {
            return Err(UserError(format!("{message} in the fleet at {key}")).into());
        }
        let text = if args.json {
            json(cluster.revision, &nodes, &agents, args)?
        } else {
            render(
                &etcd.prefix,
                cluster.revision,
                &nodes,
                &agents,
                args,
                status_cmd::colour(),
            )
        };
        match ctl::print_open(&text) {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(f) => Err(anyhow::anyhow!(f.message)),
        }
    }

    impl Sortable for AgentRow {
        fn name(&self) -> &str {
            &self.agent
        }
        fn state(&self) -> Pick {
            pick(self.state)
        }
        fn restarts(&self) -> u32 {
            self.restarts
        }
        fn uptime_ms(&self) -> Option<u64> {
            None
        }
        fn requests(&self) -> Option<u64> {
            None
        }
        fn rss_bytes(&self) -> Option<u64> {
            None
        }
    }

    fn pick(state: RowState) -> Pick {
        match state {
            RowState::Agent(s) => Pick::Agent(s),
            RowState::Unowned => Pick::Unowned,
            RowState::Unknown => Pick::Unknown,
        }
    }

    /// `{"revision", "nodes": [...], "agents": [...]}`: every live node,
    /// and the agents `--state` selects, in the fleet's order.
    fn json(
        revision: i64,
        nodes: &[NodeRow],
        agents: &[AgentRow],
        args: &StatusArgs,
    ) -> anyhow::Result<String> {
        let selected: Vec<&AgentRow> = agents
            .iter()
            .filter(|a| args.takes(&a.agent, pick(a.state)))
            .collect();
        let out = serde_json::json!({
            "revision": revision,
            "nodes": nodes,
            "agents": selected,
        });
        let mut s =
            serde_json::to_string_pretty(&out).context("cannot encode the status as JSON")?;
        s.push('\n');
        Ok(s)
    }

    const COLUMNS: [Column; 6] = [
        Column {
            header: "AGENT",
            right: false,
        },
        Column {
            header: "NODE",
            right: false,
        },
        Column {
            header: "STATE",
            right: false,
        },
        Column {
            header: "PID",
            right: true,
        },
        Column {
            header: "RESTARTS",
            right: true,
        },
        Column {
            header: "ENDPOINTS",
            right: false,
        },
    ];

    /// The state's column in [`COLUMNS`].
    const STATE_COLUMN: usize = 2;

    /// The summary line and the table of the agents `args` selects, in
    /// its order.
    pub(super) fn render(
        prefix: &str,
        revision: i64,
        nodes: &[NodeRow],
        agents: &[AgentRow],
        args: &StatusArgs,
        colour: bool,
    ) -> String {
        let mut rows: Vec<&AgentRow> = agents
            .iter()
            .filter(|a| args.takes(&a.agent, pick(a.state)))
            .collect();
        status_cmd::sort(&mut rows, args.sort);
        let shown = args.filters().then_some(rows.len());
        let head = format!("cluster {}", ctl::one_line(prefix));
        let states: Vec<Pick> = agents.iter().map(|a| pick(a.state)).collect();
        let extra = format!(
            " on {} node{} (revision {revision})",
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        );
        let mut out = status_cmd::summary_of(&head, &states, shown, &extra);
        let dash = || "-".to_string();
        let table: Vec<Row<Pick>> = rows
            .iter()
            .map(|a| Row {
                key: pick(a.state),
                cells: vec![
                    a.agent.clone(),
                    a.node.as_deref().map_or_else(dash, ctl::one_line),
                    a.state.to_string(),
                    a.pid.map_or_else(dash, |p| p.to_string()),
                    a.restarts.to_string(),
                    if a.endpoints.is_empty() {
                        dash()
                    } else {
                        a.endpoints.join(",")
                    },
                ],
                // Why an unowned agent is follows its row.
                after: a
                    .unowned
                    .as_deref()
                    .map_or_else(String::new, |why| format!("  {why}")),
            })
            .collect();
        let plain = |_: Pick, cell: &str| cell.to_string();
        out.push_str(&if colour {
            ctl::render_grid(&COLUMNS, STATE_COLUMN, &table, &status_cmd::paint_pick)
        } else {
            ctl::render_grid(&COLUMNS, STATE_COLUMN, &table, &plain)
        });
        out
    }
}
