//! The registry's errors: [`RegistryError`] (why an operation was refused;
//! nothing changed), [`Rejected`] (the same, with the packages handed
//! back) and [`EnterError`] (a call that found no plugin).

use std::fmt;
use std::time::Duration;

use super::Package;
use crate::error::ReloadFault;
use crate::hooks::HookFailure;
use crate::manifest::{Version, VersionReq};
use crate::transfer::Salvage;
use crate::verify::VerifyError;
use crate::Stateful;

/// Why a registry operation was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No plugin of that name is registered.
    #[error("no plugin `{name}` is registered")]
    NotRegistered {
        /// The name.
        name: String,
    },
    /// A plugin of that name is registered already.
    #[error("a plugin `{name}` is registered already")]
    AlreadyRegistered {
        /// The name.
        name: String,
    },
    /// Two packages of one operation are for the same plugin.
    #[error("two packages for plugin `{name}`")]
    DuplicatePackage {
        /// The name.
        name: String,
    },
    /// A package for another plugin than the one named.
    #[error("expected a version of `{expected}`, got one of `{found}`")]
    WrongPlugin {
        /// The plugin named.
        expected: String,
        /// The package's.
        found: String,
    },
    /// A requirement is not met: the plugin required is missing, at a
    /// version outside the range, or lacks an export that is used.
    #[error("`{plugin}` requires `{dependency}` {requires}, but {reason}")]
    Unmet {
        /// The plugin whose requirement it is.
        plugin: String,
        /// The plugin required.
        dependency: String,
        /// The range accepted.
        requires: VersionReq,
        /// The version there would be (`None`: not registered).
        found: Option<Version>,
        /// What is wrong.
        reason: String,
    },
    /// A dependent does not accept a new version of its dependency, and no
    /// next version of it was supplied or found in the [`Source`](super::Source).
    #[error("`{dependent}` must follow `{dependency}` {version} ({reason}), but no next version of it is available")]
    MustFollow {
        /// The dependent.
        dependent: String,
        /// The plugin being reloaded.
        dependency: String,
        /// Its new version.
        version: Version,
        /// Why the dependent's current version does not accept it.
        reason: String,
    },
    /// Requirements would form a cycle (listed, first plugin repeated last).
    #[error("dependency cycle: {}", path.join(" -> "))]
    Cycle {
        /// The cycle.
        path: Vec<String>,
    },
    /// The plugin is required by others; unregister or reload them first.
    #[error("`{name}` is required by {}", dependents.join(", "))]
    HasDependents {
        /// The plugin.
        name: String,
        /// The plugins whose current version requires it.
        dependents: Vec<String>,
    },
    /// The verifier refused a version.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Another reload of a plugin this operation needs did not finish in
    /// time.
    #[error("plugin `{name}` is busy with another reload (waited {waited:?})")]
    Busy {
        /// The plugin.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The [`Source`](super::Source) failed.
    #[error("fetching the next version of `{name}` failed: {reason}")]
    Source {
        /// The plugin.
        name: String,
        /// The source's error.
        reason: String,
    },
    /// A new plugin's `link` or `init` failed or panicked (registration).
    #[error(transparent)]
    Init(HookFailure),
    /// [`Registry::revert`](super::Registry::revert) has nothing to go back to.
    #[error("cannot revert `{name}`: {reason}")]
    NothingToRevert {
        /// The plugin.
        name: String,
        /// Why: no version was replaced, or it cannot be made again.
        reason: String,
    },
    /// A reload of `plugin` failed; everything reloaded with it was
    /// aborted, and every old version serves on.
    #[error("reload of `{plugin}` failed: {fault}")]
    Reload {
        /// The plugin whose step failed.
        plugin: String,
        /// The step's fault.
        fault: ReloadFault,
    },
    /// A two-phase reload's barrier
    /// ([`Registry::reload_with_barrier`](super::Registry::reload_with_barrier))
    /// withheld the commit: every prepared version was aborted, and every
    /// old version serves on.
    #[error("the commit was withheld: {reason}")]
    Withheld {
        /// The barrier's reason (a distributed abort, a timeout, a panic).
        reason: String,
    },
}

impl RegistryError {
    /// The plugin the refusal is about, if it names one.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            RegistryError::NotRegistered { name }
            | RegistryError::AlreadyRegistered { name }
            | RegistryError::DuplicatePackage { name }
            | RegistryError::HasDependents { name, .. }
            | RegistryError::Busy { name, .. }
            | RegistryError::Source { name, .. }
            | RegistryError::NothingToRevert { name, .. } => Some(name),
            RegistryError::WrongPlugin { expected, .. } => Some(expected),
            RegistryError::Unmet { plugin, .. } | RegistryError::Reload { plugin, .. } => {
                Some(plugin)
            }
            RegistryError::MustFollow { dependent, .. } => Some(dependent),
            RegistryError::Cycle { path } => path.first().map(String::as_str),
            RegistryError::Verify(_) | RegistryError::Init(_) | RegistryError::Withheld { .. } => {
                None
            }
        }
    }

    /// A short, stable name of the kind of refusal (`"verify"`,
    /// `"reload"`, ...), for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            RegistryError::NotRegistered { .. } => "not_registered",
            RegistryError::AlreadyRegistered { .. } => "already_registered",
            RegistryError::DuplicatePackage { .. } => "duplicate_package",
            RegistryError::WrongPlugin { .. } => "wrong_plugin",
            RegistryError::Unmet { .. } => "unmet",
            RegistryError::MustFollow { .. } => "must_follow",
            RegistryError::Cycle { .. } => "cycle",
            RegistryError::HasDependents { .. } => "has_dependents",
            RegistryError::Verify(_) => "verify",
            RegistryError::Busy { .. } => "busy",
            RegistryError::Source { .. } => "source",
            RegistryError::Init(_) => "init",
            RegistryError::NothingToRevert { .. } => "nothing_to_revert",
            RegistryError::Reload { .. } => "reload",
            RegistryError::Withheld { .. } => "withheld",
        }
    }
}

/// A refused registration or reload: why, and everything handed over (the
/// packages given, and any fetched from the [`Source`](super::Source)). After a failed
/// reload, also what was taken from the old versions ([`Salvage`]).
pub struct Rejected<P: Stateful> {
    /// Why.
    pub error: RegistryError,
    /// The packages, handed back. Versions that had been initialized were
    /// shut down (registration) or aborted (reload) first.
    pub packages: Vec<Package<P>>,
    /// By plugin: state, persisted indexes and checkpoints taken from old
    /// versions before the failure (the old versions still have them).
    pub salvage: Vec<(String, Salvage)>,
}

impl<P: Stateful> Rejected<P> {
    pub(super) fn new(error: RegistryError, packages: Vec<Package<P>>) -> Self {
        Rejected {
            error,
            packages,
            salvage: Vec::new(),
        }
    }
}

impl<P: Stateful> fmt::Debug for Rejected<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .field("packages", &self.packages)
            .finish_non_exhaustive()
    }
}

impl<P: Stateful> fmt::Display for Rejected<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<P: Stateful> std::error::Error for Rejected<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A call could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnterError {
    /// No plugin of that name is registered.
    #[error("no plugin `{name}` is registered")]
    NotRegistered {
        /// The name.
        name: String,
    },
    /// The plugin was unregistered (its handle outlived it).
    #[error("plugin `{name}` was unregistered")]
    Unregistered {
        /// The name.
        name: String,
    },
    /// The call ran and panicked; its leases were given back and every
    /// plugin serves on.
    #[error(transparent)]
    Panicked(HookFailure),
}
