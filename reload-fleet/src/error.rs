//! The fleet's errors: [`FleetError`] for everything the coordinator, the
//! node agent and the command-line tool can meet; what a node refuses a
//! version with is a [`Refusal`](crate::Refusal), a record in etcd.

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// etcd could not be reached, or refused the request.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A record in etcd is not what it should be.
    #[error("the record at {key} is unreadable: {reason}")]
    Record {
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A plan that cannot be run.
    #[error("invalid plan: {0}")]
    Plan(String),
    /// Another rollout of the plugin is going on.
    #[error("a rollout of `{plugin}` is going on already: {active}")]
    Busy {
        /// The plugin.
        plugin: String,
        /// Its rollout.
        active: String,
    },
    /// No rollout of that id.
    #[error("no rollout `{0}`")]
    NoSuchRollout(String),
    /// A local file (the node's fallback state, a package cache) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The node's first reconciliation did not finish in time.
    #[error("{0}")]
    Start(String),
}
