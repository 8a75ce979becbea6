//! The model checks that `cargo test` runs. State counts are pinned: a
//! change to the protocol, the model or the lifecycle table shows up here.

use model::broken::phantom_refs::PhantomRefsSys;
use model::broken::ring::RingSys;
use model::protocol::{
    Fences, ReloadSys, ALL_REMOVED_AT_THE_END, BARRIER_MEETS_A_BUFFERED_COUNT, CALL_OVERLAPS_DRAIN,
    CLOSED_SLOT_REFUSES, DRAIN_PARKS_AND_IS_WOKEN, DRAIN_TIMES_OUT_AND_IS_WAITED_AGAIN,
    INIT_FAILURE_KEEPS_OLD_SERVING, NO_CALL_INTO_FINALIZED, TWO_VERSIONS_DRAIN_AT_ONCE,
    TWO_WAITERS_PARKED_ARE_WOKEN,
};
use model::trace::counterexample;
use stateright::{Checker, Model};

/// Depth-first: the same reachable set as breadth-first (so the same count)
/// in a fraction of the memory. The broken designs below use breadth-first
/// for the shortest trace.
fn check(sys: ReloadSys) -> impl Checker<ReloadSys> {
    let checker = sys.checker().threads(2).spawn_dfs().join();
    checker.assert_properties();
    checker
}

#[test]
fn two_workers_two_reloads() {
    let checker = check(ReloadSys::small());
    assert_eq!(checker.unique_state_count(), 413_707);
    for found in [
        CALL_OVERLAPS_DRAIN,
        TWO_VERSIONS_DRAIN_AT_ONCE,
        DRAIN_PARKS_AND_IS_WOKEN,
    ] {
        assert!(checker.discovery(found).is_some(), "never saw: {found}");
    }
}

#[test]
fn drains_that_time_out_and_are_waited_again() {
    let checker = check(ReloadSys {
        drain_timeouts: true,
        ..ReloadSys::small()
    });
    assert_eq!(checker.unique_state_count(), 3_782_431);
    assert!(checker
        .discovery(DRAIN_TIMES_OUT_AND_IS_WAITED_AGAIN)
        .is_some());
}

#[test]
fn a_failed_init_and_a_close() {
    let checker = check(ReloadSys {
        init_failure: true,
        close: true,
        calls_per_worker: 2,
        ..ReloadSys::small()
    });
    assert_eq!(checker.unique_state_count(), 1_016_664);
    assert!(checker.discovery(INIT_FAILURE_KEEPS_OLD_SERVING).is_some());
    assert!(checker.discovery(CLOSED_SLOT_REFUSES).is_some());
    // The terminal property held in every terminal state (assert_properties).
    assert!(checker.discovery(ALL_REMOVED_AT_THE_END).is_none());
}

#[test]
fn the_eight_slot_ring_is_refuted() {
    // One thread: BFS then finds the same shortest trace every run.
    let checker = RingSys { workers: 1 }.checker().spawn_bfs().join();
    let trace = counterexample(&checker, NO_CALL_INTO_FINALIZED)
        .expect("the checker must find a call into a finalized version");
    insta::assert_snapshot!("ring_counterexample", trace);
}

#[test]
fn the_phantom_reference_drain_is_refuted() {
    let checker = PhantomRefsSys { workers: 1 }.checker().spawn_bfs().join();
    let trace = counterexample(&checker, NO_CALL_INTO_FINALIZED)
        .expect("the checker must find a call into a finalized version");
    insta::assert_snapshot!("phantom_refs_counterexample", trace);
}

/// A second waiter on every drain (an observer in `wait_drained` or
/// `until_drained`, beside the owner that finalizes): every waiter is woken
/// and finishes, in every interleaving.
#[test]
fn two_waiters_on_every_drain() {
    let checker = check(ReloadSys {
        workers: 1,
        calls_per_worker: 2,
        observers: true,
        ..ReloadSys::small()
    });
    assert_eq!(checker.unique_state_count(), 196_024);
    assert!(checker.discovery(TWO_WAITERS_PARKED_ARE_WOKEN).is_some());
}

/// The wait list of #14, where a registration replaces the waiter before
/// it: the owner's registration pushes the observer out (or the other way
/// round), the last release wakes one of them, and the other stays parked
/// forever.
#[test]
fn a_wait_list_of_one_is_refuted() {
    let checker = ReloadSys {
        workers: 1,
        reloads: 1,
        observers: true,
        single_waiter: true,
        ..ReloadSys::small()
    }
    .checker()
    .spawn_bfs()
    .join();
    let trace = counterexample(&checker, ALL_REMOVED_AT_THE_END)
        .expect("the checker must find a waiter left parked");
    insta::assert_snapshot!("single_waiter_counterexample", trace);
}

/// The asymmetric fence pair (#17): callers' counts go through a store
/// buffer and their fences are compiler fences; the drain's heavy barrier
/// empties every buffer before its sum. Every property holds.
#[test]
fn asymmetric_fences_two_workers_two_reloads() {
    let checker = check(ReloadSys {
        fences: Fences::Asymmetric,
        ..ReloadSys::small()
    });
    assert_eq!(checker.unique_state_count(), 943_578);
    for found in [
        BARRIER_MEETS_A_BUFFERED_COUNT,
        CALL_OVERLAPS_DRAIN,
        TWO_VERSIONS_DRAIN_AT_ONCE,
        DRAIN_PARKS_AND_IS_WOKEN,
    ] {
        assert!(checker.discovery(found).is_some(), "never saw: {found}");
    }
}

/// The same with drains that time out and are waited again, so that a
/// second look (and its barrier) happens after the first gave up.
#[test]
fn asymmetric_fences_with_drain_timeouts() {
    let checker = check(ReloadSys {
        fences: Fences::Asymmetric,
        drain_timeouts: true,
        workers: 1,
        calls_per_worker: 2,
        ..ReloadSys::small()
    });
    assert_eq!(checker.unique_state_count(), 121_277);
    assert!(checker
        .discovery(DRAIN_TIMES_OUT_AND_IS_WAITED_AGAIN)
        .is_some());
}

/// Compiler fences on the call path without the heavy barrier: a count
/// still in a caller's store buffer is missed by the drain's sum.
#[test]
fn asymmetric_fences_without_the_heavy_barrier_are_refuted() {
    let checker = ReloadSys::without_heavy_barrier()
        .checker()
        .spawn_bfs()
        .join();
    let trace = counterexample(&checker, NO_CALL_INTO_FINALIZED)
        .expect("the checker must find a call into a finalized version");
    insta::assert_snapshot!("without_heavy_barrier_counterexample", trace);
}

/// Light fences everywhere on the release path, including before the sum
/// of a release that found its version draining: two releasers each miss
/// the other's count-out, still in a store buffer, and neither wakes the
/// parked drain. (The first version of the asymmetric call path had this
/// bug; this model found it.)
#[test]
fn asymmetric_fences_with_an_unfenced_release_sum_are_refuted() {
    let checker = ReloadSys::unfenced_release_sum()
        .checker()
        .spawn_bfs()
        .join();
    let trace = counterexample(&checker, ALL_REMOVED_AT_THE_END)
        .expect("the checker must find a drain left parked");
    insta::assert_snapshot!("unfenced_release_sum_counterexample", trace);
}
