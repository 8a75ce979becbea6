//! One place that chooses the primitives of the drain path: the standard
//! library (and parking_lot) normally, loom's models under `--cfg loom`.
//!
//! Everything concurrent in [`crate::drain`] and [`crate::slot`] comes from
//! here, so the code loom checks is the code that ships. The shape follows
//! tokio's `src/loom/`: `std.rs` and `mocked.rs` export the same names.

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
