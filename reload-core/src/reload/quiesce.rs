//! The quiesced commit (Q1-Q6 in `docs/drain.md`): close the gate, drain
//! the old version while it is still current, carry its state and
//! resources over with no call running, cut over. The [`Quiesce`] guard
//! reopens the gate on the old version if anything fails or unwinds.

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::{Committed, Prepared};
use crate::drain::{close_gate, cut_over, open_gate, Version};
use crate::error::ReloadFault;
use crate::loom::Ordering;
use crate::shared::Shared;
use crate::stateful::Stateful;
use crate::transfer::{close_opened, transfer, Transfer};
use crate::Hooks;

impl<'s, P: Stateful> Prepared<'s, P> {
    pub(super) fn commit_quiesced(
        &mut self,
        timeout: Duration,
    ) -> Result<Committed<P>, (ReloadFault, bool)> {
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
    pub(super) fn close_gate(&self) -> Result<(Quiesce<'s, P>, NonNull<Version<P>>), ReloadFault> {
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
        debug_assert_eq!(unsafe { old.as_ref() }.generation(), self.from_generation);
        Ok((
            Quiesce {
                shared,
                armed: true,
            },
            old,
        ))
    }

    /// Q3: waits, parked, for the last lease on the gated old version.
    pub(super) fn drain_old(
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
    pub(super) fn carry_over(&mut self, old: NonNull<Version<P>>) -> Result<Transfer, ReloadFault> {
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
    pub(super) fn cut(
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
        let version = self.take_next_version(&mut writer, generation);
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
}

/// Open while a quiesced commit holds the gate closed; reopens it on the
/// old version (roll back) when dropped armed, including by unwinding.
pub(super) struct Quiesce<'s, P: Hooks> {
    shared: &'s Shared<P>,
    armed: bool,
}

impl<P: Hooks> Quiesce<'_, P> {
    /// Ends the quiesce; `roll_back` reopens the gate on the old version
    /// (otherwise the caller already cut over, which opened it).
    pub(super) fn finish(mut self, roll_back: bool) {
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
