//! Group commits ([`Prepared::commit_together`]): several slots' reloads
//! cut over as one, all or none, and [`GroupFailed`] when none did.

use std::fmt;
use std::time::Instant;

use super::{Committed, Prepared};
use crate::error::ReloadFault;
use crate::handback::ReloadError;
use crate::options::Mode;
use crate::stateful::Stateful;
use crate::transfer::close_opened;
use crate::Hooks;

impl<'s, P: Stateful> Prepared<'s, P> {
    /// Commits `group` together, as one cut-over: every slot's gate closes
    /// (in the group's order), the quiesced members drain and carry their
    /// state over, and only when all of them are ready does each cut over,
    /// in order, opening its gate. If any member fails, every gate reopens
    /// on its old version and every member is handed back: all commit, or
    /// none does.
    ///
    /// Order the group dependencies first: a caller that leases across the
    /// group's slots (as a registry call
    /// does) then meets either all old versions or, waiting at a gate, all
    /// new ones. Immediate members carried their state at prepare; they
    /// are gated here only for the instant between the first and the last
    /// cut-over.
    ///
    /// # Errors
    ///
    /// [`GroupFailed`], with one [`ReloadError`] per member in the group's
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
}

/// A group commit ([`Prepared::commit_together`]) that did not happen:
/// every old version serves on, and every member's new version comes back.
pub struct GroupFailed<P: Hooks> {
    /// Index, in the group, of the member whose step failed.
    pub failed: usize,
    /// Whether gates had closed (and reopened on the old versions).
    pub rolled_back: bool,
    /// One per member, in the group's order.
    pub members: Vec<ReloadError<P>>,
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
