//! What a hostile fleet does to a node: garbage records in etcd, a health
//! source that panics, a package store that panics, options at their
//! edges. The node serves on, says what it could not read, and takes the
//! rollouts it can.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_fleet::{Health, Node, NodeConfig, Outcome, PackageStore, StageSpec};
use support::{content, etcd, nodes, roll, unpack, World};

struct PanickingStore;

impl PackageStore for PanickingStore {
    fn fetch(&self, _: &str) -> Result<Vec<u8>, reload_core::BoxError> {
        panic!("the store blew up")
    }
}

#[test]
fn garbage_in_etcd_and_panicking_host_code_leave_the_node_serving() {
    if !etcd::available() {
        return;
    }
    let world = World::new("hostile");
    let rt = &world.rt;
    let coordinator = world.coordinator();
    let client = coordinator.etcd().client();
    let keys = coordinator.etcd().keys().clone();
    // Garbage where records go: an active rollout of a plugin nobody
    // hosts, pointing at a plan that is not JSON; an assignment of `b`
    // that is not a target.
    rt.block_on(async {
        let mut c = client.clone();
        c.put(keys.active("other"), "\"junk\"", None).await?;
        c.put(keys.plan("junk"), "\u{0}\u{1}not json", None).await?;
        c.put(keys.assign("b", "echo"), "[1,2,3]", None).await?;
        c.put(keys.node("ghost"), "{{{", None).await
    })
    .expect("garbage written");

    // `a`: options at their edges (clamped, not spinning or refused).
    let a = world.node_with("a", None, |cfg| {
        cfg.resync = Duration::ZERO;
        cfg.lease_ttl = Duration::ZERO;
        cfg.retry = Duration::ZERO;
    });
    // `b`: a health source and a package store that panic.
    let registry = Arc::new(Registry::new(Unchecked));
    registry
        .register(unpack(&content("1.0.0", false), None).expect("v1"), &())
        .expect("registered");
    let b = Node::start(
        world.config("b"),
        Arc::clone(&registry),
        PanickingStore,
        |_: &str, bytes: Vec<u8>, _: &Path| unpack(&bytes, None),
        Arc::new(()),
        |_: &str| -> Health { panic!("the metrics blew up") },
    )
    .expect("b starts");

    // A garbage node status makes `nodes()` a typed error, not a panic.
    match rt.block_on(coordinator.nodes()) {
        Err(reload_fleet::FleetError::Record { key, .. }) => assert_eq!(key, keys.node("ghost")),
        other => panic!("expected a record error, got {other:?}"),
    }
    rt.block_on(async { client.clone().delete(keys.node("ghost"), None).await })
        .expect("deleted");

    // `b` published its status (no health) and says why it is behind.
    a.wait("sees b", |_| {
        rt.block_on(coordinator.nodes())
            .is_ok_and(|n| n.get("b").is_some_and(|s| s.behind.contains_key("echo")))
    });
    let statuses = rt.block_on(coordinator.nodes()).expect("readable");
    let b_status = &statuses["b"];
    assert_eq!(b_status.health["echo"], Health::default());
    assert!(
        b_status.behind["echo"].contains("unreadable"),
        "{:?}",
        b_status.behind
    );
    assert_eq!(b_status.serving["echo"].version, "1.0.0");

    // A rollout on `a` goes through; one on `b` is refused (its store
    // panicked) and aborts.
    let v2 = world.publish("1.1.0", false);
    let spec = world.spec(
        "through-junk",
        &v2,
        vec![StageSpec::Nodes {
            name: "a".into(),
            nodes: nodes(&["a"]),
        }],
        400,
    );
    assert_eq!(roll(rt, &coordinator, spec).0, Outcome::Done);
    a.wait("serves 1.1.0", |n| n.version() == "1.1.0");
    let v3 = world.publish("1.2.0", false);
    let mut spec = world.spec(
        "store-panics",
        &v3,
        vec![StageSpec::Nodes {
            name: "b".into(),
            nodes: nodes(&["b"]),
        }],
        400,
    );
    spec.from = Some(v2);
    match roll(rt, &coordinator, spec).0 {
        Outcome::Aborted { reason, .. } => {
            assert!(reason.contains("the package store panicked"), "{reason}")
        }
        other => panic!("expected an abort, got {other:?}"),
    }
    assert_eq!(
        registry
            .call("echo", |c| c.plugin().version.clone())
            .expect("served"),
        "1.0.0"
    );
    drop(b);
}

#[test]
fn options_are_clamped_and_names_checked() {
    let cfg = NodeConfig {
        resync: Duration::ZERO,
        request_timeout: Duration::ZERO,
        retry: Duration::ZERO,
        lease_ttl: Duration::MAX,
        ..NodeConfig::new("n", &["p"], &["http://127.0.0.1:1"], "/tmp/x")
    }
    .clamped();
    assert_eq!(cfg.resync, Duration::from_millis(10));
    assert_eq!(cfg.request_timeout, Duration::from_millis(10));
    assert_eq!(cfg.retry, Duration::from_millis(10));
    assert_eq!(cfg.lease_ttl, Duration::from_secs(9_000_000_000));

    let registry = Arc::new(Registry::new(Unchecked));
    for (node, plugin) in [
        ("a/b", "echo"),
        ("ok", ".."),
        ("", "echo"),
        ("ok", "e c h o"),
    ] {
        let started = Node::start(
            NodeConfig::new(
                node,
                &[plugin],
                &["http://127.0.0.1:1"],
                std::env::temp_dir().join("fleet-names"),
            ),
            Arc::clone(&registry),
            reload_fleet::DirStore::new("/nonexistent"),
            |_: &str, bytes: Vec<u8>, _: &Path| unpack(&bytes, None),
            Arc::new(()),
            |_: &str| Health::default(),
        );
        assert!(
            matches!(started, Err(reload_fleet::FleetError::Plan(_))),
            "{node:?} / {plugin:?}"
        );
    }
}

#[test]
fn starting_a_node_inside_an_async_context_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = rt.block_on(async {
        Node::start(
            NodeConfig::new(
                "n",
                &["echo"],
                &["http://127.0.0.1:1"],
                std::env::temp_dir().join("fleet-async"),
            ),
            Arc::new(Registry::new(Unchecked)),
            reload_fleet::DirStore::new("/nonexistent"),
            |_: &str, bytes: Vec<u8>, _: &Path| unpack(&bytes, None),
            Arc::new(()),
            |_: &str| Health::default(),
        )
    });
    match started {
        Err(reload_fleet::FleetError::Start(why)) => {
            assert!(why.contains("spawn_blocking"), "{why}")
        }
        other => panic!("expected FleetError::Start, got {:?}", other.map(|_| ())),
    }
}
