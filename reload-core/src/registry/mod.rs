//! [`Registry`]: many named plugins, some requiring others, reloaded
//! together when they must be, verified every time they load.
//!
//! Each plugin lives in its own [`Slot`]; the registry adds names,
//! dependencies and integrity around them:
//!
//! - **Lookups** read a copy-on-write map: they never block, not on a
//!   reload nor on a registration, and a plugin appears in the map only
//!   once its first version is initialized and in its slot. Calls by name
//!   read it through a borrowed lease on a slot of map snapshots (`names`),
//!   the admin paths through `arc-swap`.
//! - **Calls** ([`Handle::enter`], [`Registry::enter`]) lease the plugin and
//!   every plugin its version requires, at versions its manifest accepts,
//!   for the whole call (see [`Call`]). They borrow the handle or the
//!   registry; [`Handle::enter_owned`] and [`Registry::enter_owned`] give
//!   an [`OwnedCall`], `Send + 'static`, for a spawned task. Many calls by
//!   name in one unit of work can share one lease on the map through a
//!   [`Snapshot`] ([`Registry::snapshot`]).
//! - **Reloads** ([`Registry::reload`]) plan from manifests: a dependent
//!   whose requirement a new version breaks must follow, so its next
//!   version is fetched from the [`Source`] (or the reload is refused,
//!   typed). Every version is verified; then all of them are prepared,
//!   dependencies first, and committed together
//!   ([`Prepared::commit_together`](crate::Prepared::commit_together)), or
//!   aborted together.
//! - **No global lock.** A reload takes the reload *turns* (see
//!   [`Slot::prepare`](crate::Slot::prepare)) of the slots it touches: the
//!   changed plugins, their current dependents (whose requirements it
//!   checked) and their new dependencies (whose versions it checked), in
//!   name order, so two reloads that overlap serialize and cannot
//!   deadlock, and reloads of unrelated plugins run in parallel. A
//!   registration or unregistration takes the registry's admin lock (only
//!   they do) and the turns of the plugins it checks against.
//!
//! ```
//! use reload_core::manifest::Manifest;
//! use reload_core::registry::{Package, Registry};
//! use reload_core::verify::Unchecked;
//! use reload_core::{Hooks, ReloadOptions, Stateful};
//!
//! struct Udf(u64);
//! impl Hooks for Udf { type Context = (); }
//! impl Stateful for Udf {}
//!
//! let package = |name: &str, version: &str, k: u64, requires: &[(&str, &str)]| {
//!     let manifest = requires.iter().try_fold(
//!         Manifest::new(name, version)?.export("eval")?,
//!         |m, (dep, range)| m.requires(dep, range, &["eval"]),
//!     )?;
//!     Ok::<_, reload_core::manifest::ManifestError>(Package::new(Udf(k), manifest, format!("{name} {version}").into_bytes()))
//! };
//! let registry = Registry::new(Unchecked);
//! registry.register(package("math", "1.0.0", 2, &[])?, &()).ok().unwrap();
//! registry.register(package("stats", "1.0.0", 10, &[("math", "^1")])?, &()).ok().unwrap();
//!
//! let stats = registry.handle("stats")?;
//! {
//!     let call = stats.enter()?;
//!     let math = call.dependency("math").expect("declared");
//!     assert_eq!(call.0 * math.0, 20);
//! }
//! // A compatible new version of math: stats accepts it and stays.
//! let report = registry.reload(vec![package("math", "1.1.0", 3, &[])?], &(), ReloadOptions::immediate()).ok().unwrap();
//! assert_eq!(report.changes.len(), 1);
//! assert_eq!(stats.enter()?.dependency("math").map(|m| m.0), Some(3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Registry errors are large (names, versions, ranges) and on the cold path:
// registrations and reloads, never calls. Boxing them would buy nothing.
#![allow(clippy::result_large_err)]

mod call;
mod error;
mod handle;
mod member;
mod names;
mod plan;
mod register;
mod reload;
mod report;
mod revert;
mod snapshot;
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use call::{Call, Dep, OwnedCall};
pub use error::{EnterError, RegistryError, Rejected};
pub use handle::Handle;
use member::Kept;
pub use member::{Member, Package, Respawn};
use report::change;
pub use report::{Change, PluginInfo, RegistryStats, ReloadReport, VersionChange};
pub use snapshot::Snapshot;
pub use wait::EnterCallFuture;

use crate::error::ReloadFault;
use crate::hooks::panic_message;
use crate::manifest::Manifest;
use crate::plugin::ReadyError;
use crate::reload::{Prepared, Turn};
use crate::state::Draining;
use crate::verify::{Digest, Verifier, VerifyError};
use crate::{BoxError, Plugin, ReloadOptions, Slot, Stateful};

/// How many times an operation re-plans when the map changed while it took
/// its turns, before reporting [`RegistryError::Busy`].
const MAX_ATTEMPTS: usize = 8;

/// How long a registry operation waits for another reload of a slot it
/// needs, by default.
pub const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the next version of a plugin comes from when a reload needs it
/// (a dependent that must follow a new dependency version).
pub trait Source<P>: Send + Sync + 'static {
    /// The version of `name` to move to, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// Why it could not be fetched (the reload is refused with it).
    fn next_version(&self, name: &str) -> Result<Option<Package<P>>, BoxError>;
}

impl<P, F> Source<P> for F
where
    F: Fn(&str) -> Result<Option<Package<P>>, BoxError> + Send + Sync + 'static,
{
    fn next_version(&self, name: &str) -> Result<Option<Package<P>>, BoxError> {
        self(name)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    registered: AtomicU64,
    unregistered: AtomicU64,
    reloads: AtomicU64,
    plugins_reloaded: AtomicU64,
    followed: AtomicU64,
    refused: AtomicU64,
    verify_failures: AtomicU64,
    reverts: AtomicU64,
    pub(crate) call_retries: AtomicU64,
    pub(crate) gate_waits: AtomicU64,
}

#[cold]
fn not_registered(name: &str) -> EnterError {
    EnterError::NotRegistered {
        name: name.to_owned(),
    }
}

/// A registered plugin: its slot and the manifest of its current version.
pub(crate) struct Node<P: Stateful> {
    pub(crate) slot: Slot<Member<P>>,
    /// The current version's manifest; changed only under the slot's turn.
    current: Mutex<Arc<Manifest>>,
    /// What a [`Registry::revert`] goes back to: the version the last
    /// reload replaced (set under the slot's turn, with `current`).
    previous: Mutex<Option<Kept<P>>>,
    /// `reload_core_calls_total` of this plugin.
    #[cfg(feature = "metrics")]
    calls: metrics::Counter,
}

type Map<P> = BTreeMap<String, Arc<Node<P>>>;

/// Reload turns held, by plugin, in name order.
type Turns<'m, P> = Vec<(String, Turn<'m, Member<P>>)>;

/// Many named plugins of type `P`, with dependencies, reloads that carry
/// dependents along, and a verifier on every load. See the [module
/// docs](self).
pub struct Registry<P: Stateful> {
    map: ArcSwap<Map<P>>,
    /// The same snapshots, for calls by name (see `names`): published
    /// with `map`, under the admin lock.
    names: Slot<names::Names<P>>,
    /// Serializes registrations and unregistrations (map edits). Neither
    /// reloads nor calls take it.
    admin: Mutex<()>,
    verifier: Box<dyn Verifier>,
    source: Option<Box<dyn Source<P>>>,
    turn_timeout: Duration,
    counters: Arc<Counters>,
}

impl<P: Stateful> Registry<P> {
    /// An empty registry that checks every version with `verifier`.
    pub fn new(verifier: impl Verifier) -> Self {
        let map = Arc::new(Map::new());
        Registry {
            names: names::slot(&map),
            map: ArcSwap::new(map),
            admin: Mutex::new(()),
            verifier: Box::new(verifier),
            source: None,
            turn_timeout: DEFAULT_TURN_TIMEOUT,
            counters: Arc::default(),
        }
    }

    /// Where the next versions of dependents that must follow come from.
    #[must_use]
    pub fn with_source(mut self, source: impl Source<P>) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// How long an operation waits for another reload of a slot it needs
    /// ([`DEFAULT_TURN_TIMEOUT`] by default).
    #[must_use]
    pub fn with_turn_timeout(mut self, timeout: Duration) -> Self {
        self.turn_timeout = timeout;
        self
    }

    fn verify_all<'a>(
        &self,
        packages: impl Iterator<Item = &'a Package<P>>,
    ) -> Result<(), RegistryError> {
        for package in packages {
            self.verify(package)?;
        }
        Ok(())
    }

    /// The verifier on one package; a panic in it (host code) is a
    /// [`VerifyError::Panicked`] refusal.
    fn verify(&self, package: &Package<P>) -> Result<(), RegistryError> {
        let artifact = package.artifact();
        match catch_unwind(AssertUnwindSafe(|| self.verifier.verify(&artifact))) {
            Ok(verdict) => Ok(verdict?),
            Err(payload) => Err(RegistryError::Verify(VerifyError::Panicked {
                plugin: artifact.manifest.name().to_owned(),
                version: artifact.manifest.version().to_string(),
                message: panic_message(payload.as_ref()),
            })),
        }
    }

    /// Publishes a new map (under the admin lock): to the admin paths, then
    /// to calls by name.
    fn publish(&self, next: Map<P>) {
        let next = Arc::new(next);
        self.map.store(Arc::clone(&next));
        names::publish(&self.names, &next);
    }

    fn count_refusal(&self, error: &RegistryError) {
        #[cfg(feature = "metrics")]
        crate::metrics::refused(error.plugin(), error.reason());
        self.counters.refused.fetch_add(1, Relaxed);
        if matches!(error, RegistryError::Verify(_)) {
            self.counters.verify_failures.fetch_add(1, Relaxed);
        }
    }

    fn take_turn<'n>(&self, node: &'n Node<P>) -> Result<Turn<'n, Member<P>>, RegistryError> {
        node.slot
            .take_turn(Some(self.turn_timeout))
            .map_err(|fault| match fault {
                ReloadFault::Closed => RegistryError::NotRegistered {
                    name: node.slot.name().to_owned(),
                },
                _ => RegistryError::Busy {
                    name: node.slot.name().to_owned(),
                    waited: self.turn_timeout,
                },
            })
    }

    /// The turns of `names`, taken in name order (so overlapping
    /// operations cannot deadlock).
    fn take_turns<'m>(
        &self,
        map: &'m Map<P>,
        names: &BTreeSet<String>,
    ) -> Result<Turns<'m, P>, RegistryError> {
        let mut turns = Vec::with_capacity(names.len());
        for name in names {
            let Some(node) = map.get(name) else {
                return Err(RegistryError::NotRegistered { name: name.clone() });
            };
            turns.push((name.clone(), self.take_turn(node)?));
        }
        Ok(turns)
    }

    /// A handle on `name`, for calls that skip the lookup.
    ///
    /// # Errors
    ///
    /// [`EnterError::NotRegistered`].
    pub fn handle(&self, name: &str) -> Result<Handle<P>, EnterError> {
        match self.map.load().get(name) {
            Some(node) => Ok(Handle {
                node: Arc::clone(node),
                counters: Arc::clone(&self.counters),
            }),
            None => Err(not_registered(name)),
        }
    }

    /// Starts a call on `name`: a lookup, then [`Handle::enter`].
    ///
    /// The lookup reads the name map's current snapshot through a borrowed
    /// lease (no lock, no locked instruction, no shared counter written),
    /// and the call keeps that lease, so the plugin's slot outlives the
    /// call's lease on it even if the plugin is unregistered meanwhile (the
    /// snapshot is freed after the call). Many calls by name in one unit of
    /// work can share that lease: see [`Registry::snapshot`]. Where the
    /// call must outlive the borrow of the registry, use
    /// [`Registry::enter_owned`].
    ///
    /// # Errors
    ///
    /// [`EnterError::NotRegistered`], [`EnterError::Unregistered`].
    #[inline]
    pub fn enter(&self, name: &str) -> Result<Call<'_, P>, EnterError> {
        // The snapshot slot is never closed nor gated, so this cannot fail;
        // were it to, the name is as good as unknown.
        let Ok(names) = self.names.try_enter() else {
            return Err(not_registered(name));
        };
        let node: *const Node<P> = match names.get(name) {
            Some(node) => node,
            None => return Err(not_registered(name)),
        };
        // SAFETY: the node is owned by an `Arc` in the snapshot that `names`
        // leases; the call keeps that lease and gives it back after its
        // leases on the node's slot (its fields' order). Moving the lease
        // moves neither the snapshot nor the node.
        let node = unsafe { &*node };
        Call::in_names(node, names, &self.counters)
    }

    /// [`Registry::enter`], for a call that owns its leases (see
    /// [`Handle::enter_owned`]): `Send + 'static`, for a spawned task.
    ///
    /// # Errors
    ///
    /// [`EnterError::NotRegistered`], [`EnterError::Unregistered`].
    pub fn enter_owned(&self, name: &str) -> Result<OwnedCall<P>, EnterError> {
        match self.map.load().get(name) {
            Some(node) => OwnedCall::owned(node, &self.counters),
            None => Err(not_registered(name)),
        }
    }

    /// Runs `f` in a call on `name`, containing a panic.
    ///
    /// # Errors
    ///
    /// As [`Handle::call`], and [`EnterError::NotRegistered`].
    pub fn call<R>(&self, name: &str, f: impl FnOnce(&Call<'_, P>) -> R) -> Result<R, EnterError> {
        call::contain(&self.enter(name)?, f)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.map.load().contains_key(name)
    }

    /// The registered plugins, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let map = self.map.load_full();
        let current = view(&map);
        map.iter()
            .map(|(name, node)| {
                let manifest = &current[name];
                let digest = current_digest(node).unwrap_or(Digest::of(&[]));
                PluginInfo {
                    name: name.clone(),
                    version: manifest.version().clone(),
                    generation: node.slot.generation(),
                    digest,
                    exports: manifest.exports().to_vec(),
                    requires: manifest
                        .requirements()
                        .map(|r| (r.name().to_owned(), r.versions().clone()))
                        .collect(),
                    dependents: plan::dependents(&current, name),
                }
            })
            .collect()
    }

    /// Registry-wide and per-plugin counters.
    pub fn stats(&self) -> RegistryStats {
        let map = self.map.load_full();
        let c = &*self.counters;
        RegistryStats {
            plugins: map.len(),
            registered: c.registered.load(Relaxed),
            unregistered: c.unregistered.load(Relaxed),
            reloads: c.reloads.load(Relaxed),
            plugins_reloaded: c.plugins_reloaded.load(Relaxed),
            followed: c.followed.load(Relaxed),
            refused: c.refused.load(Relaxed),
            reverts: c.reverts.load(Relaxed),
            verify_failures: c.verify_failures.load(Relaxed),
            call_retries: c.call_retries.load(Relaxed),
            gate_waits: c.gate_waits.load(Relaxed),
            per_plugin: map
                .iter()
                .map(|(n, node)| (n.clone(), node.slot.stats()))
                .collect(),
        }
    }
}

impl<P: Stateful> fmt::Debug for Registry<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("plugins", &self.map.load().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn view<P: Stateful>(map: &Map<P>) -> plan::View {
    map.iter()
        .map(|(n, node)| (n.clone(), Arc::clone(&node.current.lock())))
        .collect()
}

fn hand_back<P>(
    given: BTreeMap<String, Package<P>>,
    fetched: BTreeMap<String, Package<P>>,
) -> Vec<Package<P>> {
    given.into_values().chain(fetched.into_values()).collect()
}

/// A failed group commit as a rejection: the failing member's fault, every
/// member's package and salvage.
fn group_rejected<P: Stateful>(failed: crate::GroupFailed<Member<P>>) -> Rejected<P> {
    let failed_at = failed.failed;
    let mut back = Vec::new();
    let mut salvage = Vec::new();
    let mut error = None;
    for (i, member) in failed.members.into_iter().enumerate() {
        let name = member.plugin_name().to_owned();
        let (fault, returned, s) = member.into_parts();
        if i == failed_at {
            error = Some(RegistryError::Reload {
                plugin: name.clone(),
                fault,
            });
        }
        back.push(returned.into_plugin().into_package());
        salvage.push((name, s));
    }
    let Some(error) = error else {
        unreachable!("the failing member is one of the members")
    };
    let mut rejected = Rejected::new(error, back);
    rejected.salvage = salvage;
    rejected
}

/// Packages by plugin name; two for one name are refused.
#[allow(clippy::type_complexity)]
fn by_name<P>(
    packages: Vec<Package<P>>,
) -> Result<BTreeMap<String, Package<P>>, (RegistryError, Vec<Package<P>>)> {
    let names: BTreeSet<&str> = packages.iter().map(|p| p.manifest.name()).collect();
    if names.len() == packages.len() {
        return Ok(packages
            .into_iter()
            .map(|p| (p.manifest.name().to_owned(), p))
            .collect());
    }
    let mut seen = BTreeSet::new();
    let name = packages
        .iter()
        .map(|p| p.manifest.name())
        .find(|n| !seen.insert(*n))
        .unwrap_or_default()
        .to_owned();
    Err((RegistryError::DuplicatePackage { name }, packages))
}

/// The nodes of `manifest`'s requirements, in its order.
fn resolve<P: Stateful>(manifest: &Manifest, map: &Map<P>, fresh: &Map<P>) -> Vec<Arc<Node<P>>> {
    manifest
        .requirements()
        .filter_map(|r| {
            fresh
                .get(r.name())
                .or_else(|| map.get(r.name()))
                .map(Arc::clone)
        })
        .collect()
}

/// The digest of the version current in `node` (`None` if closed).
fn current_digest<P: Stateful>(node: &Node<P>) -> Option<Digest> {
    // `try_enter`: whoever calls this holds the slot's turn, so no gate of
    // this slot is closed.
    let lease = node.slot.try_enter().ok()?;
    Some(*lease.digest())
}

/// What to keep of the version current in `node`, for a revert (`None`
/// if closed). The caller holds the slot's turn, as for [`current_digest`].
fn current_kept<P: Stateful>(node: &Node<P>) -> Option<Kept<P>> {
    let lease = node.slot.try_enter().ok()?;
    Some(lease.package.kept())
}

/// Shuts down a never-published node's version and hands its package back.
fn take_back<P: Stateful>(node: Arc<Node<P>>) -> Option<Package<P>> {
    let node = Arc::into_inner(node)?;
    let draining = node.slot.close()?;
    // Never published: no lease exists, so this does not wait. A failing
    // shutdown still removes the version.
    let removed = match draining.wait() {
        Ok(removed) => removed,
        Err(failed) => failed.into_inner(),
    };
    Some(removed.into_inner().into_package())
}
