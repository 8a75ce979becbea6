//! L2, S4: a drain with a deadline racing the last release either finishes
//! or hands the version back, still draining; waiting again then finishes.
//! Shutdown runs exactly once either way.
#![cfg(loom)]

mod loom_support;
use loom_support::{detach, model, ready, slot, Explored, Tally};
use reload_core::DrainError;

#[test]
fn a_deadline_racing_the_last_release() {
    static EXPLORED: Explored = Explored::new();
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        // SAFETY: the releaser is joined below, before `slot` is dropped.
        let lease = unsafe { detach(slot.enter().expect("open")) };
        let old = slot.replace(ready(2, &tally)).expect("open");
        let releaser = loom::thread::spawn(move || {
            assert_eq!(lease.call(), 1);
            drop(lease);
        });
        // Under loom a bounded park counts as expired at once, and the
        // release may come before the last look or after it: both
        // outcomes are explored (and counted).
        let removed = match old.wait_deadline(std::time::Instant::now()) {
            Ok(removed) => {
                EXPLORED.saw(true);
                removed
            }
            Err(DrainError::TimedOut(again)) => {
                EXPLORED.saw(false);
                assert_eq!(tally.shutdowns(), 0, "no shutdown before the drain");
                again.wait().expect("shutdown ok")
            }
            Err(DrainError::Shutdown(e)) => panic!("{e}"),
        };
        releaser.join().expect("releaser");
        assert_eq!(removed.report().generation, 1);
        assert_eq!(tally.shutdowns(), 1);
    });
    EXPLORED.assert_both(["drained in time", "timed out"]);
}
