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
use std::time::{Duration, Instant};

use crate::drain::{cut_over, Unpublished};
use crate::error::ReloadFault;
use crate::events::{Event, Proposal};
use crate::handback::{ReloadError, Returned};
use crate::hooks::{label, name_of, run_ref_hook, Hook};
use crate::options::{Mode, ReloadOptions};
use crate::plugin::ReadyError;
use crate::shared::{Shared, Writer};
use crate::state::{Initialized, Loaded};
use crate::stateful::Stateful;
use crate::stats::Counters;
use crate::transfer::{close_opened, declared_compatible, transfer, Salvage, Transfer};
use crate::{Hooks, Plugin, Slot};

mod group;
mod outcome;
mod quiesce;

pub use group::GroupFailed;
pub use outcome::Committed;

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
    /// [`ReloadError`] with the new version in the phase it reached and
    /// whatever was taken from the old one; the slot serves on unchanged.
    /// Its fault: [`ReloadFault::InProgress`] if another reload holds the
    /// turn (unless [`ReloadOptions::wait_for_turn`] was given, then only
    /// once that timeout passed); [`ReloadFault::Closed`];
    /// [`ReloadFault::WrongPlugin`]; [`ReloadFault::Hook`] if a hook of
    /// either version failed or panicked (`name`, `link`, `init`,
    /// `resources`, and in immediate mode the transfer's); in immediate
    /// mode also [`ReloadFault::Envelope`], [`ReloadFault::Migration`] or
    /// [`ReloadFault::Resource`] from the transfer; [`ReloadFault::Vetoed`]
    /// if a listener vetoed it.
    pub fn prepare(
        &self,
        next: Plugin<P, Loaded>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<Prepared<'_, P>, ReloadError<P>> {
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
    ) -> ReloadError<P> {
        let shared = &*self.shared;
        Counters::bump(&shared.counters.failed_reloads);
        shared.emit(&Event::Failed {
            plugin: &shared.name,
            generation: self.generation(),
            rolled_back: false,
            error: &fault,
        });
        ReloadError::new(fault, plugin, salvage, &shared.name)
    }

    /// [`Slot::prepare`] with the turn already taken.
    pub(crate) fn prepare_in_turn<'s>(
        &'s self,
        turn: Turn<'s, P>,
        next: Plugin<P, Loaded>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<Prepared<'s, P>, ReloadError<P>> {
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
        let next = match next.ready(cx) {
            Ok(ready) => ready,
            Err(ReadyError::Link(e)) => {
                let (plugin, failure) = e.into_parts();
                return Err(fail(
                    failure.into(),
                    Returned::Loaded(plugin),
                    Salvage::default(),
                ));
            }
            Err(ReadyError::Init(e)) => {
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
    /// [`ReloadError`] with the new version (its opened resources closed)
    /// and the [`Salvage`]; the old version serves on with its state and
    /// resources as they were. Its fault: [`ReloadFault::Closed`] if the
    /// slot was closed meanwhile; in quiesced mode
    /// [`ReloadFault::DrainTimeout`], or the transfer's
    /// ([`ReloadFault::Hook`], [`ReloadFault::Envelope`],
    /// [`ReloadFault::Migration`], [`ReloadFault::Resource`]), after the
    /// gate reopened on the old version.
    pub fn commit(mut self) -> Result<Committed<P>, ReloadError<P>> {
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

    /// Takes the slot's turn out of this reload, for a caller that must
    /// keep other reloads of the slot out until it has published what this
    /// one committed (the registry's manifests): the turn then goes when
    /// the caller drops it, not when this reload ends.
    #[cfg(feature = "registry")]
    pub(crate) fn keep_turn(&mut self) -> Option<Turn<'s, P>> {
        self.turn.take()
    }

    fn take_next_version(&mut self, writer: &mut Writer<P>, generation: u64) -> Unpublished<P> {
        let Some(next) = self.next.take() else {
            unreachable!("taken once, by commit")
        };
        writer.shells.version(next.into_inner(), generation)
    }

    fn commit_immediate(&mut self) -> Result<Committed<P>, (ReloadFault, bool)> {
        let slot = self.slot;
        let shared = &*slot.shared;
        let mut writer = shared.writer.lock();
        if shared.is_closed() {
            return Err((ReloadFault::Closed, false));
        }
        let generation = writer.next_generation;
        let version = self.take_next_version(&mut writer, generation);
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
    fn failed(&mut self, fault: ReloadFault, rolled_back: bool) -> ReloadError<P> {
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
        ReloadError::new(fault, Returned::Initialized(next), salvage, &shared.name)
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
