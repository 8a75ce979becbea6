//! A registry [`Call`]: leases on a plugin and, transitively, on the
//! dependency versions it declared, taken so that the set is consistent.
//!
//! What a call costs: the plugin called is leased like a slot's borrowed
//! [`Lease`] (no locked instruction, no pin) when the call borrows what
//! keeps the plugin's slot alive: the [`Handle`](super::Handle) it came
//! from, or, for a call by name, a lease on the snapshot of the name map
//! it looked the plugin up in, which the call keeps until it ends. An
//! [`OwnedCall`] owns its plugin's lease instead (a pin when given back),
//! and so borrows nothing. Requirements are borrowed leases in every call:
//! a requirement's slot lives in a node that the version requiring it
//! holds, and the call keeps that version leased until after it gives the
//! requirement back (see `Req`).
//!
//! Its shape: two words, the plugin's lease packed into one (a version's
//! address, with the lease's counter in the low bits its alignment leaves
//! zero) and, in the other, nothing (a call by handle), the snapshot's
//! lease (by name), the slot of an owned lease, or a box with everything
//! (a plugin with requirements: the one shape that allocates). Two words
//! come back from `enter` in registers and are given back by an inline
//! drop; a larger value went through the stack, and each call paid a
//! stalled copy (`docs/performance.md`, "Registry calls").
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

use std::marker::PhantomData;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use smallvec::SmallVec;

use super::names::Names;
use super::{Counters, EnterError, Member, Node};
use crate::drain::{Hold, Packed, Version, PACKED_SPARE};
use crate::error::TryEnterError;
use crate::hooks::{panic_message, Cause, Hook, HookFailure};
use crate::manifest::Manifest;
use crate::{Lease, OwnedLease, Phase, Stateful};

/// A call's leases on its plugin's requirements, breadth first, so that
/// the version that required each comes before it (or is the root). Given
/// back last first: each is given back while the version that required it
/// is still leased. Inline room for three.
struct Deps<P: Stateful>(SmallVec<[Req<P>; 3]>);

/// A lease on a requirement, and the node it is on.
///
/// The lease is borrowed, as a slot's [`Lease`]: no pin when given back.
/// What it borrows is the requirement's slot, which lives in a node that
/// the version requiring it holds (`Member::deps`). That version is leased
/// by the same call, and given back after this lease (`Deps`' order, then
/// `More`'s fields: requirements before the root), so it cannot be
/// finalized, nor drop the node, while this lease lives. Hence `'static`:
/// the borrow is the call's to keep, not the compiler's to check.
struct Req<P: Stateful> {
    lease: Lease<'static, Member<P>>,
    /// Which slot (a slot is one node's), to find a requirement reached
    /// twice.
    node: *const Node<P>,
}

impl<P: Stateful> Deps<P> {
    fn new() -> Self {
        Deps(SmallVec::new())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives every lease back, last first.
    fn clear(&mut self) {
        while let Some(req) = self.0.pop() {
            drop(req);
        }
    }
}

impl<P: Stateful> Drop for Deps<P> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One call through a [`Registry`](super::Registry): derefs to the plugin,
/// and holds its declared dependencies (see [`Call::dependency`]) at
/// versions that satisfy its manifest, for as long as it lives.
///
/// A `Call<'a, P>` borrows what it was entered through: the
/// [`Handle`](super::Handle) ([`Handle::enter`](super::Handle::enter)),
/// the [`Registry`](super::Registry)
/// ([`Registry::enter`](super::Registry::enter)) or a
/// [`Snapshot`](super::Snapshot) ([`Snapshot::enter`](super::Snapshot::enter)).
/// It is two words, and it is `Send`: it can be
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
    /// The lease on the plugin's version, packed ([`Hold::pack`]), with
    /// what `tail` is in its spare bits: [`BORROWED`], [`OWNED`] or
    /// [`MORE`]. With `MORE` it is a copy of [`More::root`]'s hold, so that
    /// reaching the plugin never reads `More`.
    root: Packed,
    /// `BORROWED`: null (a call by handle), or the lease on the name
    /// snapshot, packed (a call by name); the root is a borrowed lease.
    /// `OWNED`: the root is an owned lease, and this its slot's shared
    /// part. `MORE`: a `Box<More>`, which holds every lease.
    tail: *const (),
    _leases: PhantomData<More<'a, P>>,
}

// SAFETY: a call is its leases (`Lease` and `OwnedLease`, both `Send` and
// `Sync`), in two words, and the requirements' node addresses, which are
// only compared; `&Call` gives out only `&P` and manifests, and `P: Sync`
// (`Hooks`).
unsafe impl<P: Stateful> Send for Call<'_, P> {}
// SAFETY: as above.
unsafe impl<P: Stateful> Sync for Call<'_, P> {}

/// A [`Call`] that owns all its leases: `Send + 'static`; see
/// [`Handle::enter_owned`](super::Handle::enter_owned).
pub type OwnedCall<P> = Call<'static, P>;

/// What [`Call::tail`] is, in [`Call::root`]'s spare bits: a borrowed
/// root, and the snapshot's lease if any.
const BORROWED: usize = 0;
/// An owned root, and its slot's shared part.
const OWNED: usize = 0b010_0000;
/// A `Box<More>`.
const MORE: usize = 0b100_0000;
const _: () = assert!(OWNED | MORE == PACKED_SPARE);

/// What a call's `tail` is, from its `root`'s spare bits.
#[inline]
fn kind_of(root: Packed) -> usize {
    root.addr().get() & PACKED_SPARE
}

/// A call's leases, when two words cannot hold them: the plugin has
/// requirements.
struct More<'a, P: Stateful> {
    // Fields drop in order: the requirements first (their slots are kept
    // alive by the plugin's version), then the plugin's lease, then the
    // lease on the map snapshot its slot lives in.
    deps: Deps<P>,
    root: Root<'a, P>,
    /// For a call by name: the lease on the map snapshot that holds the
    /// plugin's node, which the root lease points into (see `names`). Held
    /// for its drop only.
    _names: Option<Lease<'a, Names<P>>>,
}

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

    fn packed(&self) -> Packed {
        match self {
            Root::Borrowed(lease) => lease.packed(),
            Root::Owned(lease) => lease.packed(),
        }
    }

    fn phase(&self) -> Phase {
        match self {
            Root::Borrowed(lease) => lease.phase(),
            Root::Owned(lease) => lease.phase(),
        }
    }
}

impl<'a, P: Stateful> Call<'a, P> {
    /// A call of two words: the plugin's borrowed lease (a plugin with no
    /// requirements), and for a call by name the snapshot's.
    #[inline]
    fn plain(root: Lease<'a, Member<P>>, names: Option<Lease<'a, Names<P>>>) -> Self {
        Call {
            root: root.into_packed(),
            tail: names.map_or(ptr::null(), |names| names.into_packed().as_ptr()),
            _leases: PhantomData,
        }
    }

    /// A call of two words: the plugin's owned lease (a plugin with no
    /// requirements).
    #[inline]
    fn owned_plain(root: OwnedLease<Member<P>>) -> Self {
        let (root, shared) = root.into_parts();
        Call {
            root: root.map_addr(|address| address | OWNED),
            tail: shared.as_ptr().cast_const().cast(),
            _leases: PhantomData,
        }
    }

    /// A call of any shape; in two words but for requirements.
    fn assemble(root: Root<'a, P>, deps: Deps<P>, names: Option<Lease<'a, Names<P>>>) -> Self {
        if deps.is_empty() {
            match root {
                Root::Borrowed(lease) => return Call::plain(lease, names),
                // An owned call is never by name (it borrows nothing).
                Root::Owned(lease) if names.is_none() => return Call::owned_plain(lease),
                Root::Owned(_) => {}
            }
        }
        let packed = root.packed().map_addr(|address| address | MORE);
        let more = Box::new(More {
            deps,
            root,
            _names: names,
        });
        Call {
            root: packed,
            tail: Box::into_raw(more).cast_const().cast(),
            _leases: PhantomData,
        }
    }

    /// What `tail` is.
    #[inline]
    fn kind(&self) -> usize {
        kind_of(self.root)
    }

    /// The out-of-line part, if the call has one.
    #[inline]
    fn more(&self) -> Option<&More<'a, P>> {
        // SAFETY: with `MORE`, `tail` is the `Box<More>` `assemble` made,
        // owned by this call until its drop.
        (self.kind() == MORE).then(|| unsafe { &*self.tail.cast::<More<'a, P>>() })
    }

    /// The version the call leases of the plugin.
    #[inline]
    fn version(&self) -> &Version<Member<P>> {
        // SAFETY: `root` is the packed hold of the call's lease on the
        // plugin (its own, or `More::root`'s), held while the call lives.
        unsafe { Hold::version_of(self.root) }
    }

    #[inline]
    fn member(&self) -> &Member<P> {
        // SAFETY: the call holds a lease on this version (see `version`).
        unsafe { self.version().plugin() }
    }
}

impl<P: Stateful> Drop for Call<'_, P> {
    #[inline(always)]
    fn drop(&mut self) {
        // Only a call by handle on a plugin with no requirements is given
        // back inline: a drop small enough for the compiler to inline is
        // worth more than the other shapes' call. It is the one shape with
        // a null `tail` (every other shape's `tail` is a pointer), so one
        // test tells it apart.
        if !self.tail.is_null() {
            return Call::<P>::drop_cold(self.root, self.tail);
        }
        // SAFETY: a null `tail` is `BORROWED`: `root` is the call's own
        // borrowed lease, given up by `plain` and taken back once, here;
        // its slot is borrowed for `'a` (the node the call was entered
        // through).
        drop(unsafe { Lease::<Member<P>>::from_packed(self.root) });
    }
}

impl<P: Stateful> Call<'static, P> {
    /// Gives back a call by name's two leases, an owned root, or
    /// everything in a `More`. Takes the words, not `&mut self`, so that
    /// the call need not be in memory for the inline drop.
    #[cold]
    #[inline(never)]
    fn drop_cold(root: Packed, tail: *const ()) {
        let tail = tail.cast_mut();
        let kind = kind_of(root);
        if kind == BORROWED {
            // SAFETY: `BORROWED`: the call's own borrowed lease (`plain`),
            // taken back once, here; its slot lives in the snapshot, whose
            // lease `tail` is (non-null: we are here).
            drop(unsafe { Lease::<Member<P>>::from_packed(root) });
            if let Some(names) = NonNull::new(tail) {
                // SAFETY: the snapshot's lease (`plain`), given back once,
                // after the plugin's.
                drop(unsafe { Lease::<Names<P>>::from_packed(names) });
            }
            return;
        }
        if kind == OWNED {
            // SAFETY: `OWNED`: `root` and `tail` are the parts of the call's
            // owned lease (`assemble`), taken back once, here.
            drop(unsafe {
                OwnedLease::<Member<P>>::from_parts(root, NonNull::new_unchecked(tail.cast()))
            });
            return;
        }
        // SAFETY: `MORE`: the `Box<More>` `assemble` made, owned by this
        // call and freed once, here; `root` is only a copy of its root
        // lease's hold, which the box gives back.
        drop(unsafe { Box::from_raw(tail.cast::<More<'_, P>>()) });
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
        Call::fast(node, counters, None)
    }

    /// A call on `node`, which lives in the snapshot `names` leases (kept
    /// by the call).
    #[inline]
    pub(crate) fn in_names(
        node: &'a Node<P>,
        names: Lease<'a, Names<P>>,
        counters: &Counters,
    ) -> Result<Self, EnterError> {
        Call::fast(node, counters, Some(names))
    }

    /// The fast path, inlined: the plugin leased, no requirements, and the
    /// call is two words that come back in registers. Anything else
    /// (requirements, a closed gate, a closed slot) gives the lease back
    /// and starts over out of line.
    #[inline(always)]
    fn fast(
        node: &'a Node<P>,
        counters: &Counters,
        names: Option<Lease<'a, Names<P>>>,
    ) -> Result<Self, EnterError> {
        #[cfg(feature = "metrics")]
        node.calls.increment(1);
        let first = match node.slot.try_enter() {
            Ok(lease) if lease.deps.is_empty() => return Ok(Call::plain(lease, names)),
            Ok(lease) => Some(Root::Borrowed(lease)),
            Err(_) => None,
        };
        Call::acquire(node, counters, names, first, || {
            node.slot.try_enter().map(Root::Borrowed)
        })
    }

    /// The plugin called.
    #[inline]
    pub fn plugin(&self) -> &P {
        self.member().plugin()
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        self.member().manifest()
    }

    /// Its generation.
    pub fn generation(&self) -> u64 {
        self.version().generation()
    }

    /// Whether this call owns its leases (an [`OwnedCall`]'s are; a call
    /// entered with [`Handle::enter`](super::Handle::enter) or
    /// [`Registry::enter`](super::Registry::enter) borrows the plugin's).
    pub fn is_owned(&self) -> bool {
        self.kind() == OWNED
            || self
                .more()
                .is_some_and(|more| matches!(more.root, Root::Owned(_)))
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
            member: self.member(),
            generation: self.generation(),
        };
        let deps = self.more().map_or(&[][..], |more| &more.deps.0[..]);
        std::iter::once(root).chain(deps.iter().map(|req| Dep {
            member: &req.lease,
            generation: req.lease.generation(),
        }))
    }
}

impl<P: Stateful> OwnedCall<P> {
    /// A call on `node` that owns its leases.
    pub(crate) fn owned(node: &Node<P>, counters: &Counters) -> Result<Self, EnterError> {
        #[cfg(feature = "metrics")]
        node.calls.increment(1);
        let first = match node.slot.try_enter_owned() {
            Ok(lease) if lease.deps.is_empty() => return Ok(Call::owned_plain(lease)),
            Ok(lease) => Some(Root::Owned(lease)),
            Err(_) => None,
        };
        Call::acquire(node, counters, None, first, || {
            node.slot.try_enter_owned().map(Root::Owned)
        })
    }
}

/// Why [`OwnedCall::try_owned`] returned no call.
pub(crate) enum Blocked<P: Stateful> {
    /// This node's gate is closed (the plugin's, or a requirement's): wait
    /// until it opens, holding nothing, then try again.
    Wait(Arc<Node<P>>),
    /// The call cannot be made.
    Fail(EnterError),
}

impl<P: Stateful> OwnedCall<P> {
    /// [`OwnedCall::owned`] without waiting: at a closed gate it gives
    /// back everything it holds and says which gate, for an async caller
    /// to wait on (see [`EnterCallFuture`](super::EnterCallFuture)). The
    /// same steps as the blocking path, so the same rule (module docs).
    pub(crate) fn try_owned(node: &Arc<Node<P>>, counters: &Counters) -> Result<Self, Blocked<P>> {
        loop {
            let root = match node.slot.try_enter_owned() {
                Ok(lease) => Root::Owned(lease),
                Err(TryEnterError::Quiescing) => return Err(Blocked::Wait(Arc::clone(node))),
                Err(TryEnterError::Closed) => {
                    return Err(Blocked::Fail(EnterError::Unregistered {
                        name: node.slot.name().to_owned(),
                    }))
                }
            };
            if root.member().deps.is_empty() {
                return Ok(Call::assemble(root, Deps::new(), None));
            }
            let mut deps = Deps::new();
            let attempt = match lease_deps(&root, &mut deps) {
                Ok(()) => return Ok(Call::assemble(root, deps, None)),
                Err(attempt) => attempt,
            };
            deps.clear();
            drop(root);
            match attempt {
                Attempt::Wait(dep) => return Err(Blocked::Wait(dep)),
                Attempt::Retry => {
                    counters.call_retries.fetch_add(1, Relaxed);
                    std::thread::yield_now();
                }
                Attempt::Fail(failure) => return Err(Blocked::Fail(failure)),
            }
        }
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

/// The error `acquire_or` left (always one, when it returned no call).
#[cold]
fn taken<P: Stateful>(error: Option<EnterError>, node: &Node<P>) -> EnterError {
    error.unwrap_or_else(|| EnterError::Unregistered {
        name: node.slot.name().to_owned(),
    })
}

/// Why an attempt at the requirements failed; the caller gives back
/// everything it holds, requirements first.
enum Attempt<P: Stateful> {
    /// A requirement's gate is closed: wait for it, then start over.
    Wait(Arc<Node<P>>),
    /// The set mixed versions, or reached a slot closed under it.
    Retry,
    /// A requirement is closed while the plugin still requires it.
    Fail(EnterError),
}

impl<'a, P: Stateful> Call<'a, P> {
    /// [`Call::acquire_or`], out of line, so that the fast path
    /// (`Call::fast`) stays small.
    #[inline]
    fn acquire(
        node: &Node<P>,
        counters: &Counters,
        names: Option<Lease<'a, Names<P>>>,
        first: Option<Root<'a, P>>,
        enter: impl Fn() -> Result<Root<'a, P>, TryEnterError>,
    ) -> Result<Self, EnterError> {
        let mut error = None;
        match Call::acquire_or(node, counters, names, first, enter, &mut error) {
            Some(call) => Ok(call),
            None => Err(taken(error, node)),
        }
    }

    /// Leases `node` and its requirements, consistently (see the module
    /// docs), starting from `first` if the fast path leased the plugin
    /// already. Returns the call as two words (in registers) and an error
    /// through `error`: were it to return the `Result`, the fast path's
    /// result would have to go through memory too, for the branches to
    /// meet.
    #[inline(never)]
    fn acquire_or(
        node: &Node<P>,
        counters: &Counters,
        names: Option<Lease<'a, Names<P>>>,
        mut first: Option<Root<'a, P>>,
        enter: impl Fn() -> Result<Root<'a, P>, TryEnterError>,
        error: &mut Option<EnterError>,
    ) -> Option<Self> {
        loop {
            let root = match first.take().map_or_else(&enter, Ok) {
                Ok(root) => root,
                Err(TryEnterError::Quiescing) => {
                    node.slot.shared.wait_gate(None);
                    counters.gate_waits.fetch_add(1, Relaxed);
                    continue;
                }
                Err(TryEnterError::Closed) => {
                    *error = Some(EnterError::Unregistered {
                        name: node.slot.name().to_owned(),
                    });
                    return None;
                }
            };
            // No requirements (met after a wait at the gate): done.
            if root.member().deps.is_empty() {
                return Some(Call::assemble(root, Deps::new(), names));
            }
            // Declared after `root`, so dropped before it, as `Req` needs.
            let mut deps = Deps::new();
            let attempt = match lease_deps(&root, &mut deps) {
                Ok(()) => return Some(Call::assemble(root, deps, names)),
                Err(attempt) => attempt,
            };
            // Give everything back, requirements first, before waiting: the
            // group commit that closed a gate may be draining what we hold.
            deps.clear();
            drop(root);
            match attempt {
                Attempt::Wait(dep) => {
                    dep.slot.shared.wait_gate(None);
                    counters.gate_waits.fetch_add(1, Relaxed);
                }
                Attempt::Retry => {
                    counters.call_retries.fetch_add(1, Relaxed);
                    std::thread::yield_now();
                }
                Attempt::Fail(failure) => {
                    *error = Some(failure);
                    return None;
                }
            }
        }
    }
}

/// Leases the requirements of `root`'s version into `deps`, breadth first;
/// or says why not (the caller then gives back what `deps` holds).
fn lease_deps<P: Stateful>(root: &Root<'_, P>, deps: &mut Deps<P>) -> Result<(), Attempt<P>> {
    // `None`: the root's requirements; `Some(i)`: those of `deps[i]`.
    let mut at: Option<usize> = None;
    loop {
        let member: *const Member<P> = match at {
            None => root.member(),
            Some(i) => &*deps.0[i].lease,
        };
        // SAFETY: `member` is in a version leased by `root` or by
        // `deps[i]`; both stay held (`deps` only grows) until we return,
        // after the last use of `member`. Pushing may move the leases, not
        // the versions they point to.
        let member = unsafe { &*member };
        for (k, dep) in member.deps.iter().enumerate() {
            if let Some(seen) = deps.0.iter().find(|req| ptr::eq(req.node, &**dep)) {
                // Reached twice (a diamond): one version for both paths.
                if !member.accepts(k, seen.lease.generation(), seen.lease.manifest()) {
                    return Err(Attempt::Retry);
                }
                continue;
            }
            match dep.slot.try_enter() {
                Ok(lease) => {
                    if !member.accepts(k, lease.generation(), lease.manifest()) {
                        return Err(Attempt::Retry);
                    }
                    // SAFETY: the lease borrows `dep`'s slot, which `member`
                    // keeps alive while its version is leased, and that
                    // lease is given back after this one (see `Req`).
                    let lease = unsafe { Lease::from_packed(lease.into_packed()) };
                    deps.0.push(Req {
                        lease,
                        node: Arc::as_ptr(dep),
                    });
                }
                // `dep` lives in a member the caller is about to release.
                Err(TryEnterError::Quiescing) => return Err(Attempt::Wait(Arc::clone(dep))),
                // A closed dependency: only a version already cut over
                // from can still require a plugin that was unregistered,
                // so the root has moved on; start over on its new version.
                // If the root is still current, the registry is broken:
                // say so rather than spin.
                Err(TryEnterError::Closed) => {
                    if root.phase() == Phase::Active {
                        return Err(Attempt::Fail(EnterError::Unregistered {
                            name: dep.slot.name().to_owned(),
                        }));
                    }
                    return Err(Attempt::Retry);
                }
            }
        }
        let next = at.map_or(0, |i| i + 1);
        if next == deps.0.len() {
            return Ok(());
        }
        at = Some(next);
    }
}
