//! [`Shared`]: the part of a slot that outlives the `Slot` value as long as
//! anything still needs it: its draining versions' handles, and owned
//! leases. It holds the current version, the writer lock and the list of
//! draining versions, the gate and its waiters, and is the one place a
//! version is finalized ([`finalize`]).
//!
//! Who finalizes a version: the host, through its `Plugin<P, Draining>`
//! handle (`wait`, `try_finalize`, the drain future); or, once the handle
//! was dropped (the version is an *orphan*), whoever first sees it drained:
//! dropping the handle, [`Slot::reap`](crate::Slot::reap), `close`,
//! dropping the slot, or the drop of the owned lease that was its last.
//!
//! # How long `Shared` lives
//!
//! An owned lease points at `Shared` without counting a reference: a
//! shared reference count would be one cache line every caller on every
//! thread writes, which is what the per-thread shards exist to avoid. What
//! keeps `Shared` alive for it instead is this invariant: *while a version
//! is not finalized, someone holds an `Arc<Shared>`*: the `Slot`, the
//! version's handle, or, once the slot is dropped with orphans left, the
//! `keepalive` the slot's drop leaves in `Shared` itself, released by the
//! reap that finalizes the last orphan. An owned lease keeps its version
//! from being finalized, so `Shared` is alive when the lease's drop pins;
//! and every drop of an `Arc<Shared>` that may be the last goes through the
//! epoch collector ([`release`]), so the memory stays valid until that
//! pinned drop is done with it. A lease that is `mem::forget`-ed keeps its
//! version unfinalized forever, and so `Shared` too: leaked, never unsound.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_epoch::{Atomic, Guard, Owned};
use lifecycle::Phase;

use crate::drain::{acquire, cut_over, Hold, Shells, Version};
use crate::error::TryEnterError;
use crate::events::{Event, Listeners};
use crate::hooks::{drop_contained, run_hook, Hook, HookFailure};
use crate::loom::{init_fences, pin, AtomicBool, AtomicUsize, Mutex, Ordering};
use crate::stats::Counters;
use crate::stats::RemovalReport;
use crate::waiters::{TaskEntry, WaitList};
use crate::Hooks;

/// The part of a slot that its draining versions and owned leases keep
/// alive.
pub(crate) struct Shared<P: Hooks> {
    /// The current version; null once closed; tagged while its gate is
    /// closed (see `drain.rs`).
    pub(crate) current: Atomic<Version<P>>,
    /// Serialises cut-overs and gate changes, and holds the versions that
    /// are draining, so they can be observed and, if their handle was
    /// dropped, finalized. Never taken on the call path.
    pub(crate) writer: Mutex<Writer<P>>,
    /// Orphans listed in `writer` (handles dropped, not yet finalized). An
    /// owned lease's drop reads it, after its release's fence, to decide
    /// whether to reap: see [`Shared::reap_after_release`].
    orphans: AtomicUsize,
    /// Whether a quiesced reload holds the gate closed: what callers at the
    /// gate wait on (set before the tag, cleared after it is gone).
    pub(crate) gate_closed: AtomicBool,
    /// Callers waiting at the gate.
    pub(crate) gate: WaitList,
    /// Reloads waiting for the turn.
    pub(crate) turn_free: WaitList,
    pub(crate) listeners: Listeners,
    pub(crate) name: String,
    pub(crate) counters: Counters,
    /// Debug builds: `LIVE` until dropped, checked by every owned lease's
    /// drop before it uses `Shared`, so that a lifetime mistake fails a
    /// test loudly rather than reading freed memory quietly.
    #[cfg(debug_assertions)]
    canary: std::sync::atomic::AtomicU64,
}

#[cfg(debug_assertions)]
const LIVE: u64 = 0x5eed_a11e_5eed_a11e;

pub(crate) struct Writer<P: Hooks> {
    pub(crate) next_generation: u64,
    draining: Vec<Entry<P>>,
    /// A reload holds the turn (from prepare to commit or abort).
    pub(crate) turn: bool,
    /// A quiesced commit has the gate closed.
    pub(crate) quiescing: bool,
    /// The `Slot` was dropped: no `Arc` of its own holds `Shared` any more.
    slot_dropped: bool,
    /// Once the slot is dropped, a reference held for as long as orphans
    /// are listed (leases may be out on them), released by the reap that
    /// finalizes the last of them. See the module docs.
    keepalive: Option<Arc<Shared<P>>>,
    /// Shells of finalized versions, reused for new ones (see `drain.rs`,
    /// "Memory"); freed with `Shared`.
    pub(crate) shells: Shells<P>,
}

struct Entry<P> {
    version: NonNull<Version<P>>,
    since: Instant,
    /// Its `Plugin<P, Draining>` was dropped (or never existed: the
    /// version was current when the slot was dropped): the slot finalizes it.
    orphaned: bool,
}

// SAFETY: an `Entry` only points at a version the slot or a draining handle
// owns; the version itself is `Send + Sync` for `P: Hooks`. Entries are read
// only under the writer lock, and removed under it before the version is
// retired.
unsafe impl<P: Send + Sync> Send for Entry<P> {}

impl<P: Hooks> Writer<P> {
    /// Keeps `Shared` alive (a clone of `this`) while the slot is dropped
    /// and orphans are listed; under the writer lock, like every change to
    /// the list, so a reap that empties it always finds what to release.
    fn keep_alive(&mut self, this: &Arc<Shared<P>>) {
        if self.slot_dropped && self.keepalive.is_none() && self.draining.iter().any(|e| e.orphaned)
        {
            self.keepalive = Some(Arc::clone(this));
        }
    }

    /// Lists a version just cut over from, owned by a handle.
    pub(crate) fn track(&mut self, version: NonNull<Version<P>>, since: Instant) {
        self.draining.push(Entry {
            version,
            since,
            orphaned: false,
        });
    }

    /// The draining versions, oldest first: generation, phase, in flight,
    /// orphaned.
    pub(crate) fn draining(&self) -> impl Iterator<Item = (&Version<P>, bool)> {
        self.draining.iter().map(|entry| {
            // SAFETY: entries are removed under the writer lock (which the
            // caller holds, through `&self`) before their version is
            // retired, so the pointer is valid while it is borrowed.
            (unsafe { entry.version.as_ref() }, entry.orphaned)
        })
    }
}

impl<P: Hooks> Shared<P> {
    /// A slot's shared part, serving `plugin` as generation 1.
    pub(crate) fn new(plugin: P, name: String) -> Self {
        // The fence pair is chosen before any slot exists, so before any
        // call or reload can depend on it (`loom/fences.rs`).
        init_fences();
        Shared {
            current: Atomic::from(Owned::new(Version::new(plugin, 1))),
            writer: Mutex::new(Writer {
                next_generation: 2,
                draining: Vec::new(),
                turn: false,
                quiescing: false,
                slot_dropped: false,
                keepalive: None,
                shells: Shells::default(),
            }),
            orphans: AtomicUsize::new(0),
            gate_closed: AtomicBool::new(false),
            gate: WaitList::default(),
            turn_free: WaitList::default(),
            listeners: Listeners::default(),
            name,
            counters: Counters::default(),
            #[cfg(debug_assertions)]
            canary: std::sync::atomic::AtomicU64::new(LIVE),
        }
    }

    /// Whether the slot is closed.
    pub(crate) fn is_closed(&self) -> bool {
        let guard = pin();
        // Acquire: as in `enter`.
        self.current.load(Ordering::Acquire, &guard).is_null()
    }

    /// Tells the listeners.
    pub(crate) fn emit(&self, event: &Event<'_>) {
        self.listeners.emit(&self.counters, &self.name, event);
    }

    /// Parks until the gate is open or `deadline` passes; returns whether it
    /// is open.
    pub(crate) fn wait_gate(&self, deadline: Option<Instant>) -> bool {
        // Acquire: seeing it open means seeing the cut-over or untag that
        // preceded the opening (see `Quiesce`).
        self.gate
            .wait_until(deadline, || !self.gate_closed.load(Ordering::Acquire))
    }

    /// `enter`'s slow path, out of line so the fast path stays small: the
    /// slot is closed, or a quiesced reload holds the gate (wait for it,
    /// until `deadline` if any, then try again).
    #[cold]
    #[inline(never)]
    pub(crate) fn enter_slow(&self, deadline: Option<Instant>) -> Result<Hold<P>, TryEnterError> {
        loop {
            if self.is_closed() {
                return Err(TryEnterError::Closed);
            }
            if !self.wait_gate(deadline) {
                return Err(TryEnterError::Quiescing);
            }
            if let Some(hold) = acquire(&self.current) {
                return Ok(hold);
            }
        }
    }

    /// `try_enter`: a lease, or why not, without waiting.
    #[inline]
    pub(crate) fn try_enter(&self) -> Result<Hold<P>, TryEnterError> {
        match acquire(&self.current) {
            Some(hold) => Ok(hold),
            None if self.is_closed() => Err(TryEnterError::Closed),
            None => Err(TryEnterError::Quiescing),
        }
    }

    /// The enter futures' poll: a lease, or the task registered at the
    /// gate (`entry`), woken when it opens.
    pub(crate) fn poll_enter(
        &self,
        entry: &mut TaskEntry,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Hold<P>, TryEnterError>> {
        loop {
            match self.try_enter() {
                Err(TryEnterError::Quiescing) => {}
                done => {
                    self.gate.leave(entry);
                    return Poll::Ready(done);
                }
            }
            // Gated. Register, then look (see `waiters`); Acquire as in
            // `wait_gate`.
            let gate = self
                .gate
                .poll_until(entry, cx, || !self.gate_closed.load(Ordering::Acquire));
            if gate.is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Forgets a draining version that its owner is about to finalize.
    pub(crate) fn untrack(&self, version: NonNull<Version<P>>) {
        self.writer
            .lock()
            .draining
            .retain(|entry| entry.version != version);
    }

    /// Called when a `Plugin<P, Draining>` is dropped unwaited: the slot
    /// takes the version over, and finalizes it at once if it has drained.
    /// `this` is the handle's reference, which the caller releases after.
    pub(crate) fn adopt(this: &Arc<Self>, version: NonNull<Version<P>>) {
        {
            let mut writer = this.writer.lock();
            if let Some(entry) = writer.draining.iter_mut().find(|e| e.version == version) {
                entry.orphaned = true;
                // Relaxed: read after a release's SeqCst fence, and our
                // `reap` below sums after its own (see `reap_after_release`).
                this.orphans.fetch_add(1, Ordering::Relaxed);
            }
            writer.keep_alive(this);
        }
        this.reap();
    }

    /// Closes the slot as it is dropped: the current version becomes an
    /// orphan (owned leases may still be out on it), every orphan that has
    /// drained is finalized now, and if orphans are left, the slot's
    /// reference (`this`) stays behind as the keepalive, for the reap that
    /// finalizes the last of them to release.
    pub(crate) fn close_for_drop(this: Arc<Self>) {
        {
            let mut writer = this.writer.lock();
            writer.slot_dropped = true;
            if let Ok(version) = cut_over(&this.current, None) {
                writer.draining.push(Entry {
                    version,
                    since: Instant::now(),
                    orphaned: true,
                });
                this.orphans.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "metrics")]
                crate::metrics::draining(&this.name);
            }
            writer.keep_alive(&this);
        }
        this.reap();
        release(this);
    }

    /// After an owned lease was released (`guard` pinned before the
    /// release): finalizes the orphans that drained, if there are any. The
    /// load of `orphans` follows the release's SeqCst fence, and an orphan
    /// is counted before its adopter sums in `reap` (behind the fence in
    /// `is_drained`), so of this thread and the adopter at least one sees
    /// the other: either the adopter's sum sees our decrement, or we see
    /// the orphan and reap it.
    ///
    /// # Safety
    ///
    /// `this` points to a live `Shared` at the time `guard` was pinned (the
    /// caller held a lease on one of its versions then).
    pub(crate) unsafe fn reap_after_release(this: NonNull<Self>, guard: Guard) {
        // SAFETY: live when `guard` pinned; every drop of an `Arc<Shared>`
        // that may free it is deferred past our unpin (`release`).
        let shared = unsafe { this.as_ref() };
        #[cfg(debug_assertions)]
        assert_eq!(
            shared.canary.load(std::sync::atomic::Ordering::Relaxed),
            LIVE,
            "an owned lease outlived its slot's shared part"
        );
        // Relaxed: ordered by the fences, as above.
        if shared.orphans.load(Ordering::Relaxed) == 0 {
            return;
        }
        // The reap runs plugin code: not pinned, so hold a reference. The
        // strong count is at least one while we are pinned (the reference
        // whose release is deferred still counts).
        // SAFETY: `this` came from `Arc::as_ptr` of a live `Arc<Shared>`,
        // which is the pointer `Arc::into_raw` gives, and the count is
        // non-zero (above).
        let held = unsafe {
            Arc::increment_strong_count(this.as_ptr().cast_const());
            Arc::from_raw(this.as_ptr().cast_const())
        };
        drop(guard);
        held.reap();
        release(held);
    }

    /// Finalizes the orphans that have drained. Each is taken off the list
    /// under the lock, so exactly one caller finalizes it; a shutdown or a
    /// `Drop` that panics is contained and the others are finalized all the
    /// same.
    pub(crate) fn reap(&self) -> usize {
        let mut keepalive = None;
        let ready: Vec<Entry<P>> = {
            let mut writer = self.writer.lock();
            let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut writer.draining)
                .into_iter()
                .partition(|entry| {
                    // SAFETY: the entry is still listed, so not yet retired.
                    entry.orphaned && unsafe { entry.version.as_ref() }.is_drained()
                });
            writer.draining = keep;
            self.orphans.fetch_sub(ready.len(), Ordering::Relaxed);
            if !writer.draining.iter().any(|e| e.orphaned) {
                keepalive = writer.keepalive.take();
            }
            ready
        };
        let reaped = ready.len();
        for entry in ready {
            // SAFETY: orphaned, so no handle owns it; drained; removed from
            // the list above, so no one else will finalize it.
            let (plugin, report, _) = unsafe { finalize(self, entry.version, entry.since) };
            // Nobody asked for the value back: it is dropped here, and a
            // panic in its `Drop` must not skip the orphans after it.
            self.drop_plugin(plugin, report.generation);
        }
        // The last orphan of a dropped slot is gone: so is the slot's
        // reference (the caller holds one of its own while it runs this).
        if let Some(keepalive) = keepalive {
            release(keepalive);
        }
        reaped
    }

    /// Drops a plugin value no one asked back for, containing a panic in
    /// its `Drop` (counted, and told to the listeners).
    pub(crate) fn drop_plugin(&self, plugin: P, generation: u64) {
        if let Some(failure) = drop_contained(plugin, &self.name, Some(generation)) {
            Counters::bump(&self.counters.drop_panics);
            let message = failure.cause.to_string();
            self.emit(&Event::DropPanicked {
                plugin: &self.name,
                generation,
                message: &message,
            });
        }
    }
}

/// What a `Plugin<P, Draining>` holds: ownership of a version the slot cut
/// over away from, and the slot's shared part (for its counters and its list
/// of draining versions).
#[doc(hidden)]
pub struct DrainingBody<P: Hooks> {
    version: NonNull<Version<P>>,
    /// Released through the collector (`release`), never dropped in place.
    shared: ManuallyDrop<Arc<Shared<P>>>,
    since: Instant,
}

// SAFETY: the body owns an unlinked version; `Version<P>` is Send + Sync for
// `P: Hooks`, and finalizing it may happen on any thread.
unsafe impl<P: Hooks> Send for DrainingBody<P> {}
// SAFETY: `&DrainingBody` only reads the version's counters and phase.
unsafe impl<P: Hooks> Sync for DrainingBody<P> {}

impl<P: Hooks> DrainingBody<P> {
    pub(crate) fn new(
        version: NonNull<Version<P>>,
        shared: Arc<Shared<P>>,
        since: Instant,
    ) -> Self {
        DrainingBody {
            version,
            shared: ManuallyDrop::new(shared),
            since,
        }
    }

    pub(crate) fn version(&self) -> &Version<P> {
        // SAFETY: we own the version; it is retired only by `finalize`, which
        // consumes this body.
        unsafe { self.version.as_ref() }
    }

    /// When the cut-over away from this version happened.
    pub(crate) fn since(&self) -> Instant {
        self.since
    }

    /// Finalizes a version this body's drain has completed for: its
    /// `shutdown` ran once (the failure, if any, is returned), and the value
    /// comes back with its report.
    pub(crate) fn finalize(self) -> (P, RemovalReport, Option<HookFailure>) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: taken out of a body that is never used or dropped again,
        // so the `Arc` is released exactly once, below.
        let shared = unsafe { ManuallyDrop::take(&mut this.shared) };
        shared.untrack(this.version);
        // SAFETY: we own the version (the slot unlinked it for us), it is
        // drained (our caller saw it), and we no longer list it, so nothing
        // else finalizes it.
        let finalized = unsafe { finalize(&shared, this.version, this.since) };
        release(shared);
        finalized
    }
}

impl<P: Hooks> Drop for DrainingBody<P> {
    fn drop(&mut self) {
        // Dropped without waiting: the slot adopts the version and finalizes
        // it once it drains. We cannot block here (this thread may itself
        // hold a lease on the version).
        Shared::adopt(&self.shared, self.version);
        // SAFETY: dropped once, here; the body is not used again.
        release(unsafe { ManuallyDrop::take(&mut self.shared) });
    }
}

impl<P: Hooks> Drop for Shared<P> {
    fn drop(&mut self) {
        // The last reference: the slot is gone, and every version was
        // finalized (an unfinalized one keeps a reference: see the module
        // docs), but for a forgotten lease's, which keeps `Shared` alive
        // and so never gets here.
        debug_assert!(self.writer.lock().draining.is_empty());
    }
}

/// Drops a reference to a slot's shared part through the epoch collector:
/// if it is the last, `Shared` is freed only after every thread pinned now
/// has unpinned, so an owned lease's drop that pinned while its version was
/// alive can still read it (see the module docs).
pub(crate) fn release<P: Hooks>(shared: Arc<Shared<P>>) {
    let guard = pin();
    // The closure owns the reference; crossbeam runs it once no thread
    // pinned before this point is still pinned.
    guard.defer(move || drop(shared));
    // Hand it to the global queue now, so a quiet process still frees it.
    // (Not under loom: the flush is a hint for timeliness, not for safety,
    // and its steps multiply the interleavings of every test that drops a
    // handle or a slot.)
    #[cfg(not(loom))]
    guard.flush();
}

/// Runs the `shutdown` hook of a drained version exactly once, marks it
/// `Removed`, and gives its shell back to the slot. Returns the plugin value.
///
/// # Safety
///
/// The caller owns `version` (it was unlinked by a cut-over and no one else
/// will finalize it), and no lease on it exists or can be granted.
pub(crate) unsafe fn finalize<P: Hooks>(
    shared: &Shared<P>,
    version: NonNull<Version<P>>,
    since: Instant,
) -> (P, RemovalReport, Option<HookFailure>) {
    let drain_time = since.elapsed();
    // SAFETY: owned and drained per the contract.
    let v = unsafe { version.as_ref() };
    let generation = v.generation();
    // SAFETY: drained, owned, called once (the caller's contract).
    let mut plugin = unsafe { v.take_plugin() };
    let failure = run_hook(
        &mut plugin,
        Hook::Shutdown,
        Some(generation),
        Hooks::shutdown,
    )
    .err();
    // AcqRel (inside): a reader that sees Removed sees the shutdown's effects.
    let removed = v.phase.transition(Phase::Draining, Phase::Removed);
    debug_assert_eq!(removed, Ok(()));
    // SAFETY: unlinked, drained, plugin taken, `Removed`; this is its one
    // retirement. The shell is reused, not freed (`drain.rs`, "Memory").
    unsafe { shared.writer.lock().shells.reclaim(version) };
    Counters::bump(&shared.counters.drains_completed);
    shared.counters.drain_time.record(drain_time);
    if failure.is_some() {
        Counters::bump(&shared.counters.shutdown_failures);
    }
    let report = RemovalReport {
        generation,
        drain_time,
        shutdown_ok: failure.is_none(),
    };
    shared.emit(&Event::Drained {
        plugin: &shared.name,
        generation,
        after: drain_time,
    });
    shared.emit(&Event::Removed {
        plugin: &shared.name,
        generation,
        shutdown_ok: report.shutdown_ok,
    });
    (plugin, report, failure)
}
