//! The errors that hand a plugin value back: each holds the version it was
//! given (or, for a finalize, the removed one), so that nothing is lost.

use std::fmt;

use crate::hooks::HookFailure;
use crate::plugin::PrepareError;
use crate::state::{Draining, Initialized, Removed};
use crate::{Hooks, Plugin};

/// [`Slot::replace`](crate::Slot::replace) refused the new version; it comes
/// back inside, and the slot is unchanged.
pub enum ReplaceError<P: Hooks> {
    /// The new version names another plugin than the slot serves.
    WrongPlugin {
        /// The slot's plugin name.
        expected: String,
        /// The new version's plugin name.
        found: String,
        /// The new version, untouched.
        plugin: Plugin<P, Initialized>,
    },
    /// The new version's [`Hooks::name`](crate::Hooks::name) panicked, so
    /// it cannot be told to belong to this slot.
    Name {
        /// What panicked ([`Hook::Name`](crate::Hook::Name)).
        failure: HookFailure,
        /// The new version, untouched.
        plugin: Plugin<P, Initialized>,
    },
    /// The slot is closed.
    Closed(Plugin<P, Initialized>),
    /// A prepared reload holds the slot's turn
    /// ([`Slot::prepare`](crate::Slot::prepare)); commit or abort it first.
    InProgress(Plugin<P, Initialized>),
}

impl<P: Hooks> ReplaceError<P> {
    /// The version that was refused.
    pub fn into_inner(self) -> Plugin<P, Initialized> {
        match self {
            ReplaceError::WrongPlugin { plugin, .. }
            | ReplaceError::Name { plugin, .. }
            | ReplaceError::Closed(plugin)
            | ReplaceError::InProgress(plugin) => plugin,
        }
    }
}

impl<P: Hooks> fmt::Display for ReplaceError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplaceError::WrongPlugin {
                expected, found, ..
            } => write!(
                f,
                "cannot replace plugin `{expected}` with a version of `{found}`"
            ),
            ReplaceError::Name { failure, .. } => write!(f, "cannot replace: {failure}"),
            ReplaceError::Closed(_) => f.write_str("cannot replace: the plugin slot is closed"),
            ReplaceError::InProgress(_) => {
                f.write_str("cannot replace: a prepared reload holds the slot's turn")
            }
        }
    }
}

impl<P: Hooks> fmt::Debug for ReplaceError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplaceError::WrongPlugin {
                expected, found, ..
            } => f
                .debug_struct("WrongPlugin")
                .field("expected", expected)
                .field("found", found)
                .finish_non_exhaustive(),
            ReplaceError::Name { failure, .. } => f
                .debug_struct("Name")
                .field("failure", failure)
                .finish_non_exhaustive(),
            ReplaceError::Closed(_) => f.write_str("Closed(..)"),
            ReplaceError::InProgress(_) => f.write_str("InProgress(..)"),
        }
    }
}

impl<P: Hooks> std::error::Error for ReplaceError<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplaceError::Name { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

/// [`Slot::reload`](crate::Slot::reload) failed; the new version comes back
/// in the phase it reached, and the slot keeps serving the old one.
#[derive(thiserror::Error)]
pub enum ReloadError<P: Hooks> {
    /// `link` or `init` failed.
    #[error(transparent)]
    Prepare(#[from] PrepareError<P>),
    /// The prepared version was refused by the slot.
    #[error(transparent)]
    Replace(#[from] ReplaceError<P>),
}

impl<P: Hooks> fmt::Debug for ReloadError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Prepare(e) => f.debug_tuple("Prepare").field(e).finish(),
            ReloadError::Replace(e) => f.debug_tuple("Replace").field(e).finish(),
        }
    }
}

impl<P: Hooks> ReloadError<P> {
    /// The new version's value, whatever phase it reached.
    pub fn into_plugin(self) -> P {
        match self {
            ReloadError::Prepare(e) => e.into_plugin(),
            ReloadError::Replace(e) => e.into_inner().into_inner(),
        }
    }

    /// The hook failure, if a hook failed (rather than the slot refusing).
    pub fn hook_failure(&self) -> Option<&HookFailure> {
        match self {
            ReloadError::Prepare(e) => Some(e.failure()),
            ReloadError::Replace(_) => None,
        }
    }
}

/// The `shutdown` hook failed or panicked. The version is `Removed` all the
/// same (shutdown runs exactly once) and comes back inside.
pub struct FinalizeError<P: Hooks> {
    removed: Plugin<P, Removed>,
    failure: HookFailure,
}

impl<P: Hooks> FinalizeError<P> {
    pub(crate) fn new(removed: Plugin<P, Removed>, failure: HookFailure) -> Self {
        FinalizeError { removed, failure }
    }

    /// The removed version.
    pub fn into_inner(self) -> Plugin<P, Removed> {
        self.removed
    }

    /// What failed.
    pub fn failure(&self) -> &HookFailure {
        &self.failure
    }
}

impl<P: Hooks> fmt::Display for FinalizeError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (the version is removed)", self.failure)
    }
}

impl<P: Hooks> fmt::Debug for FinalizeError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinalizeError")
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl<P: Hooks> std::error::Error for FinalizeError<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

/// A bounded wait did not end with a clean removal.
pub enum DrainError<P: Hooks> {
    /// The deadline passed first. The version is handed back, still
    /// draining, to wait on again.
    TimedOut(Plugin<P, Draining>),
    /// The drain completed but `shutdown` failed.
    Shutdown(FinalizeError<P>),
}

impl<P: Hooks> From<FinalizeError<P>> for DrainError<P> {
    fn from(e: FinalizeError<P>) -> Self {
        DrainError::Shutdown(e)
    }
}

impl<P: Hooks> fmt::Display for DrainError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainError::TimedOut(d) => write!(
                f,
                "drain of generation {} timed out with {} calls in flight",
                d.generation(),
                d.in_flight()
            ),
            DrainError::Shutdown(e) => e.fmt(f),
        }
    }
}

impl<P: Hooks> fmt::Debug for DrainError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainError::TimedOut(d) => f.debug_tuple("TimedOut").field(d).finish(),
            DrainError::Shutdown(e) => f.debug_tuple("Shutdown").field(e).finish(),
        }
    }
}

impl<P: Hooks> std::error::Error for DrainError<P> {}
