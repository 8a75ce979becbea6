//! What the registry reports: the [`ReloadReport`] of a reload (one
//! [`Change`] per plugin), [`PluginInfo`] for each plugin, and
//! [`RegistryStats`].

use std::collections::BTreeMap;
use std::fmt;

use super::Member;
use crate::manifest::{Manifest, Version, VersionReq};
use crate::reload::Committed;
use crate::stats::SlotStats;
use crate::verify::Digest;
use crate::Stateful;

/// How a version changed in a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionChange {
    /// To a higher version.
    Upgrade,
    /// To a lower version.
    Downgrade,
    /// The same version number, another build (digest).
    Rebuild,
    /// The same version and digest.
    Same,
}

/// One plugin's part in a committed reload.
pub struct Change<P: Stateful> {
    /// The plugin.
    pub plugin: String,
    /// Version cut over from.
    pub from: Version,
    /// Version cut over to.
    pub to: Version,
    /// Which way.
    pub kind: VersionChange,
    /// Pulled in because its old version did not accept a new dependency.
    pub followed: bool,
    /// Exports the new version has and the old did not.
    pub exports_added: Vec<String>,
    /// Exports the old version had and the new does not (no dependent
    /// used them, or the reload would have been refused).
    pub exports_removed: Vec<String>,
    /// The commit: the old version (drain it with `committed.old.wait()`),
    /// the generation, the quiesce time and what was carried over.
    pub committed: Committed<Member<P>>,
}

impl<P: Stateful> fmt::Debug for Change<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("plugin", &self.plugin)
            .field("from", &self.from.to_string())
            .field("to", &self.to.to_string())
            .field("kind", &self.kind)
            .field("followed", &self.followed)
            .field("exports_added", &self.exports_added)
            .field("exports_removed", &self.exports_removed)
            .field("generation", &self.committed.generation)
            .finish()
    }
}

/// A committed reload: one [`Change`] per plugin, dependencies first.
#[derive(Debug)]
pub struct ReloadReport<P: Stateful> {
    /// What changed.
    pub changes: Vec<Change<P>>,
}

/// One registered plugin, as observed at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Current version.
    pub version: Version,
    /// Current generation in its slot.
    pub generation: Option<u64>,
    /// SHA-256 of the current version's artifact.
    pub digest: Digest,
    /// Current exports.
    pub exports: Vec<String>,
    /// Current requirements: plugin and range.
    pub requires: Vec<(String, VersionReq)>,
    /// Plugins whose current version requires it.
    pub dependents: Vec<String>,
}

/// Registry-wide counters, and each plugin's slot counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Plugins registered now.
    pub plugins: usize,
    /// Registrations that succeeded (one per plugin).
    pub registered: u64,
    /// Unregistrations.
    pub unregistered: u64,
    /// Reloads committed (each may change several plugins).
    pub reloads: u64,
    /// Plugins changed by those reloads.
    pub plugins_reloaded: u64,
    /// Of those, dependents pulled in to follow a dependency.
    pub followed: u64,
    /// Registrations and reloads refused or failed (nothing changed).
    pub refused: u64,
    /// Of those, refused by the verifier.
    pub verify_failures: u64,
    /// Reverts committed ([`Registry::revert`](super::Registry::revert);
    /// also counted in `reloads`).
    pub reverts: u64,
    /// Calls that found a set mixing versions across a group cut-over,
    /// gave it back and started over.
    pub call_retries: u64,
    /// Calls that gave back their leases to wait at a closed gate.
    pub gate_waits: u64,
    /// Each plugin's slot counters.
    pub per_plugin: BTreeMap<String, SlotStats>,
}

pub(super) fn change<P: Stateful>(
    name: &str,
    old: &Manifest,
    new: &Manifest,
    same_build: bool,
    followed: bool,
    committed: Committed<Member<P>>,
) -> Change<P> {
    let kind = match new.version().cmp(old.version()) {
        std::cmp::Ordering::Greater => VersionChange::Upgrade,
        std::cmp::Ordering::Less => VersionChange::Downgrade,
        std::cmp::Ordering::Equal if same_build => VersionChange::Same,
        std::cmp::Ordering::Equal => VersionChange::Rebuild,
    };
    Change {
        plugin: name.to_owned(),
        from: old.version().clone(),
        to: new.version().clone(),
        kind,
        followed,
        exports_added: difference(new.exports(), old.exports()),
        exports_removed: difference(old.exports(), new.exports()),
        committed,
    }
}

fn difference(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}
