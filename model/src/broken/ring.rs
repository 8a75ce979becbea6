//! The 8-slot epoch ring counter.
//!
//! A caller reads the global epoch, then increments `ring[epoch % 8]` (two
//! steps), then loads the plugin pointer. A reload advances the epoch,
//! waits for the previous epoch's slot to reach zero, and only then swaps
//! the pointer and shuts the old version down. A caller that read the epoch
//! before the advance but increments after the drain looked slips past it,
//! loads the old pointer (not yet swapped) and calls it after shutdown.
//! (After eight reloads the slots also alias; the model does not need to get
//! that far to fail.)

use lifecycle::Phase;
use stateright::{Model, Property};

use crate::protocol::NO_CALL_INTO_FINALIZED;

/// Ring size of the designs this models.
pub const RING: u8 = 8;

/// The broken system: workers each make one call, one reload.
#[derive(Clone, Debug)]
pub struct RingSys {
    /// Calling threads.
    pub workers: u8,
}

/// A caller's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// About to read the epoch.
    Start,
    /// Read epoch `e`.
    ReadEpoch(u8),
    /// Incremented `ring[e % 8]`.
    Counted(u8),
    /// Loaded version `v`, counted in slot `e`.
    Loaded(u8, u8),
    /// Called; about to decrement slot `e`.
    Called(u8),
    /// Finished.
    Done,
}

/// The reloader's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reloader {
    /// About to advance the epoch.
    Start,
    /// Advanced from `e`; waiting for `ring[e % 8]` to reach zero.
    Draining(u8),
    /// The old epoch's slot read zero; about to swap.
    Drained,
    /// Swapped; about to shut the old version down.
    Swapped,
    /// Finished.
    Done,
}

/// The state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RingState {
    /// The global epoch.
    pub epoch: u8,
    /// The ring of counters.
    pub ring: [u8; RING as usize],
    /// The current version (0 old, 1 new).
    pub current: u8,
    /// Each version's phase.
    pub phases: [Phase; 2],
    /// The callers.
    pub callers: Vec<Caller>,
    /// The reloader.
    pub reloader: Reloader,
    /// Witness: a call ran on a removed version.
    pub call_after_shutdown: bool,
}

/// Steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingAction {
    /// Read the global epoch.
    WorkerReadEpoch(u8),
    /// Increment `ring[epoch % 8]`.
    WorkerIncrement(u8),
    /// Load the plugin pointer.
    WorkerLoad(u8),
    /// Call it.
    WorkerCall(u8),
    /// Decrement the slot.
    WorkerDecrement(u8),
    /// Advance the epoch.
    ReloaderAdvance,
    /// Observe the old slot at zero.
    ReloaderWaitZero,
    /// Swap the pointer.
    ReloaderSwap,
    /// Shut the old version down.
    ReloaderFinalize,
}

impl Model for RingSys {
    type State = RingState;
    type Action = RingAction;

    fn init_states(&self) -> Vec<RingState> {
        vec![RingState {
            epoch: 0,
            ring: [0; RING as usize],
            current: 0,
            phases: [Phase::Active, Phase::Initialized],
            callers: vec![Caller::Start; usize::from(self.workers)],
            reloader: Reloader::Start,
            call_after_shutdown: false,
        }]
    }

    fn actions(&self, s: &RingState, actions: &mut Vec<RingAction>) {
        for (w, c) in s.callers.iter().enumerate() {
            let w = w as u8;
            actions.push(match c {
                Caller::Start => RingAction::WorkerReadEpoch(w),
                Caller::ReadEpoch(_) => RingAction::WorkerIncrement(w),
                Caller::Counted(_) => RingAction::WorkerLoad(w),
                Caller::Loaded(..) => RingAction::WorkerCall(w),
                Caller::Called(_) => RingAction::WorkerDecrement(w),
                Caller::Done => continue,
            });
        }
        match s.reloader {
            Reloader::Start => actions.push(RingAction::ReloaderAdvance),
            Reloader::Draining(e) if s.ring[usize::from(e % RING)] == 0 => {
                actions.push(RingAction::ReloaderWaitZero)
            }
            Reloader::Drained => actions.push(RingAction::ReloaderSwap),
            Reloader::Swapped => actions.push(RingAction::ReloaderFinalize),
            _ => {}
        }
    }

    fn next_state(&self, last: &RingState, action: RingAction) -> Option<RingState> {
        let mut s = last.clone();
        match action {
            RingAction::WorkerReadEpoch(w) => {
                s.callers[usize::from(w)] = Caller::ReadEpoch(s.epoch)
            }
            RingAction::WorkerIncrement(w) => {
                let Caller::ReadEpoch(e) = s.callers[usize::from(w)] else {
                    return None;
                };
                s.ring[usize::from(e % RING)] += 1;
                s.callers[usize::from(w)] = Caller::Counted(e);
            }
            RingAction::WorkerLoad(w) => {
                let Caller::Counted(e) = s.callers[usize::from(w)] else {
                    return None;
                };
                s.callers[usize::from(w)] = Caller::Loaded(e, s.current);
            }
            RingAction::WorkerCall(w) => {
                let Caller::Loaded(e, v) = s.callers[usize::from(w)] else {
                    return None;
                };
                if s.phases[usize::from(v)] == Phase::Removed {
                    s.call_after_shutdown = true;
                }
                s.callers[usize::from(w)] = Caller::Called(e);
            }
            RingAction::WorkerDecrement(w) => {
                let Caller::Called(e) = s.callers[usize::from(w)] else {
                    return None;
                };
                s.ring[usize::from(e % RING)] -= 1;
                s.callers[usize::from(w)] = Caller::Done;
            }
            RingAction::ReloaderAdvance => {
                s.reloader = Reloader::Draining(s.epoch);
                s.epoch += 1;
            }
            RingAction::ReloaderWaitZero => s.reloader = Reloader::Drained,
            RingAction::ReloaderSwap => {
                s.phases = [Phase::Draining, Phase::Active];
                s.current = 1;
                s.reloader = Reloader::Swapped;
            }
            RingAction::ReloaderFinalize => {
                s.phases[0] = Phase::Removed;
                s.reloader = Reloader::Done;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![Property::<Self>::always(NO_CALL_INTO_FINALIZED, |_, s| {
            !s.call_after_shutdown
        })]
    }
}
