//! [`Slot`]: the one place calls go through to reach a plugin's current
//! version, and [`Lease`], a call's hold on one version.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_epoch::{Atomic, Owned};
use lifecycle::Phase;

use crate::drain::{acquire, cut_over, Hold, Version};
use crate::draining::{finalize, DrainingBody};
use crate::error::{CallError, ReloadError, ReplaceError, SlotClosed, TryEnterError};
use crate::events::{Event, Listener, ListenerId, Listeners};
use crate::hooks::{panic_message, Cause, Hook, HookFailure};
use crate::loom::{park_until, pin, AtomicBool, Mutex, Ordering, Parked};
use crate::state::{Draining, Initialized, Loaded};
use crate::stats::{Counters, SlotStats, VersionInfo};
use crate::waiters::WaitList;
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
/// let ready = |k| Plugin::new(Doubler(k)).prepare(&()).ok().unwrap();
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
    pub(crate) shared: Arc<Shared<P>>,
}

/// The part of a slot that its draining versions keep alive.
pub(crate) struct Shared<P: Hooks> {
    /// The current version; null once closed; tagged while its gate is
    /// closed (see `drain.rs`).
    pub(crate) current: Atomic<Version<P>>,
    /// Serialises cut-overs and gate changes, and holds the versions that
    /// are draining, so they can be observed and, if their handle was
    /// dropped, finalized. Never taken on the call path.
    pub(crate) writer: Mutex<Writer<P>>,
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
    /// Its `Plugin<P, Draining>` was dropped: the slot finalizes it.
    orphaned: bool,
}

// SAFETY: an `Entry` only points at a version the slot or a draining handle
// owns; the version itself is `Send + Sync` for `P: Hooks`. Entries are read
// only under the writer lock, and removed under it before the version is
// retired.
unsafe impl<P: Send + Sync> Send for Entry<P> {}

impl<P: Hooks> Slot<P> {
    /// A slot serving `first`, which becomes generation 1 (`Initialized ->
    /// Active`).
    pub fn new(first: Plugin<P, Initialized>) -> Self {
        let plugin = first.into_inner();
        let name = plugin.name().to_owned();
        let shared = Shared {
            current: Atomic::from(Owned::new(Version::new(plugin, 1))),
            writer: Mutex::new(Writer {
                next_generation: 2,
                draining: Vec::new(),
                turn: false,
                quiescing: false,
            }),
            gate_closed: AtomicBool::new(false),
            gate: WaitList::default(),
            turn_free: WaitList::default(),
            listeners: Listeners::default(),
            name,
            counters: Counters::default(),
        };
        Slot {
            shared: Arc::new(shared),
        }
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
        match acquire(&self.shared.current) {
            Some(hold) => Ok(self.lease(hold)),
            None => self.enter_slow(None).map_err(|_| SlotClosed),
        }
    }

    /// `enter`'s slow path, out of line so the fast path stays small: the
    /// slot is closed, or a quiesced reload holds the gate (wait for it,
    /// until `deadline` if any, then try again).
    #[cold]
    #[inline(never)]
    fn enter_slow(&self, deadline: Option<Instant>) -> Result<Lease<'_, P>, TryEnterError> {
        loop {
            if self.shared.is_closed() {
                return Err(TryEnterError::Closed);
            }
            if !self.shared.wait_gate(deadline) {
                return Err(TryEnterError::Quiescing);
            }
            if let Some(hold) = acquire(&self.shared.current) {
                return Ok(self.lease(hold));
            }
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
        match acquire(&self.shared.current) {
            Some(hold) => Ok(self.lease(hold)),
            None if self.shared.is_closed() => Err(TryEnterError::Closed),
            None => Err(TryEnterError::Quiescing),
        }
    }

    /// [`Slot::enter`], waiting at a closed gate only until `deadline`.
    ///
    /// # Errors
    ///
    /// [`TryEnterError::Quiescing`] if the gate was still closed at
    /// `deadline`; [`TryEnterError::Closed`] once the slot is closed.
    pub fn enter_deadline(&self, deadline: Instant) -> Result<Lease<'_, P>, TryEnterError> {
        match acquire(&self.shared.current) {
            Some(hold) => Ok(self.lease(hold)),
            None => self.enter_slow(Some(deadline)),
        }
    }

    /// [`Slot::enter`] as a future: at a closed gate the task's waker is
    /// registered and woken when the gate opens; no thread blocks.
    pub fn enter_async(&self) -> crate::EnterFuture<'_, P> {
        crate::EnterFuture { slot: self }
    }

    #[inline]
    pub(crate) fn lease(&self, hold: Hold<P>) -> Lease<'_, P> {
        Lease {
            hold,
            _slot: PhantomData,
        }
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
                    plugin: lease.name().to_owned(),
                    version: lease.version().to_owned(),
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
    /// # Errors
    ///
    /// [`ReplaceError::WrongPlugin`] if `next` names another plugin,
    /// [`ReplaceError::Closed`] if the slot is closed. Either way `next`
    /// comes back inside the error and the slot is unchanged.
    pub fn replace(
        &self,
        next: Plugin<P, Initialized>,
    ) -> Result<Plugin<P, Draining>, ReplaceError<P>> {
        let result = self.replace_inner(next);
        let counter = match &result {
            Ok(_) => &self.shared.counters.reloads,
            Err(_) => &self.shared.counters.failed_reloads,
        };
        Counters::bump(counter);
        self.reap();
        result
    }

    fn replace_inner(
        &self,
        next: Plugin<P, Initialized>,
    ) -> Result<Plugin<P, Draining>, ReplaceError<P>> {
        if next.get().name() != self.shared.name {
            return Err(ReplaceError::WrongPlugin {
                expected: self.shared.name.clone(),
                found: next.get().name().to_owned(),
                plugin: next,
            });
        }
        let mut writer = self.shared.writer.lock();
        if writer.turn {
            return Err(ReplaceError::InProgress(next));
        }
        let generation = writer.next_generation;
        let version = Owned::new(Version::new(next.into_inner(), generation));
        match cut_over(&self.shared.current, Some(version)) {
            Ok(old) => {
                writer.next_generation += 1;
                Ok(self.track(&mut writer, old))
            }
            Err(refused) => {
                let plugin = refused.map(|owned| {
                    // SAFETY: never published, so this is the only reference
                    // and no lease was ever taken on it.
                    unsafe { owned.into_box().take_plugin() }
                });
                match plugin {
                    Some(plugin) => Err(ReplaceError::Closed(Plugin { body: plugin })),
                    None => unreachable!("cut_over hands back the version it was given"),
                }
            }
        }
    }

    /// Prepares `next` (`link`, then `init` with `cx`) and replaces the
    /// current version with it, counting a failure at any step.
    ///
    /// # Errors
    ///
    /// [`ReloadError`] holds `next` in the phase it reached; the slot keeps
    /// serving the version it served.
    pub fn reload(
        &self,
        next: Plugin<P, Loaded>,
        cx: &P::Context,
    ) -> Result<Plugin<P, Draining>, ReloadError<P>> {
        match next.prepare(cx) {
            Ok(ready) => Ok(self.replace(ready)?),
            Err(e) => {
                Counters::bump(&self.shared.counters.failed_reloads);
                Err(e.into())
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
        writer.draining.push(Entry {
            version: old,
            since,
            orphaned: false,
        });
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
        let current = self.shared.current.load(Ordering::Acquire, &guard);
        // SAFETY: loaded while pinned: valid until `guard` drops.
        unsafe { current.as_ref() }.map(|v| v.generation)
    }

    /// The current version and every version still draining, oldest first.
    /// Only observes: orphans are finalized by [`Slot::reap`] and the calls
    /// it names, not by looking.
    pub fn versions(&self) -> Vec<VersionInfo> {
        let writer = self.shared.writer.lock();
        let mut out: Vec<VersionInfo> = writer
            .draining
            .iter()
            .map(|entry| {
                // SAFETY: entries are removed under this lock before their
                // version is retired, so the pointer is valid while we hold it.
                let v = unsafe { entry.version.as_ref() };
                VersionInfo {
                    generation: v.generation,
                    phase: v.phase.load(),
                    in_flight: v.in_flight(),
                    orphaned: entry.orphaned,
                }
            })
            .collect();
        let guard = pin();
        let current = self.shared.current.load(Ordering::Acquire, &guard);
        // SAFETY: loaded while pinned: valid until `guard` drops.
        if let Some(v) = unsafe { current.as_ref() } {
            out.push(VersionInfo {
                generation: v.generation,
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
        let draining = self.shared.writer.lock().draining.len();
        let in_flight = self.versions().iter().map(|v| v.in_flight).sum();
        self.shared
            .counters
            .snapshot(self.generation(), draining, in_flight)
    }

    /// Finalizes every orphaned version (one whose `Plugin<P, Draining>` was
    /// dropped unwaited) that has drained; returns how many. `replace`,
    /// `reload`, `close` and dropping the slot also do this, and so does
    /// dropping a handle whose version has already drained.
    pub fn reap(&self) -> usize {
        self.shared.reap(false)
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
        Ok(crate::reload::save_envelope(
            &*lease,
            Some(lease.generation()),
        )?)
    }
}

impl<P: Hooks> Shared<P> {
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
    /// is open. Register, then look (see `waiters`).
    pub(crate) fn wait_gate(&self, deadline: Option<Instant>) -> bool {
        loop {
            self.gate.register_thread();
            // Acquire: seeing it open means seeing the cut-over or untag
            // that preceded the opening (see `Quiesce`).
            if !self.gate_closed.load(Ordering::Acquire) {
                return true;
            }
            if park_until(deadline) == Parked::Expired {
                return !self.gate_closed.load(Ordering::Acquire);
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
            }
        }
        self.reap(false);
    }

    /// Finalizes orphans that have drained, or all of them if `all` (only
    /// when no lease can exist any more: the slot is being dropped).
    fn reap(&self, all: bool) -> usize {
        let ready: Vec<Entry<P>> = {
            let mut writer = self.writer.lock();
            let (ready, keep) =
                std::mem::take(&mut writer.draining)
                    .into_iter()
                    .partition(|entry| {
                        // SAFETY: the entry is still listed, so not yet retired.
                        entry.orphaned && (all || unsafe { entry.version.as_ref() }.is_drained())
                    });
            writer.draining = keep;
            ready
        };
        let reaped = ready.len();
        for entry in ready {
            // SAFETY: orphaned, so no handle owns it; drained (or, with
            // `all`, no lease can exist); removed from the list above, so no
            // one else will finalize it. The value is dropped here: nobody
            // asked for it back.
            drop(unsafe { finalize(self, entry.version, entry.since) });
        }
        reaped
    }
}

impl<P: Hooks> Drop for Slot<P> {
    fn drop(&mut self) {
        // Every lease borrows the slot, so none is alive now (a lease that
        // was `mem::forget`-ed can never be used again either): the current
        // version and the orphans can be finalized without waiting.
        let current = {
            let _writer = self.shared.writer.lock();
            cut_over(&self.shared.current, None)
        };
        if let Ok(version) = current {
            // SAFETY: unlinked just now, never tracked or handed out, and no
            // lease can exist (see above).
            drop(unsafe { finalize(&self.shared, version, Instant::now()) });
        }
        self.shared.reap(true);
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

/// A call's hold on one version of a [`Slot`]: derefs to the plugin, and
/// gives the hold back when dropped, also during a panic's unwinding.
///
/// A lease is `Send`, so it can be held across `.await` and dropped on
/// another thread. Hold it for a call, not for the life of a task: the
/// version it holds cannot finish draining until it is dropped.
#[must_use = "a lease is given back as soon as it is dropped"]
pub struct Lease<'a, P: Hooks> {
    hold: Hold<P>,
    _slot: PhantomData<&'a Slot<P>>,
}

// SAFETY: a lease gives out `&P` (and `P: Sync` by `Hooks`), and releasing
// it on another thread is part of the protocol (it decrements the shard it
// counted on, wherever it runs).
unsafe impl<P: Hooks> Send for Lease<'_, P> {}
// SAFETY: `&Lease` only gives `&P`, and `P: Sync`.
unsafe impl<P: Hooks> Sync for Lease<'_, P> {}

impl<P: Hooks> Lease<'_, P> {
    /// Generation of the version this lease holds.
    pub fn generation(&self) -> u64 {
        self.held().generation
    }

    /// Phase of the version this lease holds: `Active`, or `Draining` if
    /// the slot cut over since the lease was taken. Never `Removed`.
    pub fn phase(&self) -> Phase {
        self.held().phase.load()
    }

    fn held(&self) -> &Version<P> {
        // SAFETY: the lease keeps its version from being drained, hence from
        // being retired.
        unsafe { self.hold.version.as_ref() }
    }
}

impl<P: Hooks> Deref for Lease<'_, P> {
    type Target = P;

    #[inline]
    fn deref(&self) -> &P {
        // SAFETY: we hold a lease on this version.
        unsafe { self.held().plugin() }
    }
}

impl<P: Hooks> Drop for Lease<'_, P> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this lease's one hold, counted on `shard`, given back once.
        unsafe { Version::release(self.hold.version, self.hold.shard) }
    }
}

impl<P: Hooks> fmt::Debug for Lease<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("plugin", &self.name())
            .field("generation", &self.generation())
            .finish()
    }
}
