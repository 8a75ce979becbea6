//! [`Handle`]: a plugin looked up once, for calls that skip the lookup.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::{Call, Counters, EnterError, Node};
use crate::hooks::{panic_message, Cause, Hook, HookFailure};
use crate::stats::SlotStats;
use crate::Stateful;

/// A plugin looked up once: calls through it skip the lookup. Outlives an
/// unregistration (calls then fail with [`EnterError::Unregistered`]).
pub struct Handle<P: Stateful> {
    pub(super) node: Arc<Node<P>>,
    pub(super) counters: Arc<Counters>,
}

impl<P: Stateful> Clone for Handle<P> {
    fn clone(&self) -> Self {
        Handle {
            node: Arc::clone(&self.node),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<P: Stateful> fmt::Debug for Handle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.node.slot.name())
            .finish()
    }
}

impl<P: Stateful> Handle<P> {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.node.slot.name()
    }

    /// Starts a call: leases the plugin and its requirements (see [`Call`]).
    /// Waits, parked, only at the gate of a quiesced or group commit.
    ///
    /// # Errors
    ///
    /// [`EnterError::Unregistered`].
    pub fn enter(&self) -> Result<Call<P>, EnterError> {
        Call::new(&self.node, &self.counters)
    }

    /// Runs `f` in a call, containing a panic.
    ///
    /// # Errors
    ///
    /// [`EnterError::Unregistered`]; [`EnterError::Panicked`] if `f`
    /// panicked (the leases were given back).
    pub fn call<R>(&self, f: impl FnOnce(&Call<P>) -> R) -> Result<R, EnterError> {
        let call = self.enter()?;
        // AssertUnwindSafe: `f` sees shared references only.
        catch_unwind(AssertUnwindSafe(|| f(&call))).map_err(|payload| {
            EnterError::Panicked(HookFailure {
                hook: Hook::Call,
                plugin: call.manifest().name().to_owned(),
                version: call.manifest().version().to_string(),
                generation: Some(call.generation()),
                cause: Cause::Panic(panic_message(payload.as_ref())),
            })
        })
    }

    /// The plugin's slot counters.
    pub fn stats(&self) -> SlotStats {
        self.node.slot.stats()
    }
}
