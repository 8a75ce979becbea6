//! S6: a call that panics is contained; its lease is released during the
//! unwind, so the drain still completes and the slot keeps serving.
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, Tally};
use reload_core::CallError;

#[test]
fn a_panicking_call_releases_its_lease() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                slot.call(|w| -> u64 {
                    w.call();
                    panic!("udf failed")
                })
            })
        };
        let old = slot.replace(ready(2, &tally)).expect("open");
        drop(old.wait().expect("shutdown ok"));
        match caller.join().expect("the panic was contained") {
            Err(CallError::Panicked(f)) => assert!(matches!(f.generation, Some(1 | 2))),
            other => panic!("expected a contained panic, got {other:?}"),
        }
        assert_eq!(slot.enter().map(|l| l.call()), Ok(2));
    });
}
