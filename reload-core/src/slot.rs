//! [`Slot`]: the one place calls go through to reach a plugin's current
//! version: leases ([`Lease`], [`OwnedLease`]), cut-overs, close, and what
//! the host can observe.

use std::fmt;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use crate::drain::{acquire, cut_over, Version};
use crate::error::ReloadFault;
use crate::error::{CallError, SlotClosed, TryEnterError};
use crate::events::{Listener, ListenerId};
use crate::handback::{ReloadError, Returned};
use crate::hooks::{label, name_of, panic_message, Cause, Hook, HookFailure};
use crate::lease::{EnterFuture, EnterOwnedFuture, Lease, OwnedLease};
use crate::loom::{pin, Ordering};
use crate::plugin::{ReadyError, StepError};
use crate::shared::{DrainingBody, Shared, Writer};
use crate::state::{Draining, Initialized, Loaded};
use crate::stats::{Counters, SlotStats, VersionInfo};
use crate::transfer::Salvage;
use crate::{Hooks, Plugin, Stateful};

/// A hot-swappable plugin: one current version, any number draining.
///
/// Calls take a [`Lease`] with [`Slot::enter`] (or run a closure with
/// [`Slot::call`]); a host swaps the version with [`Slot::replace`] and gets
/// the old one back as `Plugin<P, Draining>`, which it waits on. `enter`
/// never blocks and never fails because of a reload; only a closed slot
/// refuses.
///
/// ```
/// use reload_core::{Hooks, Plugin, Slot};
///
/// struct Doubler(u64);
/// impl Hooks for Doubler { type Context = (); }
///
/// let ready = |k| Plugin::new(Doubler(k)).ready(&()).ok().unwrap();
/// let slot = Slot::new(ready(2));
/// assert_eq!(slot.enter()?.0 * 21, 42);
///
/// let old = slot.replace(ready(3)).ok().unwrap(); // cut over
/// assert_eq!(slot.enter()?.0, 3); // new calls see the new version
/// let removed = old.wait().ok().unwrap(); // drained and shut down
/// assert_eq!(removed.report().generation, 1);
/// # Ok::<(), reload_core::SlotClosed>(())
/// ```
pub struct Slot<P: Hooks> {
    /// Released through the collector when the slot is dropped (see
    /// `shared.rs`), never dropped in place.
    pub(crate) shared: ManuallyDrop<Arc<Shared<P>>>,
}

impl<P: Hooks> Slot<P> {
    /// A slot serving `first`, which becomes generation 1 (`Initialized ->
    /// Active`).
    ///
    /// # Panics
    ///
    /// If the plugin's [`Hooks::name`] panics (the plugin's own panic,
    /// reported); [`Slot::try_new`] hands the plugin back instead.
    pub fn new(first: Plugin<P, Initialized>) -> Self {
        match Self::try_new(first) {
            Ok(slot) => slot,
            Err(e) => panic!("{}", e.failure()),
        }
    }

    /// [`Slot::new`], with a panic in the plugin's [`Hooks::name`]
    /// contained.
    ///
    /// # Errors
    ///
    /// The plugin comes back, still `Initialized`, with the failure
    /// ([`Hook::Name`](crate::Hook::Name)).
    pub fn try_new(first: Plugin<P, Initialized>) -> Result<Self, StepError<P, Initialized>> {
        let name = match name_of(first.get(), None) {
            Ok(name) => name,
            Err(failure) => return Err(StepError::new(first, failure)),
        };
        Ok(Slot {
            shared: ManuallyDrop::new(Arc::new(Shared::new(first.into_inner(), name))),
        })
    }

    /// A lease on the current version, for one call (or a few).
    ///
    /// Never blocks and never fails because of a `replace` or an immediate
    /// reload: a lease taken meanwhile is on the old or the new version, and
    /// the old one's drain waits for it. The one wait is a *quiesced*
    /// commit ([`Mode::Quiesced`](crate::Mode)), which holds new calls at a
    /// gate, parked, for at most its drain timeout plus the state transfer;
    /// they then proceed on the new version, or on the old one if it rolled
    /// back. [`Slot::try_enter`] and [`Slot::enter_deadline`] do not wait
    /// (or wait less); [`Slot::enter_async`] waits without blocking a thread.
    ///
    /// # Errors
    ///
    /// [`SlotClosed`] once [`Slot::close`] has run.
    #[inline]
    pub fn enter(&self) -> Result<Lease<'_, P>, SlotClosed> {
        let shared = &*self.shared;
        match acquire(&shared.current) {
            Some(hold) => Ok(Lease::new(hold, shared)),
            None => match shared.enter_slow(None) {
                Ok(hold) => Ok(Lease::new(hold, shared)),
                Err(_) => Err(SlotClosed),
            },
        }
    }

    /// [`Slot::enter`], but a closed gate is an error rather than a wait.
    ///
    /// # Errors
    ///
    /// [`TryEnterError::Quiescing`] while a quiesced commit holds the gate;
    /// [`TryEnterError::Closed`] once the slot is closed.
    #[inline]
    pub fn try_enter(&self) -> Result<Lease<'_, P>, TryEnterError> {
        let shared = &*self.shared;
        shared.try_enter().map(|hold| Lease::new(hold, shared))
    }

    /// [`Slot::enter`], waiting at a closed gate only until `deadline`.
    ///
    /// # Errors
    ///
    /// [`TryEnterError::Quiescing`] if the gate was still closed at
    /// `deadline`; [`TryEnterError::Closed`] once the slot is closed.
    pub fn enter_deadline(&self, deadline: Instant) -> Result<Lease<'_, P>, TryEnterError> {
        let shared = &*self.shared;
        match acquire(&shared.current) {
            Some(hold) => Ok(Lease::new(hold, shared)),
            None => shared
                .enter_slow(Some(deadline))
                .map(|hold| Lease::new(hold, shared)),
        }
    }

    /// [`Slot::enter`] as a future: at a closed gate the task's waker is
    /// registered and woken when the gate opens; no thread blocks.
    pub fn enter_async(&self) -> EnterFuture<'_, P> {
        EnterFuture::new(&self.shared)
    }

    /// [`Slot::enter`] for a lease that does not borrow the slot: an
    /// [`OwnedLease`] is `Send + 'static`, so it can move into a spawned
    /// task or another thread's job and be dropped there. The call is
    /// admitted now, on the version current now, however late the task
    /// holding it first runs.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use reload_core::{Hooks, Plugin, Slot};
    ///
    /// struct Echo;
    /// impl Hooks for Echo { type Context = (); }
    ///
    /// let slot = Arc::new(Slot::new(Plugin::new(Echo).ready(&()).ok().unwrap()));
    /// let lease = slot.enter_owned()?;
    /// let job = std::thread::spawn(move || lease.generation());
    /// drop(slot); // the lease may outlive the slot
    /// assert_eq!(job.join().unwrap(), 1);
    /// # Ok::<(), reload_core::SlotClosed>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SlotClosed`] once [`Slot::close`] has run.
    #[inline]
    pub fn enter_owned(&self) -> Result<OwnedLease<P>, SlotClosed> {
        let shared = &self.shared;
        let hold = match acquire(&shared.current) {
            Some(hold) => hold,
            None => shared.enter_slow(None).map_err(|_| SlotClosed)?,
        };
        Ok(OwnedLease::new(hold, shared))
    }

    /// [`Slot::try_enter`] for an [`OwnedLease`].
    ///
    /// # Errors
    ///
    /// As for [`Slot::try_enter`].
    pub fn try_enter_owned(&self) -> Result<OwnedLease<P>, TryEnterError> {
        let hold = self.shared.try_enter()?;
        Ok(OwnedLease::new(hold, &self.shared))
    }

    /// [`Slot::enter_deadline`] for an [`OwnedLease`].
    ///
    /// # Errors
    ///
    /// As for [`Slot::enter_deadline`].
    pub fn enter_owned_deadline(&self, deadline: Instant) -> Result<OwnedLease<P>, TryEnterError> {
        let shared = &self.shared;
        let hold = match acquire(&shared.current) {
            Some(hold) => hold,
            None => shared.enter_slow(Some(deadline))?,
        };
        Ok(OwnedLease::new(hold, shared))
    }

    /// [`Slot::enter_async`] for an [`OwnedLease`]; the future is itself
    /// `Send + 'static`, so it can be spawned.
    pub fn enter_owned_async(&self) -> EnterOwnedFuture<P> {
        EnterOwnedFuture::new(Arc::clone(&self.shared))
    }

    /// Runs `f` on the current version under a lease, containing a panic.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] if the slot is closed; [`CallError::Panicked`]
    /// if `f` panicked (the lease was released, the slot keeps serving, and
    /// the error names the version).
    pub fn call<R>(&self, f: impl FnOnce(&P) -> R) -> Result<R, CallError> {
        let lease = self.enter()?;
        // AssertUnwindSafe: `f` sees `&P` only; a plugin that keeps interior
        // state it cannot leave consistent on panic is told so by the error.
        match catch_unwind(AssertUnwindSafe(|| f(&lease))) {
            Ok(value) => Ok(value),
            Err(payload) => {
                Counters::bump(&self.shared.counters.call_panics);
                Err(CallError::Panicked(HookFailure {
                    hook: Hook::Call,
                    plugin: self.shared.name.clone(),
                    version: label(&*lease, P::version),
                    generation: Some(lease.generation()),
                    cause: Cause::Panic(panic_message(payload.as_ref())),
                }))
            }
        }
    }

    /// Cuts over to `next` atomically and hands back the old version,
    /// `Draining`. Leases granted after this returns are on `next`.
    ///
    /// The old version is still reachable by the calls in flight on it;
    /// wait on the returned handle to see it drain and shut down. Dropping
    /// the handle instead leaves that to the slot (see [`Slot::reap`]).
    ///
    /// `replace` runs no plugin code but `next`'s [`Hooks::name`] (contained)
    /// and never runs another version's `shutdown`: it is the cut-over and
    /// nothing else, so it cannot be slowed by an earlier version whose
    /// `shutdown` is slow. Orphans (versions whose handle was dropped) are
    /// finalized by [`Slot::reap`], [`Slot::close`], dropping their handle
    /// once drained, the drop of their last [`OwnedLease`], or dropping the
    /// slot; a host that drops handles and uses only borrowed leases calls
    /// `reap` when it suits it (on a thread of its own, if shutdowns are
    /// slow).
    ///
    /// # Errors
    ///
    /// A [`ReloadError`] whose [`fault`](ReloadError::fault) is
    /// [`ReloadFault::WrongPlugin`] if `next` names another plugin,
    /// [`ReloadFault::Hook`] (with [`Hook::Name`](crate::Hook::Name)) if its
    /// `name` panicked, [`ReloadFault::InProgress`] while a prepared reload
    /// holds the turn, [`ReloadFault::Closed`] if the slot is closed. In
    /// every case `next` comes back inside the error
    /// ([`Returned::Initialized`](crate::Returned::Initialized)) and the slot
    /// is unchanged.
    pub fn replace(
        &self,
        next: Plugin<P, Initialized>,
    ) -> Result<Plugin<P, Draining>, ReloadError<P>> {
        let result = self.replace_inner(next).map_err(|(fault, plugin)| {
            ReloadError::new(
                fault,
                Returned::Initialized(plugin),
                Salvage::default(),
                &self.shared.name,
            )
        });
        let counter = match &result {
            Ok(_) => &self.shared.counters.reloads,
            Err(_) => &self.shared.counters.failed_reloads,
        };
        Counters::bump(counter);
        result
    }

    #[allow(clippy::result_large_err)] // the plugin comes back: cold path
    fn replace_inner(
        &self,
        next: Plugin<P, Initialized>,
    ) -> Result<Plugin<P, Draining>, (ReloadFault, Plugin<P, Initialized>)> {
        match name_of(next.get(), None) {
            Ok(found) if found == self.shared.name => {}
            Ok(found) => {
                let expected = self.shared.name.clone();
                return Err((ReloadFault::WrongPlugin { expected, found }, next));
            }
            Err(failure) => return Err((ReloadFault::Hook(failure), next)),
        }
        let mut writer = self.shared.writer.lock();
        if writer.turn {
            return Err((ReloadFault::InProgress, next));
        }
        let generation = writer.next_generation;
        let version = writer.shells.version(next.into_inner(), generation);
        match cut_over(&self.shared.current, Some(version)) {
            Ok(old) => {
                writer.next_generation += 1;
                Ok(self.track(&mut writer, old))
            }
            Err(refused) => {
                let plugin = refused.map(|version| writer.shells.unpublish(version));
                match plugin {
                    Some(plugin) => Err((ReloadFault::Closed, Plugin { body: plugin })),
                    None => unreachable!("cut_over hands back the version it was given"),
                }
            }
        }
    }

    /// Makes `next` ready (`link`, then `init` with `cx`) and replaces the
    /// current version with it, counting a failure at any step.
    ///
    /// # Errors
    ///
    /// A [`ReloadError`] holding `next` in the phase it reached:
    /// [`ReloadFault::Hook`] if `link` or `init` failed or panicked
    /// ([`Returned::Loaded`](crate::Returned::Loaded) or
    /// [`Returned::Linked`](crate::Returned::Linked)), or any refusal of
    /// [`Slot::replace`]. The slot keeps serving the version it served.
    pub fn reload(
        &self,
        next: Plugin<P, Loaded>,
        cx: &P::Context,
    ) -> Result<Plugin<P, Draining>, ReloadError<P>> {
        let refused = |failure, plugin| {
            Counters::bump(&self.shared.counters.failed_reloads);
            let fault = ReloadFault::Hook(failure);
            ReloadError::new(fault, plugin, Salvage::default(), &self.shared.name)
        };
        match next.ready(cx) {
            Ok(ready) => self.replace(ready),
            Err(ReadyError::Link(e)) => {
                let (plugin, failure) = e.into_parts();
                Err(refused(failure, Returned::Loaded(plugin)))
            }
            Err(ReadyError::Init(e)) => {
                let (plugin, failure) = e.into_parts();
                Err(refused(failure, Returned::Linked(plugin)))
            }
        }
    }

    /// Closes the slot: from now on [`Slot::enter`] returns [`SlotClosed`].
    /// Returns the version that was current, `Draining`, or `None` if the
    /// slot was already closed.
    ///
    /// A quiesced commit in progress finishes first (`close` waits for its
    /// gate, which is bounded by the commit's timeout); a prepared reload
    /// that is not committing does not hold `close` up, and its commit will
    /// then fail with [`ReloadFault::Closed`](crate::ReloadFault).
    pub fn close(&self) -> Option<Plugin<P, Draining>> {
        let closed = loop {
            {
                let mut writer = self.shared.writer.lock();
                if !writer.quiescing {
                    break cut_over(&self.shared.current, None)
                        .ok()
                        .map(|old| self.track(&mut writer, old));
                }
            }
            self.shared.wait_gate(None);
        };
        self.reap();
        closed
    }

    /// Tells `listener` about every step of this slot's reloads (and lets
    /// it veto them during prepare); see [`Listener`].
    pub fn listen(&self, listener: impl Listener) -> ListenerId {
        self.shared.listeners.add(std::sync::Arc::new(listener))
    }

    /// Removes a listener; returns whether it was registered.
    pub fn unlisten(&self, id: ListenerId) -> bool {
        self.shared.listeners.remove(id)
    }

    /// Registers a version just cut over from as draining.
    pub(crate) fn track(
        &self,
        writer: &mut Writer<P>,
        old: NonNull<Version<P>>,
    ) -> Plugin<P, Draining> {
        let since = Instant::now();
        writer.track(old, since);
        #[cfg(feature = "metrics")]
        crate::metrics::draining(&self.shared.name);
        Plugin {
            body: DrainingBody::new(old, Arc::clone(&self.shared), since),
        }
    }

    /// Whether the slot was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The plugin's name (every version of a slot has the same).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Generation of the current version (1 for the first), `None` once closed.
    pub fn generation(&self) -> Option<u64> {
        let guard = pin();
        let mut seen = self.shared.current.load(Ordering::Acquire, &guard);
        loop {
            // SAFETY: a shell of this slot, alive while the slot is.
            let generation = unsafe { seen.as_ref() }.map(Version::generation);
            // The shell may have been finalized and reused for a newer
            // version between the load and the read: if `current` still
            // holds it, the generation read was current at one of the two
            // loads. (Not the writer lock: a listener may ask from under it.)
            let now = self.shared.current.load(Ordering::Acquire, &guard);
            if now.with_tag(0) == seen.with_tag(0) {
                return generation;
            }
            seen = now;
        }
    }

    /// The current version and every version still draining, oldest first.
    /// Only observes: orphans are finalized by [`Slot::reap`] and the calls
    /// it names, not by looking.
    pub fn versions(&self) -> Vec<VersionInfo> {
        let writer = self.shared.writer.lock();
        let mut out: Vec<VersionInfo> = writer
            .draining()
            .map(|(v, orphaned)| VersionInfo {
                generation: v.generation(),
                phase: v.phase.load(),
                in_flight: v.in_flight(),
                orphaned,
            })
            .collect();
        let guard = pin();
        let current = self.shared.current.load(Ordering::Acquire, &guard);
        // SAFETY: a shell of this slot; it stays the current version while
        // we hold the writer lock (`writer`, still alive here).
        if let Some(v) = unsafe { current.as_ref() } {
            out.push(VersionInfo {
                generation: v.generation(),
                phase: v.phase.load(),
                in_flight: v.in_flight(),
                orphaned: false,
            });
        }
        out.sort_by_key(|info| info.generation);
        out
    }

    /// The slot's counters.
    pub fn stats(&self) -> SlotStats {
        let (draining, free_shells) = {
            let writer = self.shared.writer.lock();
            (writer.draining().count(), writer.shells.free())
        };
        let in_flight = self.versions().iter().map(|v| v.in_flight).sum();
        SlotStats {
            free_shells,
            ..self
                .shared
                .counters
                .snapshot(self.generation(), draining, in_flight)
        }
    }

    /// Finalizes every orphaned version (one whose `Plugin<P, Draining>` was
    /// dropped unwaited) that has drained, on this thread; returns how
    /// many. `close` and dropping the slot also do this, and so do dropping
    /// a handle whose version has already drained and dropping the last
    /// [`OwnedLease`] on an orphan. `replace` and `reload` do not (they are
    /// the cut-over only). A panic in an orphan's `shutdown` or `Drop` is
    /// contained and counted; the other orphans are finalized all the same.
    pub fn reap(&self) -> usize {
        self.shared.reap()
    }
}

impl<P: Stateful> Slot<P> {
    /// The current version's state, saved now (while it serves) and put in
    /// the library's envelope; `None` if it has no state. Keep it to
    /// restore later with [`ReloadOptions::restore_from`](crate::ReloadOptions::restore_from).
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Closed`](crate::SnapshotError) if the slot is
    /// closed; [`SnapshotError::Save`](crate::SnapshotError) if `save`
    /// failed or panicked.
    pub fn snapshot(&self) -> Result<Option<Vec<u8>>, crate::SnapshotError> {
        let lease = self.enter()?;
        Ok(crate::transfer::save_envelope(
            &*lease,
            Some(lease.generation()),
        )?)
    }
}

impl<P: Hooks> Drop for Slot<P> {
    fn drop(&mut self) {
        // Closes the slot: the current version becomes an orphan, finalized
        // now if no lease is out on it, else by the drop of its last owned
        // lease (borrowed ones are gone: they borrowed the slot).
        // SAFETY: taken once, here; the slot is not used again.
        Shared::close_for_drop(unsafe { ManuallyDrop::take(&mut self.shared) });
    }
}

impl<P: Hooks> fmt::Debug for Slot<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("name", &self.shared.name)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}
