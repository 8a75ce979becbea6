//! A group commit (`Prepared::commit_together`) of two slots racing a call
//! that leases both the way a registry call does: try the dependent, then
//! the dependency; at a closed gate give everything back and wait; on a
//! mixed pair give both back and retry. The call must see a matching pair
//! (both old or both new), every update must be carried, and no version is
//! shut down under the call.
#![cfg(loom)]

mod loom_support;

use std::sync::Arc;
use std::time::Duration;

use loom_support::{model, slot, tallied_slot, witness, Tallied, Tally, Witness};
use reload_core::{Lease, Plugin, Prepared, ReloadOptions, Slot, TryEnterError};

/// The plugin calls reach: what a caller can do with a version, and how a
/// new one is made.
trait Callee: reload_core::Stateful<Context = ()> + Sized {
    fn hit(&self) -> u64;
    fn next(tally: &Arc<Tally>) -> Plugin<Self>;
}

impl Callee for Tallied {
    fn hit(&self) -> u64 {
        self.inc()
    }
    fn next(tally: &Arc<Tally>) -> Plugin<Self> {
        Tallied::new(2, tally)
    }
}

impl Callee for Witness {
    fn hit(&self) -> u64 {
        self.call()
    }
    fn next(tally: &Arc<Tally>) -> Plugin<Self> {
        Plugin::new(witness(2, tally))
    }
}

/// Leases `b` then `a` as a registry call does; returns (a's id, b's id).
fn call_both<P: Callee>(a: &Slot<P>, b: &Slot<P>) -> (u64, u64) {
    fn wait<P: Callee>(slot: &Slot<P>) {
        // `enter` parks at a closed gate; the lease is dropped at once.
        drop(slot.enter().expect("open"));
    }
    loop {
        let lb: Lease<'_, P> = match b.try_enter() {
            Ok(l) => l,
            Err(TryEnterError::Quiescing) => {
                wait(b);
                continue;
            }
            Err(TryEnterError::Closed) => panic!("closed"),
        };
        match a.try_enter() {
            Ok(la) if la.generation() == lb.generation() => return (la.hit(), lb.hit()),
            Ok(_) => loom::thread::yield_now(),
            Err(TryEnterError::Quiescing) => {
                drop(lb);
                wait(a);
            }
            Err(TryEnterError::Closed) => panic!("closed"),
        }
    }
}

/// Two slots on version 1 (made by `first`), a caller leasing both, and a
/// group commit of both to version 2 in `options`' mode.
fn group_commit_races_a_call<P: Callee>(
    first: fn(&Arc<Tally>) -> Arc<Slot<P>>,
    options: ReloadOptions,
) -> (Arc<Tally>, Arc<Slot<P>>) {
    let tally = Tally::new();
    let (a, b) = (first(&tally), first(&tally));
    let caller = {
        let (a, b) = (Arc::clone(&a), Arc::clone(&b));
        loom::thread::spawn(move || call_both(&a, &b))
    };
    let pa = a
        .prepare(P::next(&tally), &(), options.clone())
        .expect("prepares");
    let pb = b.prepare(P::next(&tally), &(), options).expect("prepares");
    let committed = Prepared::commit_together(vec![pa, pb]).expect("commits");
    let (ida, idb) = caller.join().expect("caller");
    assert_eq!(ida, idb, "the call saw a mixed pair");
    for c in committed {
        c.old.wait().expect("finalizes");
    }
    assert_eq!(tally.shutdowns(), 2);
    (tally, a)
}

/// Quiesced: the update is carried wherever it ran, and loom's cell checks
/// that it was ordered before the save or after the restore.
#[test]
fn quiesced_group_commit_races_a_call_across_both() {
    model(|| {
        let (_, a) =
            group_commit_races_a_call(tallied_slot, ReloadOptions::quiesced(Duration::MAX));
        assert_eq!(a.enter().expect("serving").count(), 1);
    });
}

/// Immediate: old calls run on while the group cuts over (a stateless
/// plugin: immediate mode snapshots state while the old version serves, by
/// design). The witness checks no call runs on a shut-down version.
#[test]
fn immediate_group_commit_races_a_call_across_both() {
    model(|| {
        let (tally, _) = group_commit_races_a_call(|t| slot(1, t), ReloadOptions::immediate());
        assert_eq!(tally.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    });
}
