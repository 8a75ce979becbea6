//! The call path without locked instructions: what it must keep. Leases
//! counted on a thread's own shard and given back on another, by threads
//! past the shard count, across a thread's exit, across `.await`; a version
//! that drains when its own last lease goes while an older one is held;
//! version memory that is reused, not grown; and the fence pair chosen
//! once per process.
#![cfg(not(loom))]

use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use reload_core::testing::{Ledger, Probe, Record};
use reload_core::{fence_mode, FenceMode, Initialized, Plugin, Slot};

fn ready(id: u64, ledger: &Arc<Ledger>) -> Plugin<Probe, Initialized> {
    Probe::ready(id, ledger)
}

#[test]
fn the_fence_pair_is_asymmetric_where_membarrier_works_unless_forced() {
    let ledger = Ledger::new();
    let _slot = Slot::new(ready(1, &ledger));
    let forced = std::env::var_os("RELOAD_CORE_FENCES").is_some_and(|v| v == "symmetric");
    let expected = if forced || !membarrier_available() {
        FenceMode::Symmetric
    } else {
        FenceMode::Asymmetric
    };
    assert_eq!(fence_mode(), expected);
    // Chosen once: another slot does not change it.
    let _other = Slot::new(ready(2, &ledger));
    assert_eq!(fence_mode(), expected);
}

/// The same question the library asks, asked independently: does the
/// kernel offer the private expedited command? (Registration is idempotent,
/// so asking does not change the answer.)
#[cfg(target_os = "linux")]
fn membarrier_available() -> bool {
    const QUERY: libc::c_int = 0;
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    // SAFETY: `membarrier(MEMBARRIER_CMD_QUERY, 0, 0)` takes no pointer.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
    supported >= 0 && supported & PRIVATE_EXPEDITED != 0
}

#[cfg(not(target_os = "linux"))]
fn membarrier_available() -> bool {
    false
}

#[test]
fn leases_taken_on_many_threads_and_dropped_on_others_drain_exactly() {
    // More threads than shards: some own theirs, the rest share; every
    // lease is dropped by a thread other than the one that took it.
    const THREADS: usize = 24;
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let all_entered = Barrier::new(THREADS + 1);
    let (tx, rx) = mpsc::channel();
    let old = std::thread::scope(|s| {
        for _ in 0..THREADS {
            let tx = tx.clone();
            let slot = &slot;
            let all_entered = &all_entered;
            s.spawn(move || {
                let leases: Vec<_> = (0..3).map(|_| slot.enter().expect("open")).collect();
                all_entered.wait();
                tx.send(leases).expect("the test receives");
            });
        }
        all_entered.wait();
        let old = slot.replace(ready(2, &ledger)).expect("open");
        assert_eq!(old.in_flight(), 3 * THREADS);
        old
    });
    drop(tx);
    // Dropped on this thread (and on a second one, for half of them), in
    // an order unrelated to where they were counted.
    let mut batches: Vec<_> = rx.iter().collect();
    assert_eq!(batches.len(), THREADS);
    let second_half = batches.split_off(THREADS / 2);
    std::thread::scope(|s| {
        s.spawn(move || drop(second_half));
    });
    assert_eq!(old.in_flight(), 3 * (THREADS / 2));
    for (i, batch) in batches.into_iter().enumerate() {
        for lease in batch {
            assert_eq!(lease.call(), 1);
        }
        assert_eq!(old.in_flight(), 3 * (THREADS / 2 - i - 1));
    }
    let removed = old.wait().expect("shutdown ok");
    assert_eq!(removed.report().generation, 1);
    drop(removed);
    assert_eq!(
        ledger.records()[&1],
        Record::finalized_once(3 * THREADS as u64 / 2)
    );
    assert_eq!(ledger.calls_after_shutdown(), 0);
}

#[test]
fn a_lease_outlives_the_thread_that_took_it_and_a_new_owner_of_its_shard() {
    // The taker exits and gives its shard back; threads that start after
    // it may own that shard and take leases of their own there. The lease
    // is then given back by one of them, on the shard it now owns.
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let orphan = std::thread::scope(|s| {
        s.spawn(|| slot.enter().expect("open"))
            .join()
            .expect("taker")
    });
    let old = std::thread::scope(|s| {
        let new_owners: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let lease = slot.enter().expect("open");
                    assert_eq!(lease.call(), 1);
                    lease
                })
            })
            .collect();
        let leases: Vec<_> = new_owners
            .into_iter()
            .map(|h| h.join().expect("owner"))
            .collect();
        let old = slot.replace(ready(2, &ledger)).expect("open");
        assert_eq!(old.in_flight(), 5);
        std::thread::scope(|inner| {
            inner.spawn(move || {
                drop(orphan);
                drop(leases);
            });
        });
        old
    });
    assert_eq!(old.in_flight(), 0);
    let removed = old.wait().expect("shutdown ok");
    assert_eq!(removed.report().generation, 1);
    drop(removed);
    assert_eq!(ledger.records()[&1], Record::finalized_once(4));
}

#[test]
fn a_version_drains_when_its_own_last_lease_goes_not_when_older_ones_do() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let long = slot.enter().expect("open");
    let first = slot.replace(ready(2, &ledger)).expect("open");
    let short = slot.enter().expect("open");
    let second = slot.replace(ready(3, &ledger)).expect("open");
    assert_eq!((first.in_flight(), second.in_flight()), (1, 1));
    drop(short);
    // Generation 2 drains while generation 1 is still held.
    let removed = second.wait().expect("shutdown ok");
    assert_eq!(removed.report().generation, 2);
    assert_eq!(first.in_flight(), 1);
    assert_eq!(long.call(), 1);
    let first = match first.try_finalize() {
        Err(reload_core::DrainError::TimedOut(still)) => still,
        other => panic!("generation 1 is held: {other:?}"),
    };
    drop(long);
    assert_eq!(first.wait().expect("shutdown ok").report().generation, 1);
}

#[test]
fn reloads_reuse_version_memory_instead_of_growing_it() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    assert_eq!(slot.stats().free_shells, 0);
    for generation in 2..=200 {
        let lease = slot.enter().expect("open");
        let old = slot.replace(ready(generation, &ledger)).expect("open");
        drop(lease);
        drop(old.wait().expect("shutdown ok"));
        // Two shells in all: the current version's, and the one just
        // freed, which the next reload fills.
        assert_eq!(slot.stats().free_shells, 1);
        assert_eq!(slot.enter().expect("open").call(), generation);
        assert_eq!(slot.generation(), Some(generation));
    }
    // With versions held, shells are as many as versions alive at once,
    // and come back when they drain.
    let held: Vec<_> = (201..=205)
        .map(|generation| {
            let lease = slot.enter_owned().expect("open");
            (
                lease,
                slot.replace(ready(generation, &ledger)).expect("open"),
            )
        })
        .collect();
    assert_eq!(slot.stats().free_shells, 0);
    for (lease, old) in held {
        drop(lease);
        drop(old.wait().expect("shutdown ok"));
    }
    assert_eq!(slot.stats().free_shells, 5);
    assert_eq!(ledger.calls_after_shutdown(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_leases_held_across_await_on_a_work_stealing_runtime_drain() {
    let ledger = Ledger::new();
    let slot = Arc::new(Slot::new(ready(1, &ledger)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let slot = Arc::clone(&slot);
            tokio::spawn(async move {
                let lease = slot.enter().expect("open");
                let before = std::thread::current().id();
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                // Often resumed on the other worker: released there.
                let moved = std::thread::current().id() != before;
                (lease.call(), moved)
            })
        })
        .collect();
    let old = slot.replace(ready(2, &ledger)).expect("open");
    for task in tasks {
        let (served, _) = task.await.expect("task");
        assert!(served == 1 || served == 2);
    }
    let removed = old.await.expect("shutdown ok");
    assert_eq!(removed.report().generation, 1);
    assert_eq!(ledger.calls_after_shutdown(), 0);
}

/// Runs `stash` on a thread of its own (it takes `held` leases on `slot`
/// and keeps them in a thread-local), cuts over while they are out, lets
/// the thread exit (its thread-local destructors give the leases back, and
/// its shard, in either order), and checks that the drain saw every one.
fn leases_given_back_at_thread_exit(
    slot: &'static Slot<Probe>,
    ledger: &Arc<Ledger>,
    held: usize,
    stash: impl FnOnce() + Send + 'static,
) {
    let (entered, wait_entered) = mpsc::channel();
    let (go, exit) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        stash();
        entered.send(()).expect("the test waits");
        exit.recv().expect("the test says when");
    });
    wait_entered.recv().expect("entered");
    let old = slot.replace(ready(2, ledger)).expect("open");
    assert_eq!(old.in_flight(), held);
    go.send(()).expect("the thread waits");
    thread.join().expect("thread");
    assert_eq!(old.in_flight(), 0);
    assert_eq!(old.wait().expect("shutdown ok").report().generation, 1);
}

#[test]
fn a_lease_dropped_by_a_thread_local_destructor_at_thread_exit_is_counted() {
    // An owned lease; the thread first takes a borrowed one, so that it
    // owns a shard whose give-back races the lease's.
    std::thread_local! {
        static KEPT: std::cell::RefCell<Vec<reload_core::OwnedLease<Probe>>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let ledger = Ledger::new();
    let slot: &'static Slot<Probe> = Box::leak(Box::new(Slot::new(ready(1, &ledger))));
    leases_given_back_at_thread_exit(slot, &ledger, 1, move || {
        drop(slot.enter().expect("open"));
        let lease = slot.enter_owned().expect("open");
        KEPT.with(|kept| kept.borrow_mut().push(lease));
    });
}

#[test]
fn a_borrowed_lease_dropped_at_thread_exit_is_counted() {
    // Borrowed leases (on a slot that lives for the rest of the process):
    // the count-out takes the owner's plain store or the shared word,
    // depending on which destructor ran first.
    std::thread_local! {
        static KEPT: std::cell::RefCell<Vec<reload_core::Lease<'static, Probe>>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let ledger = Ledger::new();
    let slot: &'static Slot<Probe> = Box::leak(Box::new(Slot::new(ready(1, &ledger))));
    leases_given_back_at_thread_exit(slot, &ledger, 2, move || {
        let leases = [slot.enter().expect("open"), slot.enter().expect("open")];
        KEPT.with(|kept| kept.borrow_mut().extend(leases));
    });
}
