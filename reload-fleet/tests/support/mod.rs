//! What the fleet tests share: a real etcd, a small stateful plugin whose
//! packages are text, and nodes that serve calls on it from their own
//! threads.
#![allow(dead_code)]

pub mod etcd;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reload_core::manifest::Manifest;
use reload_core::registry::{Package, Registry};
use reload_core::verify::Unchecked;
use reload_core::{BoxError, Hooks, ReloadOptions, Stateful};
use reload_fleet::{
    Coordinator, Counters, DirStore, GateSpec, Keys, Node, NodeConfig, Outcome, PlanSpec, Progress,
    StageSpec, Target,
};

/// The plugin: answers calls (or fails them, in a bad version), counts
/// them, and carries the count across reloads as its state.
#[derive(Debug)]
pub struct Echo {
    pub version: String,
    pub fails: bool,
    pub count: AtomicU64,
}

impl Hooks for Echo {
    type Context = ();
    fn version(&self) -> &str {
        &self.version
    }
}

impl Stateful for Echo {
    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(
            self.count.load(Ordering::SeqCst).to_le_bytes().to_vec(),
        ))
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "eight bytes")?;
        *self.count.get_mut() = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// A package's bytes: `echo <version> <ok|fails>`.
pub fn content(version: &str, fails: bool) -> Vec<u8> {
    format!("echo {version} {}", if fails { "fails" } else { "ok" }).into_bytes()
}

/// Unpacks `content`; `refuse` names a version this node cannot run.
pub fn unpack(bytes: &[u8], refuse: Option<&str>) -> Result<Package<Echo>, BoxError> {
    let text = std::str::from_utf8(bytes)?;
    let mut parts = text.split(' ');
    let (Some("echo"), Some(version), Some(kind)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not an echo package: {text:?}").into());
    };
    if refuse == Some(version) {
        return Err(
            format!("version {version} cannot read this node's data (schema 3 > 2)").into(),
        );
    }
    let manifest = Manifest::new("echo", version)?;
    let plugin = Echo {
        version: version.to_owned(),
        fails: kind == "fails",
        count: AtomicU64::new(0),
    };
    Ok(Package::new(plugin, manifest, bytes.to_vec()))
}

/// A test's world: its directory, etcd, the package store.
pub struct World {
    pub root: PathBuf,
    pub etcd: etcd::EtcdServer,
    pub store: DirStore,
    pub v1: Target,
    /// The coordinator's runtime: a client is bound to the runtime that
    /// connected it.
    pub rt: tokio::runtime::Runtime,
}

impl World {
    pub fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("reload-fleet-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("test dir");
        let etcd = etcd::EtcdServer::start(&root);
        let store = DirStore::new(root.join("store"));
        let v1 = store
            .publish_bytes(&content("1.0.0", false), "echo-1.0.0", "1.0.0")
            .expect("v1");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        World {
            root,
            etcd,
            store,
            v1,
            rt,
        }
    }

    pub fn publish(&self, version: &str, fails: bool) -> Target {
        self.store
            .publish_bytes(
                &content(version, fails),
                &format!("echo-{version}"),
                version,
            )
            .expect("published")
    }

    pub fn config(&self, node: &str) -> NodeConfig {
        let mut cfg = NodeConfig::new(
            node,
            &["echo"],
            &[&self.etcd.endpoint()],
            self.root.join(node),
        );
        cfg.resync = Duration::from_millis(200);
        cfg.request_timeout = Duration::from_millis(500);
        cfg.retry = Duration::from_millis(300);
        cfg.reload = ReloadOptions::quiesced(Duration::from_secs(10));
        cfg
    }

    /// A node serving calls from its own thread; `refuse` names a version
    /// its unpack refuses.
    pub fn node(&self, node: &str, refuse: Option<&'static str>) -> TestNode {
        self.node_with(node, refuse, |_| {})
    }

    /// [`World::node`] with its configuration changed by `tweak`.
    pub fn node_with(
        &self,
        node: &str,
        refuse: Option<&'static str>,
        tweak: impl FnOnce(&mut NodeConfig),
    ) -> TestNode {
        let mut cfg = self.config(node);
        tweak(&mut cfg);
        let registry = Arc::new(Registry::new(Unchecked));
        registry
            .register(unpack(&content("1.0.0", false), None).expect("v1"), &())
            .expect("registered");
        TestNode::start(cfg, registry, self.store.clone(), refuse)
    }

    pub fn coordinator(&self) -> Coordinator {
        self.rt
            .block_on(Coordinator::connect(
                &[self.etcd.endpoint()],
                Keys::default(),
                Duration::from_millis(500),
            ))
            .expect("coordinator")
            .with_poll(Duration::from_millis(50))
    }

    pub fn spec(&self, id: &str, to: &Target, stages: Vec<StageSpec>, soak_ms: u64) -> PlanSpec {
        PlanSpec {
            id: id.to_owned(),
            plugin: "echo".to_owned(),
            to: to.clone(),
            from: Some(self.v1.clone()),
            stages,
            gate: GateSpec {
                soak: Duration::from_millis(soak_ms),
                max_error_rate: 0.01,
                min_calls: 20,
                max_p99_us: None,
            },
            prepare_timeout_ms: 5_000,
            apply_timeout_ms: 10_000,
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.etcd.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn nodes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Plans, starts and drives a rollout to its end; the progress seen, with
/// when.
pub fn roll(
    rt: &tokio::runtime::Runtime,
    coordinator: &Coordinator,
    spec: PlanSpec,
) -> (Outcome, Vec<(Instant, Progress)>) {
    let plan = rt.block_on(coordinator.plan(spec)).expect("planned");
    rt.block_on(coordinator.start(&plan)).expect("started");
    let mut seen = Vec::new();
    let outcome = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(120),
                coordinator.drive(&plan.id, |p| seen.push((Instant::now(), p.clone()))),
            )
            .await
        })
        .expect("ended within two minutes")
        .expect("driven");
    (outcome, seen)
}

/// One node: its registry, its agent, and a caller thread.
pub struct TestNode {
    pub name: String,
    pub registry: Arc<Registry<Echo>>,
    pub node: Option<Node<Echo>>,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    caller: Option<JoinHandle<Calls>>,
}

/// What a node's caller saw.
#[derive(Debug, Default, Clone)]
pub struct Calls {
    pub ok: u64,
    pub failed: u64,
    /// Calls that found no plugin (must stay 0).
    pub unserved: u64,
    /// Versions in the order first seen.
    pub versions: Vec<String>,
}

impl TestNode {
    pub fn start(
        cfg: NodeConfig,
        registry: Arc<Registry<Echo>>,
        store: DirStore,
        refuse: Option<&'static str>,
    ) -> Self {
        let counters = Arc::new(Counters::new());
        let name = cfg.node.clone();
        let node = Node::start(
            cfg,
            Arc::clone(&registry),
            store,
            move |_: &str, bytes: Vec<u8>, _: &Path| unpack(&bytes, refuse),
            Arc::new(()),
            Arc::clone(&counters),
        )
        .expect("node starts");
        let stop = Arc::new(AtomicBool::new(false));
        let caller = {
            let (registry, counters, stop) = (
                Arc::clone(&registry),
                Arc::clone(&counters),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut calls = Calls::default();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let answer = registry.call("echo", |c| {
                        let p = c.plugin();
                        p.count.fetch_add(1, Ordering::Relaxed);
                        (p.version.clone(), !p.fails)
                    });
                    match answer {
                        Ok((version, ok)) => {
                            counters.record("echo", ok, start.elapsed());
                            if ok {
                                calls.ok += 1;
                            } else {
                                calls.failed += 1;
                            }
                            if calls.versions.last() != Some(&version) {
                                calls.versions.push(version);
                            }
                        }
                        Err(_) => calls.unserved += 1,
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                calls
            })
        };
        TestNode {
            name,
            registry,
            node: Some(node),
            counters,
            stop,
            caller: Some(caller),
        }
    }

    pub fn version(&self) -> String {
        self.registry
            .call("echo", |c| c.plugin().version.clone())
            .expect("served")
    }

    pub fn node(&self) -> &Node<Echo> {
        self.node.as_ref().expect("running")
    }

    /// Stops the caller and the agent (as a crash: no withdrawal).
    pub fn kill(&mut self) -> Calls {
        self.stop.store(true, Ordering::Relaxed);
        let calls = self
            .caller
            .take()
            .map(|c| c.join().expect("caller"))
            .unwrap_or_default();
        drop(self.node.take());
        calls
    }

    /// Waits until `f` holds of this node, up to 30 s.
    pub fn wait(&self, what: &str, f: impl Fn(&TestNode) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f(self) {
            assert!(Instant::now() < deadline, "{}: never {what}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}
