//! The drain that counts references nobody holds.
//!
//! The slot keeps each version in an `Arc` and "drains" by waiting for the
//! old `Arc`'s strong count to fall back to one, but calls never clone that
//! `Arc`: they take a raw pointer (or a borrow of an inner field). The count
//! is already one at the cut-over, the drain returns at once, and shutdown
//! runs under a live call.

use lifecycle::Phase;
use stateright::{Model, Property};

use crate::protocol::NO_CALL_INTO_FINALIZED;

/// The broken system.
#[derive(Clone, Debug)]
pub struct PhantomRefsSys {
    /// Calling threads, one call each.
    pub workers: u8,
}

/// A caller's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// About to load the pointer.
    Start,
    /// Holds a raw pointer to version `v` (no count taken).
    Loaded(u8),
    /// Finished.
    Done,
}

/// The reloader's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reloader {
    /// About to swap.
    Start,
    /// Swapped; waiting for the old version's reference count to reach one.
    Swapped,
    /// The count read one; about to shut down.
    Drained,
    /// Finished.
    Done,
}

/// The state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PhantomState {
    /// The current version.
    pub current: u8,
    /// Each version's phase.
    pub phases: [Phase; 2],
    /// Each version's reference count (the slot's own reference).
    pub refs: [u8; 2],
    /// The callers.
    pub callers: Vec<Caller>,
    /// The reloader.
    pub reloader: Reloader,
    /// Witness: a call ran on a removed version.
    pub call_after_shutdown: bool,
}

/// Steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhantomAction {
    /// Load the current version's pointer (no count).
    WorkerLoad(u8),
    /// Call through it.
    WorkerCall(u8),
    /// Swap the pointer; the slot drops its reference to the old version
    /// and keeps the one held by the draining handle.
    ReloaderSwap,
    /// Observe the old version's count at one.
    ReloaderWaitRefs,
    /// Shut the old version down.
    ReloaderFinalize,
}

impl Model for PhantomRefsSys {
    type State = PhantomState;
    type Action = PhantomAction;

    fn init_states(&self) -> Vec<PhantomState> {
        vec![PhantomState {
            current: 0,
            phases: [Phase::Active, Phase::Initialized],
            refs: [1, 1],
            callers: vec![Caller::Start; usize::from(self.workers)],
            reloader: Reloader::Start,
            call_after_shutdown: false,
        }]
    }

    fn actions(&self, s: &PhantomState, actions: &mut Vec<PhantomAction>) {
        for (w, c) in s.callers.iter().enumerate() {
            let w = w as u8;
            match c {
                Caller::Start => actions.push(PhantomAction::WorkerLoad(w)),
                Caller::Loaded(_) => actions.push(PhantomAction::WorkerCall(w)),
                Caller::Done => {}
            }
        }
        match s.reloader {
            Reloader::Start => actions.push(PhantomAction::ReloaderSwap),
            Reloader::Swapped if s.refs[0] == 1 => actions.push(PhantomAction::ReloaderWaitRefs),
            Reloader::Drained => actions.push(PhantomAction::ReloaderFinalize),
            _ => {}
        }
    }

    fn next_state(&self, last: &PhantomState, action: PhantomAction) -> Option<PhantomState> {
        let mut s = last.clone();
        match action {
            PhantomAction::WorkerLoad(w) => s.callers[usize::from(w)] = Caller::Loaded(s.current),
            PhantomAction::WorkerCall(w) => {
                let Caller::Loaded(v) = s.callers[usize::from(w)] else {
                    return None;
                };
                if s.phases[usize::from(v)] == Phase::Removed {
                    s.call_after_shutdown = true;
                }
                s.callers[usize::from(w)] = Caller::Done;
            }
            PhantomAction::ReloaderSwap => {
                s.current = 1;
                s.phases = [Phase::Draining, Phase::Active];
                s.reloader = Reloader::Swapped;
            }
            PhantomAction::ReloaderWaitRefs => s.reloader = Reloader::Drained,
            PhantomAction::ReloaderFinalize => {
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
