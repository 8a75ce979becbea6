//! Native plugin libraries rolled out across two nodes (the `dylib`
//! feature): the workspace's `adder` libraries, built here from source,
//! published to a store, loaded through `reload-core`'s loader on each
//! node. A good version completes; a library built against a future ABI
//! is refused by every node at link, inside the prepare, and the stage
//! aborts with the good version serving on.
#![cfg(feature = "dylib")]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;
use reload_fleet::{Health, Node, Outcome, Refusal, Report, StageSpec, Target};
use support::{etcd, nodes, roll, World};

/// Builds `adder-v1`, `adder-v2` and `adder-broken` in the main workspace.
fn libraries() -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().expect("the workspace root");
    let target = here.join("target").join("plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "adder-v1",
            "-p",
            "adder-v2",
            "-p",
            "adder-broken",
        ])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the adder libraries failed");
    ["adder_v1", "adder_v2", "adder_broken"]
        .iter()
        .map(|n| target.join("release").join(format!("lib{n}.so")))
        .collect()
}

fn add(registry: &Registry<DylibPlugin>, x: u64) -> u64 {
    registry
        .call("adder", |c| {
            let out = c.plugin().call(&x.to_le_bytes()).expect("a call");
            u64::from_le_bytes(out.try_into().expect("eight bytes"))
        })
        .expect("served")
}

#[test]
fn native_libraries_roll_out_and_a_future_abi_is_refused_everywhere() {
    if !etcd::available() {
        return;
    }
    let libs = libraries();
    let world = World::new("native");
    let store = reload_fleet::DirStore::new(world.root.join("libs"));
    let publish = |i: usize, version: &str| -> Target {
        store
            .publish(&libs[i], &format!("adder-{version}.so"), version)
            .expect("published")
    };
    let v1 = publish(0, "1.0.0");
    let v2 = publish(1, "1.1.0");
    // The broken library's manifest is a fine 1.2.0: its ABI (999) is
    // what is wrong, and only linking finds it.
    let broken = publish(2, "1.2.0");

    let mut fleet = Vec::new();
    for name in ["a", "b"] {
        let loader = Loader::in_dir(world.root.join(format!("{name}-copies"))).expect("loader");
        let registry = Arc::new(Registry::new(Unchecked));
        registry
            .register(loader.package(&libs[0]).expect("v1"), b"")
            .expect("registered");
        let mut cfg = world.config(name);
        cfg.plugins = vec!["adder".into()];
        cfg.reload = ReloadOptions::quiesced(Duration::from_secs(10));
        let node = Node::start(
            cfg,
            Arc::clone(&registry),
            store.clone(),
            loader,
            Arc::from(&b""[..]),
            |_: &str| Health {
                calls: 1_000,
                errors: 0,
                p99_us: 10,
            },
        )
        .expect("node");
        assert_eq!(add(&registry, 5), 6, "{name}: v1 adds one");
        fleet.push((registry, node));
    }

    let coordinator = world.coordinator();
    let mut spec = world.spec(
        "native-v2",
        &v2,
        vec![
            StageSpec::Nodes {
                name: "canary".into(),
                nodes: nodes(&["a"]),
            },
            StageSpec::Rest {
                name: "rest".into(),
            },
        ],
        200,
    );
    spec.plugin = "adder".into();
    spec.from = Some(v1);
    spec.gate.min_calls = 0;
    assert_eq!(roll(&world.rt, &coordinator, spec).0, Outcome::Done);
    for (registry, _) in &fleet {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while add(registry, 5) != 10 {
            assert!(std::time::Instant::now() < deadline, "v2 doubles");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let mut spec = world.spec(
        "native-broken",
        &broken,
        vec![StageSpec::Rest { name: "all".into() }],
        200,
    );
    spec.plugin = "adder".into();
    spec.from = Some(v2);
    let (outcome, seen) = roll(&world.rt, &coordinator, spec);
    assert!(
        matches!(outcome, Outcome::Aborted { stage: 0, .. }),
        "{outcome:?}"
    );
    let refusals: Vec<&Refusal> = seen
        .iter()
        .filter_map(|(_, p)| match p {
            reload_fleet::Progress::Reported {
                report: Report::Refused(r),
                ..
            } => Some(r),
            _ => None,
        })
        .collect();
    assert!(!refusals.is_empty());
    for r in refusals {
        assert!(
            matches!(r, Refusal::Registry { reason, message } if reason == "reload" && message.contains("ABI")),
            "{r:?}"
        );
    }
    for (registry, _) in &fleet {
        assert_eq!(add(registry, 5), 10, "v2 serves on");
    }
}
