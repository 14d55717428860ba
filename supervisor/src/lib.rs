//! The agentcluster supervisor: binds endpoints, runs the agents, owns
//! shutdown.
