//! A reload as a transaction: [`Slot::prepare`] builds the new version
//! without touching callers, [`Prepared::commit`] cuts over (immediately, or
//! quiesced: new calls wait at a gate while the old version drains and its
//! state and resources move across), [`Prepared::abort`] (or dropping the
//! [`Prepared`]) discards it.
//!
//! The quiesce path, in order (the step names are those of `docs/drain.md`):
//!
//! | step | what | on failure |
//! |---|---|---|
//! | Q1-Q2 | close the gate: the old version stays current and `Active`, new calls wait | - |
//! | Q3 | wait, parked, for the old version's last lease (bounded) | roll back |
//! | Q4 | old side: `save`, `persist`, `checkpoint` (all `&self`) | roll back |
//! | Q5 | new side: migrate, `restore`, `check_compat` + `open`, `resume` | close what the new side opened, roll back |
//! | Q6 | cut over to the new version (this opens the gate); the old one is `Draining`, already drained | - |
//!
//! Roll back = open the gate on the old version, which never stopped being
//! current and was only read: its state and resources are as they were, and
//! the calls that waited proceed on it.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crossbeam_epoch::Owned;

use crate::drain::{close_gate, cut_over, open_gate, Version};
use crate::envelope::{EnvelopeError, SavedState};
use crate::events::{Event, Proposal};
use crate::hooks::{label, name_of, run_hook, run_ref_hook, Cause, Hook, HookFailure};
use crate::loom::Ordering;
use crate::plugin::PrepareError;
use crate::shared::Shared;
use crate::state::{Draining, Initialized, Linked, Loaded};
use crate::stateful::{Resource, ResourceKind, Stateful};
use crate::stats::Counters;
use crate::{Hooks, Plugin, Slot};

/// How a prepared reload cuts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// New calls go to the new version at once. State and resources are
    /// carried from a snapshot taken at prepare, while the old version was
    /// still serving: updates it makes after that are not carried. For
    /// plugins whose state is a cache or is rebuilt.
    Immediate,
    /// From commit, new calls wait at the old version's gate (for at most
    /// `timeout` plus the state transfer) while it drains; then its state
    /// and resources are carried over with no call running, and the new
    /// version is cut in. No update is lost. If the drain does not finish
    /// within `timeout`, or any step of the transfer fails, the gate reopens
    /// on the old version, which serves on with everything it had.
    Quiesced {
        /// How long to wait for the old version's drain.
        timeout: Duration,
    },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Immediate => f.write_str("immediate"),
            Mode::Quiesced { timeout } => write!(f, "quiesced({timeout:?})"),
        }
    }
}

/// How to reload: the [`Mode`], whether to wait for a reload already in
/// progress, and where the new version's state comes from.
#[derive(Clone, Debug)]
pub struct ReloadOptions {
    mode: Mode,
    wait_for_turn: Option<Duration>,
    state: StateSource,
}

#[derive(Clone, Debug)]
enum StateSource {
    /// `save` on the old version.
    Old,
    /// An envelope the host kept (a snapshot, or the salvage of a failed
    /// reload).
    Envelope(Vec<u8>),
}

impl ReloadOptions {
    /// Immediate cut-over (see [`Mode::Immediate`]).
    pub fn immediate() -> Self {
        ReloadOptions {
            mode: Mode::Immediate,
            wait_for_turn: None,
            state: StateSource::Old,
        }
    }

    /// Quiesced cut-over, waiting at most `timeout` for the drain (see
    /// [`Mode::Quiesced`]).
    pub fn quiesced(timeout: Duration) -> Self {
        ReloadOptions {
            mode: Mode::Quiesced { timeout },
            ..ReloadOptions::immediate()
        }
    }

    /// If another reload of the slot is in progress, wait up to `timeout`
    /// for it to finish instead of failing with [`ReloadFault::InProgress`].
    pub fn wait_for_turn(mut self, timeout: Duration) -> Self {
        self.wait_for_turn = Some(timeout);
        self
    }

    /// Restore the new version from `envelope` (bytes of
    /// [`SavedState::encode`], for example the salvage of a failed reload
    /// or a snapshot from [`Slot::snapshot`]) instead of saving the old
    /// version. Resources are still handed over from the old version.
    pub fn restore_from(mut self, envelope: Vec<u8>) -> Self {
        self.state = StateSource::Envelope(envelope);
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Why a reload failed. The old version serves on in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadFault {
    /// Another reload of this slot is prepared or committing.
    #[error("another reload of this slot is in progress")]
    InProgress,
    /// The slot is closed.
    #[error("the plugin slot is closed")]
    Closed,
    /// The new version names another plugin.
    #[error("cannot reload plugin `{expected}` with a version of `{found}`")]
    WrongPlugin {
        /// The slot's plugin.
        expected: String,
        /// The new version's.
        found: String,
    },
    /// A hook of the old or the new version failed or panicked.
    #[error(transparent)]
    Hook(#[from] HookFailure),
    /// A listener vetoed the reload (or panicked, which counts as a veto).
    #[error("vetoed by listener `{listener}`: {cause}")]
    Vetoed {
        /// The listener's name.
        listener: String,
        /// Its reason.
        cause: Cause,
    },
    /// The saved state was rejected.
    #[error("saved state rejected: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A migration step went backwards, stood still or overshot.
    #[error("migration step from schema {from} went to {to}; the target is {target}")]
    Migration {
        /// The step's input schema.
        from: u32,
        /// What it claimed to produce.
        to: u32,
        /// The new version's schema.
        target: u32,
    },
    /// The new version does not declare a resource the old one hands over,
    /// or declares it as another kind.
    #[error("resource `{resource}`: {reason}")]
    Resource {
        /// The resource's name.
        resource: String,
        /// What does not match.
        reason: String,
    },
    /// Committed together with another plugin's reload, which failed
    /// ([`Prepared::commit_together`]).
    #[error("aborted with the reload of `{plugin}`, which failed")]
    GroupAborted {
        /// The plugin whose reload failed.
        plugin: String,
    },
    /// The old version did not drain in time (quiesced mode).
    #[error("drain of generation {generation} timed out after {waited:?} with {in_flight} calls in flight")]
    DrainTimeout {
        /// The old version's generation.
        generation: u64,
        /// How long the gate was closed.
        waited: Duration,
        /// Leases still out.
        in_flight: usize,
    },
}

impl ReloadFault {
    /// The hook failure, if a hook failed.
    pub fn hook_failure(&self) -> Option<&HookFailure> {
        match self {
            ReloadFault::Hook(h) => Some(h),
            _ => None,
        }
    }
}

/// What a failed reload had taken from the old version before it failed:
/// nothing the old version owns is lost even if the host must recover by
/// hand (the old version itself still has all of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    /// The old version's state in its envelope (decode with
    /// [`SavedState::decode`], or pass to [`ReloadOptions::restore_from`]).
    pub state: Option<Vec<u8>>,
    /// Each index's persisted form, by resource name.
    pub persisted: Vec<(String, Vec<u8>)>,
    /// Each stream's checkpoint, by resource name.
    pub checkpoints: Vec<(String, u64)>,
}

/// The new version, in the phase it reached, handed back by a failed reload.
pub enum Returned<P: Hooks> {
    /// Refused before `link` ran.
    Loaded(Plugin<P, Loaded>),
    /// `init` failed.
    Linked(Plugin<P, Linked>),
    /// Failed after `init`. Resources it had opened or resumed were closed.
    Initialized(Plugin<P, Initialized>),
}

impl<P: Hooks> Returned<P> {
    /// The plugin.
    pub fn get(&self) -> &P {
        match self {
            Returned::Loaded(p) => p.get(),
            Returned::Linked(p) => p.get(),
            Returned::Initialized(p) => p.get(),
        }
    }

    /// The plugin value.
    pub fn into_plugin(self) -> P {
        match self {
            Returned::Loaded(p) => p.into_inner(),
            Returned::Linked(p) => p.into_inner(),
            Returned::Initialized(p) => p.into_inner(),
        }
    }
}

/// A reload failed; the old version serves on. Holds why, the new version
/// (in the phase it reached) and the [`Salvage`].
pub struct ReloadFailed<P: Hooks> {
    // Boxed: the error path is cold, and a `Result` carrying all of this
    // inline would make every successful reload move it around.
    inner: Box<Failed<P>>,
}

struct Failed<P: Hooks> {
    fault: ReloadFault,
    plugin: Returned<P>,
    salvage: Salvage,
    /// The slot's plugin name (not asked of the plugin: its `name` is
    /// plugin code, and may be what failed).
    name: String,
}

impl<P: Hooks> ReloadFailed<P> {
    fn new(fault: ReloadFault, plugin: Returned<P>, salvage: Salvage, name: &str) -> Self {
        ReloadFailed {
            inner: Box::new(Failed {
                fault,
                plugin,
                salvage,
                name: name.to_owned(),
            }),
        }
    }

    /// Why.
    pub fn fault(&self) -> &ReloadFault {
        &self.inner.fault
    }

    /// The new version, in the phase it reached.
    pub fn plugin(&self) -> &Returned<P> {
        &self.inner.plugin
    }

    /// The name of the plugin whose reload failed.
    pub fn plugin_name(&self) -> &str {
        &self.inner.name
    }

    /// What was taken from the old version before the failure.
    pub fn salvage(&self) -> &Salvage {
        &self.inner.salvage
    }

    /// The new version's value.
    pub fn into_plugin(self) -> P {
        self.inner.plugin.into_plugin()
    }

    /// Everything: why, the new version, the salvage.
    pub fn into_parts(self) -> (ReloadFault, Returned<P>, Salvage) {
        let Failed {
            fault,
            plugin,
            salvage,
            ..
        } = *self.inner;
        (fault, plugin, salvage)
    }
}

impl<P: Hooks> fmt::Display for ReloadFailed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reload failed, old version serving: {}",
            self.inner.fault
        )
    }
}

impl<P: Hooks> fmt::Debug for ReloadFailed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadFailed")
            .field("fault", &self.inner.fault)
            .field("salvage", &self.inner.salvage)
            .finish_non_exhaustive()
    }
}

impl<P: Hooks> std::error::Error for ReloadFailed<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner.fault)
    }
}

/// What moved from the old version to the new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// The state's schema as saved, and as restored (`None` if the old
    /// version had no state).
    pub state: Option<(u32, u32)>,
    /// Migration steps run.
    pub migration_steps: u32,
    /// Size of the saved state's envelope.
    pub state_bytes: usize,
    /// Resources handed over, in order.
    pub resources: Vec<Resource>,
}

/// A committed reload: the old version (`Draining`; already drained in
/// quiesced mode) and what happened.
pub struct Committed<P: Hooks> {
    /// The version cut over from. Wait on it to see it finalized.
    pub old: Plugin<P, Draining>,
    /// Generation cut over to.
    pub generation: u64,
    /// How long new calls waited at the gate (quiesced mode).
    pub quiesce: Option<Duration>,
    /// What was carried over.
    pub transfer: Transfer,
}

impl<P: Hooks> fmt::Debug for Committed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("old", &self.old)
            .field("generation", &self.generation)
            .field("quiesce", &self.quiesce)
            .field("transfer", &self.transfer)
            .finish()
    }
}

/// The slot's reload turn, held from prepare to commit or abort. Dropping
/// it gives the turn back and wakes whoever waits for it.
pub(crate) struct Turn<'s, P: Hooks> {
    shared: &'s Shared<P>,
}

impl<P: Hooks> Drop for Turn<'_, P> {
    fn drop(&mut self) {
        self.shared.writer.lock().turn = false;
        self.shared.turn_free.wake_all();
    }
}

/// A reload that is prepared and not yet committed: the new version is
/// linked, initialized and accepted by every listener; in immediate mode it
/// also holds the old version's state and resources. Callers still see only
/// the old version. [`commit`](Self::commit) cuts over;
/// [`abort`](Self::abort), or dropping this, discards the new version and
/// leaves the old one exactly as it was.
///
/// While it exists, the slot refuses other reloads (and `replace`) with
/// [`ReloadFault::InProgress`].
#[must_use = "dropping a prepared reload aborts it"]
pub struct Prepared<'s, P: Stateful> {
    slot: &'s Slot<P>,
    // `Option` so that commit and abort can take them; always `Some` until then.
    next: Option<Plugin<P, Initialized>>,
    turn: Option<Turn<'s, P>>,
    options: ReloadOptions,
    from_generation: u64,
    /// Immediate mode: what was carried at prepare.
    carried: Option<Transfer>,
    /// Immediate mode: what the new version opened or resumed (closed on abort).
    opened: Vec<String>,
    salvage: Salvage,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl<P: Stateful> Slot<P> {
    /// Prepares a reload to `next`: link, init, compatibility checks, the
    /// listeners' vote and, in [`Mode::Immediate`], the transfer of the old
    /// version's state and resources. Callers are not affected.
    ///
    /// # Errors
    ///
    /// [`ReloadFailed`] with the new version in the phase it reached and
    /// whatever was taken from the old one; the slot serves on unchanged.
    /// [`ReloadFault::InProgress`] if another reload holds the turn (unless
    /// [`ReloadOptions::wait_for_turn`] was given, then only once that
    /// timeout passed).
    pub fn prepare(
        &self,
        next: Plugin<P, Loaded>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<Prepared<'_, P>, ReloadFailed<P>> {
        match self.take_turn(options.wait_for_turn) {
            Ok(turn) => self.prepare_in_turn(turn, next, cx, options),
            Err(fault) => {
                Err(self.prepare_failed(fault, Returned::Loaded(next), Salvage::default()))
            }
        }
    }

    /// Counts and reports a failed prepare.
    fn prepare_failed(
        &self,
        fault: ReloadFault,
        plugin: Returned<P>,
        salvage: Salvage,
    ) -> ReloadFailed<P> {
        let shared = &*self.shared;
        Counters::bump(&shared.counters.failed_reloads);
        shared.emit(&Event::Failed {
            plugin: &shared.name,
            generation: self.generation(),
            rolled_back: false,
            error: &fault,
        });
        ReloadFailed::new(fault, plugin, salvage, &shared.name)
    }

    /// [`Slot::prepare`] with the turn already taken.
    pub(crate) fn prepare_in_turn<'s>(
        &'s self,
        turn: Turn<'s, P>,
        next: Plugin<P, Loaded>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<Prepared<'s, P>, ReloadFailed<P>> {
        let shared = &*self.shared;
        let fail = |fault, plugin, salvage| self.prepare_failed(fault, plugin, salvage);
        let fault = match name_of(next.get(), None) {
            Ok(found) if found == shared.name => None,
            Ok(found) => Some(ReloadFault::WrongPlugin {
                expected: shared.name.clone(),
                found,
            }),
            Err(failure) => Some(ReloadFault::Hook(failure)),
        };
        if let Some(fault) = fault {
            return Err(fail(fault, Returned::Loaded(next), Salvage::default()));
        }
        let next = match next.prepare(cx) {
            Ok(ready) => ready,
            Err(PrepareError::Link(e)) => {
                let (plugin, failure) = e.into_parts();
                return Err(fail(
                    failure.into(),
                    Returned::Loaded(plugin),
                    Salvage::default(),
                ));
            }
            Err(PrepareError::Init(e)) => {
                let (plugin, failure) = e.into_parts();
                return Err(fail(
                    failure.into(),
                    Returned::Linked(plugin),
                    Salvage::default(),
                ));
            }
        };
        let mut prepared = Prepared {
            slot: self,
            next: Some(next),
            turn: Some(turn),
            from_generation: 0,
            options,
            carried: None,
            opened: Vec::new(),
            salvage: Salvage::default(),
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        };
        match prepared.check_and_carry() {
            Ok(()) => {
                let to_version = label(prepared.new_plugin(), P::version);
                #[cfg(feature = "tracing")]
                {
                    prepared.span = crate::telemetry::reload_span(
                        &shared.name,
                        prepared.from_generation,
                        &to_version,
                        prepared.options.mode,
                    );
                }
                #[cfg(feature = "tracing")]
                let _entered = prepared.span.clone().entered();
                shared.emit(&Event::Prepared {
                    plugin: &shared.name,
                    from_generation: prepared.from_generation,
                    to_version: &to_version,
                    mode: prepared.options.mode,
                });
                Ok(prepared)
            }
            Err(fault) => {
                let (plugin, salvage) = prepared.dismantle();
                Err(fail(fault, Returned::Initialized(plugin), salvage))
            }
        }
    }

    /// Takes the slot's reload turn, waiting for it if asked.
    pub(crate) fn take_turn(&self, wait: Option<Duration>) -> Result<Turn<'_, P>, ReloadFault> {
        let shared = &*self.shared;
        // Takes the turn if it is free; `Some` ends the wait either way.
        let try_take = || -> Option<Result<(), ReloadFault>> {
            let mut writer = shared.writer.lock();
            if shared.is_closed() {
                return Some(Err(ReloadFault::Closed));
            }
            if writer.turn {
                return None;
            }
            writer.turn = true;
            Some(Ok(()))
        };
        let outcome = match wait {
            None => try_take(),
            Some(wait) => {
                let deadline = Instant::now().checked_add(wait);
                let mut outcome = None;
                shared.turn_free.wait_until(deadline, || {
                    outcome = try_take();
                    outcome.is_some()
                });
                outcome
            }
        };
        match outcome {
            Some(Ok(())) => Ok(Turn { shared }),
            Some(Err(fault)) => Err(fault),
            None => Err(ReloadFault::InProgress),
        }
    }
}

impl<'s, P: Stateful> Prepared<'s, P> {
    fn new_plugin(&self) -> &P {
        match &self.next {
            Some(next) => next.get(),
            None => unreachable!("taken only by commit and abort, which consume self"),
        }
    }

    /// Compatibility, the listeners' vote and, in immediate mode, the
    /// transfer (under a lease on the old version, which keeps serving).
    fn check_and_carry(&mut self) -> Result<(), ReloadFault> {
        let slot = self.slot;
        let shared = &*slot.shared;
        // The old version serves on while we read it: a lease keeps it from
        // being finalized. We hold the turn, so its gate is open and no one
        // else cuts over; only `close` could, and the lease outlives that.
        let old = slot.enter().map_err(|_| ReloadFault::Closed)?;
        self.from_generation = old.generation();
        let Some(next) = self.next.as_mut() else {
            unreachable!("taken only by commit and abort")
        };
        let generation = Some(self.from_generation);
        let old_resources = run_ref_hook(&*old, Hook::Describe, generation, |p| Ok(p.resources()))?;
        let new_resources = run_ref_hook(next.get(), Hook::Describe, None, |p| Ok(p.resources()))?;
        declared_compatible(&old_resources, &new_resources)?;
        let (from_version, to_version) = (label(&*old, P::version), label(next.get(), P::version));
        let proposal = Proposal {
            plugin: &shared.name,
            from_generation: self.from_generation,
            from_version: &from_version,
            to_version: &to_version,
            mode: self.options.mode,
        };
        if let Err(veto) = shared.listeners.vote(&shared.counters, &proposal) {
            Counters::bump(&shared.counters.vetoed);
            shared.emit(&Event::Vetoed {
                plugin: &shared.name,
                listener: &veto.listener,
                reason: &veto.cause.to_string(),
            });
            return Err(ReloadFault::Vetoed {
                listener: veto.listener,
                cause: veto.cause,
            });
        }
        if self.options.mode == Mode::Immediate {
            let carried = transfer(
                &*old,
                self.from_generation,
                next.get_mut(),
                &self.options.state,
                &mut self.salvage,
                &mut self.opened,
            )?;
            self.carried = Some(carried);
        }
        Ok(())
    }

    /// Takes the new version back out, closing what it opened.
    fn dismantle(&mut self) -> (Plugin<P, Initialized>, Salvage) {
        let Some(mut next) = self.next.take() else {
            unreachable!("dismantled once, by a path that consumes self")
        };
        close_opened(next.get_mut(), &mut self.opened);
        (next, std::mem::take(&mut self.salvage))
    }

    /// The prepared version.
    pub fn plugin(&self) -> &P {
        self.new_plugin()
    }

    /// Generation of the version it will cut over from.
    pub fn from_generation(&self) -> u64 {
        self.from_generation
    }

    /// The mode it will commit in.
    pub fn mode(&self) -> Mode {
        self.options.mode
    }

    /// Discards the new version (closing what it opened) and gives back the
    /// turn; the old version is exactly as it was. Returns the new version.
    pub fn abort(mut self) -> Plugin<P, Initialized> {
        #[cfg(feature = "tracing")]
        let _entered = self.span.clone().entered();
        self.aborted()
    }

    /// The abort itself, for `abort` and for dropping an unused `Prepared`.
    fn aborted(&mut self) -> Plugin<P, Initialized> {
        let (next, _salvage) = self.dismantle();
        let shared = &*self.slot.shared;
        Counters::bump(&shared.counters.aborted);
        shared.emit(&Event::Aborted {
            plugin: &shared.name,
            generation: self.from_generation,
            to_version: &label(next.get(), P::version),
        });
        next
    }

    /// Cuts over to the new version in the prepared [`Mode`].
    ///
    /// # Errors
    ///
    /// [`ReloadFailed`] with the new version (its opened resources closed)
    /// and the [`Salvage`]; the old version serves on with its state and
    /// resources as they were. In quiesced mode: the drain timed out, or a
    /// step of the transfer failed, and the gate reopened on the old version.
    pub fn commit(mut self) -> Result<Committed<P>, ReloadFailed<P>> {
        #[cfg(feature = "tracing")]
        let _entered = self.span.clone().entered();
        let result = match self.options.mode {
            Mode::Immediate => self.commit_immediate(),
            Mode::Quiesced { timeout } => self.commit_quiesced(timeout),
        };
        match result {
            Ok(committed) => {
                self.committed(&committed);
                Ok(committed)
            }
            Err((fault, rolled_back)) => Err(self.failed(fault, rolled_back)),
        }
    }

    fn take_next_version(&mut self, generation: u64) -> Owned<Version<P>> {
        let Some(next) = self.next.take() else {
            unreachable!("taken once, by commit")
        };
        Owned::new(Version::new(next.into_inner(), generation))
    }

    fn commit_immediate(&mut self) -> Result<Committed<P>, (ReloadFault, bool)> {
        let slot = self.slot;
        let shared = &*slot.shared;
        let mut writer = shared.writer.lock();
        if shared.is_closed() {
            return Err((ReloadFault::Closed, false));
        }
        let generation = writer.next_generation;
        let version = self.take_next_version(generation);
        match cut_over(&shared.current, Some(version)) {
            Ok(old) => {
                writer.next_generation += 1;
                let old = slot.track(&mut writer, old);
                self.opened.clear();
                Ok(Committed {
                    old,
                    generation,
                    quiesce: None,
                    transfer: self.carried.take().unwrap_or_default(),
                })
            }
            Err(_) => unreachable!("checked open under the writer lock"),
        }
    }

    fn commit_quiesced(&mut self, timeout: Duration) -> Result<Committed<P>, (ReloadFault, bool)> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let (quiesce, old) = self.close_gate().map_err(|fault| (fault, false))?;
        let carried = self
            .drain_old(old, started, deadline)
            .and_then(|()| self.carry_over(old));
        match carried {
            Ok(carried) => Ok(self.cut(old, quiesce, started, carried)),
            // Dropping the armed guard reopens the gate on the old version.
            Err(fault) => Err((fault, true)),
        }
    }

    /// Q1-Q2: closes the gate and returns the old version, current and
    /// `Active`. Until the gate opens again, the returned `Quiesce` guard
    /// reopens it if anything fails or unwinds, so the slot cannot wedge.
    fn close_gate(&self) -> Result<(Quiesce<'s, P>, NonNull<Version<P>>), ReloadFault> {
        let shared = &*self.slot.shared;
        let mut writer = shared.writer.lock();
        if shared.is_closed() {
            return Err(ReloadFault::Closed);
        }
        // Before the tag: a caller that sees the tag then finds the gate
        // closed, and parks instead of retrying. Release: pairs with the
        // Acquire of a waiter that sees it cleared (see `Quiesce`).
        shared.gate_closed.store(true, Ordering::Release);
        writer.quiescing = true;
        let Some(old) = close_gate(&shared.current) else {
            unreachable!("checked open under the writer lock")
        };
        // SAFETY: current, so live (see `drain_old`).
        debug_assert_eq!(unsafe { old.as_ref() }.generation, self.from_generation);
        Ok((
            Quiesce {
                shared,
                armed: true,
            },
            old,
        ))
    }

    /// Q3: waits, parked, for the last lease on the gated old version.
    fn drain_old(
        &self,
        old: NonNull<Version<P>>,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), ReloadFault> {
        // SAFETY: the old version is current and stays so while we quiesce
        // (cut-overs need the turn, which we hold, and `close` waits for the
        // gate), so it is live.
        let old_version = unsafe { old.as_ref() };
        if old_version.wait_drained(deadline) {
            Ok(())
        } else {
            Err(ReloadFault::DrainTimeout {
                generation: self.from_generation,
                waited: started.elapsed(),
                in_flight: old_version.in_flight(),
            })
        }
    }

    /// Q4-Q5: carries state and resources from the drained, gated old
    /// version to the new one. On failure, closes what the new version
    /// opened *before* the caller reopens the gate: the old version resumes
    /// serving with nothing of the new one still holding its resources.
    fn carry_over(&mut self, old: NonNull<Version<P>>) -> Result<Transfer, ReloadFault> {
        // SAFETY: drained with its gate closed, so no lease on the old
        // version exists or can be granted (pair A), and it is live (see
        // `drain_old`); `take_plugin` runs only after a cut-over we have not
        // made.
        let old_plugin = unsafe { old.as_ref().plugin() };
        let Some(next) = self.next.as_mut() else {
            unreachable!("taken only by commit, once")
        };
        let carried = transfer(
            old_plugin,
            self.from_generation,
            next.get_mut(),
            &self.options.state,
            &mut self.salvage,
            &mut self.opened,
        );
        if carried.is_err() {
            close_opened(next.get_mut(), &mut self.opened);
        }
        carried
    }

    /// Q6: cuts over to the new version; its pointer is untagged, so this
    /// opens the gate for it.
    fn cut(
        &mut self,
        old: NonNull<Version<P>>,
        quiesce: Quiesce<'s, P>,
        started: Instant,
        transfer: Transfer,
    ) -> Committed<P> {
        let slot = self.slot;
        let shared = &*slot.shared;
        let mut writer = shared.writer.lock();
        let generation = writer.next_generation;
        let version = self.take_next_version(generation);
        let Ok(cut_from) = cut_over(&shared.current, Some(version)) else {
            unreachable!("the gated version is current until we cut over")
        };
        debug_assert_eq!(cut_from, old);
        writer.next_generation += 1;
        let old = slot.track(&mut writer, cut_from);
        drop(writer);
        self.opened.clear();
        let waited = started.elapsed();
        quiesce.finish(false);
        shared.counters.quiesce_time.record(waited);
        Committed {
            old,
            generation,
            quiesce: Some(waited),
            transfer,
        }
    }

    /// Commits `group` together, as one cut-over: every slot's gate closes
    /// (in the group's order), the quiesced members drain and carry their
    /// state over, and only when all of them are ready does each cut over,
    /// in order, opening its gate. If any member fails, every gate reopens
    /// on its old version and every member is handed back: all commit, or
    /// none does.
    ///
    /// Order the group dependencies first: a caller that leases across the
    /// group's slots (as a [`Registry`](crate::registry::Registry) call
    /// does) then meets either all old versions or, waiting at a gate, all
    /// new ones. Immediate members carried their state at prepare; they
    /// are gated here only for the instant between the first and the last
    /// cut-over.
    ///
    /// # Errors
    ///
    /// [`GroupFailed`], with one [`ReloadFailed`] per member in the group's
    /// order: the member that failed has its fault, the others
    /// [`ReloadFault::GroupAborted`]. Every old version serves on as it was.
    pub fn commit_together(
        group: Vec<Prepared<'s, P>>,
    ) -> Result<Vec<Committed<P>>, GroupFailed<P>> {
        let mut group = group;
        let started = Instant::now();
        let mut gated = Vec::with_capacity(group.len());
        let mut failure = None;
        // G1: close every gate.
        for (i, member) in group.iter().enumerate() {
            match member.close_gate() {
                Ok(gate) => gated.push(gate),
                Err(fault) => {
                    failure = Some((i, fault));
                    break;
                }
            }
        }
        // G2: drain and carry the quiesced members. Immediate ones carried
        // at prepare.
        let mut carried = Vec::with_capacity(group.len());
        if failure.is_none() {
            for (i, (member, (_, old))) in group.iter_mut().zip(&gated).enumerate() {
                let step = match member.options.mode {
                    Mode::Immediate => Ok(member.carried.take().unwrap_or_default()),
                    Mode::Quiesced { timeout } => member
                        .drain_old(*old, started, started.checked_add(timeout))
                        .and_then(|()| member.carry_over(*old)),
                };
                match step {
                    Ok(transfer) => carried.push(transfer),
                    Err(fault) => {
                        failure = Some((i, fault));
                        break;
                    }
                }
            }
        }
        if let Some((failed, fault)) = failure {
            // Close what the members that carried opened, then reopen every
            // gate (dropping the armed guards), then hand everything back.
            for member in &mut group[..carried.len()] {
                if let Some(next) = member.next.as_mut() {
                    close_opened(next.get_mut(), &mut member.opened);
                }
            }
            let rolled_back = !gated.is_empty();
            drop(gated);
            return Err(GroupFailed::new(group, failed, fault, rolled_back));
        }
        // G3: all ready; cut over, in order.
        let committed = group
            .iter_mut()
            .zip(gated)
            .zip(carried)
            .map(|((member, (quiesce, old)), transfer)| {
                let committed = member.cut(old, quiesce, started, transfer);
                member.committed(&committed);
                committed
            })
            .collect();
        Ok(committed)
    }

    /// Counts and reports a commit.
    fn committed(&self, committed: &Committed<P>) {
        let shared = &*self.slot.shared;
        Counters::bump(&shared.counters.reloads);
        shared.emit(&Event::Committed {
            plugin: &shared.name,
            from_generation: self.from_generation,
            to_generation: committed.generation,
            mode: self.options.mode,
            quiesce: committed.quiesce,
        });
    }

    /// Counts and reports a failure, and hands the new version back.
    fn failed(&mut self, fault: ReloadFault, rolled_back: bool) -> ReloadFailed<P> {
        let shared = &*self.slot.shared;
        Counters::bump(&shared.counters.failed_reloads);
        if rolled_back {
            Counters::bump(&shared.counters.rolled_back);
        }
        shared.emit(&Event::Failed {
            plugin: &shared.name,
            generation: self.slot.generation(),
            rolled_back,
            error: &fault,
        });
        let (next, salvage) = self.dismantle();
        ReloadFailed::new(fault, Returned::Initialized(next), salvage, &shared.name)
    }
}

/// A group commit ([`Prepared::commit_together`]) that did not happen:
/// every old version serves on, and every member's new version comes back.
pub struct GroupFailed<P: Hooks> {
    /// Index, in the group, of the member whose step failed.
    pub failed: usize,
    /// Whether gates had closed (and reopened on the old versions).
    pub rolled_back: bool,
    /// One per member, in the group's order.
    pub members: Vec<ReloadFailed<P>>,
}

impl<P: Stateful> GroupFailed<P> {
    fn new(
        group: Vec<Prepared<'_, P>>,
        failed: usize,
        fault: ReloadFault,
        rolled_back: bool,
    ) -> Self {
        let failed_name = group[failed].slot.name().to_owned();
        let mut fault = Some(fault);
        let members = group
            .into_iter()
            .enumerate()
            .map(|(i, mut member)| {
                let fault = match fault.take_if(|_| i == failed) {
                    Some(fault) => fault,
                    None => ReloadFault::GroupAborted {
                        plugin: failed_name.clone(),
                    },
                };
                member.failed(fault, rolled_back)
            })
            .collect();
        GroupFailed {
            failed,
            rolled_back,
            members,
        }
    }
}

impl<P: Hooks> GroupFailed<P> {
    /// The fault of the member that failed.
    pub fn fault(&self) -> &ReloadFault {
        self.members[self.failed].fault()
    }
}

impl<P: Hooks> fmt::Display for GroupFailed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let member = &self.members[self.failed];
        write!(
            f,
            "group reload of {} plugins failed at `{}`: {}",
            self.members.len(),
            member.plugin_name(),
            member.fault()
        )
    }
}

impl<P: Hooks> fmt::Debug for GroupFailed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupFailed")
            .field("failed", &self.failed)
            .field("rolled_back", &self.rolled_back)
            .field("members", &self.members)
            .finish()
    }
}

impl<P: Hooks> std::error::Error for GroupFailed<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.members[self.failed].fault())
    }
}

impl<P: Stateful> Drop for Prepared<'_, P> {
    fn drop(&mut self) {
        if self.next.is_some() {
            // Dropped unused: an abort.
            drop(self.aborted());
        }
        // The turn goes last: a waiting reload starts only after this one
        // is entirely over.
        self.turn.take();
    }
}

impl<P: Stateful> fmt::Debug for Prepared<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("plugin", &self.slot.name())
            .field("from_generation", &self.from_generation)
            .field("mode", &self.options.mode)
            .finish_non_exhaustive()
    }
}

/// Open while a quiesced commit holds the gate closed; reopens it on the
/// old version (roll back) when dropped armed, including by unwinding.
struct Quiesce<'s, P: Hooks> {
    shared: &'s Shared<P>,
    armed: bool,
}

impl<P: Hooks> Quiesce<'_, P> {
    /// Ends the quiesce; `roll_back` reopens the gate on the old version
    /// (otherwise the caller already cut over, which opened it).
    fn finish(mut self, roll_back: bool) {
        self.armed = roll_back;
    }
}

impl<P: Hooks> Drop for Quiesce<'_, P> {
    fn drop(&mut self) {
        let shared = self.shared;
        {
            let mut writer = shared.writer.lock();
            if self.armed {
                open_gate(&shared.current);
            }
            writer.quiescing = false;
        }
        // Condition first, then wake (see `waiters`). Release: a caller
        // that sees the gate open (Acquire) also sees the untagged pointer.
        shared.gate_closed.store(false, Ordering::Release);
        shared.gate.wake_all();
    }
}

/// The resources the old version hands over must each be declared by the
/// new one, as the same kind. (Schemas are checked on the real persisted
/// bytes, by `check_compat`, during the transfer.)
fn declared_compatible(old: &[Resource], new: &[Resource]) -> Result<(), ReloadFault> {
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            None => {
                return Err(ReloadFault::Resource {
                    resource: o.name.clone(),
                    reason: "the old version hands it over but the new one does not declare it"
                        .to_owned(),
                })
            }
            Some(n) if n.kind != o.kind => {
                return Err(ReloadFault::Resource {
                    resource: o.name.clone(),
                    reason: format!(
                        "a {} in the old version but a {} in the new",
                        o.kind, n.kind
                    ),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Moves state and resources from `old` (read only) to `new`. The old side
/// runs first and fills `salvage`, so a failure on the new side loses
/// nothing; `opened` lists what the new side opened or resumed, for the
/// caller to close on failure.
fn transfer<P: Stateful>(
    old: &P,
    old_generation: u64,
    new: &mut P,
    source: &StateSource,
    salvage: &mut Salvage,
    opened: &mut Vec<String>,
) -> Result<Transfer, ReloadFault> {
    let old_gen = Some(old_generation);
    // Old side: save, persist, checkpoint. `&P` only.
    let envelope = match source {
        StateSource::Old => save_envelope(old, old_gen)?,
        StateSource::Envelope(bytes) => Some(bytes.clone()),
    };
    salvage.state.clone_from(&envelope);
    let resources = run_ref_hook(old, Hook::Describe, old_gen, |p| Ok(p.resources()))?;
    let mut persisted = Vec::new();
    let mut positions = Vec::new();
    for r in &resources {
        match r.kind {
            ResourceKind::Index => {
                let bytes = run_ref_hook(old, Hook::Persist, old_gen, |p| p.persist(&r.name))?;
                salvage.persisted.push((r.name.clone(), bytes.clone()));
                persisted.push((r, bytes));
            }
            ResourceKind::Stream => {
                let at = run_ref_hook(old, Hook::Checkpoint, old_gen, |p| p.checkpoint(&r.name))?;
                salvage.checkpoints.push((r.name.clone(), at));
                positions.push((r, at));
            }
        }
    }
    // New side: migrate and restore the state, then open and resume.
    let mut report = Transfer {
        resources: resources.clone(),
        ..Transfer::default()
    };
    if let Some(envelope) = &envelope {
        report.state_bytes = envelope.len();
        let saved = SavedState::decode(envelope)?;
        let target = run_hook(new, Hook::Describe, None, |p| Ok(p.schema()))?;
        if saved.schema > target {
            return Err(EnvelopeError::UnknownSchema {
                found: saved.schema,
                known: target,
            }
            .into());
        }
        let (mut schema, mut bytes) = (saved.schema, saved.bytes);
        while schema < target {
            let from = schema;
            let (to, out) = run_hook(new, Hook::Migrate, None, |p| p.migrate(from, bytes))?;
            if to <= from || to > target {
                return Err(ReloadFault::Migration { from, to, target });
            }
            report.migration_steps += 1;
            (schema, bytes) = (to, out);
        }
        run_hook(new, Hook::Restore, None, |p| p.restore(&bytes))?;
        report.state = Some((saved.schema, target));
    }
    let declared = run_hook(new, Hook::Describe, None, |p| Ok(p.resources()))?;
    declared_compatible(&resources, &declared)?;
    for (r, bytes) in &persisted {
        run_hook(new, Hook::CheckCompat, None, |p| p.check_compat(r, bytes))?;
        run_hook(new, Hook::Open, None, |p| p.open(&r.name, bytes))?;
        opened.push(r.name.clone());
    }
    for (r, at) in &positions {
        run_hook(new, Hook::Resume, None, |p| p.resume(&r.name, *at))?;
        opened.push(r.name.clone());
    }
    Ok(report)
}

/// `save` on `plugin`, its bytes put in the library's envelope (`None` if
/// it has no state). The one place state leaves a version.
pub(crate) fn save_envelope<P: Stateful>(
    plugin: &P,
    generation: Option<u64>,
) -> Result<Option<Vec<u8>>, HookFailure> {
    run_ref_hook(plugin, Hook::Save, generation, |p| {
        Ok(p.save()?
            .map(|bytes| SavedState::new(p.schema(), bytes).encode()))
    })
}

/// Closes, newest first, what the new version opened or resumed. A panic in
/// `close` is contained: the reload is failing already, and the old
/// version's resources are not the new one's to touch.
fn close_opened<P: Stateful>(new: &mut P, opened: &mut Vec<String>) {
    while let Some(name) = opened.pop() {
        let _ = catch_unwind(AssertUnwindSafe(|| new.close(&name)));
    }
}
