//! The plugin lifecycle, once, as data.
//!
//! A plugin version moves through six phases along five edges:
//!
//! ```text
//! Loaded -> Linked -> Initialized -> Active -> Draining -> Removed
//! ```
//!
//! This crate is the single place those phases and edges are written down.
//! The typestate API in `reload-core`, its runtime phase cell, the
//! `stateright` model, the proptest reference model and the fuzz harness all
//! ask [`Phase::can_transition_to`] (or walk [`EDGES`]); none keeps a copy.
//! Change the table here and every checker checks the new lifecycle.
//!
//! ```
//! use lifecycle::{Phase, EDGES};
//!
//! assert!(Phase::Active.can_transition_to(Phase::Draining));
//! assert!(!Phase::Draining.can_transition_to(Phase::Active));
//! assert_eq!(EDGES.len(), 5);
//! assert_eq!(Phase::Loaded.successor(), Some(Phase::Linked));
//! ```
//!
//! The runtime side holds a version's phase in an [`AtomicPhase`], which
//! changes only by compare-and-swap along a legal edge: a transition that
//! is illegal, or whose starting phase is no longer current, is a typed
//! [`PhaseError`] naming both phases. There is no check-then-set anywhere.
//!
//! The table, drawn ([`mermaid`] renders it; a snapshot test pins it):
//!
//! ```text
//! stateDiagram-v2
//!     [*] --> Loaded
//!     Loaded --> Linked
//!     Linked --> Initialized
//!     Initialized --> Active
//!     Active --> Draining
//!     Draining --> Removed
//!     Removed --> [*]
//! ```

use core::fmt;

mod cell;
pub use cell::AtomicPhase;

/// One phase of a plugin version's life.
///
/// The discriminants are the phases' positions in [`Phase::ALL`]; they are
/// what an [`AtomicPhase`] stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// The code and data are in memory; nothing has been resolved yet.
    Loaded = 0,
    /// Entry points are resolved (symbols bound, dependencies found).
    Linked = 1,
    /// The plugin's `init` hook ran and succeeded; it can serve once installed.
    Initialized = 2,
    /// The current version of a slot: new calls reach it.
    Active = 3,
    /// Replaced or closed: no new call reaches it; calls already in flight finish.
    Draining = 4,
    /// Drained and shut down. Terminal.
    Removed = 5,
}

/// The legal edges of the lifecycle, in order. This is the table.
pub const EDGES: [(Phase, Phase); 5] = [
    (Phase::Loaded, Phase::Linked),
    (Phase::Linked, Phase::Initialized),
    (Phase::Initialized, Phase::Active),
    (Phase::Active, Phase::Draining),
    (Phase::Draining, Phase::Removed),
];

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 6] = [
        Phase::Loaded,
        Phase::Linked,
        Phase::Initialized,
        Phase::Active,
        Phase::Draining,
        Phase::Removed,
    ];

    /// Whether `self -> to` is an edge of [`EDGES`].
    ///
    /// A `const fn`, so that `reload-core` can check each typestate edge
    /// against this table at compile time.
    pub const fn can_transition_to(self, to: Phase) -> bool {
        let mut i = 0;
        while i < EDGES.len() {
            if EDGES[i].0 as u8 == self as u8 && EDGES[i].1 as u8 == to as u8 {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The phase this one may move to, if any (the lifecycle is a path, so
    /// there is at most one).
    pub const fn successor(self) -> Option<Phase> {
        let mut i = 0;
        while i < EDGES.len() {
            if EDGES[i].0 as u8 == self as u8 {
                return Some(EDGES[i].1);
            }
            i += 1;
        }
        None
    }

    /// Whether no edge leaves this phase.
    pub const fn is_terminal(self) -> bool {
        self.successor().is_none()
    }

    /// The phase's name, as [`fmt::Display`] prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Loaded => "Loaded",
            Phase::Linked => "Linked",
            Phase::Initialized => "Initialized",
            Phase::Active => "Active",
            Phase::Draining => "Draining",
            Phase::Removed => "Removed",
        }
    }

    /// The phase stored as `byte`, or an error for a byte that names none.
    #[inline]
    pub const fn from_u8(byte: u8) -> Result<Phase, InvalidPhase> {
        if (byte as usize) < Phase::ALL.len() {
            Ok(Phase::ALL[byte as usize])
        } else {
            Err(InvalidPhase(byte))
        }
    }

    /// Whether `path` (a version's phase history) starts at
    /// [`Phase::Loaded`] and follows only legal edges. The empty path is
    /// not a history.
    pub fn is_legal_path(path: &[Phase]) -> bool {
        path.first() == Some(&Phase::Loaded)
            && path.windows(2).all(|w| w[0].can_transition_to(w[1]))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A byte that is not the discriminant of any [`Phase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a lifecycle phase (expected 0..=5)")]
pub struct InvalidPhase(pub u8);

/// Why a phase transition was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhaseError {
    /// `from -> to` is not an edge of the lifecycle.
    #[error("illegal lifecycle transition {from} -> {to}")]
    Illegal {
        /// The phase the caller expected to leave.
        from: Phase,
        /// The phase the caller asked for.
        to: Phase,
    },
    /// The edge is legal, but the cell was no longer in `expected`: someone
    /// else moved it first (the caller's view was stale).
    #[error("stale lifecycle transition {expected} -> {to}: the phase is {actual}")]
    Stale {
        /// The phase the caller expected to leave.
        expected: Phase,
        /// The phase the cell actually held.
        actual: Phase,
        /// The phase the caller asked for.
        to: Phase,
    },
}

/// The lifecycle as a Mermaid state diagram, generated from [`EDGES`].
pub fn mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    out.push_str(&format!("    [*] --> {}\n", Phase::ALL[0]));
    for (from, to) in EDGES {
        out.push_str(&format!("    {from} --> {to}\n"));
    }
    for phase in Phase::ALL.iter().filter(|p| p.is_terminal()) {
        out.push_str(&format!("    {phase} --> [*]\n"));
    }
    out
}

/// The lifecycle as a Graphviz DOT digraph, generated from [`EDGES`].
pub fn dot() -> String {
    let mut out = String::from("digraph lifecycle {\n    rankdir=LR;\n");
    for phase in Phase::ALL {
        let shape = if phase.is_terminal() {
            "doublecircle"
        } else {
            "circle"
        };
        out.push_str(&format!("    {phase} [shape={shape}];\n"));
    }
    for (from, to) in EDGES {
        out.push_str(&format!("    {from} -> {to};\n"));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
            assert_eq!(Phase::from_u8(i as u8), Ok(*p));
        }
        assert_eq!(Phase::from_u8(6), Err(InvalidPhase(6)));
        assert_eq!(Phase::from_u8(255), Err(InvalidPhase(255)));
    }

    #[test]
    fn can_transition_to_is_exactly_the_table() {
        let mut legal = 0;
        for from in Phase::ALL {
            for to in Phase::ALL {
                let expected = EDGES.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
                legal += usize::from(expected);
            }
        }
        assert_eq!(legal, 5);
    }

    #[test]
    fn the_lifecycle_is_one_path_from_loaded_to_removed() {
        let mut path = vec![Phase::Loaded];
        while let Some(next) = path.last().and_then(|p| p.successor()) {
            path.push(next);
        }
        assert_eq!(path, Phase::ALL);
        assert!(Phase::is_legal_path(&path));
        assert!(Phase::Removed.is_terminal());
        assert_eq!(Phase::ALL.iter().filter(|p| p.is_terminal()).count(), 1);
    }

    #[test]
    fn illegal_paths_are_refused() {
        assert!(!Phase::is_legal_path(&[]));
        assert!(!Phase::is_legal_path(&[Phase::Linked]));
        assert!(!Phase::is_legal_path(&[Phase::Loaded, Phase::Active]));
        assert!(!Phase::is_legal_path(&[
            Phase::Loaded,
            Phase::Linked,
            Phase::Linked
        ]));
        assert!(Phase::is_legal_path(&[Phase::Loaded]));
    }

    #[test]
    fn mermaid_diagram_is_pinned() {
        insta::assert_snapshot!("lifecycle_mermaid", mermaid());
    }

    #[test]
    fn dot_diagram_is_pinned() {
        insta::assert_snapshot!("lifecycle_dot", dot());
    }

    #[test]
    fn crate_docs_embed_the_rendered_diagram() {
        // The picture in the crate docs (and in docs/) is the rendered table,
        // not a hand-drawn copy that could drift.
        let docs = include_str!("lib.rs");
        for line in mermaid().lines() {
            assert!(
                docs.contains(&format!("//!     {}", line.trim())) || line.starts_with("state")
            );
        }
        let design = include_str!("../../docs/lifecycle.md");
        assert!(
            design.contains(&mermaid()),
            "docs/lifecycle.md must embed mermaid() verbatim"
        );
    }
}
