//! The errors that carry no plugin value: a closed slot, a gate, a call
//! that panicked, a snapshot, and why a reload failed ([`ReloadFault`]).
//! The errors that hand a plugin back are in `handback.rs`.

use std::time::Duration;

use crate::envelope::EnvelopeError;
use crate::hooks::{Cause, HookFailure};

/// The slot was closed; it serves no more calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the plugin slot is closed")]
pub struct SlotClosed;

/// [`Slot::try_enter`](crate::Slot::try_enter) or
/// [`Slot::enter_deadline`](crate::Slot::enter_deadline) got no lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryEnterError {
    /// The slot is closed.
    #[error("the plugin slot is closed")]
    Closed,
    /// A quiesced reload holds new calls at the gate (try again, or use
    /// [`Slot::enter`](crate::Slot::enter), which waits).
    #[error("the plugin slot is quiescing for a reload")]
    Quiescing,
}

impl From<SlotClosed> for TryEnterError {
    fn from(_: SlotClosed) -> Self {
        TryEnterError::Closed
    }
}

/// [`Slot::snapshot`](crate::Slot::snapshot) could not save the state.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The slot is closed.
    #[error(transparent)]
    Closed(#[from] SlotClosed),
    /// `save` failed or panicked.
    #[error(transparent)]
    Save(#[from] HookFailure),
}

/// A call through [`Slot::call`](crate::Slot::call) did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The slot is closed.
    #[error(transparent)]
    Closed(#[from] SlotClosed),
    /// The call panicked. The lease was released and the slot keeps serving.
    #[error(transparent)]
    Panicked(HookFailure),
}

/// Why a reload failed. The old version serves on in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadFault {
    /// Another reload of this slot is prepared or committing.
    #[error("another reload of this slot is in progress")]
    InProgress,
    /// The slot is closed.
    #[error("the plugin slot is closed")]
    Closed,
    /// The new version names another plugin.
    #[error("cannot reload plugin `{expected}` with a version of `{found}`")]
    WrongPlugin {
        /// The slot's plugin.
        expected: String,
        /// The new version's.
        found: String,
    },
    /// A hook of the old or the new version failed or panicked.
    #[error(transparent)]
    Hook(#[from] HookFailure),
    /// A listener vetoed the reload (or panicked, which counts as a veto).
    #[error("vetoed by listener `{listener}`: {cause}")]
    Vetoed {
        /// The listener's name.
        listener: String,
        /// Its reason.
        cause: Cause,
    },
    /// The saved state was rejected.
    #[error("saved state rejected: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A migration step went backwards, stood still or overshot.
    #[error("migration step from schema {from} went to {to}; the target is {target}")]
    Migration {
        /// The step's input schema.
        from: u32,
        /// What it claimed to produce.
        to: u32,
        /// The new version's schema.
        target: u32,
    },
    /// The new version does not declare a resource the old one hands over,
    /// or declares it as another kind.
    #[error("resource `{resource}`: {reason}")]
    Resource {
        /// The resource's name.
        resource: String,
        /// What does not match.
        reason: String,
    },
    /// Committed together with another plugin's reload, which failed
    /// ([`Prepared::commit_together`](crate::Prepared::commit_together)).
    #[error("aborted with the reload of `{plugin}`, which failed")]
    GroupAborted {
        /// The plugin whose reload failed.
        plugin: String,
    },
    /// The old version did not drain in time (quiesced mode).
    #[error("drain of generation {generation} timed out after {waited:?} with {in_flight} calls in flight")]
    DrainTimeout {
        /// The old version's generation.
        generation: u64,
        /// How long the gate was closed.
        waited: Duration,
        /// Leases still out.
        in_flight: usize,
    },
}

impl ReloadFault {
    /// The hook failure, if a hook failed.
    pub fn hook_failure(&self) -> Option<&HookFailure> {
        match self {
            ReloadFault::Hook(h) => Some(h),
            _ => None,
        }
    }
}
