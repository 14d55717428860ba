//! A node's life in the cluster: not built yet.
