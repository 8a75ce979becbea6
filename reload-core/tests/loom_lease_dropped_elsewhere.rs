//! S1, L1: a lease taken on one thread and dropped on another releases the
//! shard it counted on, and the drain sees it.
#![cfg(loom)]

mod loom_support;
use loom_support::{detach, model, ready, Tally};
use reload_core::Slot;

#[test]
fn a_lease_dropped_on_another_thread_completes_the_drain() {
    model(|| {
        let tally = Tally::new();
        let slot = Slot::new(ready(1, &tally));
        let lease = slot.enter().expect("open");
        // SAFETY: the thread that receives the lease is joined below, before
        // `slot` goes out of scope.
        let lease = unsafe { detach(lease) };
        let dropper = loom::thread::spawn(move || {
            assert_eq!(lease.call(), 1);
            drop(lease);
        });
        let old = slot.replace(ready(2, &tally)).expect("open");
        drop(old.wait().expect("shutdown ok"));
        dropper.join().expect("dropper");
        assert_eq!(tally.shutdowns(), 1);
    });
}
