//! What a reload ends in: [`Committed`], or [`ReloadFailed`] with the new
//! version handed back as [`Returned`] and the [`Salvage`].

use std::fmt;
use std::time::Duration;

use crate::error::ReloadFault;
use crate::state::{Draining, Initialized, Linked, Loaded};
use crate::transfer::{Salvage, Transfer};
use crate::{Hooks, Plugin};

/// The new version, in the phase it reached, handed back by a failed reload.
pub enum Returned<P: Hooks> {
    /// Refused before `link` ran.
    Loaded(Plugin<P, Loaded>),
    /// `init` failed.
    Linked(Plugin<P, Linked>),
    /// Failed after `init`. Resources it had opened or resumed were closed.
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
}

/// A reload failed; the old version serves on. Holds why, the new version
/// (in the phase it reached) and the [`Salvage`].
pub struct ReloadFailed<P: Hooks> {
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

impl<P: Hooks> ReloadFailed<P> {
    pub(super) fn new(
        fault: ReloadFault,
        plugin: Returned<P>,
        salvage: Salvage,
        name: &str,
    ) -> Self {
        ReloadFailed {
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

    /// The new version, in the phase it reached.
    pub fn plugin(&self) -> &Returned<P> {
        &self.inner.plugin
    }

    /// The name of the plugin whose reload failed.
    pub fn plugin_name(&self) -> &str {
        &self.inner.name
    }

    /// What was taken from the old version before the failure.
    pub fn salvage(&self) -> &Salvage {
        &self.inner.salvage
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

impl<P: Hooks> fmt::Display for ReloadFailed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reload failed, old version serving: {}",
            self.inner.fault
        )
    }
}

impl<P: Hooks> fmt::Debug for ReloadFailed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadFailed")
            .field("fault", &self.inner.fault)
            .field("salvage", &self.inner.salvage)
            .finish_non_exhaustive()
    }
}

impl<P: Hooks> std::error::Error for ReloadFailed<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner.fault)
    }
}

/// A committed reload: the old version (`Draining`; already drained in
/// quiesced mode) and what happened.
pub struct Committed<P: Hooks> {
    /// The version cut over from. Wait on it to see it finalized.
    pub old: Plugin<P, Draining>,
    /// Generation cut over to.
    pub generation: u64,
    /// How long new calls waited at the gate (quiesced mode).
    pub quiesce: Option<Duration>,
    /// What was carried over.
    pub transfer: Transfer,
}

impl<P: Hooks> fmt::Debug for Committed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("old", &self.old)
            .field("generation", &self.generation)
            .field("quiesce", &self.quiesce)
            .field("transfer", &self.transfer)
            .finish()
    }
}
