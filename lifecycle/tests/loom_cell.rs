//! `AtomicPhase` under loom: two threads racing the same transition (as two
//! owners of a version would, if the library ever let them): exactly one
//! moves the phase, the other is told the phase it found. A transition by
//! load-then-store would let both succeed.
#![cfg(loom)]

use lifecycle::{AtomicPhase, Phase, PhaseError};
use loom::sync::Arc;

#[test]
fn one_of_two_racing_transitions_wins() {
    loom::model(|| {
        let cell = Arc::new(AtomicPhase::new(Phase::Active));
        let other = {
            let cell = Arc::clone(&cell);
            loom::thread::spawn(move || cell.transition(Phase::Active, Phase::Draining))
        };
        let mine = cell.transition(Phase::Active, Phase::Draining);
        let theirs = other.join().expect("other");
        let stale = PhaseError::Stale {
            expected: Phase::Active,
            actual: Phase::Draining,
            to: Phase::Draining,
        };
        match (mine, theirs) {
            (Ok(()), Err(e)) | (Err(e), Ok(())) => assert_eq!(e, stale),
            both => panic!("exactly one transition must win: {both:?}"),
        }
        assert_eq!(cell.load(), Phase::Draining);
    });
}
