//! S1, S2, S4: two replaces in a row while the first old version is still
//! draining; a concurrent call lands on whichever version is current and
//! both drains complete, each shutdown once.
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, spawn_caller, Tally};

#[test]
fn two_replaces_with_the_first_still_draining() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = spawn_caller(&slot);
        let first = slot.replace(ready(2, &tally)).expect("open");
        let second = slot.replace(ready(3, &tally)).expect("open");
        assert_eq!(slot.generation(), Some(3));
        let second = second.wait().expect("shutdown ok");
        let first = first.wait().expect("shutdown ok");
        let seen = caller.join().expect("caller");
        assert!(matches!(seen, Ok(1..=3)), "{seen:?}");
        assert_eq!(
            (first.report().generation, second.report().generation),
            (1, 2)
        );
        assert_eq!(tally.shutdowns(), 2);
    });
}
