//! S1, L1 for the counts of the lock-free call path: a thread counts its
//! leases on its own shard's word with a plain load and store, so nobody
//! else may write that word; a lease given back on another thread goes to
//! the shard's shared word, with locked read-modify-writes, as do the
//! leases of a thread past the shard count (it shares a shard).
//!
//! The first test: the main thread (owns shard 0) holds a lease through the
//! replace; A (owns shard 1) takes a lease and hands it to B, then takes
//! and gives back one of its own while B gives A's back; B (the third
//! thread: shares shard 0) also takes and gives back one of its own, on the
//! shard whose owner is giving its lease back at the same time. The second:
//! two writers on one shared word at once.
#![cfg(loom)]

mod loom_support;
use std::sync::Arc;

use loom_support::{detach, model, ready, slot, Tally};
use reload_core::DrainError;

#[test]
fn counts_from_owners_sharers_and_other_threads_sum_exactly() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let held = slot.enter().expect("open");
        let a = {
            let slot = Arc::clone(&slot);
            loom::thread::spawn(move || {
                // SAFETY: `slot` (an `Arc` the main thread also holds until
                // after joining A, which joins B) outlives the lease.
                let lease = unsafe { detach(slot.enter().expect("open")) };
                let b = {
                    let slot = Arc::clone(&slot);
                    loom::thread::spawn(move || {
                        assert!(lease.call() >= 1);
                        drop(lease);
                        drop(slot.enter().expect("open"));
                    })
                };
                drop(slot.enter().expect("open"));
                b.join().expect("b");
            })
        };
        let old = slot.replace(ready(2, &tally)).expect("open");
        // `held` is out, whatever A and B did meanwhile.
        let old = match old.try_finalize() {
            Err(DrainError::TimedOut(still)) => still,
            Ok(_) => panic!("finalized with a lease out"),
            Err(DrainError::Shutdown(e)) => panic!("{e}"),
        };
        assert_eq!(held.call(), 1);
        drop(held);
        a.join().expect("a");
        drop(old.wait().expect("shutdown ok"));
        assert_eq!(tally.shutdowns(), 1);
    });
}

/// Two writers on one shared word at once: the sharer (B) counts in and out
/// on shard 0's shared word while A gives back, on that same word, a lease
/// the main thread counted on shard 0's own word. Both must be locked
/// read-modify-writes; a load-then-store by either can lose the other's
/// update, and then the drain never completes (a loom deadlock). The
/// replace and the drain come after the race, so that loom's budget goes
/// to the race itself.
#[test]
fn a_sharer_and_a_give_back_on_the_same_shared_word_lose_nothing() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        // SAFETY: `slot` (an `Arc` the main thread holds until after
        // joining A, which joins B) outlives the lease.
        let held = unsafe { detach(slot.enter().expect("open")) };
        let a = {
            let slot = Arc::clone(&slot);
            loom::thread::spawn(move || {
                // Claims shard 1 (any use of the shim does), so that B,
                // the third thread, shares shard 0.
                assert_eq!(slot.generation(), Some(1));
                let b = {
                    let slot = Arc::clone(&slot);
                    loom::thread::spawn(move || {
                        drop(slot.enter().expect("open"));
                    })
                };
                drop(held);
                b.join().expect("b");
            })
        };
        a.join().expect("a");
        let old = slot.replace(ready(2, &tally)).expect("open");
        drop(old.wait().expect("shutdown ok"));
        assert_eq!(tally.shutdowns(), 1);
    });
}
