//! The crate's errors: what a SQL statement sees when a hot object fails
//! ([`HotError`]), and what a deploy from SQL is refused with
//! ([`DeployError`]).
//!
//! SQLite carries an error out of a function or a virtual table as text:
//! the statement fails with `rusqlite::Error::SqliteFailure` whose message
//! is the error's `Display` (the plugin, its version and the cause), as
//! every SQLite client sees it.

use reload_core::registry::{EnterError, RegistryError};
use thiserror::Error;

use crate::wire::WireError;

/// A call into a hot object that failed. Every variant names the plugin
/// and, once one was leased, its version: the old version keeps serving
/// and the connection stays usable.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HotError {
    /// The plugin is not registered (or was unregistered).
    #[error("plugin `{plugin}`: {source}")]
    Enter {
        /// The plugin.
        plugin: String,
        /// Why.
        source: EnterError,
    },
    /// The plugin's call returned an error.
    #[error("plugin `{plugin}` {version} failed: {message}")]
    Call {
        /// The plugin.
        plugin: String,
        /// The version that ran.
        version: String,
        /// Its error.
        message: String,
    },
    /// The plugin's call, or the host's codec, panicked; the panic was
    /// caught.
    #[error("plugin `{plugin}` {version} panicked: {message}")]
    Panicked {
        /// The plugin.
        plugin: String,
        /// The version that ran.
        version: String,
        /// The panic's message.
        message: String,
    },
    /// The arguments could not be encoded.
    #[error("`{object}`: {source}")]
    Arguments {
        /// The SQL function or table.
        object: String,
        /// Why.
        source: WireError,
    },
    /// The plugin's reply did not decode.
    #[error("plugin `{plugin}` {version} returned a bad reply: {source}")]
    Reply {
        /// The plugin.
        plugin: String,
        /// The version that ran.
        version: String,
        /// Why.
        source: WireError,
    },
    /// A table plugin returned a row of the wrong width.
    #[error(
        "plugin `{plugin}` {version} returned a row of {got} columns; table `{table}` has {want}"
    )]
    Columns {
        /// The plugin.
        plugin: String,
        /// The version that ran.
        version: String,
        /// The table.
        table: String,
        /// Values in the row.
        got: usize,
        /// Columns of the table.
        want: usize,
    },
}

impl HotError {
    /// The plugin concerned.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            HotError::Enter { plugin, .. }
            | HotError::Call { plugin, .. }
            | HotError::Panicked { plugin, .. }
            | HotError::Reply { plugin, .. }
            | HotError::Columns { plugin, .. } => Some(plugin),
            HotError::Arguments { .. } => None,
        }
    }
}

impl From<HotError> for rusqlite::Error {
    fn from(e: HotError) -> Self {
        rusqlite::Error::UserFunctionError(Box::new(e))
    }
}

/// Why `reload_deploy` or `reload_revert` refused. The version serving
/// before it serves on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The package could not be made (missing file, not a library, a
    /// manifest that does not decode, a wrong ABI).
    #[error("cannot deploy `{plugin}` from {path}: {message}")]
    Package {
        /// The plugin.
        plugin: String,
        /// The path given.
        path: String,
        /// Why.
        message: String,
    },
    /// The package is another plugin.
    #[error("the package at {path} is plugin `{found}`, not `{plugin}`")]
    WrongName {
        /// The plugin named in SQL.
        plugin: String,
        /// The path given.
        path: String,
        /// The name in its manifest.
        found: String,
    },
    /// The registry refused the reload or the revert.
    #[error("`{plugin}` refused: {source}")]
    Refused {
        /// The plugin.
        plugin: String,
        /// The registry's reason.
        source: Box<RegistryError>,
    },
    /// The new version of a column type cannot read a stored value
    /// ([`crate::column`]).
    #[error("`{plugin}` {version} cannot read {table}.{column} at rowid {rowid}: {reason}")]
    Incompatible {
        /// The plugin.
        plugin: String,
        /// The version refused.
        version: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The first row it cannot read.
        rowid: i64,
        /// Why.
        reason: String,
    },
    /// Managing plugins from SQL is not enabled on this connection for
    /// this plugin.
    #[error("plugin `{plugin}` is not managed from SQL here")]
    NotManaged {
        /// The plugin.
        plugin: String,
    },
    /// The deployer panicked; the panic was caught.
    #[error("deploying `{plugin}` panicked: {message}")]
    Panicked {
        /// The plugin.
        plugin: String,
        /// The panic's message.
        message: String,
    },
}

impl From<DeployError> for rusqlite::Error {
    fn from(e: DeployError) -> Self {
        rusqlite::Error::UserFunctionError(Box::new(e))
    }
}

/// A panic payload's message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned())
}
