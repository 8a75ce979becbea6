//! [`AtomicPhase`]: a version's phase, changed only by compare-and-swap
//! along an edge of the table.

#[cfg(loom)]
use loom::sync::atomic::AtomicU8;
#[cfg(not(loom))]
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering;

use crate::{Phase, PhaseError};

/// A phase shared between threads.
///
/// Reads are `Acquire` and transitions `AcqRel`: whoever observes a phase
/// also observes everything the thread that entered it did before (for
/// example, a reader that sees `Removed` sees the effects of the shutdown
/// hook). Callers that need more (the drain's store-buffering pattern)
/// add their own `SeqCst` fences around these accesses.
#[derive(Debug)]
pub struct AtomicPhase(AtomicU8);

impl AtomicPhase {
    /// A cell holding `phase`.
    pub fn new(phase: Phase) -> Self {
        AtomicPhase(AtomicU8::new(phase as u8))
    }

    /// The current phase.
    #[inline]
    pub fn load(&self) -> Phase {
        // Acquire: pairs with the AcqRel of `transition`, see the type docs.
        let byte = self.0.load(Ordering::Acquire);
        // Only `new` and `transition` store, and both store a `Phase`.
        Phase::from_u8(byte).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// Whether the current phase is `phase`: [`AtomicPhase::load`] without
    /// decoding the byte, for paths that run on every call.
    #[inline]
    pub fn is(&self, phase: Phase) -> bool {
        // Acquire, as `load`.
        self.0.load(Ordering::Acquire) == phase as u8
    }

    /// Moves `from -> to` if that is an edge of the lifecycle and the cell
    /// still holds `from`, as one compare-and-swap.
    ///
    /// # Errors
    ///
    /// [`PhaseError::Illegal`] if `from -> to` is not an edge (the cell is
    /// untouched); [`PhaseError::Stale`] if the cell held another phase.
    pub fn transition(&self, from: Phase, to: Phase) -> Result<(), PhaseError> {
        if !from.can_transition_to(to) {
            return Err(PhaseError::Illegal { from, to });
        }
        // AcqRel on success: Release publishes what the caller did in
        // `from`; Acquire sees what the previous transition published.
        // Acquire on failure: the error reports a phase we synchronised with.
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(|actual| PhaseError::Stale {
                expected: from,
                actual: Phase::from_u8(actual).unwrap_or_else(|e| unreachable!("{e}")),
                to,
            })
    }

    /// Starts the cell over for a new plugin: `Removed -> Loaded`, as one
    /// compare-and-swap. This is not an edge of the table (`Removed` is
    /// terminal for a plugin): the *cell* is reused, by a host that keeps a
    /// finalized plugin's storage for the next one (`reload-core` keeps its
    /// version memory type-stable this way, see its `docs/drain.md`). The
    /// new plugin then walks the edges from `Loaded` like any other.
    ///
    /// # Errors
    ///
    /// [`PhaseError::Stale`] if the cell did not hold `Removed` (a plugin
    /// still living in it is never overwritten).
    pub fn recycle(&self) -> Result<(), PhaseError> {
        // AcqRel on success: Acquire sees the shutdown that the `Removed`
        // transition published; Release publishes the reset to whoever
        // observes the new plugin's phases.
        self.0
            .compare_exchange(
                Phase::Removed as u8,
                Phase::Loaded as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(|actual| PhaseError::Stale {
                expected: Phase::Removed,
                actual: Phase::from_u8(actual).unwrap_or_else(|e| unreachable!("{e}")),
                to: Phase::Loaded,
            })
    }

    /// Moves to the successor of the current phase, whatever it is; returns
    /// the edge taken, or `None` in the terminal phase. Used by tests and
    /// tools that walk a cell along the whole lifecycle.
    pub fn advance(&self) -> Option<(Phase, Phase)> {
        loop {
            let from = self.load();
            let to = from.successor()?;
            if self.transition(from, to).is_ok() {
                return Some((from, to));
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn legal_transition_moves_the_cell() {
        let cell = AtomicPhase::new(Phase::Active);
        assert_eq!(cell.transition(Phase::Active, Phase::Draining), Ok(()));
        assert_eq!(cell.load(), Phase::Draining);
    }

    #[test]
    fn illegal_transition_names_both_phases_and_leaves_the_cell() {
        let cell = AtomicPhase::new(Phase::Draining);
        let err = cell
            .transition(Phase::Draining, Phase::Active)
            .expect_err("illegal");
        assert_eq!(
            err,
            PhaseError::Illegal {
                from: Phase::Draining,
                to: Phase::Active
            }
        );
        assert_eq!(
            err.to_string(),
            "illegal lifecycle transition Draining -> Active"
        );
        assert_eq!(cell.load(), Phase::Draining);
    }

    #[test]
    fn stale_transition_reports_the_actual_phase() {
        let cell = AtomicPhase::new(Phase::Removed);
        let err = cell
            .transition(Phase::Active, Phase::Draining)
            .expect_err("stale");
        assert_eq!(
            err,
            PhaseError::Stale {
                expected: Phase::Active,
                actual: Phase::Removed,
                to: Phase::Draining
            }
        );
        assert_eq!(cell.load(), Phase::Removed);
    }

    #[test]
    fn racing_transitions_have_exactly_one_winner() {
        let cell = AtomicPhase::new(Phase::Active);
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cell.transition(Phase::Active, Phase::Draining).is_ok()))
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap_or(false)))
                .sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(cell.load(), Phase::Draining);
    }

    #[test]
    fn recycle_starts_a_removed_cell_over_and_refuses_a_living_one() {
        let cell = AtomicPhase::new(Phase::Draining);
        assert_eq!(
            cell.recycle(),
            Err(PhaseError::Stale {
                expected: Phase::Removed,
                actual: Phase::Draining,
                to: Phase::Loaded
            })
        );
        assert_eq!(cell.load(), Phase::Draining);
        assert_eq!(cell.transition(Phase::Draining, Phase::Removed), Ok(()));
        assert_eq!(cell.recycle(), Ok(()));
        assert_eq!(cell.load(), Phase::Loaded);
        // The new plugin walks the table from the start.
        let mut edges = Vec::new();
        while let Some(edge) = cell.advance() {
            edges.push(edge);
        }
        assert_eq!(edges, crate::EDGES);
    }

    #[test]
    fn advance_walks_the_whole_table() {
        let cell = AtomicPhase::new(Phase::Loaded);
        let mut edges = Vec::new();
        while let Some(edge) = cell.advance() {
            edges.push(edge);
        }
        assert_eq!(edges, crate::EDGES);
    }
}
