//! S1, S2 across a reused shell: `enter` does not pin, so a caller may load
//! a version, be preempted while it is drained, finalized and its shell
//! reused for a later version, and then count on that shell. The re-check
//! must then either lease the version the shell now holds (it is current:
//! generation and plugin agree) or undo; and a call never runs on a version
//! that was shut down (the witness's cell would report it).
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, Tally};

#[test]
fn a_caller_that_loaded_a_reused_shell_leases_what_it_now_holds_or_retries() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = {
            let slot = std::sync::Arc::clone(&slot);
            loom::thread::spawn(move || {
                slot.enter().map(|lease| {
                    let served = lease.call();
                    // The generation is the shell's field, the plugin its
                    // value: a lease on a reused shell must see both of the
                    // same life (witness ids are their generations).
                    assert_eq!(lease.generation(), served, "generation and plugin disagree");
                    served
                })
            })
        };
        // Generation 1 drains and is finalized: its shell is free. The next
        // replace puts generation 3 in it.
        let first = slot.replace(ready(2, &tally)).expect("open");
        drop(first.wait().expect("shutdown ok"));
        let second = slot.replace(ready(3, &tally)).expect("open");
        drop(second.wait().expect("shutdown ok"));
        let served = caller.join().expect("caller");
        assert!(matches!(served, Ok(1..=3)), "{served:?}");
        assert_eq!(slot.generation(), Some(3));
        assert_eq!(tally.shutdowns(), 2);
    });
}
