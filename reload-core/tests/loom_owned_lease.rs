//! Owned leases (S1, S4): an owned lease that outlives its slot keeps its
//! version alive and serving, and the version is shut down exactly once,
//! after the call, whichever of the lease's drop and the slot's drop comes
//! last; and the last owned lease on an orphan (a version whose handle was
//! dropped) finalizes it, however its release races the adoption.
#![cfg(loom)]

mod loom_support;
use loom_support::{model, ready, slot, Tally, Witness};
use reload_core::OwnedLease;

/// A thread that makes one call through `lease`, checks it ran on
/// `version`, and drops the lease there (racing whatever the test does).
fn call_and_drop(lease: OwnedLease<Witness>, version: u64) -> loom::thread::JoinHandle<()> {
    loom::thread::spawn(move || {
        assert_eq!(lease.call(), version);
        drop(lease);
    })
}

#[test]
fn an_owned_lease_outlives_its_slot() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        // A draining handle keeps the slot's shared part alive after the
        // slot goes, so what finalizes version 2 is its last lease, not
        // the shared part's own drop.
        let old = slot.replace(ready(2, &tally)).expect("open");
        let lease = slot.enter_owned().expect("open");
        let caller = call_and_drop(lease, 2);
        drop(slot);
        caller.join().expect("caller");
        assert_eq!(
            tally.shutdowns(),
            1,
            "version 2, by its lease or the slot's drop"
        );
        let removed = old.wait().unwrap_or_else(|_| panic!("shutdown ok"));
        assert_eq!(removed.report().generation, 1);
        assert_eq!(tally.shutdowns(), 2);
        drop(removed);
        assert_eq!(tally.drops(), 2);
    });
}

#[test]
fn the_last_owned_lease_on_an_orphan_finalizes_it() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let lease = slot.enter_owned().expect("open");
        let caller = call_and_drop(lease, 1);
        // Orphaned while the lease may or may not be out: the adopter's
        // reap or the lease's drop finalizes it, and exactly one does.
        drop(slot.replace(ready(2, &tally)).expect("open"));
        caller.join().expect("caller");
        assert_eq!(
            tally.shutdowns(),
            1,
            "version 1 finalized, with the slot alive"
        );
        assert_eq!(slot.versions().len(), 1);
        drop(slot);
        assert_eq!(tally.shutdowns(), 2);
        assert_eq!(tally.drops(), 2);
    });
}

/// No handle: the slot's drop races the owned lease's drop, and only the
/// keepalive the drop leaves behind holds the slot's bookkeeping for the
/// lease (debug builds check it is alive when the lease uses it).
#[test]
fn an_owned_lease_alone_outlives_its_slot() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let lease = slot.enter_owned().expect("open");
        let caller = call_and_drop(lease, 1);
        drop(slot);
        caller.join().expect("caller");
        assert_eq!(tally.shutdowns(), 1);
        assert_eq!(tally.drops(), 1);
    });
}
