//! Rollouts against a real etcd on loopback (skipped, saying why, where
//! no etcd binary exists; CI installs one and requires it): a staged
//! rollout that completes, a refusal that aborts a stage everywhere
//! before any commit, a health gate that reverts the fleet, a node that
//! gives up waiting, a node restarted mid-rollout, and etcd stopped and
//! restarted mid-rollout.

mod support;

use std::time::{Duration, Instant};

use reload_fleet::{Decision, Outcome, Progress, Refusal, Report, StageSpec, Warmed, What};
use support::{etcd, nodes, roll, World};

fn stage(name: &str, members: &[&str]) -> StageSpec {
    StageSpec::Nodes {
        name: name.to_owned(),
        nodes: nodes(members),
    }
}

/// When the coordinator saw `p` first.
fn when(seen: &[(Instant, Progress)], p: impl Fn(&Progress) -> bool) -> Option<Instant> {
    seen.iter().find(|(_, q)| p(q)).map(|(t, _)| *t)
}

#[test]
fn a_good_version_rolls_out_canary_first_then_the_rest() {
    if !etcd::available() {
        return;
    }
    let world = World::new("good");
    let mut fleet: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| world.node(n, None))
        .collect();
    let v2 = world.publish("1.1.0", false);
    let spec = world.spec(
        "good",
        &v2,
        vec![
            stage("canary", &["a"]),
            StageSpec::Rest {
                name: "rest".into(),
            },
        ],
        600,
    );
    let coordinator = world.coordinator();
    let (outcome, seen) = roll(&world.rt, &coordinator, spec);
    assert_eq!(outcome, Outcome::Done);
    for n in &fleet {
        n.wait("serves 1.1.0", |n| n.version() == "1.1.0");
    }
    // The rest prepared only after the canary's gate passed.
    let canary_passed = when(
        &seen,
        |p| matches!(p, Progress::Judged { stage: 0, verdict } if verdict.passed),
    )
    .expect("the canary's gate passed");
    let rest_opened =
        when(&seen, |p| matches!(p, Progress::Opened { stage: 1, .. })).expect("stage 1 opened");
    assert!(rest_opened >= canary_passed);
    let rt = &world.rt;
    let fleet_version: Option<reload_fleet::Target> = rt
        .block_on(
            coordinator
                .etcd()
                .get(&coordinator.etcd().keys().fleet("echo")),
        )
        .expect("read");
    assert_eq!(fleet_version, Some(v2));
    for n in &mut fleet {
        let events: Vec<What> = n.node().events().into_iter().map(|e| e.what).collect();
        assert!(
            matches!(events.as_slice(), [What::Prepared { .. }, What::Committed { version, .. }] if version == "1.1.0"),
            "{}: {events:?}",
            n.name
        );
        let calls = n.kill();
        assert_eq!((calls.failed, calls.unserved), (0, 0), "{}", n.name);
        assert_eq!(calls.versions, ["1.0.0", "1.1.0"], "{}", n.name);
    }
}

#[test]
fn a_refusal_aborts_the_stage_on_every_node_before_any_commit() {
    if !etcd::available() {
        return;
    }
    let world = World::new("refusal");
    let mut fleet = vec![
        world.node("a", None),
        world.node("b", None),
        world.node("c", Some("1.1.0")),
    ];
    let v2 = world.publish("1.1.0", false);
    let spec = world.spec("refused", &v2, vec![stage("all", &["a", "b", "c"])], 300);
    let (outcome, seen) = roll(&world.rt, &world.coordinator(), spec);
    match &outcome {
        Outcome::Aborted { stage: 0, reason } => {
            assert!(
                reason.contains("node c refused") && reason.contains("schema 3 > 2"),
                "{reason}"
            )
        }
        other => panic!("expected an abort, got {other:?}"),
    }
    assert!(seen.iter().any(|(_, p)| matches!(p, Progress::Reported { node, report: Report::Refused(Refusal::Unpack { .. }), .. } if node == "c")));
    assert!(seen.iter().any(|(_, p)| matches!(
        p,
        Progress::Decided {
            stage: 0,
            decision: Decision::Abort { .. }
        }
    )));
    for n in &mut fleet {
        // Give any straggler time to act on the decision.
        n.wait("holds nothing prepared", |n| {
            n.node()
                .events()
                .iter()
                .any(|e| matches!(e.what, What::Aborted { .. } | What::Refused { .. }))
        });
        assert_eq!(n.version(), "1.0.0");
        let events: Vec<What> = n.node().events().into_iter().map(|e| e.what).collect();
        assert!(
            !events
                .iter()
                .any(|w| matches!(w, What::Committed { .. } | What::Applied { .. })),
            "{}: {events:?}",
            n.name
        );
        let calls = n.kill();
        assert_eq!(
            calls.versions,
            ["1.0.0"],
            "{}: never served another version",
            n.name
        );
        assert_eq!((calls.failed, calls.unserved), (0, 0));
    }
}

#[test]
fn a_version_that_fails_its_gate_is_reverted_fleet_wide() {
    if !etcd::available() {
        return;
    }
    let world = World::new("revert");
    let mut fleet: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| world.node(n, None))
        .collect();
    // Every call on 1.1.0 fails.
    let bad = world.publish("1.1.0", true);
    let spec = world.spec(
        "bad",
        &bad,
        vec![
            stage("canary", &["a"]),
            StageSpec::Rest {
                name: "rest".into(),
            },
        ],
        800,
    );
    let (outcome, seen) = roll(&world.rt, &world.coordinator(), spec);
    match &outcome {
        Outcome::Reverted { stage: 0, reason } => {
            assert!(reason.contains("error rate"), "{reason}")
        }
        other => panic!("expected a revert, got {other:?}"),
    }
    assert!(!seen
        .iter()
        .any(|(_, p)| matches!(p, Progress::Opened { stage: 1, .. })));
    fleet[0].wait("back on 1.0.0", |n| n.version() == "1.0.0");
    let canary: Vec<What> = fleet[0]
        .node()
        .events()
        .into_iter()
        .map(|e| e.what)
        .collect();
    assert!(
        matches!(canary.as_slice(), [What::Prepared { .. }, What::Committed { .. }, What::Applied { version }] if version == "1.0.0"),
        "{canary:?}"
    );
    let calls = fleet[0].kill();
    assert_eq!(calls.versions, ["1.0.0", "1.1.0", "1.0.0"]);
    assert!(calls.failed > 0, "the bad version's calls failed");
    assert_eq!(calls.unserved, 0);
    for n in &mut fleet[1..] {
        assert!(n.node().events().is_empty(), "{}: untouched", n.name);
        let calls = n.kill();
        assert_eq!(
            (calls.versions.as_slice(), calls.failed),
            (&["1.0.0".to_owned()][..], 0)
        );
    }
}

#[test]
fn a_node_with_no_decision_aborts_the_stage_itself() {
    if !etcd::available() {
        return;
    }
    let world = World::new("timeout");
    let fleet: Vec<_> = ["a", "b"].iter().map(|n| world.node(n, None)).collect();
    let v2 = world.publish("1.1.0", false);
    let mut spec = world.spec("silent", &v2, vec![stage("all", &["a", "b"])], 100);
    spec.prepare_timeout_ms = 800;
    // Started and never driven: no coordinator decides.
    let coordinator = world.coordinator();
    let rt = &world.rt;
    let plan = rt.block_on(coordinator.plan(spec)).expect("planned");
    rt.block_on(coordinator.start(&plan)).expect("started");
    for n in &fleet {
        n.wait("aborted on its own", |n| {
            n.node()
                .events()
                .iter()
                .any(|e| matches!(e.what, What::Aborted { .. }))
        });
        assert_eq!(n.version(), "1.0.0");
    }
    let state = rt
        .block_on(coordinator.etcd().rollout("silent"))
        .expect("read");
    match state.outcome {
        Some(Outcome::Aborted { stage: 0, reason }) => {
            assert!(reason.contains("had no decision within"), "{reason}")
        }
        other => panic!("expected an abort by a node, got {other:?}"),
    }
    // One abort stands, whichever node wrote it: both read the same.
    let reasons: Vec<String> = fleet
        .iter()
        .flat_map(|n| n.node().events())
        .filter_map(|e| match e.what {
            What::Aborted { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2);
    assert_eq!(reasons[0], reasons[1]);
}

#[test]
fn a_node_restarted_mid_rollout_comes_up_on_its_assignment() {
    if !etcd::available() {
        return;
    }
    let world = World::new("restart");
    let mut fleet: Vec<_> = ["a", "b"].iter().map(|n| world.node(n, None)).collect();
    let v2 = world.publish("1.1.0", false);
    let spec = world.spec(
        "restart",
        &v2,
        vec![stage("canary", &["a"]), stage("rest", &["b"])],
        4_000,
    );
    let coordinator = world.coordinator();
    std::thread::scope(|s| {
        let driver = s.spawn(|| roll(&world.rt, &coordinator, spec));
        // The canary committed: kill both nodes, then start them again with
        // hosts that register 1.0.0.
        fleet[0].wait("commits 1.1.0", |n| n.version() == "1.1.0");
        fleet[0].kill();
        fleet[1].kill();
        fleet[0] = world.node("a", None);
        fleet[1] = world.node("b", None);
        // a's assignment is 1.1.0; b's stage has not committed: the host's.
        assert_eq!(
            fleet[0].node().warmed().get("echo"),
            Some(&Warmed::Fleet(v2.clone()))
        );
        assert_eq!(fleet[0].version(), "1.1.0");
        assert!(matches!(
            fleet[1].node().warmed().get("echo"),
            Some(Warmed::Host { .. })
        ));
        assert_eq!(fleet[1].version(), "1.0.0");
        let (outcome, _) = driver.join().expect("driver");
        assert_eq!(outcome, Outcome::Done);
    });
    fleet[1].wait("serves 1.1.0", |n| n.version() == "1.1.0");
    for n in &mut fleet {
        let calls = n.kill();
        assert_eq!((calls.failed, calls.unserved), (0, 0));
    }
}

#[test]
fn etcd_stopped_mid_rollout_then_restarted() {
    if !etcd::available() {
        return;
    }
    let world = World::new("outage");
    let mut fleet: Vec<_> = ["a", "b"].iter().map(|n| world.node(n, None)).collect();
    let v2 = world.publish("1.1.0", false);
    let mut spec = world.spec(
        "outage",
        &v2,
        vec![stage("canary", &["a"]), stage("rest", &["b"])],
        3_000,
    );
    spec.prepare_timeout_ms = 20_000;
    let coordinator = world.coordinator();
    let rt = &world.rt;
    let outcome = std::thread::scope(|s| {
        let driver = s.spawn(|| roll(rt, &coordinator, spec));
        fleet[0].wait("commits 1.1.0", |n| n.version() == "1.1.0");
        // During the canary's soak: etcd goes away for three seconds.
        world.etcd.stop();
        let out = Instant::now();
        // A node started now comes up on what it applied last, from disk.
        fleet[0].kill();
        fleet[0] = world.node("a", None);
        assert_eq!(
            fleet[0].node().warmed().get("echo"),
            Some(&Warmed::Local(v2.clone()))
        );
        assert_eq!(fleet[0].version(), "1.1.0");
        std::thread::sleep(Duration::from_secs(3).saturating_sub(out.elapsed()));
        assert_eq!(fleet[1].version(), "1.0.0", "b serves on");
        world.etcd.restart();
        driver.join().expect("driver").0
    });
    assert_eq!(outcome, Outcome::Done);
    for n in &mut fleet {
        n.wait("serves 1.1.0", |n| n.version() == "1.1.0");
        let calls = n.kill();
        assert_eq!(
            calls.unserved, 0,
            "{}: every call served through the outage",
            n.name
        );
        assert_eq!(calls.failed, 0);
    }
}

#[test]
fn a_paused_rollout_opens_no_further_stage_until_resumed() {
    if !etcd::available() {
        return;
    }
    let world = World::new("pause");
    let fleet: Vec<_> = ["a", "b"].iter().map(|n| world.node(n, None)).collect();
    let v2 = world.publish("1.1.0", false);
    let spec = world.spec(
        "paused",
        &v2,
        vec![stage("canary", &["a"]), stage("rest", &["b"])],
        300,
    );
    let coordinator = world.coordinator();
    let rt = &world.rt;
    let plan = rt.block_on(coordinator.plan(spec)).expect("planned");
    rt.block_on(coordinator.start(&plan)).expect("started");
    rt.block_on(coordinator.control("paused", reload_fleet::Control::Pause))
        .expect("paused");
    let (outcome, seen) = std::thread::scope(|s| {
        let driver = s.spawn(|| {
            let mut seen = Vec::new();
            let outcome = rt
                .block_on(coordinator.drive("paused", |p| seen.push((Instant::now(), p.clone()))))
                .expect("driven");
            (outcome, seen)
        });
        fleet[0].wait("commits 1.1.0", |n| n.version() == "1.1.0");
        // The canary's soak (300 ms) ends; paused, stage 1 stays shut.
        std::thread::sleep(Duration::from_millis(1500));
        let state = rt
            .block_on(coordinator.etcd().rollout("paused"))
            .expect("read");
        assert_eq!(state.open_stage(), None);
        assert!(state.gates.is_empty(), "no verdict while paused");
        assert!(fleet[1].node().events().is_empty());
        assert_eq!(fleet[1].version(), "1.0.0");
        rt.block_on(coordinator.control("paused", reload_fleet::Control::Run))
            .expect("resumed");
        driver.join().expect("driver")
    });
    assert_eq!(outcome, Outcome::Done);
    assert!(seen.iter().any(|(_, p)| *p == Progress::Paused));
    fleet[1].wait("serves 1.1.0", |n| n.version() == "1.1.0");
}

#[test]
fn two_coordinators_driving_one_rollout_agree() {
    if !etcd::available() {
        return;
    }
    let world = World::new("two-coordinators");
    let fleet: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| world.node(n, None))
        .collect();
    let v2 = world.publish("1.1.0", false);
    let spec = world.spec(
        "twice",
        &v2,
        vec![
            stage("canary", &["a"]),
            StageSpec::Rest {
                name: "rest".into(),
            },
        ],
        400,
    );
    let (one, two) = (world.coordinator(), world.coordinator());
    let rt = &world.rt;
    let plan = rt.block_on(one.plan(spec)).expect("planned");
    rt.block_on(one.start(&plan)).expect("started");
    let drive = |c: &reload_fleet::Coordinator| {
        let mut judged = 0;
        let outcome = rt
            .block_on(c.drive("twice", |p| {
                judged += usize::from(matches!(p, Progress::Judged { .. }))
            }))
            .expect("driven");
        (outcome, judged)
    };
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| drive(&one));
        let b = s.spawn(|| drive(&two));
        (a.join().expect("one"), b.join().expect("two"))
    });
    assert_eq!(
        (first.0.clone(), second.0.clone()),
        (Outcome::Done, Outcome::Done)
    );
    // Each gate was judged once, by one of them.
    assert_eq!(first.1 + second.1, 2);
    for n in &fleet {
        n.wait("serves 1.1.0", |n| n.version() == "1.1.0");
        let commits = n
            .node()
            .events()
            .iter()
            .filter(|e| matches!(e.what, What::Committed { .. }))
            .count();
        assert_eq!(commits, 1, "{}", n.name);
    }
}
