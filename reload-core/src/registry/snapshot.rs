//! [`Snapshot`]: the name map as it is now, held for many calls by name.
//!
//! A call by name ([`Registry::enter`]) leases the current snapshot of the
//! name map, looks the plugin up, and keeps that lease for the call: two
//! leases and a lookup. A host that makes many calls in one unit of work
//! (a statement that calls a UDF per row, a request that calls several
//! plugins) can lease the snapshot once instead: each call through a
//! `Snapshot` is then a lookup and the plugin's lease, about what a call
//! through a [`Handle`](super::Handle) costs plus the lookup.

use super::call::contain;
use super::names::Names;
use super::{not_registered, Call, Counters, EnterError, Registry};
use crate::{Lease, Stateful};

/// The registry's name map as it was when taken, for calls by name that
/// skip leasing the map each time. From [`Registry::snapshot`].
///
/// Through a snapshot a plugin registered after it was taken is not found
/// ([`EnterError::NotRegistered`]), and a plugin unregistered since is
/// found, but new calls into it fail with [`EnterError::Unregistered`].
/// Reloads are seen at once: a call leases the plugin's current version,
/// whatever the snapshot's age.
///
/// It is `Send` and `Sync` and may be held across `.await`. Hold it for a
/// unit of work (a statement, a request), not for the life of a task: the
/// map it holds, and every plugin slot in it, is freed only when the
/// snapshot and its calls are gone.
pub struct Snapshot<'r, P: Stateful> {
    /// `None` only if the snapshot slot refused a lease, which it never
    /// does (it is never closed nor gated): then nothing is found.
    names: Option<Lease<'r, Names<P>>>,
    counters: &'r Counters,
}

impl<P: Stateful> Registry<P> {
    /// The name map as it is now, for many calls by name (see
    /// [`Snapshot`]). One borrowed lease: no lock, no locked instruction.
    pub fn snapshot(&self) -> Snapshot<'_, P> {
        Snapshot {
            names: self.names.try_enter().ok(),
            counters: &self.counters,
        }
    }
}

impl<P: Stateful> Snapshot<'_, P> {
    /// Starts a call on `name`: a lookup in this snapshot, then
    /// [`Handle::enter`](super::Handle::enter). The call borrows the
    /// snapshot (the plugin's slot lives in it).
    ///
    /// # Errors
    ///
    /// [`EnterError::NotRegistered`], [`EnterError::Unregistered`].
    #[inline]
    pub fn enter(&self, name: &str) -> Result<Call<'_, P>, EnterError> {
        match self.names.as_ref().and_then(|names| names.get(name)) {
            Some(node) => Call::borrowed(node, self.counters),
            None => Err(not_registered(name)),
        }
    }

    /// Runs `f` in a call on `name`, containing a panic.
    ///
    /// # Errors
    ///
    /// As [`Snapshot::enter`]; [`EnterError::Panicked`] if `f` panicked
    /// (the leases were given back).
    pub fn call<R>(&self, name: &str, f: impl FnOnce(&Call<'_, P>) -> R) -> Result<R, EnterError> {
        contain(&self.enter(name)?, f)
    }

    /// Whether `name` was registered when the snapshot was taken.
    pub fn contains(&self, name: &str) -> bool {
        self.names
            .as_ref()
            .is_some_and(|names| names.get(name).is_some())
    }
}

impl<P: Stateful> std::fmt::Debug for Snapshot<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.names.as_ref().map(Lease::generation))
            .finish()
    }
}
