//! [`Registry`]: many named plugins, some requiring others, reloaded
//! together when they must be, verified every time they load.
//!
//! Each plugin lives in its own [`Slot`]; the registry adds names,
//! dependencies and integrity around them:
//!
//! - **Lookups** read a copy-on-write map (`arc-swap`): they never block,
//!   not on a reload nor on a registration, and a plugin appears in the map
//!   only once its first version is initialized and in its slot.
//! - **Calls** ([`Handle::enter`], [`Registry::enter`]) lease the plugin and
//!   every plugin its version requires, at versions its manifest accepts,
//!   for the whole call (see [`Call`]).
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
mod member;
mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

pub use call::{Call, Dep};
pub use member::{Member, Package};

use crate::hooks::{panic_message, Cause, Hook, HookFailure};
use crate::manifest::{Manifest, Version, VersionReq};
use crate::plugin::PrepareError;
use crate::reload::{Committed, Prepared, ReloadFault, Salvage, Turn};
use crate::state::Draining;
use crate::stats::SlotStats;
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
    /// next version of it was supplied or found in the [`Source`].
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
    /// The [`Source`] failed.
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
    /// A reload of `plugin` failed; everything reloaded with it was
    /// aborted, and every old version serves on.
    #[error("reload of `{plugin}` failed: {fault}")]
    Reload {
        /// The plugin whose step failed.
        plugin: String,
        /// The step's fault.
        fault: ReloadFault,
    },
}

/// A refused registration or reload: why, and everything handed over (the
/// packages given, and any fetched from the [`Source`]). After a failed
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
    fn new(error: RegistryError, packages: Vec<Package<P>>) -> Self {
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
    /// Calls that found a set mixing versions across a group cut-over,
    /// gave it back and started over.
    pub call_retries: u64,
    /// Calls that gave back their leases to wait at a closed gate.
    pub gate_waits: u64,
    /// Each plugin's slot counters.
    pub per_plugin: BTreeMap<String, SlotStats>,
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
    pub(crate) call_retries: AtomicU64,
    pub(crate) gate_waits: AtomicU64,
}

/// A registered plugin: its slot and the manifest of its current version.
pub(crate) struct Node<P: Stateful> {
    pub(crate) slot: Slot<Member<P>>,
    /// The current version's manifest; changed only under the slot's turn.
    current: Mutex<Arc<Manifest>>,
}

type Map<P> = BTreeMap<String, Arc<Node<P>>>;

/// Reload turns held, by plugin, in name order.
type Turns<'m, P> = Vec<(String, Turn<'m, Member<P>>)>;

/// Many named plugins of type `P`, with dependencies, reloads that carry
/// dependents along, and a verifier on every load. See the [module
/// docs](self).
pub struct Registry<P: Stateful> {
    map: ArcSwap<Map<P>>,
    /// Serializes registrations and unregistrations (map edits). Neither
    /// reloads nor calls take it.
    admin: Mutex<()>,
    verifier: Box<dyn Verifier>,
    source: Option<Box<dyn Source<P>>>,
    turn_timeout: Duration,
    counters: Arc<Counters>,
}

/// A plugin looked up once: calls through it skip the lookup. Outlives an
/// unregistration (calls then fail with [`EnterError::Unregistered`]).
pub struct Handle<P: Stateful> {
    node: Arc<Node<P>>,
    counters: Arc<Counters>,
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

impl<P: Stateful> Registry<P> {
    /// An empty registry that checks every version with `verifier`.
    pub fn new(verifier: impl Verifier) -> Self {
        Registry {
            map: ArcSwap::from_pointee(Map::new()),
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

    /// Registers one plugin (see [`Registry::register_all`]).
    ///
    /// # Errors
    ///
    /// As [`Registry::register_all`].
    pub fn register(&self, package: Package<P>, cx: &P::Context) -> Result<(), Rejected<P>> {
        self.register_all(vec![package], cx)
    }

    /// Registers plugins that may require each other and registered ones:
    /// verified, checked against the requirements, then linked and
    /// initialized dependencies first. All are registered, or none.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with every package: a name taken or given twice, a
    /// verifier refusal, an unmet requirement, a cycle, a `link` or `init`
    /// failure, or a required plugin busy reloading past the turn timeout.
    pub fn register_all(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
    ) -> Result<(), Rejected<P>> {
        let result = self.try_register(packages, cx);
        match &result {
            Ok(n) => {
                self.counters.registered.fetch_add(*n, Relaxed);
            }
            Err(rejected) => self.count_refusal(&rejected.error),
        }
        result.map(drop)
    }

    fn try_register(&self, packages: Vec<Package<P>>, cx: &P::Context) -> Result<u64, Rejected<P>> {
        let packages = match by_name(packages) {
            Ok(p) => p,
            Err((error, packages)) => return Err(Rejected::new(error, packages)),
        };
        if let Err(e) = self.verify_all(packages.values()) {
            return Err(Rejected::new(e, packages.into_values().collect()));
        }
        let _admin = self.admin.lock();
        let adds: plan::View = packages
            .iter()
            .map(|(n, p)| (n.clone(), Arc::clone(&p.manifest)))
            .collect();
        // Plan, freeze what we checked against, and plan again under the
        // turns (a reload may have committed in between).
        for _ in 0..MAX_ATTEMPTS {
            let map = self.map.load_full();
            let planned = plan::register(&view(&map), &adds).and_then(|plan| {
                let turns = self.take_turns(&map, &plan.lock)?;
                Ok((plan, turns))
            });
            let (plan, turns) = match planned {
                Ok(planned) => planned,
                Err(e) => return Err(Rejected::new(e, packages.into_values().collect())),
            };
            if plan::register(&view(&self.map.load()), &adds).is_ok_and(|again| again == plan) {
                let added = self.register_planned(&map, &plan, packages, cx)?;
                drop(turns);
                return Ok(added);
            }
        }
        Err(Rejected::new(
            self.too_busy(adds.keys()),
            packages.into_values().collect(),
        ))
    }

    /// Links and inits `packages` in `plan`'s order, then publishes them all
    /// at once; the caller holds the turns `plan` needs.
    fn register_planned(
        &self,
        map: &Arc<Map<P>>,
        plan: &plan::Plan,
        mut packages: BTreeMap<String, Package<P>>,
        cx: &P::Context,
    ) -> Result<u64, Rejected<P>> {
        let mut fresh: Map<P> = Map::new();
        for name in &plan.order {
            let Some(package) = packages.remove(name) else {
                unreachable!("the plan orders the packages given")
            };
            let deps = resolve(&package.manifest, map, &fresh);
            let manifest = Arc::clone(&package.manifest);
            match Plugin::new(Member::new(package, deps)).prepare(cx) {
                Ok(ready) => {
                    let node = Node {
                        slot: Slot::new(ready),
                        current: Mutex::new(manifest),
                    };
                    fresh.insert(name.clone(), Arc::new(node));
                }
                Err(e) => {
                    let (member, failure) = match e {
                        PrepareError::Link(e) => {
                            let (p, f) = e.into_parts();
                            (p.into_inner(), f)
                        }
                        PrepareError::Init(e) => {
                            let (p, f) = e.into_parts();
                            (p.into_inner(), f)
                        }
                    };
                    // Tear down the ones already made (never published, so
                    // no lease exists), dependents first: shut down, hand back.
                    let mut back = vec![member.into_package()];
                    let made: Vec<_> = plan
                        .order
                        .iter()
                        .rev()
                        .filter_map(|n| fresh.remove(n))
                        .collect();
                    back.extend(made.into_iter().filter_map(take_back));
                    back.extend(packages.into_values());
                    return Err(Rejected::new(RegistryError::Init(failure), back));
                }
            }
        }
        let added = fresh.len() as u64;
        let mut next = (**map).clone();
        next.extend(fresh);
        self.map.store(Arc::new(next));
        Ok(added)
    }

    /// The plans kept changing under us: report the first plugin named.
    fn too_busy<'a>(&self, mut names: impl Iterator<Item = &'a String>) -> RegistryError {
        RegistryError::Busy {
            name: names.next().cloned().unwrap_or_default(),
            waited: self.turn_timeout,
        }
    }

    /// Unregisters `name`: no new call reaches it; calls in flight finish
    /// on it. Returns its last version, draining: wait on it to see it
    /// shut down.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotRegistered`]; [`RegistryError::HasDependents`]
    /// naming the plugins that require it; [`RegistryError::Busy`] if a
    /// reload of it did not finish within the turn timeout.
    pub fn unregister(
        &self,
        name: &str,
    ) -> Result<Option<Plugin<Member<P>, Draining>>, RegistryError> {
        let _admin = self.admin.lock();
        let map = self.map.load_full();
        let Some(node) = map.get(name) else {
            return Err(RegistryError::NotRegistered {
                name: name.to_owned(),
            });
        };
        // The turn freezes the plugin; a reload adding a requirement on it
        // holds the same turn, so once we hold it the dependents are final.
        let _turn = self.take_turn(node)?;
        let dependents = plan::dependents(&view(&map), name);
        if !dependents.is_empty() {
            return Err(RegistryError::HasDependents {
                name: name.to_owned(),
                dependents,
            });
        }
        let mut next = (*map).clone();
        next.remove(name);
        self.map.store(Arc::new(next));
        self.counters.unregistered.fetch_add(1, Relaxed);
        Ok(node.slot.close())
    }

    /// Reloads the plugins `packages` are new versions of, with every
    /// dependent that must follow (its next version from the [`Source`]),
    /// as one transaction: verified, prepared dependencies first, then
    /// committed together in `options`' mode, or aborted together. Every
    /// old version serves until the commit, and on after any failure.
    ///
    /// The options' mode applies to every plugin; a state envelope given
    /// with [`ReloadOptions::restore_from`] would apply to each, so give
    /// one only when reloading one plugin.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with every package handed back (and the [`Salvage`] of
    /// old versions, if the failure came after their state was taken).
    pub fn reload(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let result = self.try_reload(packages, cx, options);
        match &result {
            Ok(report) => {
                self.counters.reloads.fetch_add(1, Relaxed);
                let followed = report.changes.iter().filter(|c| c.followed).count();
                self.counters
                    .plugins_reloaded
                    .fetch_add(report.changes.len() as u64, Relaxed);
                self.counters.followed.fetch_add(followed as u64, Relaxed);
            }
            Err(rejected) => self.count_refusal(&rejected.error),
        }
        result
    }

    /// [`Registry::reload`] of one plugin, checking that `package` is a
    /// version of `name`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::WrongPlugin`], or as [`Registry::reload`].
    pub fn reload_plugin(
        &self,
        name: &str,
        package: Package<P>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        if package.manifest.name() != name {
            let error = RegistryError::WrongPlugin {
                expected: name.to_owned(),
                found: package.manifest.name().to_owned(),
            };
            self.count_refusal(&error);
            return Err(Rejected::new(error, vec![package]));
        }
        self.reload(vec![package], cx, options)
    }

    fn try_reload(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let given = match by_name(packages) {
            Ok(p) => p,
            Err((error, packages)) => return Err(Rejected::new(error, packages)),
        };
        if let Err(e) = self.verify_all(given.values()) {
            return Err(Rejected::new(e, given.into_values().collect()));
        }
        let mut fetched: BTreeMap<String, Package<P>> = BTreeMap::new();
        for _ in 0..MAX_ATTEMPTS {
            let map = self.map.load_full();
            let planned = self
                .plan_reload(&map, &given, &mut fetched)
                .and_then(|plan| {
                    let turns = self.take_turns(&map, &plan.lock)?;
                    Ok((plan, turns))
                });
            let (plan, turns) = match planned {
                Ok(planned) => planned,
                Err(e) => return Err(Rejected::new(e, hand_back(given, fetched))),
            };
            // Under the turns, with the map as it is now: same nodes and
            // the same plan, or start over.
            let now = self.map.load_full();
            let same_nodes = plan.lock.iter().all(|n| match (map.get(n), now.get(n)) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            });
            let again = self.plan_reload(&now, &given, &mut fetched);
            if same_nodes && again.is_ok_and(|again| again == plan) {
                let mut packages = given;
                packages.append(&mut fetched);
                return self.reload_planned(&map, &plan, turns, packages, cx, options);
            }
        }
        Err(Rejected::new(
            self.too_busy(given.keys()),
            hand_back(given, fetched),
        ))
    }

    /// Prepares, dependencies first, and commits `plan`; the caller took
    /// the turns it needs (`turns`, one per locked plugin).
    fn reload_planned(
        &self,
        map: &Arc<Map<P>>,
        plan: &plan::Plan,
        turns: Turns<'_, P>,
        mut packages: BTreeMap<String, Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let mut turns: BTreeMap<String, Turn<'_, Member<P>>> = turns.into_iter().collect();
        let mut prepared = Vec::with_capacity(plan.order.len());
        let mut olds = Vec::with_capacity(plan.order.len());
        for (i, name) in plan.order.iter().enumerate() {
            let (Some(package), Some(turn)) = (packages.remove(name), turns.remove(name)) else {
                unreachable!("the plan orders and locks the packages it changes")
            };
            let node = &map[name];
            olds.push((
                Arc::clone(&node.current.lock()),
                current_digest(node),
                Arc::clone(&package.manifest),
                package.digest,
            ));
            let deps = resolve(&package.manifest, map, &Map::new());
            let member = Plugin::new(Member::new(package, deps));
            match node.slot.prepare_in_turn(turn, member, cx, options.clone()) {
                Ok(p) => prepared.push(p),
                Err(failed) => {
                    let (fault, returned, salvage) = failed.into_parts();
                    let mut back = vec![returned.into_plugin().into_package()];
                    // Abort the ones prepared, newest first.
                    back.extend(
                        prepared.drain(..).rev().map(|p: Prepared<'_, Member<P>>| {
                            p.abort().into_inner().into_package()
                        }),
                    );
                    back.extend(
                        plan.order[i + 1..]
                            .iter()
                            .filter_map(|n| packages.remove(n)),
                    );
                    let mut rejected = Rejected::new(
                        RegistryError::Reload {
                            plugin: name.clone(),
                            fault,
                        },
                        back,
                    );
                    rejected.salvage.push((name.clone(), salvage));
                    return Err(rejected);
                }
            }
        }
        let committed = if prepared.len() == 1 {
            let Some(only) = prepared.pop() else {
                unreachable!("one member")
            };
            only.commit().map(|c| vec![c]).map_err(|failed| {
                let name = failed.plugin_name().to_owned();
                let (fault, returned, salvage) = failed.into_parts();
                let mut rejected = Rejected::new(
                    RegistryError::Reload {
                        plugin: name.clone(),
                        fault,
                    },
                    vec![returned.into_plugin().into_package()],
                );
                rejected.salvage.push((name, salvage));
                rejected
            })
        } else {
            Prepared::commit_together(prepared).map_err(group_rejected)
        }?;
        // Publish the new manifests (still under the turns) and report.
        let changes = plan
            .order
            .iter()
            .zip(olds)
            .zip(committed)
            .map(|((name, (old, old_digest, new, new_digest)), committed)| {
                *map[name].current.lock() = Arc::clone(&new);
                let same_build = old_digest == Some(new_digest);
                change(
                    name,
                    &old,
                    &new,
                    same_build,
                    plan.followed.contains(name),
                    committed,
                )
            })
            .collect();
        drop(turns);
        Ok(ReloadReport { changes })
    }

    fn plan_reload(
        &self,
        map: &Map<P>,
        given: &BTreeMap<String, Package<P>>,
        fetched: &mut BTreeMap<String, Package<P>>,
    ) -> Result<plan::Plan, RegistryError> {
        let mut updates: plan::View = given
            .iter()
            .chain(fetched.iter())
            .map(|(n, p)| (n.clone(), Arc::clone(&p.manifest)))
            .collect();
        let mut fetch = |name: &str| -> Result<Option<Arc<Manifest>>, RegistryError> {
            if let Some(p) = fetched.get(name) {
                return Ok(Some(Arc::clone(&p.manifest)));
            }
            let Some(source) = &self.source else {
                return Ok(None);
            };
            // The host's source is code we did not write: a panic is a
            // refusal of this reload, like an error.
            let package = match catch_unwind(AssertUnwindSafe(|| source.next_version(name))) {
                Ok(fetched) => fetched.map_err(|e| e.to_string()),
                Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
            }
            .map_err(|reason| RegistryError::Source {
                name: name.to_owned(),
                reason,
            })?;
            let Some(package) = package else {
                return Ok(None);
            };
            if package.manifest.name() != name {
                return Err(RegistryError::WrongPlugin {
                    expected: name.to_owned(),
                    found: package.manifest.name().to_owned(),
                });
            }
            self.verify(&package)?;
            let manifest = Arc::clone(&package.manifest);
            fetched.insert(name.to_owned(), package);
            Ok(Some(manifest))
        };
        let mut plan = plan::reload(&view(map), &mut updates, &mut fetch)?;
        // Fetched on an earlier attempt or this one: either way, followed.
        plan.followed = fetched.keys().cloned().collect();
        Ok(plan)
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

    fn count_refusal(&self, error: &RegistryError) {
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
            None => Err(EnterError::NotRegistered {
                name: name.to_owned(),
            }),
        }
    }

    /// Starts a call on `name` (a lookup, then [`Handle::enter`]).
    ///
    /// # Errors
    ///
    /// [`EnterError::NotRegistered`], [`EnterError::Unregistered`].
    pub fn enter(&self, name: &str) -> Result<Call<P>, EnterError> {
        let map = self.map.load();
        let Some(node) = map.get(name) else {
            return Err(EnterError::NotRegistered {
                name: name.to_owned(),
            });
        };
        Call::new(node, &self.counters)
    }

    /// Runs `f` in a call on `name`, containing a panic.
    ///
    /// # Errors
    ///
    /// As [`Handle::call`], and [`EnterError::NotRegistered`].
    pub fn call<R>(&self, name: &str, f: impl FnOnce(&Call<P>) -> R) -> Result<R, EnterError> {
        self.handle(name)?.call(f)
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

fn change<P: Stateful>(
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
