//! The drain path, in one file.
//!
//! Everything that makes a cutover safe lives here: how a call takes a lease
//! ([`acquire`]), gives it back ([`Version::release`]), how the slot cuts
//! over ([`cut_over`]), how a drain waits, parked, for the last lease
//! ([`Version::wait_drained`], [`Version::poll_drained`]), and how a
//! drained version's memory goes back to its slot for reuse ([`Shells`]).
//! The argument that it
//! meets the contract (S1-S4, L1-L2 of `docs/contract.md`)
//! is in `docs/drain.md`; the comments here say which step each line is.
//!
//! # The two store-buffering pairs
//!
//! The protocol rests on two Dekker-style pairs. Each side writes one
//! location, issues a fence, then reads the other side's location; of the
//! two sides, at least one sees the other's write.
//!
//! | pair | caller side (enter / release) | reloader side (cut over / drain) |
//! |---|---|---|
//! | A: no lease slips past the drain | count in; *light*; re-load `current` | swap `current` (or tag it: gate); *heavy*; sum shards |
//! | B: no lost wake-up | count out; *light*; load phase and `gated` | phase `Active -> Draining` (or set `gated`); *heavy*; sum shards |
//!
//! A: if the caller's re-load still sees the old version, the reloader's sum
//! sees the increment, so the drain waits for that lease; otherwise the
//! caller undoes and retries on the new version. B: if the releaser does not
//! see `Draining`, the drain's sum sees the decrement; otherwise the
//! releaser checks the sum itself and wakes the drain when it is zero.
//!
//! *light* and *heavy* are the asymmetric pair of `loom/fences.rs`: a
//! compiler fence and `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` where
//! the kernel has it, `fence(SeqCst)` on both sides where it does not.
//! (loom models both as `SeqCst` fences, and checks exactly what ships but
//! for that one substitution: see `loom/mocked.rs`.)
//!
//! # Counting with no locked instruction
//!
//! Each version has one pair of counters per shard ([`Counts`]), and each
//! live thread owns a shard (up to `SHARDS` threads; later ones share). A
//! thread counts its leases on its own shard's `own` word with a plain load
//! and store: it is that word's only writer, so nothing is lost. Whatever
//! cannot be done by the owner goes to the shard's `shared` word with a
//! locked read-modify-write: a lease given back on another thread, and
//! every lease of a thread that shares its shard. A lease remembers where
//! it counted (shard, and whether on `own`), so which thread drops it never
//! matters for correctness. The number of leases out is `sum(own) -
//! sum(shared)`, wrapping.
//!
//! # Memory: type-stable version shells
//!
//! `enter` does not pin. Between loading `current` and its re-check, a
//! caller may touch a version that has since been cut over, drained and
//! finalized; what keeps that safe is that a version's memory (its
//! *shell*) is never freed while its slot's shared part lives: a finalized
//! shell goes to the slot's [`Shells`] and is reused for a later version,
//! and the shells are freed with the shared part, whose last reference
//! crossbeam-epoch releases ([`crate::shared::release`]). A caller of the
//! fast path borrows the slot, so every pointer it can have loaded points
//! at a live `Version<P>`; it only touches atomics (counts, phase, gate
//! flag, wait list) before its re-check confirms the version is current,
//! and a shell that came back as a newer version is caught by that same
//! re-check or is the current version, which it is then right to lease.
//! This is Linux's `SLAB_TYPESAFE_BY_RCU`, with the slot in the role of the
//! slab. The argument, and why an owned lease still pins, is in
//! `docs/drain.md`.
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
#[cfg(feature = "registry")]
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_epoch::{Atomic, Shared};
use crossbeam_utils::CachePadded;
use lifecycle::{AtomicPhase, Phase};

use crate::loom::{
    fence, heavy_fence, light_fence, owns_shard, pin, this_thread_shard, AtomicBool, AtomicUsize,
    Ordering, SHARDS,
};
use crate::waiters::{TaskEntry, WaitList};

/// One version of a plugin as the slot holds it: the value, its phase, its
/// in-flight counts and whoever waits for its drain. Its memory is a shell
/// that outlives it (see "Memory" above).
///
/// Aligned to 128 (as `CachePadded` already makes it on x86-64), so that
/// a [`Hold`] fits in one word with bits to spare: see [`Hold::pack`].
#[repr(align(128))]
pub(crate) struct Version<P> {
    /// In-flight leases, one pair of counters per shard, each on its own
    /// cache line so that threads calling in parallel do not bounce one
    /// line.
    counts: [CachePadded<Counts>; SHARDS],
    /// Doubles as the "is anyone draining me" flag of pair B.
    pub(crate) phase: AtomicPhase,
    /// Set while a quiesced reload waits for this version to drain with
    /// its gate closed; read by release as the other half of pair B.
    gated: AtomicBool,
    /// Whoever waits for the drain: any number of parked threads and async
    /// tasks, all woken by the last release.
    waiters: WaitList,
    /// The generation this version has in its slot (1 for the first).
    /// Atomic because a shell's next life writes it while a caller that
    /// loaded the shell in its previous life may still read the shell (it
    /// never reads this field before its re-check, but `Slot` observers
    /// do); it is published with the version (the swap's Release).
    generation: AtomicU64,
    /// The plugin. Shared (`&P`) while leases may exist; taken out exactly
    /// once by [`Version::take_plugin`] after the drain; never dropped in
    /// place (a shell lives on, empty, for the next version).
    plugin: UnsafeCell<ManuallyDrop<P>>,
}

/// A shard's two counters (see "Counting with no locked instruction").
#[derive(Default)]
struct Counts {
    /// Leases counted by the shard's owner thread, minus those it gave
    /// back itself. Written only by the owner, with a plain load and store.
    own: AtomicUsize,
    /// Leases given back by other threads, minus leases counted by threads
    /// that share the shard. Written by anyone, with locked RMWs.
    shared: AtomicUsize,
}

// SAFETY: a `Version<P>` is shared between the callers holding leases
// (which only read `&P`, hence `P: Sync`) and the thread that finalizes it
// (which moves `P` out, hence `P: Send`). Every other field is a
// synchronisation primitive.
unsafe impl<P: Send + Sync> Sync for Version<P> {}
// SAFETY: as above; the shell may be freed on any thread.
unsafe impl<P: Send + Sync> Send for Version<P> {}

/// A lease's hold on a version: which version, and where it counted. Two
/// words, so that `Option<Hold>` comes back from `enter` in registers (its
/// `None` is the null pointer).
pub(crate) struct Hold<P> {
    pub(crate) version: NonNull<Version<P>>,
    /// The shard, with [`OWN`] set if counted on its `own` word (by its
    /// owner) rather than its `shared` one.
    count: u32,
}

/// The flag in [`Hold::count`] for a count on the shard's `own` word.
/// (Just above the shard's four bits, as a packed hold has it.)
const OWN: u32 = 1 << 4;

impl<P> Hold<P> {
    fn new(version: &Version<P>, shard: usize, own: bool) -> Self {
        // `shard < SHARDS`, which is below the flag.
        let count = shard as u32 | if own { OWN } else { 0 };
        Hold {
            version: NonNull::from(version),
            count,
        }
    }

    fn shard(&self) -> usize {
        (self.count & !OWN) as usize % SHARDS
    }

    fn own(&self) -> bool {
        self.count & OWN != 0
    }

    /// This hold as one word: the version's address with the count in the
    /// low bits its alignment leaves zero (the shard in four, `OWN` in the
    /// fifth, as [`Hold::count`] has them). The bits of [`PACKED_SPARE`]
    /// stay zero, for the word's keeper; unpacking ignores them. A registry
    /// call is two such words, so that it comes back from `enter` in
    /// registers rather than through the stack.
    #[cfg(feature = "registry")]
    pub(crate) fn pack(&self) -> Packed {
        // The address is non-null and a multiple of 128 (`Version`'s repr),
        // so or-ing in a count below 32 keeps it non-null and separable.
        // `map_addr` keeps the pointer's provenance.
        let count = (self.count & PACKED_COUNT as u32) as usize;
        self.version
            .cast::<()>()
            .map_addr(|address| address | count)
    }

    /// The hold [`Hold::pack`] made `word` from.
    ///
    /// # Safety
    ///
    /// `word` came from `pack` on a hold of a `Version<P>` (bits of
    /// [`PACKED_SPARE`] may have been set since). The result is a copy:
    /// only one of the holds so made may be given back.
    #[cfg(feature = "registry")]
    pub(crate) unsafe fn unpack(word: Packed) -> Self {
        let bits = word.addr().get();
        let version = word.map_addr(|address| {
            // SAFETY: the version's address, non-null (the caller's contract).
            unsafe { NonZeroUsize::new_unchecked(address.get() & !PACKED_MASK) }
        });
        Hold {
            version: version.cast(),
            count: (bits & PACKED_COUNT) as u32,
        }
    }

    /// The version a packed hold is on.
    ///
    /// # Safety
    ///
    /// As [`Hold::unpack`], and the hold is held for `'v`.
    #[cfg(feature = "registry")]
    #[inline]
    pub(crate) unsafe fn version_of<'v>(word: Packed) -> &'v Version<P> {
        // SAFETY: the version's address, alive while the hold is held (the
        // caller's contract).
        unsafe {
            &*word
                .as_ptr()
                .map_addr(|address| address & !PACKED_MASK)
                .cast()
        }
    }
}

/// A [`Hold`] in one word ([`Hold::pack`]).
#[cfg(feature = "registry")]
pub(crate) type Packed = NonNull<()>;

/// A packed hold's count: the shard (below `SHARDS`, at most 16) and the
/// `OWN` flag, as in [`Hold::count`].
#[cfg(feature = "registry")]
const PACKED_COUNT: usize = 0b1_1111;
/// Bits of a packed hold that are always zero: free for whoever keeps the
/// word (the registry's call says with them what else it holds).
#[cfg(feature = "registry")]
pub(crate) const PACKED_SPARE: usize = 0b110_0000;
/// Every low bit a version's alignment leaves zero.
#[cfg(feature = "registry")]
const PACKED_MASK: usize = 0b111_1111;
#[cfg(feature = "registry")]
const _: () = assert!(SHARDS <= OWN as usize && OWN as usize * 2 == PACKED_COUNT + 1);
#[cfg(feature = "registry")]
const _: () = assert!(std::mem::align_of::<Version<()>>() > PACKED_MASK);

impl<P> Version<P> {
    /// A version for `plugin`, already `Active`: it is about to be published.
    pub(crate) fn new(plugin: P, generation: u64) -> Self {
        let phase = AtomicPhase::new(Phase::Initialized);
        // Nobody else can see the cell yet, so this cannot be stale; it goes
        // through the table like every other phase change.
        let activated = phase.transition(Phase::Initialized, Phase::Active);
        debug_assert_eq!(activated, Ok(()));
        Version {
            counts: std::array::from_fn(|_| CachePadded::default()),
            phase,
            gated: AtomicBool::new(false),
            waiters: WaitList::default(),
            generation: AtomicU64::new(generation),
            plugin: UnsafeCell::new(ManuallyDrop::new(plugin)),
        }
    }

    /// Puts `plugin` in this finalized shell, as `generation`, `Active`.
    ///
    /// # Safety
    ///
    /// The shell's last version was finalized (its plugin taken, its phase
    /// `Removed`) and the shell is not published; the caller has it to
    /// itself but for callers of `acquire` that loaded it in an earlier
    /// life, which touch only its atomics (see "Memory").
    unsafe fn renew(&self, plugin: P, generation: u64) {
        // SAFETY: no reference to the plugin exists (its value was taken,
        // no lease is out, and stale callers never make one before a
        // re-check that cannot pass until we publish); `ManuallyDrop`
        // means nothing old is dropped by the write.
        unsafe { *self.plugin.get() = ManuallyDrop::new(plugin) };
        // Relaxed: published, with the plugin, by the swap's Release.
        self.generation.store(generation, Ordering::Relaxed);
        // Relaxed: as in `open_gate`; a stale `true` costs a release one
        // spurious look.
        self.gated.store(false, Ordering::Relaxed);
        // The cell starts over and walks the table to `Active`. Only we
        // change an unpublished shell's phase, so none of these is stale.
        let walked = self.phase.recycle().and_then(|()| {
            self.phase.transition(Phase::Loaded, Phase::Linked)?;
            self.phase.transition(Phase::Linked, Phase::Initialized)?;
            self.phase.transition(Phase::Initialized, Phase::Active)
        });
        debug_assert_eq!(walked, Ok(()));
        // The counts are not reset: every increment is a lease or an undo
        // under way, and each will be matched, so they sum to zero now or
        // soon (a stale caller's undo).
    }

    /// The generation this version has in its slot.
    pub(crate) fn generation(&self) -> u64 {
        // Relaxed: see the field.
        self.generation.load(Ordering::Relaxed)
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
    /// Called at most once per version, after the version was unlinked
    /// from its slot (or never published) and [`Version::wait_drained`] (or
    /// an `is_drained` that returned `true`) established that no lease is
    /// out, so no reference from [`Version::plugin`] exists and none can be
    /// made.
    pub(crate) unsafe fn take_plugin(&self) -> P {
        // SAFETY: exclusive access per the contract; `ManuallyDrop` keeps the
        // shell from dropping the value a second time.
        unsafe { ManuallyDrop::take(&mut *self.plugin.get()) }
    }

    /// Counts a lease in, on this thread's shard.
    #[inline(always)]
    fn count_in(&self, shard: usize, own: bool) {
        let counts = &self.counts[shard % SHARDS];
        if own {
            // Relaxed, and not a read-modify-write: this thread is the
            // word's only writer (see `this_thread_shard`). Ordering comes
            // from the fence that follows (pair A).
            let own = &counts.own;
            own.store(
                own.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        } else {
            // Relaxed: as above; shared with other writers, so locked.
            counts.shared.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts the lease `hold` out.
    #[inline(always)]
    fn count_out(&self, hold: &Hold<P>) {
        let shard = hold.shard();
        let counts = &self.counts[shard];
        // Release (both arms): the call made through this lease
        // happens-before a drain that observes the count (see `in_flight`).
        // Kept even though the fence after it (pair B) is `SeqCst` in the
        // symmetric mode: in the asymmetric mode it is a compiler fence.
        if hold.own() && owns_shard(shard) {
            // The owner gives back what it counted: a plain load and store,
            // as in `count_in`. (The owner now may be a later thread than
            // the one that counted, after that one exited; the claim
            // orders the two.)
            let own = &counts.own;
            own.store(
                own.load(Ordering::Relaxed).wrapping_sub(1),
                Ordering::Release,
            );
        } else {
            counts.shared.fetch_add(1, Ordering::Release);
        }
    }

    /// Leases out on this version right now.
    pub(crate) fn in_flight(&self) -> usize {
        // Acquire: a lease's release counts out with Release after its call
        // returned, so a drain that sums to zero happens-after every call
        // made through those leases, and so does the shutdown that follows.
        //
        // Every `shared` word before any `own` word: a lease counted on
        // `own` may be given back on `shared` (by another thread). Reading
        // the give-back's word first, with Acquire, makes the later read of
        // the count's word see the count (it happens-before the give-back).
        // Pair A already makes granted counts visible to every sum behind a
        // heavy fence, so this is a defence for the sums that are not
        // (`docs/drain.md`, "Counting").
        let given_back: usize = self
            .counts
            .iter()
            .map(|c| c.shared.load(Ordering::Acquire))
            .fold(0, usize::wrapping_add);
        let counted: usize = self
            .counts
            .iter()
            .map(|c| c.own.load(Ordering::Acquire))
            .fold(0, usize::wrapping_add);
        counted.wrapping_sub(given_back)
    }

    /// Whether every lease on this (unlinked or gated) version was given
    /// back.
    pub(crate) fn is_drained(&self) -> bool {
        // The heavy fence: the reloader's half of pairs A and B. It follows
        // the swap of `current` and the `Active -> Draining` transition (in
        // `cut_over`), or the gate's flag and tag (in `close_gate`), earlier
        // in this thread, and precedes the sum.
        heavy_fence();
        self.in_flight() == 0
    }

    /// Gives back the lease `hold` and, if its version is draining and that
    /// was the last lease, wakes the drain.
    ///
    /// # Safety
    ///
    /// `hold` is a lease from [`acquire`] not yet given back (given back
    /// here, once: the caller does not use it again), and its slot's shared part stays alive until this returns
    /// (the caller borrows the slot, or is pinned since before the call):
    /// from the count-out on, the version may be finalized, but its shell
    /// lives as long as the shared part.
    #[inline]
    pub(crate) unsafe fn release(hold: &Hold<P>) {
        // SAFETY: the shell is valid (the contract above); until the
        // count-out, our lease also keeps the version itself.
        let version = unsafe { hold.version.as_ref() };
        version.count_out(hold);
        // The light fence: the caller's half of pair B, between the count
        // and the loads of the phase and the gate flag.
        light_fence();
        // Relaxed (`gated`): ordered by the fences of pair B. If the shell
        // was finalized and reused since our count-out, these read its next
        // life: its drain, if any, is covered by that life's own pairs.
        if !version.phase.is(Phase::Active) || version.gated.load(Ordering::Relaxed) {
            version.wake_if_drained();
        }
    }

    #[cold]
    fn wake_if_drained(&self) {
        // A full fence, even in the asymmetric mode: two releasers of the
        // same draining version are a store-buffering pair of their own
        // (each counts out, then sums the other's count). With only light
        // fences both could miss the other's count-out, still in its store
        // buffer, and neither would wake the drain. This is the cold path
        // (the version is draining or gated), so the fence costs the call
        // path nothing. (The model found this: `Fences::Asymmetric` in
        // `model/src/protocol.rs`, the `release-sum-without-fence` mutant.)
        fence(Ordering::SeqCst);
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
///
/// `current` is borrowed from the slot's shared part, which therefore lives
/// at least as long as this call: that is what makes the unpinned loads
/// below safe (see "Memory").
#[inline]
pub(crate) fn acquire<P>(current: &Atomic<Version<P>>) -> Option<Hold<P>> {
    let (shard, own) = this_thread_shard();
    // SAFETY: `unprotected` is for loads of pointers that cannot be freed
    // while we use them. A pointer loaded from `current` points at a shell
    // of this slot, and shells are freed only with the slot's shared part,
    // which outlives this call (it lends us `current`).
    let guard = unsafe { crossbeam_epoch::unprotected() };
    // Acquire: pairs with the Release of the swap that published the
    // version, so its fields are initialised when we read them.
    let seen = current.load(Ordering::Acquire, guard);
    match count_and_recheck(current, seen, shard, own, guard)? {
        Ok(hold) => Some(hold),
        // SAFETY: `raced` is the count just made on a shell of this slot.
        Err((raced, now)) => unsafe { acquire_retry(current, raced, now, shard, own) },
    }
}

/// E4-E8 on what `current` held at our load (`seen`): `None` if that is a
/// closed gate or a closed slot; else count in on it, fence, re-load, and
/// `Ok` with the lease if `current` still holds `seen`, `Err` with the
/// count to undo and what `current` holds now if not.
#[inline(always)]
fn count_and_recheck<'g, P>(
    current: &Atomic<Version<P>>,
    seen: Shared<'g, Version<P>>,
    shard: usize,
    own: bool,
    guard: &'g crossbeam_epoch::Guard,
) -> Option<Recheck<'g, P>> {
    if seen.tag() == GATED {
        return None;
    }
    // SAFETY: non-null, a shell of this slot (see `acquire`).
    let version = unsafe { seen.as_ref() }?;
    version.count_in(shard, own);
    // The light fence: the caller's half of pair A, between the count
    // and the re-load of `current`.
    light_fence();
    let now = current.load(Ordering::Acquire, guard);
    let hold = Hold::new(version, shard, own);
    // Compares the whole word, tag included: a gate closed since our first
    // load counts as a change. Equal means the version we counted on is
    // current now: if the shell was reused since our first load, it is the
    // new version we counted on, and leasing it is right.
    Some(if now == seen {
        Ok(hold)
    } else {
        Err((hold, now))
    })
}

/// What a re-check found: the lease, or the count to undo and what
/// `current` holds now.
type Recheck<'g, P> = Result<Hold<P>, (Hold<P>, Shared<'g, Version<P>>)>;

/// [`acquire`] after a cut-over (or a closing gate) raced it: give the
/// count back and try again on what `current` holds now. Out of line, so
/// that the fast path stays small enough to inline.
///
/// # Safety
///
/// `raced` is a count just made by this thread, through [`acquire`], on a
/// shell of the slot that lends us `current`.
#[cold]
#[inline(never)]
unsafe fn acquire_retry<'g, P>(
    current: &Atomic<Version<P>>,
    mut raced: Hold<P>,
    mut now: Shared<'g, Version<P>>,
    shard: usize,
    own: bool,
) -> Option<Hold<P>> {
    // SAFETY: as in `acquire`.
    let guard: &'g crossbeam_epoch::Guard = unsafe { crossbeam_epoch::unprotected() };
    loop {
        // Undo (this may be the count-out a drain is waiting for, so it
        // goes through the full release), then try what `current` holds.
        // SAFETY: the caller's contract, then our own count below.
        unsafe { Version::release(&raced) };
        match count_and_recheck(current, now, shard, own, guard)? {
            Ok(hold) => return Some(hold),
            Err(again) => (raced, now) = again,
        }
    }
}

/// A version not yet published: a new shell, or a finalized one reused.
/// Handed to [`cut_over`], or back to [`Shells::reclaim`].
pub(crate) struct Unpublished<P>(NonNull<Version<P>>);

// SAFETY: as for `Version<P>`, which it points to and owns.
unsafe impl<P: Send + Sync> Send for Unpublished<P> {}

/// A slot's version shells that are finalized and free for reuse (see
/// "Memory"). Held under the slot's writer lock; freed with the slot's
/// shared part, which crossbeam-epoch reclaims.
pub(crate) struct Shells<P> {
    free: Vec<NonNull<Version<P>>>,
}

// SAFETY: the shells are owned (no version lives in them) and only
// touched under the writer lock; `Version<P>` is `Send` for these `P`.
unsafe impl<P: Send + Sync> Send for Shells<P> {}

impl<P> Default for Shells<P> {
    fn default() -> Self {
        Shells { free: Vec::new() }
    }
}

impl<P> Shells<P> {
    /// A version for `plugin` as `generation`, in a free shell if there is
    /// one.
    pub(crate) fn version(&mut self, plugin: P, generation: u64) -> Unpublished<P> {
        match self.free.pop() {
            Some(shell) => {
                // SAFETY: a free shell was finalized and is unpublished; we
                // took it off the list, so it is ours.
                unsafe { shell.as_ref().renew(plugin, generation) };
                Unpublished(shell)
            }
            None => Unpublished(NonNull::from(Box::leak(Box::new(Version::new(
                plugin, generation,
            ))))),
        }
    }

    /// Takes back a finalized version's shell, for reuse.
    ///
    /// # Safety
    ///
    /// `version` is a shell of this slot whose version was unlinked,
    /// drained, its plugin taken and its phase `Removed`; no other owner
    /// will reclaim it.
    pub(crate) unsafe fn reclaim(&mut self, version: NonNull<Version<P>>) {
        self.free.push(version);
    }

    /// Takes back a version that was never published, and hands its plugin
    /// back.
    pub(crate) fn unpublish(&mut self, version: Unpublished<P>) -> P {
        // SAFETY: never published, so no lease was ever taken on it and no
        // caller has seen this life of the shell.
        let v = unsafe { version.0.as_ref() };
        // SAFETY: as above; its one taking.
        let plugin = unsafe { v.take_plugin() };
        // It was made `Active` to be published; it leaves along the table,
        // as any version does, so the shell can be reused.
        let left = v
            .phase
            .transition(Phase::Active, Phase::Draining)
            .and_then(|()| v.phase.transition(Phase::Draining, Phase::Removed));
        debug_assert_eq!(left, Ok(()));
        // SAFETY: finalized (above) and ours.
        unsafe { self.reclaim(version.0) };
        plugin
    }

    /// Free shells right now.
    pub(crate) fn free(&self) -> usize {
        self.free.len()
    }
}

impl<P> Drop for Shells<P> {
    fn drop(&mut self) {
        for shell in self.free.drain(..) {
            // SAFETY: every shell was made by `Box::new` (in `version` or
            // for a slot's first version), and the slot's shared part, the
            // last that could reach it, is being dropped; its plugin was
            // taken, and `ManuallyDrop` keeps it from being dropped again.
            drop(unsafe { Box::from_raw(shell.as_ptr()) });
        }
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
    next: Option<Unpublished<P>>,
) -> Result<NonNull<Version<P>>, Option<Unpublished<P>>> {
    let guard = pin();
    // Acquire: as in `acquire`. Only cut-overs write `current` and the caller
    // serialises them, so the value cannot change before our swap.
    if current.load(Ordering::Acquire, &guard).is_null() {
        return Err(next);
    }
    let next = next.map_or_else(Shared::null, |v| Shared::from(v.0.as_ptr().cast_const()));
    // AcqRel: Release publishes `next`'s contents to `acquire`'s Acquire
    // load; Acquire makes the old version's contents ours. The heavy fence
    // of pair A is in `is_drained`, before the reloader's first sum.
    let old = current.swap(next, Ordering::AcqRel, &guard);
    // SAFETY: non-null (checked above, and cut-overs are serialised); a
    // version in `current` is live, and we unlinked it, so its shell stays
    // allocated until the slot's shared part goes.
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
/// `is_drained` supplies the heavy fence of both pairs.
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
