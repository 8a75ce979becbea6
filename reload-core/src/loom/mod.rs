//! One place that chooses the primitives of the drain path: the standard
//! library (and parking_lot) normally, loom's models under `--cfg loom`.
//!
//! Everything concurrent in [`crate::drain`] and [`crate::slot`] comes from
//! here, so the code loom checks is the code that ships. The shape follows
//! tokio's `src/loom/`: `std.rs` and `mocked.rs` export the same names.

#[cfg(not(loom))]
mod fences;
#[cfg(not(loom))]
mod std;
#[cfg(not(loom))]
pub(crate) use self::std::*;

#[cfg(loom)]
mod mocked;
#[cfg(loom)]
pub(crate) use self::mocked::*;

/// What a bounded park reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parked {
    /// Returned before the deadline: woken, or spuriously. Look again.
    Early,
    /// The deadline has passed.
    Expired,
}

/// The fence pair a process's call path uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FenceMode {
    /// Callers issue a compiler fence; a reloader issues
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` per drain check (the
    /// first look of a wait, each poll of a drain future, `try_finalize`,
    /// each orphan a reap looks at). No locked instruction on the call
    /// path.
    Asymmetric,
    /// Both sides issue `fence(SeqCst)` (one locked instruction each): no
    /// `membarrier` on this system, or `RELOAD_CORE_FENCES=symmetric`, or
    /// no slot was created yet.
    Symmetric,
}
