//! The async forms of the drain and `try_finalize`, racing the last
//! release. With no deadline anywhere, a lost wake-up (a registration that
//! does not look again, a waker kept from an earlier poll) is a loom
//! deadlock; a finalization that runs before a call it should have waited
//! for is a causality violation on the witness's state.
#![cfg(loom)]

mod loom_support;

use std::sync::Arc;

use loom::future::block_on;
use loom_support::{detach, model, ready, slot, spawn_caller, Tally, Witness};
use reload_core::{DrainError, Draining, Plugin};

/// A lease out on v1, a replace, and the lease's call and release on
/// another thread racing the drain future's polls.
#[test]
fn the_drain_future_is_woken_by_the_last_release() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        // SAFETY: the thread that takes the lease is joined before `slot`
        // is dropped.
        let lease = unsafe { detach(slot.enter().expect("open")) };
        let old = slot.replace(ready(2, &tally)).expect("replace");
        let releaser = loom::thread::spawn(move || {
            assert_eq!(lease.call(), 1);
            drop(lease);
        });
        let removed = block_on(old.drained()).expect("shutdown is fine");
        assert_eq!(removed.report().generation, 1);
        assert_eq!(tally.shutdowns(), 1);
        releaser.join().expect("releaser");
        assert_eq!(tally.calls.load(loom::sync::atomic::Ordering::SeqCst), 1);
    });
}

/// The drain future racing a call that may lease the old version just
/// before the cut-over (pair A): its first look carries the reloader's
/// fence, so it never resolves while that call runs.
#[test]
fn the_drain_future_races_a_call() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = spawn_caller(&slot);
        let old = slot.replace(ready(2, &tally)).expect("replace");
        let removed = block_on(old.drained()).expect("shutdown is fine");
        assert_eq!(removed.report().generation, 1);
        assert_eq!(tally.shutdowns(), 1);
        let served_by = caller.join().expect("caller").expect("served");
        assert!(served_by == 1 || served_by == 2);
    });
}

/// Two tasks (on two threads) wait on one version with `until_drained`
/// while the last lease goes: both are woken, and the version is still
/// the host's to finalize afterwards.
#[test]
fn two_tasks_waiting_on_one_drain_are_both_woken() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        // SAFETY: as above.
        let lease = unsafe { detach(slot.enter().expect("open")) };
        let old: Arc<Plugin<Witness, Draining>> =
            Arc::new(slot.replace(ready(2, &tally)).expect("replace"));
        let other = {
            let old = Arc::clone(&old);
            loom::thread::spawn(move || block_on(old.until_drained()))
        };
        let releaser = loom::thread::spawn(move || drop(lease));
        block_on(old.until_drained());
        other.join().expect("the other task");
        releaser.join().expect("releaser");
        // Waiting did not finalize: that is still ours to do.
        assert_eq!(tally.shutdowns(), 0);
        let Ok(old) = Arc::try_unwrap(old) else {
            panic!("both tasks are done with it");
        };
        old.try_finalize().expect("drained");
        assert_eq!(tally.shutdowns(), 1);
    });
}

/// `try_finalize` racing a call that may have leased v1 just before the
/// cut-over: it finalizes only once that call is over (its look carries
/// the reloader's fence), and otherwise hands the version back to wait on.
#[test]
fn try_finalize_races_a_call() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let caller = spawn_caller(&slot);
        let old = slot.replace(ready(2, &tally)).expect("replace");
        match old.try_finalize() {
            Ok(removed) => assert_eq!(removed.report().generation, 1),
            Err(DrainError::TimedOut(old)) => {
                old.wait().expect("finalizes");
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(tally.shutdowns(), 1);
        let served_by = caller.join().expect("caller").expect("served");
        assert!(served_by == 1 || served_by == 2);
    });
}
