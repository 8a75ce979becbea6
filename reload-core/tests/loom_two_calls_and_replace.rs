//! S1, S3: two overlapping calls on one thread race a replace. Each lease
//! lands on the old or the new version (possibly one on each); neither is
//! refused because of the reload, and the old version's drain waits for
//! whichever leases it got.
//!
//! (Two calling threads plus the reloader do not finish within CI's loom
//! budget even at one preemption; overlapping leases on one thread keep the
//! interesting case, leases on both sides of the cut-over, in two threads.)
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, Tally};

#[test]
fn two_calls_and_a_replace() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                // S3: enter never fails because a reload is in progress.
                let first = slot.enter().expect("open");
                let second = slot.enter().expect("open");
                let a = first.call();
                // The second call runs after the first lease is given back:
                // a drain that finalized on that release would be caught.
                drop(first);
                let b = second.call();
                drop(second);
                (a, b)
            })
        };
        let old = slot.replace(ready(2, &tally)).expect("open");
        drop(old.wait().expect("shutdown ok"));
        let (a, b) = caller.join().expect("caller");
        // Leases are taken in order, so the second is never older.
        assert!(matches!((a, b), (1, 1) | (1, 2) | (2, 2)), "{a} {b}");
        assert_eq!(tally.calls.load(loom::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(tally.shutdowns(), 1);
    });
}
