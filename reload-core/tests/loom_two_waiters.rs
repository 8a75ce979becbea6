//! L1 with many waiters: two threads wait on one draining version, one with
//! no deadline and one whose deadline races the last release. The last
//! release wakes every waiter (a waiter left parked is a loom deadlock), and
//! the waiter that gives up takes out only its own registration. Shutdown
//! then runs exactly once, after every call.
#![cfg(loom)]

mod loom_support;
use std::sync::Arc;

use loom_support::{model, ready, slot, Tally};

#[test]
fn two_waiters_one_with_a_deadline_racing_the_release() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let lease = slot.enter().expect("open");
        let old = Arc::new(slot.replace(ready(2, &tally)).expect("open"));
        let patient = {
            let old = Arc::clone(&old);
            loom::thread::spawn(move || old.wait_drained(None))
        };
        let hasty = {
            let old = Arc::clone(&old);
            // Under loom a bounded park yields once and then counts as
            // expired, so both a wake and a give-up are explored.
            loom::thread::spawn(move || {
                let drained = old.wait_drained(Some(std::time::Instant::now()));
                (drained, old.in_flight())
            })
        };
        assert_eq!(lease.call(), 1);
        drop(lease);
        assert!(patient.join().expect("patient waiter"), "woken, drained");
        let (drained, in_flight) = hasty.join().expect("hasty waiter");
        if drained {
            assert_eq!(in_flight, 0, "a waiter told `drained` sees no lease");
        }
        let old = Arc::try_unwrap(old).unwrap_or_else(|_| panic!("joined"));
        assert_eq!(tally.shutdowns(), 0, "no shutdown before the host asks");
        let removed = old.try_finalize().unwrap_or_else(|_| panic!("drained"));
        assert_eq!(removed.report().generation, 1);
        assert_eq!(tally.shutdowns(), 1);
    });
}
