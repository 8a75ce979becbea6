//! The fleet model: a staged rollout through etcd with node crashes,
//! outages and a coordinator that keeps nothing of its own. Pinned state
//! counts, non-vacuity, and the two broken designs refuted with a
//! counterexample each.

use model::fleet::{
    Design, FleetSys, ABORTED_STAGE_STAYS_OLD, CONVERGES, GATE_REVERTS, NODE_RESTARTS_MID_ROLLOUT,
    NODE_TIMES_OUT, ONLY_COMMITTED_STAGES_SERVE_NEW, ROLLOUT_COMPLETES, STAGE_ABORTS,
};
use model::trace::counterexample;
use stateright::{Checker, Model};

fn check(sys: FleetSys) -> impl Checker<FleetSys> {
    let checker = sys.checker().threads(2).spawn_dfs().join();
    checker.assert_properties();
    checker
}

#[test]
fn canary_then_two_with_a_crash_an_outage_and_a_gate() {
    let checker = check(FleetSys::small());
    assert_eq!(checker.unique_state_count(), 5_329);
    for found in [
        ROLLOUT_COMPLETES,
        GATE_REVERTS,
        STAGE_ABORTS,
        NODE_RESTARTS_MID_ROLLOUT,
        NODE_TIMES_OUT,
    ] {
        assert!(checker.discovery(found).is_some(), "never saw: {found}");
    }
}

#[test]
fn a_node_that_refuses_aborts_its_stage_everywhere() {
    let checker = FleetSys {
        refuser: Some(2),
        ..FleetSys::small()
    }
    .checker()
    .threads(2)
    .spawn_dfs()
    .join();
    assert_eq!(checker.unique_state_count(), 1_800);
    for holds in [
        ONLY_COMMITTED_STAGES_SERVE_NEW,
        ABORTED_STAGE_STAYS_OLD,
        CONVERGES,
    ] {
        checker.assert_no_discovery(holds);
    }
    // The refusing node's stage never commits, so neither does the rollout.
    assert!(checker.discovery(ROLLOUT_COMPLETES).is_none());
    assert!(checker.discovery(STAGE_ABORTS).is_some());
}

#[test]
fn two_crashes_and_two_outages() {
    let checker = check(FleetSys {
        crashes: 2,
        outages: 2,
        ..FleetSys::small()
    });
    assert_eq!(checker.unique_state_count(), 33_035);
}

#[test]
fn commit_on_ready_is_refuted() {
    let checker = FleetSys {
        stages: vec![vec![0, 1]],
        refuser: Some(1),
        bad_version: false,
        crashes: 0,
        outages: 0,
        design: Design::CommitOnReady,
    }
    .checker()
    .spawn_bfs()
    .join();
    let trace =
        counterexample(&checker, ABORTED_STAGE_STAYS_OLD).expect("commit-on-ready must be refuted");
    insta::assert_snapshot!("commit_on_ready_counterexample", trace);
}

#[test]
fn restart_on_plan_is_refuted() {
    let checker = FleetSys {
        stages: vec![vec![0, 1]],
        bad_version: false,
        outages: 0,
        design: Design::RestartOnPlan,
        ..FleetSys::small()
    }
    .checker()
    .spawn_bfs()
    .join();
    let trace = counterexample(&checker, ONLY_COMMITTED_STAGES_SERVE_NEW)
        .expect("restart-on-plan must be refuted");
    insta::assert_snapshot!("restart_on_plan_counterexample", trace);
}
