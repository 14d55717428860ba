//! What an event says happened and in which state it left its agent: the
//! event kinds ([`EventKind`], owned by the configuration crate, whose
//! `events.notify` filters name them) and the agent states ([`State`]),
//! each with every spelling the outside world knows it by.

pub use agentcluster_conf::EventKind;

/// The states of an agent (and of the supervisor itself, on its own
/// events), as events, `status` and AGENTCLUSTER-MIB show them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Configured with `active: false`: no process until started.
    Inactive,
    /// A process is being created and has not answered ready yet.
    Starting,
    /// Serving.
    Running,
    /// Not answering (heartbeat, /proc state, memory, probe): being stopped.
    Unresponsive,
    /// Being stopped on request.
    Stopping,
    /// Waiting before a restart.
    Backoff,
    /// Too many restarts: no more until an operator acts.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl State {
    /// Every state, in the order of their MIB numbers.
    pub const ALL: [State; 8] = [
        State::Inactive,
        State::Starting,
        State::Running,
        State::Unresponsive,
        State::Stopping,
        State::Backoff,
        State::Failed,
        State::Stopped,
    ];

    /// The state's name (`backoff`).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Starting => "starting",
            State::Running => "running",
            State::Unresponsive => "unresponsive",
            State::Stopping => "stopping",
            State::Backoff => "backoff",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }

    /// The AcSupervisionState value of AGENTCLUSTER-MIB.
    pub const fn number(self) -> i64 {
        match self {
            State::Inactive => 1,
            State::Starting => 2,
            State::Running => 3,
            State::Unresponsive => 4,
            State::Stopping => 5,
            State::Backoff => 6,
            State::Failed => 7,
            State::Stopped => 8,
        }
    }

    /// A process exists (or is being created) in this state.
    pub const fn has_process(self) -> bool {
        matches!(
            self,
            State::Starting | State::Running | State::Unresponsive | State::Stopping
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown state `{0}` (one of: inactive, starting, running, unresponsive, stopping, backoff, failed, stopped)"
)]
pub struct UnknownState(pub String);

impl std::str::FromStr for State {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<State, UnknownState> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_as_their_names_and_number_densely() {
        for (i, s) in State::ALL.into_iter().enumerate() {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(s.number(), i as i64 + 1);
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
    }
}
