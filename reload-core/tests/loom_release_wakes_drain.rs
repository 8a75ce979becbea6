//! L1 and S1: the release that brings the count to zero wakes a drain
//! parked on another thread (no lost wake-up), and no earlier release ends
//! the drain. The waiter parks with no deadline, so a lost wake-up leaves it
//! parked forever, which loom reports as a deadlock; a drain that ended on
//! the first of two releases would shut down under the second call, which
//! the witness plugin reports.
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, Tally};

#[test]
fn only_the_last_release_ends_a_blocked_drain() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let first = slot.enter().expect("open");
        let second = slot.enter().expect("open");
        let old = slot.replace(ready(2, &tally)).expect("open");
        // The waiter registers, sums and parks in every order relative to
        // the releases below.
        let waiter = loom::thread::spawn(move || old.wait().ok().map(|r| r.report().generation));
        assert_eq!(first.call(), 1);
        drop(first);
        assert_eq!(second.call(), 1);
        drop(second);
        assert_eq!(waiter.join().expect("waiter"), Some(1));
        assert_eq!(tally.shutdowns(), 1);
    });
}
