//! A registry [`Call`]: leases on a plugin and, transitively, on the
//! dependency versions it declared, taken so that the set is consistent.
//!
//! What a call costs: the plugin called is leased like a slot's borrowed
//! [`Lease`] (no locked instruction, no pin) when the call borrows what
//! keeps the plugin's slot alive: the [`Handle`](super::Handle) it came
//! from, or, for a call by name, a lease on the snapshot of the name map
//! it looked the plugin up in, which the call keeps until it ends. A
//! plugin with no requirements costs nothing more. Requirements are leased
//! as [`OwnedLease`]s (a pin each when given back), because their slots are
//! reached through the plugin's version, not through anything the call
//! borrows. An [`OwnedCall`] owns its plugin's lease too, and so borrows
//! nothing.
//!
//! The rule (checked by the `registry` model): a call holds a lease on the
//! root and on every plugin its version requires, each version satisfying
//! the requirement of the version that leads to it. Because every plugin
//! it reaches is leased for the whole call, none of them can be finalized
//! under it (S1 per slot), and because the set is checked, it never mixes
//! a dependent with a dependency version outside its declared range.
//!
//! How it stays deadlock free next to a group commit
//! ([`Prepared::commit_together`](crate::Prepared::commit_together)), which
//! closes every gate of the group, drains them, and cuts over
//! dependencies first: a call never waits while holding a lease. It takes
//! leases with `try_enter`; at a closed gate it gives back everything it
//! holds, waits (parked) for that gate, and starts over. A set that mixes
//! versions (possible only in the instants of a group cut-over) is also
//! given back and retried; the retry meets the gates, so it does not spin.

use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use smallvec::SmallVec;

use super::names::Names;
use super::{Counters, EnterError, Member, Node};
use crate::error::TryEnterError;
use crate::hooks::{panic_message, Cause, Hook, HookFailure};
use crate::manifest::Manifest;
use crate::{Lease, OwnedLease, Phase, Stateful};

/// Inline room for three requirements before a call allocates.
/// (Kept small: a call is returned by value on every enter.)
type Deps<P> = SmallVec<[OwnedLease<Member<P>>; 3]>;

/// One call through a [`Registry`](super::Registry): derefs to the plugin,
/// and holds its declared dependencies (see [`Call::dependency`]) at
/// versions that satisfy its manifest, for as long as it lives.
///
/// A `Call<'a, P>` borrows what it was entered through: the
/// [`Handle`](super::Handle) ([`Handle::enter`](super::Handle::enter)) or
/// the [`Registry`](super::Registry)
/// ([`Registry::enter`](super::Registry::enter)). It is `Send`: it can be
/// held across `.await` and dropped on another thread, within that borrow.
/// Where a call must outlive it (a spawned task), enter an [`OwnedCall`]
/// ([`Handle::enter_owned`](super::Handle::enter_owned),
/// [`Registry::enter_owned`](super::Registry::enter_owned)): it is
/// `Send + 'static` and may outlive the plugin's unregistration (the
/// versions it holds are finalized when it goes).
///
/// Hold it for a call, not for the life of a task: none of the versions it
/// holds can finish draining until it is dropped.
#[must_use = "a call's leases are given back as soon as it is dropped"]
pub struct Call<'a, P: Stateful> {
    // Fields drop in order: the requirements first (their slots are kept
    // alive by the plugin's version), then the plugin's lease, then the
    // lease on the map snapshot its slot lives in.
    /// `None` for a plugin with no requirements: dropping a `None` is one
    /// test, where an empty `SmallVec` walks its drop.
    deps: Option<Deps<P>>,
    root: Root<'a, P>,
    /// For a call by name: the lease on the map snapshot that holds the
    /// plugin's node, which the root lease points into (see `names`).
    names: Option<Lease<'a, Names<P>>>,
}

/// A [`Call`] that owns all its leases: `Send + 'static`; see
/// [`Handle::enter_owned`](super::Handle::enter_owned).
pub type OwnedCall<P> = Call<'static, P>;

/// The lease on the plugin called.
enum Root<'a, P: Stateful> {
    Borrowed(Lease<'a, Member<P>>),
    Owned(OwnedLease<Member<P>>),
}

impl<P: Stateful> Root<'_, P> {
    #[inline]
    fn member(&self) -> &Member<P> {
        match self {
            Root::Borrowed(lease) => lease,
            Root::Owned(lease) => lease,
        }
    }

    fn generation(&self) -> u64 {
        match self {
            Root::Borrowed(lease) => lease.generation(),
            Root::Owned(lease) => lease.generation(),
        }
    }

    fn phase(&self) -> Phase {
        match self {
            Root::Borrowed(lease) => lease.phase(),
            Root::Owned(lease) => lease.phase(),
        }
    }
}

/// A plugin version held by a [`Call`]: the root or one of its dependencies.
#[derive(Clone, Copy)]
pub struct Dep<'c, P: Stateful> {
    member: &'c Member<P>,
    generation: u64,
}

impl<'c, P: Stateful> Dep<'c, P> {
    /// The plugin.
    pub fn plugin(&self) -> &'c P {
        self.member.plugin()
    }

    /// Its manifest.
    pub fn manifest(&self) -> &'c Manifest {
        self.member.manifest()
    }

    /// Its generation in its slot.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl<P: Stateful> Deref for Dep<'_, P> {
    type Target = P;

    fn deref(&self) -> &P {
        self.member.plugin()
    }
}

impl<'a, P: Stateful> Call<'a, P> {
    /// A call on `node`, borrowing it (it outlives `'a`).
    #[inline]
    pub(crate) fn borrowed(node: &'a Node<P>, counters: &Counters) -> Result<Self, EnterError> {
        Call::with_root(node, counters, None, || {
            node.slot.try_enter().map(Root::Borrowed)
        })
    }

    /// A call on `node`, which lives in the snapshot `names` leases (kept
    /// by the call).
    #[inline]
    pub(crate) fn in_names(
        node: &'a Node<P>,
        names: Lease<'a, Names<P>>,
        counters: &Counters,
    ) -> Result<Self, EnterError> {
        Call::with_root(node, counters, Some(names), || {
            node.slot.try_enter().map(Root::Borrowed)
        })
    }

    /// The fast path, inlined: the plugin leased, and no requirements.
    /// Anything else (requirements, a closed gate, a closed slot) gives the
    /// lease back and starts over out of line: the fast path then builds
    /// the call in place, with no intermediate value to move (a move of a
    /// value just written field by field stalls on store forwarding, which
    /// cost more than the whole lease).
    #[inline(always)]
    fn with_root(
        node: &Node<P>,
        counters: &Counters,
        names: Option<Lease<'a, Names<P>>>,
        enter: impl Fn() -> Result<Root<'a, P>, TryEnterError>,
    ) -> Result<Self, EnterError> {
        #[cfg(feature = "metrics")]
        node.calls.increment(1);
        if let Ok(root) = enter() {
            if root.member().deps.is_empty() {
                return Ok(Call {
                    deps: None,
                    root,
                    names,
                });
            }
        }
        let mut call = Call::acquire(node, counters, enter)?;
        call.names = names;
        Ok(call)
    }

    /// The plugin called.
    #[inline]
    pub fn plugin(&self) -> &P {
        self.root.member().plugin()
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        self.root.member().manifest()
    }

    /// Its generation.
    pub fn generation(&self) -> u64 {
        self.root.generation()
    }

    /// Whether this call owns its leases (an [`OwnedCall`]'s are; a call
    /// entered with [`Handle::enter`](super::Handle::enter) or
    /// [`Registry::enter`](super::Registry::enter) borrows the plugin's).
    pub fn is_owned(&self) -> bool {
        matches!(self.root, Root::Owned(_))
    }

    /// A plugin this one requires (directly or through another), at the
    /// version leased for this call; `None` if it is not a requirement.
    pub fn dependency(&self, name: &str) -> Option<Dep<'_, P>> {
        self.leased().skip(1).find(|d| d.manifest().name() == name)
    }

    /// Every version this call holds: the plugin called first, then its
    /// requirements, breadth first.
    pub fn leased(&self) -> impl Iterator<Item = Dep<'_, P>> + '_ {
        let root = Dep {
            member: self.root.member(),
            generation: self.root.generation(),
        };
        std::iter::once(root).chain(self.deps.iter().flatten().map(|l| Dep {
            member: l,
            generation: l.generation(),
        }))
    }
}

impl<P: Stateful> OwnedCall<P> {
    /// A call on `node` that owns its leases.
    pub(crate) fn owned(node: &Node<P>, counters: &Counters) -> Result<Self, EnterError> {
        Call::with_root(node, counters, None, || {
            node.slot.try_enter_owned().map(Root::Owned)
        })
    }
}

impl<P: Stateful> Deref for Call<'_, P> {
    type Target = P;

    #[inline]
    fn deref(&self) -> &P {
        self.plugin()
    }
}

impl<P: Stateful> std::fmt::Debug for Call<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for d in self.leased() {
            list.entry(&format_args!(
                "{} {} (generation {})",
                d.manifest().name(),
                d.manifest().version(),
                d.generation()
            ));
        }
        list.finish()
    }
}

/// Runs `f` in `call`, containing a panic (the host's code, or the
/// plugin's under it) as [`EnterError::Panicked`].
pub(crate) fn contain<P: Stateful, R>(
    call: &Call<'_, P>,
    f: impl FnOnce(&Call<'_, P>) -> R,
) -> Result<R, EnterError> {
    // AssertUnwindSafe: `f` sees shared references only.
    catch_unwind(AssertUnwindSafe(|| f(call))).map_err(|payload| {
        EnterError::Panicked(HookFailure {
            hook: Hook::Call,
            plugin: call.manifest().name().to_owned(),
            version: call.manifest().version().to_string(),
            generation: Some(call.generation()),
            cause: Cause::Panic(panic_message(payload.as_ref())),
        })
    })
}

/// Why an attempt gave everything back.
enum Attempt {
    /// A gate was closed: we gave everything back and waited for it.
    Waited,
    /// The set mixed versions, or reached a slot closed under it.
    Retry,
}

impl<'a, P: Stateful> Call<'a, P> {
    /// Leases `node` and its requirements, consistently (see the module
    /// docs). The requirements' leases are owned: their slots are reached
    /// through the root's version, not through anything the call borrows.
    /// Out of line, so that the fast path (`Call::with_root`) stays small.
    #[inline(never)]
    fn acquire(
        node: &Node<P>,
        counters: &Counters,
        enter: impl Fn() -> Result<Root<'a, P>, TryEnterError>,
    ) -> Result<Self, EnterError> {
        loop {
            let root = match enter() {
                Ok(root) => root,
                Err(TryEnterError::Quiescing) => {
                    node.slot.shared.wait_gate(None);
                    counters.gate_waits.fetch_add(1, Relaxed);
                    continue;
                }
                Err(TryEnterError::Closed) => {
                    return Err(EnterError::Unregistered {
                        name: node.slot.name().to_owned(),
                    })
                }
            };
            // No requirements (met after a wait at the gate): done.
            if root.member().deps.is_empty() {
                return Ok(Call {
                    deps: None,
                    root,
                    names: None,
                });
            }
            let mut deps = Deps::new();
            match lease_deps(root, &mut deps)? {
                Ok(root) => {
                    return Ok(Call {
                        deps: Some(deps),
                        root,
                        names: None,
                    })
                }
                Err(Attempt::Waited) => {
                    counters.gate_waits.fetch_add(1, Relaxed);
                }
                Err(Attempt::Retry) => {
                    counters.call_retries.fetch_add(1, Relaxed);
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Leases the requirements of `root`'s version into `deps`, breadth first,
/// and hands `root` back; or gives everything back (root included) and
/// says why.
fn lease_deps<'a, P: Stateful>(
    root: Root<'a, P>,
    deps: &mut Deps<P>,
) -> Result<Result<Root<'a, P>, Attempt>, EnterError> {
    // `None`: the root's requirements; `Some(i)`: those of `deps[i]`.
    let mut at: Option<usize> = None;
    loop {
        let member: *const Member<P> = match at {
            None => root.member(),
            Some(i) => &*deps[i],
        };
        // SAFETY: `member` is in a version leased by `root` or by
        // `deps[i]`; both stay held (`deps` only grows) until we return or
        // clear them below, after the last use of `member`. Pushing may move
        // the `OwnedLease` values, not the versions they point to.
        let member = unsafe { &*member };
        for (k, dep) in member.deps.iter().enumerate() {
            // A slot is one node's, so its leases name the node.
            if let Some(seen) = deps.iter().find(|l| l.is_of(&dep.slot)) {
                // Reached twice (a diamond): one version for both paths.
                if !member.accepts(k, seen.generation(), seen.manifest()) {
                    return Ok(Err(Attempt::Retry));
                }
                continue;
            }
            match dep.slot.try_enter_owned() {
                Ok(lease) => {
                    if !member.accepts(k, lease.generation(), lease.manifest()) {
                        return Ok(Err(Attempt::Retry));
                    }
                    deps.push(lease);
                }
                Err(TryEnterError::Quiescing) => {
                    // Give everything back before waiting: the group commit
                    // that closed this gate may be draining what we hold.
                    // `dep` lives in a member we are about to release.
                    let dep = Arc::clone(dep);
                    deps.clear();
                    drop(root);
                    dep.slot.shared.wait_gate(None);
                    return Ok(Err(Attempt::Waited));
                }
                // A closed dependency: only a version already cut over
                // from can still require a plugin that was unregistered,
                // so the root has moved on; start over on its new version.
                // If the root is still current, the registry is broken:
                // say so rather than spin.
                Err(TryEnterError::Closed) => {
                    if root.phase() == Phase::Active {
                        return Err(EnterError::Unregistered {
                            name: dep.slot.name().to_owned(),
                        });
                    }
                    return Ok(Err(Attempt::Retry));
                }
            }
        }
        let next = at.map_or(0, |i| i + 1);
        if next == deps.len() {
            return Ok(Ok(root));
        }
        at = Some(next);
    }
}
