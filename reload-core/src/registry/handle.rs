//! [`Handle`]: a plugin looked up once, for calls that skip the lookup.

use std::fmt;
use std::sync::Arc;

use super::call::contain;
use super::{Call, Counters, EnterError, Node, OwnedCall};
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
    /// The call borrows the handle, and leases the plugin as a slot's
    /// [`Lease`](crate::Lease) does: for a plugin with no requirements it
    /// executes no locked instruction and allocates nothing, and costs
    /// about 1.35 times a slot lease's instructions (`docs/performance.md`,
    /// "Registry calls"); requirements are leased the same way, in a box
    /// the call allocates. Where the call must outlive the handle's borrow,
    /// use [`Handle::enter_owned`].
    ///
    /// # Errors
    ///
    /// [`EnterError::Unregistered`].
    #[inline]
    pub fn enter(&self) -> Result<Call<'_, P>, EnterError> {
        Call::borrowed(&self.node, &self.counters)
    }

    /// [`Handle::enter`], for a call that owns its leases: `Send +
    /// 'static`, for a spawned task. Costs what an
    /// [`OwnedLease`](crate::OwnedLease) costs more than a lease (a pin
    /// when it is dropped).
    ///
    /// # Errors
    ///
    /// [`EnterError::Unregistered`].
    pub fn enter_owned(&self) -> Result<OwnedCall<P>, EnterError> {
        Call::owned(&self.node, &self.counters)
    }

    /// [`Handle::enter_owned`] as a future, for async hosts: at a closed
    /// gate (a quiesced or group commit) the task waits without blocking
    /// its thread, holding no lease, and the call is entered when the gate
    /// opens, on whichever version is current then.
    ///
    /// # Errors
    ///
    /// The future resolves to [`EnterError::Unregistered`] if the plugin
    /// (or a requirement it still has) was unregistered.
    pub fn enter_owned_async(&self) -> super::EnterCallFuture<P> {
        super::EnterCallFuture::new(Arc::clone(&self.node), Arc::clone(&self.counters))
    }

    /// Runs `f` in a call, containing a panic.
    ///
    /// # Errors
    ///
    /// [`EnterError::Unregistered`]; [`EnterError::Panicked`] if `f`
    /// panicked (the leases were given back).
    pub fn call<R>(&self, f: impl FnOnce(&Call<'_, P>) -> R) -> Result<R, EnterError> {
        contain(&self.enter()?, f)
    }

    /// The plugin's slot counters.
    pub fn stats(&self) -> SlotStats {
        self.node.slot.stats()
    }
}
