//! The errors that hand a plugin value back: each holds the version it was
//! given (or, for a finalize, the removed one), so that nothing is lost.
//! [`ReloadError`] is the one error of every reload path; [`FinalizeError`]
//! and [`DrainError`] are the drain's.

use std::fmt;

use crate::error::ReloadFault;
use crate::hooks::HookFailure;
use crate::state::{Draining, Initialized, Linked, Loaded, Removed};
use crate::transfer::Salvage;
use crate::{Hooks, Plugin};

/// The new version, in the phase it reached, handed back by a failed reload.
pub enum Returned<P: Hooks> {
    /// Refused before `link` ran, or `link` failed.
    Loaded(Plugin<P, Loaded>),
    /// `init` failed.
    Linked(Plugin<P, Linked>),
    /// Failed after `init` (refused by the slot, or a step of the reload
    /// failed). Resources it had opened or resumed were closed.
    Initialized(Plugin<P, Initialized>),
}

impl<P: Hooks> Returned<P> {
    /// The plugin.
    pub fn get(&self) -> &P {
        match self {
            Returned::Loaded(p) => p.get(),
            Returned::Linked(p) => p.get(),
            Returned::Initialized(p) => p.get(),
        }
    }

    /// The plugin value.
    pub fn into_plugin(self) -> P {
        match self {
            Returned::Loaded(p) => p.into_inner(),
            Returned::Linked(p) => p.into_inner(),
            Returned::Initialized(p) => p.into_inner(),
        }
    }

    /// The version, if it had reached `Initialized` (ready to try again).
    ///
    /// # Errors
    ///
    /// `self`, if it had not.
    pub fn into_initialized(self) -> Result<Plugin<P, Initialized>, Self> {
        match self {
            Returned::Initialized(p) => Ok(p),
            other => Err(other),
        }
    }
}

impl<P: Hooks> fmt::Debug for Returned<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self {
            Returned::Loaded(_) => "Loaded",
            Returned::Linked(_) => "Linked",
            Returned::Initialized(_) => "Initialized",
        };
        f.debug_tuple(phase).finish_non_exhaustive()
    }
}

/// A reload that did not happen: [`Slot::replace`](crate::Slot::replace),
/// [`Slot::reload`](crate::Slot::reload),
/// [`Slot::prepare`](crate::Slot::prepare) or
/// [`Prepared::commit`](crate::Prepared::commit) failed, and the slot serves
/// on with the version it served. Like tokio's `TrySendError<T>`, it hands
/// back what it was given: the new version, in the phase it reached
/// ([`Returned`]), and the [`Salvage`] of what was taken from the old
/// version. Match on [`fault`](Self::fault) for why.
pub struct ReloadError<P: Hooks> {
    // Boxed: the error path is cold, and a `Result` carrying all of this
    // inline would make every successful reload move it around.
    inner: Box<Failed<P>>,
}

struct Failed<P: Hooks> {
    fault: ReloadFault,
    plugin: Returned<P>,
    salvage: Salvage,
    /// The slot's plugin name (not asked of the plugin: its `name` is
    /// plugin code, and may be what failed).
    name: String,
}

impl<P: Hooks> ReloadError<P> {
    pub(crate) fn new(
        fault: ReloadFault,
        plugin: Returned<P>,
        salvage: Salvage,
        name: &str,
    ) -> Self {
        ReloadError {
            inner: Box::new(Failed {
                fault,
                plugin,
                salvage,
                name: name.to_owned(),
            }),
        }
    }

    /// Why.
    pub fn fault(&self) -> &ReloadFault {
        &self.inner.fault
    }

    /// The hook failure, if a hook of either version failed or panicked.
    pub fn hook_failure(&self) -> Option<&HookFailure> {
        self.inner.fault.hook_failure()
    }

    /// The new version, in the phase it reached.
    pub fn plugin(&self) -> &Returned<P> {
        &self.inner.plugin
    }

    /// The name of the slot's plugin.
    pub fn plugin_name(&self) -> &str {
        &self.inner.name
    }

    /// What was taken from the old version before the failure.
    pub fn salvage(&self) -> &Salvage {
        &self.inner.salvage
    }

    /// The new version, in the phase it reached.
    pub fn into_returned(self) -> Returned<P> {
        self.inner.plugin
    }

    /// The new version's value.
    pub fn into_plugin(self) -> P {
        self.inner.plugin.into_plugin()
    }

    /// Everything: why, the new version, the salvage.
    pub fn into_parts(self) -> (ReloadFault, Returned<P>, Salvage) {
        let Failed {
            fault,
            plugin,
            salvage,
            ..
        } = *self.inner;
        (fault, plugin, salvage)
    }
}

impl<P: Hooks> fmt::Display for ReloadError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reload of `{}` failed, old version serving: {}",
            self.inner.name, self.inner.fault
        )
    }
}

impl<P: Hooks> fmt::Debug for ReloadError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadError")
            .field("fault", &self.inner.fault)
            .field("plugin", &self.inner.plugin)
            .field("salvage", &self.inner.salvage)
            .finish()
    }
}

impl<P: Hooks> std::error::Error for ReloadError<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner.fault)
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
