//! A call's hold on one version: [`Lease`], which borrows its slot (the
//! fast path), and [`OwnedLease`], which holds a reference to the slot's
//! shared part and so is `'static` (for `tokio::spawn`, thread pools,
//! streams). Both are `Send`, derefs to the plugin, and give the hold back
//! when dropped, also during a panic's unwinding. And the futures of the
//! async `enter` forms, which wait at a quiesced reload's gate without
//! blocking a thread.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};

use lifecycle::Phase;

#[cfg(feature = "registry")]
use crate::drain::Packed;
use crate::drain::{Hold, Version};
use crate::error::{SlotClosed, TryEnterError};
use crate::loom::pin;
use crate::shared::{release, Shared};
use crate::waiters::TaskEntry;
use crate::Hooks;

/// A call's hold on one version of a [`Slot`](crate::Slot): derefs to the
/// plugin, and gives the hold back when dropped, also during a panic's
/// unwinding.
///
/// A lease is `Send`, so it can be held across `.await` and dropped on
/// another thread. Hold it for a call, not for the life of a task: the
/// version it holds cannot finish draining until it is dropped. It borrows
/// the slot; where the call must outlive that borrow (a spawned task), use
/// an [`OwnedLease`].
///
/// Cost: taking a lease on the current version and dropping it on the same
/// thread executes no locked instruction when [`fence_mode`](crate::fence_mode)
/// is `Asymmetric` (two full fences when it is `Symmetric`). Dropping it on
/// another thread adds one locked instruction, as does any lease of a
/// thread beyond the sixteenth live one that calls (it shares a counter).
#[must_use = "a lease is given back as soon as it is dropped"]
pub struct Lease<'a, P: Hooks> {
    hold: Hold<P>,
    _slot: PhantomData<&'a Shared<P>>,
}

// SAFETY: a lease gives out `&P` (and `P: Sync` by `Hooks`), and releasing
// it on another thread is part of the protocol (it decrements the shard it
// counted on, wherever it runs).
unsafe impl<P: Hooks> Send for Lease<'_, P> {}
// SAFETY: `&Lease` only gives `&P`, and `P: Sync`.
unsafe impl<P: Hooks> Sync for Lease<'_, P> {}

impl<'a, P: Hooks> Lease<'a, P> {
    #[inline]
    pub(crate) fn new(hold: Hold<P>, _slot: &'a Shared<P>) -> Self {
        Lease {
            hold,
            _slot: PhantomData,
        }
    }

    /// This lease as one word, given up (see [`Hold::pack`]): for a
    /// registry call, which keeps it packed and gives it back with
    /// [`Lease::from_packed`].
    #[cfg(feature = "registry")]
    #[inline]
    pub(crate) fn into_packed(self) -> Packed {
        let this = ManuallyDrop::new(self);
        this.hold.pack()
    }

    /// The lease [`Lease::into_packed`] gave up.
    ///
    /// # Safety
    ///
    /// `word` came from `into_packed` on a lease of a slot that outlives
    /// `'a`, and is turned back into a lease once.
    #[cfg(feature = "registry")]
    #[inline]
    pub(crate) unsafe fn from_packed(word: Packed) -> Self {
        Lease {
            // SAFETY: `word` came from `pack` (the caller's contract).
            hold: unsafe { Hold::unpack(word) },
            _slot: PhantomData,
        }
    }

    /// This lease's hold, packed, as a copy (the lease still holds it).
    #[cfg(feature = "registry")]
    pub(crate) fn packed(&self) -> Packed {
        self.hold.pack()
    }

    /// Generation of the version this lease holds.
    pub fn generation(&self) -> u64 {
        held(&self.hold).generation()
    }

    /// Phase of the version this lease holds: `Active`, or `Draining` if
    /// the slot cut over since the lease was taken. Never `Removed`.
    pub fn phase(&self) -> Phase {
        held(&self.hold).phase.load()
    }
}

fn held<P>(hold: &Hold<P>) -> &Version<P> {
    // SAFETY: a lease keeps its version from being drained, hence from being
    // retired, until the lease is dropped; `hold` is borrowed from it.
    unsafe { hold.version.as_ref() }
}

impl<P: Hooks> Deref for Lease<'_, P> {
    type Target = P;

    #[inline]
    fn deref(&self) -> &P {
        // SAFETY: we hold a lease on this version.
        unsafe { held(&self.hold).plugin() }
    }
}

impl<P: Hooks> Drop for Lease<'_, P> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this lease's one hold, given back once; the lease borrows
        // the slot, so its shared part outlives the release.
        unsafe { Version::release(&self.hold) }
    }
}

impl<P: Hooks> fmt::Debug for Lease<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// A [`Lease`] that owns a reference to its slot's shared part instead of
/// borrowing the slot: `Send + 'static`, so it can move into a spawned task
/// or a thread-pool job, be held across `.await`, and be dropped anywhere.
/// From [`Slot::enter_owned`](crate::Slot::enter_owned) and its forms.
///
/// The call is admitted when the lease is taken, on the version current
/// then, however late the task that holds it first runs.
///
/// It may outlive the `Slot` value: dropping the slot closes it (no new
/// lease is granted), and the version this lease holds is finalized when
/// its last lease goes. The drop of an owned lease finalizes any orphan
/// (a version whose draining handle was dropped, or that was current when
/// the slot was dropped) that has drained by then, running its `shutdown`
/// on the dropping thread.
///
/// Costs over a [`Lease`]: its drop pins the epoch (one locked
/// instruction: the slot may be dropped meanwhile, and the pin keeps the
/// slot's shared part allocated until the drop is done) and loads the
/// slot's orphan count. It counts no reference on the slot (a shared count
/// would be a cache line every caller writes); the version it holds keeps
/// the slot's shared part alive instead (see `shared.rs`). A borrowed
/// [`Lease`] executes no locked instruction at all (see
/// [`fence_mode`](crate::fence_mode)).
#[must_use = "a lease is given back as soon as it is dropped"]
pub struct OwnedLease<P: Hooks> {
    hold: Hold<P>,
    /// Alive while `hold` is: an unfinalized version keeps its slot's
    /// shared part alive.
    shared: NonNull<Shared<P>>,
}

// SAFETY: as for `Lease`; `Shared<P>` is `Send + Sync` for `P: Hooks`, and
// the lease only reads it (or reaps through it, which any thread may).
unsafe impl<P: Hooks> Send for OwnedLease<P> {}
// SAFETY: `&OwnedLease` only gives `&P`, and `P: Sync`.
unsafe impl<P: Hooks> Sync for OwnedLease<P> {}

impl<P: Hooks> OwnedLease<P> {
    #[inline]
    pub(crate) fn new(hold: Hold<P>, shared: &Arc<Shared<P>>) -> Self {
        OwnedLease {
            hold,
            shared: NonNull::from(&**shared),
        }
    }

    /// Generation of the version this lease holds.
    pub fn generation(&self) -> u64 {
        held(&self.hold).generation()
    }

    /// Phase of the version this lease holds: `Active`, or `Draining` if
    /// the slot cut over (or was dropped) since the lease was taken. Never
    /// `Removed`.
    pub fn phase(&self) -> Phase {
        held(&self.hold).phase.load()
    }
}

impl<P: Hooks> Deref for OwnedLease<P> {
    type Target = P;

    #[inline]
    fn deref(&self) -> &P {
        // SAFETY: we hold a lease on this version.
        unsafe { held(&self.hold).plugin() }
    }
}

impl<P: Hooks> Drop for OwnedLease<P> {
    fn drop(&mut self) {
        // Pinned before the release: from the count-out on, our version may
        // be finalized and the slot's shared part (with the version's shell)
        // released, and the pin is what keeps that memory valid until we
        // are done with it. A borrowed lease needs no pin: its borrow of the
        // slot does this.
        let guard = pin();
        // SAFETY: this lease's one hold, given back once, under `guard`.
        unsafe { Version::release(&self.hold) }
        // SAFETY: `shared` was alive when we pinned (our hold kept it so).
        unsafe { Shared::reap_after_release(self.shared, guard) }
    }
}

impl<P: Hooks> fmt::Debug for OwnedLease<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedLease")
            .field("plugin", &self.shared().name)
            .field("generation", &self.generation())
            .finish()
    }
}

impl<P: Hooks> OwnedLease<P> {
    /// This lease's hold, packed, as a copy (the lease still holds it).
    #[cfg(feature = "registry")]
    pub(crate) fn packed(&self) -> Packed {
        self.hold.pack()
    }

    /// This lease as its hold, packed, and its slot's shared part, given
    /// up: for a registry call, which gives them back with
    /// [`OwnedLease::from_parts`].
    #[cfg(feature = "registry")]
    pub(crate) fn into_parts(self) -> (Packed, NonNull<Shared<P>>) {
        let this = ManuallyDrop::new(self);
        (this.hold.pack(), this.shared)
    }

    /// The lease [`OwnedLease::into_parts`] gave up.
    ///
    /// # Safety
    ///
    /// The parts came from `into_parts`, and are turned back into a lease
    /// once.
    #[cfg(feature = "registry")]
    pub(crate) unsafe fn from_parts(word: Packed, shared: NonNull<Shared<P>>) -> Self {
        OwnedLease {
            // SAFETY: `word` came from `pack` (the caller's contract).
            hold: unsafe { Hold::unpack(word) },
            shared,
        }
    }

    fn shared(&self) -> &Shared<P> {
        // SAFETY: alive while we hold our version (see the field).
        unsafe { self.shared.as_ref() }
    }
}

/// The future of [`Slot::enter_async`](crate::Slot::enter_async): resolves
/// to a lease on the current version (or [`SlotClosed`]). At a closed gate
/// it registers the task's waker, which the gate's opening wakes; dropped
/// while waiting, it takes its registration out.
#[must_use = "futures do nothing unless polled"]
pub struct EnterFuture<'a, P: Hooks> {
    shared: &'a Shared<P>,
    entry: TaskEntry,
}

impl<'a, P: Hooks> EnterFuture<'a, P> {
    pub(crate) fn new(shared: &'a Shared<P>) -> Self {
        EnterFuture {
            shared,
            entry: None,
        }
    }
}

impl<'a, P: Hooks> Future for EnterFuture<'a, P> {
    type Output = Result<Lease<'a, P>, SlotClosed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let shared = this.shared;
        shared
            .poll_enter(&mut this.entry, cx)
            .map(|entered| entered.map(|hold| Lease::new(hold, shared)).map_err(closed))
    }
}

impl<P: Hooks> Drop for EnterFuture<'_, P> {
    fn drop(&mut self) {
        self.shared.gate.leave(&mut self.entry);
    }
}

impl<P: Hooks> fmt::Debug for EnterFuture<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterFuture")
            .field("plugin", &self.shared.name)
            .finish()
    }
}

/// The future of [`Slot::enter_owned_async`](crate::Slot::enter_owned_async):
/// [`EnterFuture`] for an [`OwnedLease`], and itself `'static`.
#[must_use = "futures do nothing unless polled"]
pub struct EnterOwnedFuture<P: Hooks> {
    /// Released through the collector (see `shared.rs`).
    shared: ManuallyDrop<Arc<Shared<P>>>,
    entry: TaskEntry,
}

impl<P: Hooks> EnterOwnedFuture<P> {
    pub(crate) fn new(shared: Arc<Shared<P>>) -> Self {
        EnterOwnedFuture {
            shared: ManuallyDrop::new(shared),
            entry: None,
        }
    }
}

impl<P: Hooks> Future for EnterOwnedFuture<P> {
    type Output = Result<OwnedLease<P>, SlotClosed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let shared = &this.shared;
        shared.poll_enter(&mut this.entry, cx).map(|entered| {
            entered
                .map(|hold| OwnedLease::new(hold, shared))
                .map_err(closed)
        })
    }
}

impl<P: Hooks> Drop for EnterOwnedFuture<P> {
    fn drop(&mut self) {
        self.shared.gate.leave(&mut self.entry);
        // SAFETY: taken once, here; the future is not used again.
        release(unsafe { ManuallyDrop::take(&mut self.shared) });
    }
}

impl<P: Hooks> fmt::Debug for EnterOwnedFuture<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterOwnedFuture")
            .field("plugin", &self.shared.name)
            .finish()
    }
}

/// The futures wait at the gate, so the one error left is a closed slot.
fn closed(_: TryEnterError) -> SlotClosed {
    SlotClosed
}
