//! The layer's own errors, as a service error (`tower::BoxError`): the
//! inner service's errors pass through unchanged.

use reload_core::registry::EnterError;
use thiserror::Error;

/// Why a request could not be admitted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The slot was closed: the plugin serves no more requests.
    #[error("plugin `{plugin}` is closed")]
    Closed {
        /// The plugin.
        plugin: String,
    },
    /// The registry refused the call (the plugin, or a requirement, was
    /// unregistered).
    #[error(transparent)]
    Enter(EnterError),
    /// `call` without a `poll_ready` that returned ready: no lease was
    /// taken, so the request is refused rather than run on no version.
    #[error("the service was called before it was ready (tower's contract)")]
    NotReady,
}
