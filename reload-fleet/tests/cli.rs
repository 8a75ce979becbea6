//! The command-line tool against a real etcd: publish a package, plan,
//! start and drive a rollout to its end, pause and abort one, status.

mod support;

use std::process::Command;

use support::{etcd, World};

fn tool(world: &World, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reload-fleet"))
        .args([
            "--endpoints",
            &world.etcd.endpoint(),
            "--timeout-ms",
            "1000",
        ])
        .args(args)
        .output()
        .expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn publish_plan_start_status_and_abort() {
    if !etcd::available() {
        return;
    }
    let world = World::new("cli");
    let fleet: Vec<_> = ["a", "b"].iter().map(|n| world.node(n, None)).collect();
    let file = world.root.join("echo-1.1.0.pkg");
    std::fs::write(&file, support::content("1.1.0", false)).expect("written");
    let store = world.root.join("store");
    let (code, out) = tool(
        &world,
        &[
            "publish",
            "--store",
            store.to_str().expect("utf8"),
            file.to_str().expect("utf8"),
            "--name",
            "echo-1.1.0",
            "--version",
            "1.1.0",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let to: reload_fleet::Target = serde_json::from_str(&out).expect("a target");
    assert_eq!(to, world.publish("1.1.0", false));

    let spec = world.spec(
        "cli-1",
        &to,
        vec![
            reload_fleet::StageSpec::Percent {
                name: "canary".into(),
                percent: 50,
            },
            reload_fleet::StageSpec::Rest {
                name: "rest".into(),
            },
        ],
        400,
    );
    let plan_file = world.root.join("plan.json");
    std::fs::write(&plan_file, serde_json::to_vec(&spec).expect("json")).expect("written");
    let plan_path = plan_file.to_str().expect("utf8");
    let (code, out) = tool(&world, &["plan", plan_path]);
    assert_eq!(code, 0, "{out}");
    let plan: reload_fleet::Plan = serde_json::from_str(&out).expect("a plan");
    assert_eq!(
        plan.stages
            .iter()
            .map(|s| s.nodes.clone())
            .collect::<Vec<_>>(),
        [["a"], ["b"]]
    );

    let (code, out) = tool(&world, &["start", plan_path]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "stage 0 open: a",
        "stage 0: a ready",
        "stage 0: Commit",
        "stage 0 gate passed",
        "stage 1 open: b",
        "ended: done",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    for n in &fleet {
        n.wait("serves 1.1.0", |n| n.version() == "1.1.0");
    }
    let (code, out) = tool(&world, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("echo") && l.contains("1.1.0"))
            .count(),
        2,
        "{out}"
    );

    // A second rollout, started detached, paused, then aborted: exit 2.
    let v2 = world.publish("1.2.0", false);
    let mut spec = world.spec(
        "cli-2",
        &v2,
        vec![reload_fleet::StageSpec::Rest { name: "all".into() }],
        100,
    );
    spec.from = Some(to);
    std::fs::write(&plan_file, serde_json::to_vec(&spec).expect("json")).expect("written");
    let (code, out) = tool(&world, &["abort", "cli-2"]);
    assert_eq!(code, 1, "no such rollout yet: {out}");
    let (code, out) = tool(&world, &["start", "--detach", plan_path]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = tool(&world, &["start", "--detach", plan_path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is going on already"), "{out}");
    assert_eq!(tool(&world, &["abort", "cli-2"]).0, 0);
    let (code, out) = tool(&world, &["drive", "cli-2"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("aborted at stage 0: aborted by an operator"),
        "{out}"
    );
    for n in &fleet {
        n.wait("serves 1.1.0", |n| n.version() == "1.1.0");
    }
}
