//! S4: every version is shut down exactly once and its value dropped exactly
//! once, whichever path finalizes it: a wait, a dropped (orphaned) handle
//! finalized by the slot, or the slot's own drop.
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, spawn_caller, Tally};

#[test]
fn shutdown_and_drop_exactly_once_on_every_path() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = spawn_caller(&slot);
        // v1: orphaned (its handle dropped, maybe while the call holds it).
        drop(slot.replace(ready(2, &tally)).expect("open"));
        // v2: waited on.
        let second = slot.replace(ready(3, &tally)).expect("open");
        drop(second.wait().expect("shutdown ok"));
        let seen = caller.join().expect("caller");
        assert!(matches!(seen, Ok(1..=3)), "{seen:?}");
        // v3 and the orphan (if not reaped yet) go with the slot.
        drop(slot);
        assert_eq!(tally.shutdowns(), 3);
        assert_eq!(tally.drops(), 3);
    });
}
