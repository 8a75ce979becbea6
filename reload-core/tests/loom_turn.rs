//! The reload turn (one reload per slot at a time): a second reload that
//! waits for the turn is woken when the first gives it back, takes it, and
//! commits; the first one's version is drained and shut down once. With no
//! deadline, a lost wake-up is a loom deadlock, and a waiter that trusts a
//! wake without taking the turn fails the second reload.
#![cfg(loom)]

mod loom_support;

use std::sync::Arc;
use std::time::Duration;

use loom_support::{model, tallied_slot, Tallied, Tally};
use reload_core::ReloadOptions;

#[test]
fn a_reload_waiting_for_the_turn_gets_it_when_the_first_is_done() {
    model(|| {
        let tally = Tally::new();
        let slot = tallied_slot(&tally);
        let first = slot
            .prepare(Tallied::new(2, &tally), &(), ReloadOptions::immediate())
            .unwrap_or_else(|e| panic!("the turn is free: {e}"));
        let second = {
            let (slot, tally) = (Arc::clone(&slot), Arc::clone(&tally));
            loom::thread::spawn(move || {
                let options = ReloadOptions::immediate().wait_for_turn(Duration::MAX);
                let prepared = slot
                    .prepare(Tallied::new(3, &tally), &(), options)
                    .unwrap_or_else(|e| panic!("woken with the turn: {e}"));
                let committed = prepared.commit().unwrap_or_else(|e| panic!("{e}"));
                drop(committed.old.wait());
            })
        };
        let committed = first.commit().unwrap_or_else(|e| panic!("{e}"));
        drop(committed.old.wait());
        second.join().expect("second reload");
        // Both committed, in some order; two old versions finalized.
        assert_eq!(tally.shutdowns(), 2);
        assert_eq!(slot.generation(), Some(3));
    });
}
