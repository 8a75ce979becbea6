//! The drain path, in one file.
//!
//! Everything that makes a cutover safe lives here: how a call takes a lease
//! ([`acquire`]), gives it back ([`Version::release`]), how the slot cuts
//! over ([`cut_over`]), how a drain waits, parked, for the last lease
//! ([`Version::wait_drained`], [`Version::poll_drained`]), and how a
//! drained version's memory is reclaimed ([`retire`]). The argument that it
//! meets the contract (S1-S4, L1-L2 of `docs/contract.md`)
//! is in `docs/drain.md`; the comments here say which step each line is.
//!
//! # The two store-buffering pairs
//!
//! The protocol rests on two Dekker-style pairs. Each side writes one
//! location, issues `fence(SeqCst)`, then reads the other side's location;
//! the fences are totally ordered, so at least one side sees the other's
//! write. (loom models `SeqCst` *accesses* as `AcqRel`, which is too weak
//! for this pattern, so both sides use explicit fences, and loom checks
//! exactly what ships.)
//!
//! | pair | caller side (enter / release) | reloader side (cut over / drain) |
//! |---|---|---|
//! | A: no lease slips past the drain | increment shard; fence; re-load `current` | swap `current` (or tag it: gate); fence; sum shards |
//! | B: no lost wake-up | decrement shard; fence; load phase and `gated` | phase `Active -> Draining` (or set `gated`); fence; sum shards |
//!
//! A: if the caller's re-load still sees the old version, the reloader's sum
//! sees the increment, so the drain waits for that lease; otherwise the
//! caller undoes and retries on the new version. B: if the releaser does not
//! see `Draining`, the drain's sum sees the decrement; otherwise the
//! releaser checks the sum itself and wakes the drain when it is zero.
//!
//! # The gate (quiesced reloads)
//!
//! A quiesced reload must drain the old version *while it is still the
//! current one* (it stays `Active`; the lifecycle has no other edge), so
//! that its state can be saved with no call running and none starting.
//! [`close_gate`] does that with the same two pairs and no new fence: it
//! sets the version's `gated` flag (the write of pair B, which the release
//! reads next to the phase) and tags the `current` pointer (the write of
//! pair A: a caller's re-load sees a different word, undoes and retries, and
//! a caller whose first load sees the tag does not increment at all). The
//! tag costs `enter` nothing: it already compares the whole word. Opening
//! the gate is [`open_gate`] (roll back) or a cut-over to the new version,
//! whose pointer is untagged.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};
use crossbeam_utils::CachePadded;
use lifecycle::{AtomicPhase, Phase};

use crate::loom::{fence, pin, pin_with_shard, AtomicBool, AtomicUsize, Ordering, SHARDS};
use crate::waiters::{TaskEntry, WaitList};

/// One version of a plugin as the slot holds it: the value, its phase, its
/// in-flight counts and whoever waits for its drain.
pub(crate) struct Version<P> {
    /// In-flight leases, one counter per shard, each on its own cache line
    /// so that threads calling in parallel do not bounce one line. A lease
    /// decrements the shard it incremented, so no counter goes below zero
    /// and the sum is the number of leases out.
    inflight: [CachePadded<AtomicUsize>; SHARDS],
    /// Doubles as the "is anyone draining me" flag of pair B.
    pub(crate) phase: AtomicPhase,
    /// Set while a quiesced reload waits for this version to drain with
    /// its gate closed; read by release as the other half of pair B.
    gated: AtomicBool,
    /// Whoever waits for the drain: any number of parked threads and async
    /// tasks, all woken by the last release.
    waiters: WaitList,
    /// The generation this version has in its slot (1 for the first).
    pub(crate) generation: u64,
    /// The plugin. Shared (`&P`) while leases may exist; taken out exactly
    /// once by [`Version::take_plugin`] after the drain; never dropped in
    /// place (the shell is freed by the collector, possibly much later).
    plugin: UnsafeCell<ManuallyDrop<P>>,
}

// SAFETY: a `Version<P>` is shared between the callers holding leases
// (which only read `&P`, hence `P: Sync`) and the thread that finalizes it
// (which moves `P` out, hence `P: Send`). Every other field is a
// synchronisation primitive.
unsafe impl<P: Send + Sync> Sync for Version<P> {}
// SAFETY: as above; the shell may be freed on any thread by the collector.
unsafe impl<P: Send + Sync> Send for Version<P> {}

/// A lease's hold on a version: which version, and which shard it counted on.
pub(crate) struct Hold<P> {
    pub(crate) version: NonNull<Version<P>>,
    pub(crate) shard: usize,
}

impl<P> Version<P> {
    /// A version for `plugin`, already `Active`: it is about to be published.
    pub(crate) fn new(plugin: P, generation: u64) -> Self {
        let phase = AtomicPhase::new(Phase::Initialized);
        // Nobody else can see the cell yet, so this cannot be stale; it goes
        // through the table like every other phase change.
        let activated = phase.transition(Phase::Initialized, Phase::Active);
        debug_assert_eq!(activated, Ok(()));
        Version {
            inflight: std::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
            phase,
            gated: AtomicBool::new(false),
            waiters: WaitList::default(),
            generation,
            plugin: UnsafeCell::new(ManuallyDrop::new(plugin)),
        }
    }

    /// The plugin, for a lease holder.
    ///
    /// # Safety
    ///
    /// The caller holds a lease on this version (an increment that passed
    /// the re-check in [`acquire`] and is not yet released), or otherwise
    /// knows [`Version::take_plugin`] has not run and will not run while the
    /// returned reference lives.
    #[inline]
    pub(crate) unsafe fn plugin(&self) -> &P {
        // SAFETY: per the contract above, the value is initialised and only
        // shared references to it exist until the drain completes.
        unsafe { &*self.plugin.get() }
    }

    /// Moves the plugin out, to finalize it.
    ///
    /// # Safety
    ///
    /// Called at most once, after the version was unlinked from its slot and
    /// [`Version::wait_drained`] (or an `is_drained` that returned `true`)
    /// established that no lease is out, so no reference from
    /// [`Version::plugin`] exists and none can be made.
    pub(crate) unsafe fn take_plugin(&self) -> P {
        // SAFETY: exclusive access per the contract; `ManuallyDrop` keeps the
        // shell's drop from dropping the value a second time.
        unsafe { ManuallyDrop::take(&mut *self.plugin.get()) }
    }

    /// Leases out on this version right now.
    pub(crate) fn in_flight(&self) -> usize {
        // Acquire: a lease's release decrements with Release after its call
        // returned, so a drain that sums to zero happens-after every call
        // made through those leases, and so does the shutdown that follows.
        self.inflight
            .iter()
            .map(|shard| shard.load(Ordering::Acquire))
            .sum()
    }

    /// Whether every lease on this (unlinked) version was given back.
    pub(crate) fn is_drained(&self) -> bool {
        // SeqCst fence: the reloader's half of pairs A and B. It follows the
        // swap of `current` and the `Active -> Draining` transition (both in
        // `cut_over`, earlier in this thread) and precedes the sum.
        fence(Ordering::SeqCst);
        self.in_flight() == 0
    }

    /// Gives back the lease counted on `shard` and, if this version is
    /// draining and that was the last lease, wakes the drain.
    ///
    /// # Safety
    ///
    /// `this` points to a version on which the caller holds one lease
    /// counted on `shard` (so its memory is valid on entry); the lease is
    /// consumed.
    #[inline]
    pub(crate) unsafe fn release(this: NonNull<Version<P>>, shard: usize) {
        // Pinned across the decrement and the wake: once the count can reach
        // zero a drain may complete and `retire` the shell, and this pin is
        // what keeps the memory valid until we are done touching it.
        let guard = pin();
        // SAFETY: forwarded; pinned above.
        unsafe { Version::release_pinned(this, shard, &guard) }
    }

    /// [`Version::release`] under a pin the caller already holds (an owned
    /// lease keeps it past the release, for the slot's bookkeeping).
    ///
    /// # Safety
    ///
    /// As for [`Version::release`], and `_guard` was pinned before this call.
    #[inline]
    pub(crate) unsafe fn release_pinned(this: NonNull<Version<P>>, shard: usize, _guard: &Guard) {
        // SAFETY: the lease held on entry kept the version from being
        // drained; from the decrement on, `_guard` keeps the memory alive
        // (`retire` defers its free until every pin taken before it ends).
        let version = unsafe { this.as_ref() };
        // Release: the call made through this lease happens-before a drain
        // that observes the decrement (see `in_flight`).
        version.inflight[shard].fetch_sub(1, Ordering::Release);
        // SeqCst fence: the caller's half of pair B, between the decrement
        // and the loads of the phase and the gate flag.
        fence(Ordering::SeqCst);
        // Relaxed (`gated`): ordered by the fences of pair B.
        if version.phase.load() != Phase::Active || version.gated.load(Ordering::Relaxed) {
            version.wake_if_drained();
        }
    }

    #[cold]
    fn wake_if_drained(&self) {
        if self.in_flight() != 0 {
            return;
        }
        // Every waiter, not one: a waiter that registers after we looked is
        // covered by the list's lock (it re-sums after registering and sees
        // our decrement).
        self.waiters.wake_all();
    }

    /// Blocks, parked, until the drain completes (`true`) or `deadline`
    /// passes (`false`). Woken by the last release, never by polling. Any
    /// number of threads may wait at once; each is woken.
    pub(crate) fn wait_drained(&self, deadline: Option<Instant>) -> bool {
        // The first look carries the reloader's fence (pairs A and B); the
        // looks after a registration need none: a release that found no
        // waiter registered unlocked the list before we locked it, so our
        // look sees its decrement.
        self.is_drained() || self.waiters.wait_until(deadline, || self.in_flight() == 0)
    }

    /// The async form of [`Version::wait_drained`]: registers the task's
    /// waker in `entry`, which the last release wakes.
    pub(crate) fn poll_drained(&self, entry: &mut TaskEntry, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_drained() {
            self.waiters.leave(entry);
            return Poll::Ready(());
        }
        self.waiters.poll_until(entry, cx, || self.in_flight() == 0)
    }

    /// Takes a task's entry out of the drain's waiters (its future was
    /// dropped before the drain completed).
    pub(crate) fn leave(&self, entry: &mut TaskEntry) {
        self.waiters.leave(entry);
    }
}

/// The tag on `current` that says its version's gate is closed.
const GATED: usize = 1;

/// Takes a lease on the current version of `current`. Never blocks, and
/// never fails because a reload is in progress: a cutover only makes it
/// retry on the new version. Only a closed gate (a quiesced reload) or a
/// closed slot makes it come back empty-handed (`None`; the caller tells
/// the two apart on its slow path, so that `Option<Hold>` keeps the fast
/// path's return in two registers).
#[inline]
pub(crate) fn acquire<P>(current: &Atomic<Version<P>>) -> Option<Hold<P>> {
    // The pin keeps the version we load from being freed between the load
    // and the increment; it is dropped before the lease is returned.
    let (guard, shard) = pin_with_shard();
    // Acquire: pairs with the Release of the swap that published the
    // version, so its fields are initialised when we read them.
    let mut seen = current.load(Ordering::Acquire, &guard);
    loop {
        if seen.tag() == GATED {
            return None;
        }
        // SAFETY: a non-null pointer loaded from `current` while pinned stays
        // valid until the guard is dropped (`retire` defers the free).
        let version = unsafe { seen.as_ref() }?;
        // Relaxed: ordering comes from the fence below (pair A).
        version.inflight[shard].fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: the caller's half of pair A, between the increment
        // and the re-load of `current`.
        fence(Ordering::SeqCst);
        let now = current.load(Ordering::Acquire, &guard);
        // Compares the whole word, tag included: a gate closed since our
        // first load counts as a change.
        if now == seen {
            // The drain that will follow any later swap sees our increment.
            return Some(Hold {
                version: NonNull::from(version),
                shard,
            });
        }
        // A cutover (or a closing gate) raced us. Undo (this may be the decrement a drain is
        // waiting for, so it goes through the full release) and retry on the
        // new version. Pointer equality is not fooled by reuse: `seen` cannot
        // be freed and reallocated while we are pinned.
        // SAFETY: we hold exactly the increment made above on `shard`.
        unsafe { Version::release(NonNull::from(version), shard) };
        seen = now;
    }
}

/// Publishes `next` as the current version (or null, to close) and returns
/// the version it replaced, now `Draining`. The caller serialises cut-overs
/// (the slot's writer lock) and becomes the owner of the returned version.
///
/// # Errors
///
/// A closed slot (null `current`) stays closed: `next` comes back unpublished.
pub(crate) fn cut_over<P>(
    current: &Atomic<Version<P>>,
    next: Option<Owned<Version<P>>>,
) -> Result<NonNull<Version<P>>, Option<Owned<Version<P>>>> {
    let guard = pin();
    // Acquire: as in `acquire`. Only cut-overs write `current` and the caller
    // serialises them, so the value cannot change before our swap.
    if current.load(Ordering::Acquire, &guard).is_null() {
        return Err(next);
    }
    let next = next.map_or_else(Shared::null, |owned| owned.into_shared(&guard));
    // AcqRel: Release publishes `next`'s contents to `acquire`'s Acquire
    // load; Acquire makes the old version's contents ours. The SeqCst fence
    // of pair A is in `is_drained`, before the reloader's first sum.
    let old = current.swap(next, Ordering::AcqRel, &guard);
    // SAFETY: non-null (checked above, and cut-overs are serialised); a
    // version in `current` is live, and we unlinked it, so its shell stays
    // allocated until we `retire` it.
    let old = unsafe { old.deref() };
    // The first write of pair B. Only a cut-over moves a version out of
    // Active, and cut-overs are serialised, so this cannot be stale.
    let drained = old.phase.transition(Phase::Active, Phase::Draining);
    debug_assert_eq!(drained, Ok(()));
    Ok(NonNull::from(old))
}

/// Closes the gate of the current version (Q1-Q2 in `docs/drain.md`): from
/// now on [`acquire`] does not lease it, and its last release wakes a
/// [`Version::wait_drained`]. The version stays `Active`. Returns it, or
/// `None` if the slot is closed. The caller serialises this with cut-overs
/// (the slot's writer lock), and then waits for the drain, whose first
/// `is_drained` supplies the SeqCst fence of both pairs.
pub(crate) fn close_gate<P>(current: &Atomic<Version<P>>) -> Option<NonNull<Version<P>>> {
    let guard = pin();
    // Acquire: as in `acquire`; writers are serialised, so this is stable.
    let seen = current.load(Ordering::Acquire, &guard);
    // SAFETY: loaded while pinned; a current version is live.
    let version = unsafe { seen.as_ref() }?;
    debug_assert_eq!(seen.tag(), 0, "a gate is closed by one reload at a time");
    // Q1, the write of pair B. Relaxed: ordered by the fence in `is_drained`.
    version.gated.store(true, Ordering::Relaxed);
    // Q2, the write of pair A. Release, as for a swap (nothing new is
    // published; the fence that matters follows in `is_drained`).
    current.store(seen.with_tag(GATED), Ordering::Release);
    Some(NonNull::from(version))
}

/// Opens the gate [`close_gate`] closed, leaving the same version current
/// and `Active` (a quiesced reload rolling back). Callers waiting at the
/// gate are told by the slot, which holds the list of them.
pub(crate) fn open_gate<P>(current: &Atomic<Version<P>>) {
    let guard = pin();
    let seen = current.load(Ordering::Acquire, &guard);
    // SAFETY: loaded while pinned; the gated version is still current (cut-
    // overs are serialised with us), so live.
    if let Some(version) = unsafe { seen.as_ref() } {
        // Release: callers that see the untagged word lease as before.
        current.store(seen.with_tag(0), Ordering::Release);
        // Relaxed: a stale `true` seen by a release costs one spurious
        // `wake_if_drained`, which finds no waiter or one that re-checks.
        version.gated.store(false, Ordering::Relaxed);
    }
}

/// Frees a finalized version's shell once no pinned thread can still be
/// touching it.
///
/// # Safety
///
/// `version` was unlinked by [`cut_over`], drained, and its plugin taken
/// with [`Version::take_plugin`]; no other owner will retire it.
pub(crate) unsafe fn retire<P: Send + Sync>(version: NonNull<Version<P>>) {
    let guard = pin();
    // SAFETY: unreachable from `current`, and every thread that could still
    // hold the pointer (a releaser or an undoing `acquire`) is pinned from
    // before it could have seen the drain complete; the collector frees the
    // shell only after all such pins end.
    unsafe { guard.defer_destroy(Shared::from(version.as_ptr().cast_const())) };
    // Hand the garbage to the global queue now rather than when this
    // thread's local bag fills, so a quiet process still frees it.
    guard.flush();
}
