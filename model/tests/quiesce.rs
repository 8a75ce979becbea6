//! The quiesced reload model: pinned state counts, non-vacuity, and the two
//! broken designs refuted with their shortest traces.

use model::quiesce::{
    Design, QuiesceSys, CALL_WAITS_AT_THE_GATE, NO_UPDATE_LOST, OLD_RESOURCES_INTACT,
    QUIESCE_PARKS_AND_IS_WOKEN, ROLLED_BACK_AFTER_AN_OPEN, ROLLED_BACK_AFTER_A_TIMEOUT,
};
use model::trace::counterexample;
use stateright::{Checker, Model};

fn check(sys: QuiesceSys) -> impl Checker<QuiesceSys> {
    let checker = sys.checker().threads(2).spawn_dfs().join();
    checker.assert_properties();
    checker
}

#[test]
fn one_quiesced_reload_with_every_failure() {
    let checker = check(QuiesceSys::small());
    assert_eq!(checker.unique_state_count(), 20_627);
    for found in [
        CALL_WAITS_AT_THE_GATE,
        QUIESCE_PARKS_AND_IS_WOKEN,
        ROLLED_BACK_AFTER_A_TIMEOUT,
        ROLLED_BACK_AFTER_AN_OPEN,
    ] {
        assert!(checker.discovery(found).is_some(), "never saw: {found}");
    }
}

#[test]
fn two_quiesced_reloads_two_calls_each() {
    let checker = check(QuiesceSys {
        calls_per_worker: 2,
        reloads: 2,
        ..QuiesceSys::small()
    });
    assert_eq!(checker.unique_state_count(), 1_888_476);
}

#[test]
fn snapshotting_while_serving_loses_an_update() {
    let checker = QuiesceSys {
        workers: 1,
        design: Design::SnapshotWhileServing,
        failures: false,
        ..QuiesceSys::small()
    }
    .checker()
    .spawn_bfs()
    .join();
    let trace = counterexample(&checker, NO_UPDATE_LOST).expect("an update is lost");
    insta::assert_snapshot!("snapshot_while_serving_counterexample", trace);
}

#[test]
fn releasing_before_open_loses_the_old_resource() {
    let checker = QuiesceSys {
        workers: 1,
        calls_per_worker: 0,
        design: Design::ReleaseBeforeOpen,
        ..QuiesceSys::small()
    }
    .checker()
    .spawn_bfs()
    .join();
    let trace = counterexample(&checker, OLD_RESOURCES_INTACT).expect("the old resource is lost");
    insta::assert_snapshot!("release_before_open_counterexample", trace);
}
