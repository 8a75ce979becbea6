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
//! When the last reference to `Shared` goes, no lease can exist any more
//! (borrowed leases borrow the slot, owned ones hold a reference), so every
//! version still listed is finalized then.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_epoch::{Atomic, Owned};
use lifecycle::Phase;

use crate::drain::{acquire, cut_over, retire, Hold, Version};
use crate::error::TryEnterError;
use crate::events::{Event, Listeners};
use crate::hooks::{drop_contained, run_hook, Hook, HookFailure};
use crate::loom::{pin, AtomicBool, AtomicUsize, Mutex, Ordering};
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
}

pub(crate) struct Writer<P> {
    pub(crate) next_generation: u64,
    draining: Vec<Entry<P>>,
    /// A reload holds the turn (from prepare to commit or abort).
    pub(crate) turn: bool,
    /// A quiesced commit has the gate closed.
    pub(crate) quiescing: bool,
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

impl<P> Writer<P> {
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
        Shared {
            current: Atomic::from(Owned::new(Version::new(plugin, 1))),
            writer: Mutex::new(Writer {
                next_generation: 2,
                draining: Vec::new(),
                turn: false,
                quiescing: false,
            }),
            orphans: AtomicUsize::new(0),
            gate_closed: AtomicBool::new(false),
            gate: WaitList::default(),
            turn_free: WaitList::default(),
            listeners: Listeners::default(),
            name,
            counters: Counters::default(),
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
    pub(crate) fn adopt(&self, version: NonNull<Version<P>>) {
        {
            let mut writer = self.writer.lock();
            if let Some(entry) = writer.draining.iter_mut().find(|e| e.version == version) {
                entry.orphaned = true;
                // Relaxed: read after a release's SeqCst fence, and our
                // `reap` below sums after its own (see `reap_after_release`).
                self.orphans.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.reap(false);
    }

    /// Closes the slot as it is dropped: the current version becomes an
    /// orphan (owned leases may still be out on it), and every orphan that
    /// has drained is finalized now.
    pub(crate) fn close_for_drop(&self) {
        {
            let mut writer = self.writer.lock();
            if let Ok(version) = cut_over(&self.current, None) {
                writer.draining.push(Entry {
                    version,
                    since: Instant::now(),
                    orphaned: true,
                });
                self.orphans.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.reap(false);
    }

    /// After an owned lease was released: finalizes the orphans that
    /// drained, if there are any. The load of `orphans` follows the
    /// release's SeqCst fence, and an orphan is counted before its adopter
    /// sums in `reap` (behind the fence in `is_drained`), so of this thread
    /// and the adopter at least one sees the other: either the adopter's
    /// sum sees our decrement, or we see the orphan and reap it.
    pub(crate) fn reap_after_release(&self) {
        // Relaxed: ordered by the fences, as above.
        if self.orphans.load(Ordering::Relaxed) != 0 {
            self.reap(false);
        }
    }

    /// Finalizes orphans that have drained, or all of them if `all` (only
    /// when no lease can exist any more: the last reference to `Shared` is
    /// going). Each is taken off the list under the lock, so exactly one
    /// caller finalizes it; a shutdown or a `Drop` that panics is contained
    /// and the others are finalized all the same.
    pub(crate) fn reap(&self, all: bool) -> usize {
        let ready: Vec<Entry<P>> = {
            let mut writer = self.writer.lock();
            let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut writer.draining)
                .into_iter()
                .partition(|entry| {
                    // SAFETY: the entry is still listed, so not yet retired.
                    entry.orphaned && (all || unsafe { entry.version.as_ref() }.is_drained())
                });
            writer.draining = keep;
            self.orphans.fetch_sub(ready.len(), Ordering::Relaxed);
            ready
        };
        let reaped = ready.len();
        for entry in ready {
            // SAFETY: orphaned, so no handle owns it; drained (or, with
            // `all`, no lease can exist); removed from the list above, so no
            // one else will finalize it.
            let (plugin, report, _) = unsafe { finalize(self, entry.version, entry.since) };
            // Nobody asked for the value back: it is dropped here, and a
            // panic in its `Drop` must not skip the orphans after it.
            self.drop_plugin(plugin, report.generation);
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
    shared: Arc<Shared<P>>,
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
            shared,
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
        let this = ManuallyDrop::new(self);
        // SAFETY: moved out of a `ManuallyDrop` that is never used again, so
        // the `Arc` is dropped exactly once, below.
        let shared = unsafe { std::ptr::read(&this.shared) };
        shared.untrack(this.version);
        // SAFETY: we own the version (the slot unlinked it for us), it is
        // drained (our caller saw it), and we no longer list it, so nothing
        // else finalizes it.
        unsafe { finalize(&shared, this.version, this.since) }
    }
}

impl<P: Hooks> Drop for DrainingBody<P> {
    fn drop(&mut self) {
        // Dropped without waiting: the slot adopts the version and finalizes
        // it once it drains. We cannot block here (this thread may itself
        // hold a lease on the version).
        self.shared.adopt(self.version);
    }
}

impl<P: Hooks> Drop for Shared<P> {
    fn drop(&mut self) {
        // The last reference: the slot is gone, and so is every owned lease
        // and draining handle (each holds a reference), and every borrowed
        // lease (each borrowed the slot). A lease that was `mem::forget`-ed
        // can never be used again either. So whatever is still listed, and
        // the current version if the slot was never closed, is finalized
        // without waiting.
        self.close_for_drop();
        self.reap(true);
    }
}

/// Runs the `shutdown` hook of a drained version exactly once, marks it
/// `Removed`, and retires its shell. Returns the plugin value.
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
    let generation = v.generation;
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
    // SAFETY: unlinked, drained, plugin taken; this is its one retirement.
    unsafe { retire(version) };
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
