//! S1, S2, L1: a call racing a replace sees the old or the new version,
//! never a finalized one; the drain waits for it; after `replace` returns,
//! new calls see the new version.
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, spawn_caller, Tally};

#[test]
fn a_call_racing_a_replace_never_runs_on_a_finalized_version() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = spawn_caller(&slot);
        // Nothing between the replace and the wait: an `enter` there would
        // execute SeqCst fences of its own and mask a missing one in the drain.
        let old = slot.replace(ready(2, &tally)).expect("open");
        // L1: the wait returns (loom reports a deadlock otherwise), and S1:
        // shutdown ran after the racing call, or the call went to v2.
        let removed = old.wait().expect("shutdown ok");
        // S2: a lease taken after replace returned is on the new version.
        assert_eq!(slot.enter().map(|l| l.call()), Ok(2));
        let seen = caller.join().expect("caller");
        assert!(matches!(seen, Ok(1) | Ok(2)), "{seen:?}");
        assert_eq!(removed.report().generation, 1);
        assert_eq!(tally.shutdowns(), 1);
    });
}
