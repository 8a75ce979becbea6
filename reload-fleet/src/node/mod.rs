//! The node agent: one per host process. It registers the node (its status
//! on an etcd lease, refreshed while it lives), comes up on the fleet's
//! committed version, takes part in rollouts, and otherwise keeps the
//! node on what the fleet assigned it.
//!
//! What it does, each time etcd changes (a watch wakes it) and every
//! `resync` besides (a watch event lost, or etcd back after an outage):
//!
//! - **prepare**: a rollout's open stage names this node and it has not
//!   answered: fetch the package, verify its digest, unpack it, and reload
//!   it with [`Registry::reload_with_barrier`]: linked, initialized, state
//!   and resources checked, while the old version serves. Inside the
//!   barrier it reports `ready` and waits for the stage's decision; any
//!   failure before is reported as a typed [`Refusal`]. A decision of
//!   `commit` commits the prepared reload; `abort` drops it. With no
//!   decision within the plan's `prepare_timeout`, the node writes `abort`
//!   itself if nothing is decided yet (a transaction: if the coordinator's
//!   `commit` won, it commits instead); with etcd out of reach it drops
//!   what it prepared and catches up later.
//! - **reconcile**: otherwise, if what it serves is not its assignment (a
//!   revert, a commit it missed, a restart), reload the assignment.
//!
//! A node that loses etcd serves on what it has. A node that starts reads
//! its assignment before it serves; with etcd out of reach it comes up on
//! the last assignment it applied (kept in its state directory with the
//! package, verified), and failing that on what the host registered.
//!
//! The agent runs on a runtime of its own (two threads), so a host needs
//! no async runtime to use it; [`Node::start`] blocks (call it outside an
//! async context, or through `spawn_blocking`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{PutOptions, WatchOptions, WatchStream};
use parking_lot::Mutex;
use reload_core::registry::{Package, Registry, RegistryError};
use reload_core::{ReloadOptions, Stateful};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::error::FleetError;
use crate::etcd::Etcd;
use crate::health::HealthSource;
use crate::keys::{valid_name, Keys};
use crate::package::{Cache, PackageStore, Unpack};
use crate::records::{
    decode, encode, Decision, NodeStatus, Plan, Refusal, Report, Serving, Target,
};

mod agent;
mod apply;
mod prepare;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name (a key segment: letters, digits, `-`, `_`, `.`).
    pub node: String,
    /// The plugins (registry names) it takes part in rollouts of.
    pub plugins: Vec<String>,
    /// etcd's client endpoints (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// The key layout.
    pub keys: Keys,
    /// Its own directory: the last assignment applied, and the verified
    /// packages, by digest.
    pub state_dir: PathBuf,
    /// The TTL of its status's lease (rounded up to whole seconds; at
    /// least 2 s).
    pub lease_ttl: Duration,
    /// How often it reads etcd without being woken, and publishes its
    /// status.
    pub resync: Duration,
    /// Each etcd request's bound.
    pub request_timeout: Duration,
    /// How long a failed assignment waits before it is tried again.
    pub retry: Duration,
    /// The reloads' options (commits and reconciliations).
    pub reload: ReloadOptions,
}

impl NodeConfig {
    /// The options as the agent uses them: `resync`, `request_timeout`
    /// and `retry` at least 10 ms (zero would spin), the lease TTL
    /// between 2 s and etcd's maximum (9 000 000 000 s).
    pub fn clamped(mut self) -> Self {
        let floor = Duration::from_millis(10);
        self.resync = self.resync.max(floor);
        self.request_timeout = self.request_timeout.max(floor);
        self.retry = self.retry.max(floor);
        self.lease_ttl = self
            .lease_ttl
            .clamp(Duration::from_secs(2), Duration::from_secs(9_000_000_000));
        self
    }

    /// A node with the defaults: lease 5 s, resync 500 ms, requests 2 s,
    /// retry 2 s, quiesced reloads with a 30 s drain.
    pub fn new(
        node: &str,
        plugins: &[&str],
        endpoints: &[&str],
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        NodeConfig {
            node: node.to_owned(),
            plugins: plugins.iter().map(|p| (*p).to_owned()).collect(),
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            keys: Keys::default(),
            state_dir: state_dir.into(),
            lease_ttl: Duration::from_secs(5),
            resync: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            retry: Duration::from_secs(2),
            reload: ReloadOptions::quiesced(Duration::from_secs(30)),
        }
    }
}

/// What a node came up on, per plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warmed {
    /// Its assignment (or the fleet's version) read from etcd.
    Fleet(Target),
    /// etcd out of reach: the last assignment it applied, from its state
    /// directory.
    Local(Target),
    /// Nothing assigned or kept (or applying it failed): what the host
    /// registered.
    Host {
        /// Why not an assignment.
        why: String,
    },
}

/// Something a node did, for the host's log and the tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The plugin.
    pub plugin: String,
    /// What.
    pub what: What,
}

/// What a node did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    /// Prepared a stage's version and reported ready.
    Prepared {
        /// The rollout.
        rollout: String,
        /// The stage.
        stage: usize,
    },
    /// Refused a stage's version.
    Refused {
        /// The rollout.
        rollout: String,
        /// Why.
        refusal: Refusal,
    },
    /// Committed a prepared version.
    Committed {
        /// The rollout.
        rollout: String,
        /// The version.
        version: String,
    },
    /// Dropped a prepared version.
    Aborted {
        /// The rollout.
        rollout: String,
        /// Why.
        reason: String,
    },
    /// Moved to its assignment (a revert, a missed commit, a start).
    Applied {
        /// The version.
        version: String,
    },
    /// Could not apply a version (its assignment, or a decided commit).
    Behind {
        /// The version.
        version: String,
        /// Why.
        reason: String,
    },
}

/// A running node agent. Dropping it stops the agent as a crash would
/// (its status stays until its lease expires); [`Node::stop`] withdraws
/// it first.
pub struct Node<P: Stateful> {
    shared: Arc<Shared<P>>,
    stop: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
    warmed: BTreeMap<String, Warmed>,
}

struct Shared<P: Stateful> {
    cfg: NodeConfig,
    etcd: Etcd,
    registry: Arc<Registry<P>>,
    store: Arc<dyn PackageStore>,
    unpack: Arc<dyn Unpack<P>>,
    cx: Arc<P::Context>,
    health: Arc<dyn HealthSource>,
    cache: Cache,
    local: Mutex<Local>,
    wake: Notify,
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Local {
    preparing: BTreeMap<String, Preparing>,
    applying: BTreeSet<String>,
    /// Per plugin: the digest that failed, when, and why.
    behind: BTreeMap<String, (String, Instant, String)>,
    events: Vec<NodeEvent>,
    stopped: bool,
}

struct Preparing {
    rollout: String,
    stage: usize,
    decide: mpsc::Sender<Decision>,
    sent: bool,
}

const MAX_EVENTS: usize = 10_000;

impl<P> Node<P>
where
    P: Stateful,
    P::Context: Send + Sync + 'static,
{
    /// Starts the agent: connects, comes up on the fleet's version (see
    /// the [module docs](self)), and goes on in the background. Blocks
    /// until the node serves what it should; call it before serving.
    ///
    /// # Errors
    ///
    /// [`FleetError::Start`] when called inside an async context (it would
    /// block a runtime's thread); [`FleetError::Plan`] for a node or plugin name that cannot be a key
    /// segment; [`FleetError::Io`] if the runtime or the state directory
    /// cannot be made; [`FleetError::Etcd`] for malformed endpoints. etcd
    /// being out of reach is not an error.
    pub fn start(
        cfg: NodeConfig,
        registry: Arc<Registry<P>>,
        store: impl PackageStore,
        unpack: impl Unpack<P>,
        cx: Arc<P::Context>,
        health: impl HealthSource,
    ) -> Result<Self, FleetError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(FleetError::Start(
                "Node::start blocks until the node is warm: call it outside an async context \
                 (from an async host, through spawn_blocking)"
                    .to_owned(),
            ));
        }
        let cfg = cfg.clamped();
        for name in std::iter::once(&cfg.node).chain(&cfg.plugins) {
            if !valid_name(name) {
                return Err(FleetError::Plan(format!(
                    "`{name}` cannot name a node or plugin (letters, digits, `-`, `_`, `.`; at most 128)"
                )));
            }
        }
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| FleetError::Io { path, source }
        };
        std::fs::create_dir_all(cfg.state_dir.join("assigned")).map_err(io(&cfg.state_dir))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("fleet-{}", cfg.node))
            .enable_all()
            .build()
            .map_err(io(&cfg.state_dir))?;
        let etcd = runtime.block_on(Etcd::connect(
            &cfg.endpoints,
            cfg.keys.clone(),
            cfg.request_timeout,
        ))?;
        let shared = Arc::new(Shared {
            cache: Cache::new(cfg.state_dir.join("packages")),
            etcd,
            registry,
            store: Arc::new(store),
            unpack: Arc::new(unpack),
            cx,
            health: Arc::new(health),
            local: Mutex::new(Local::default()),
            wake: Notify::new(),
            runtime: runtime.handle().clone(),
            cfg,
        });
        let mut warmed = BTreeMap::new();
        for plugin in shared.cfg.plugins.clone() {
            let w = shared.warm(&plugin);
            warmed.insert(plugin, w);
        }
        // Registered before it returns: a coordinator planning right after
        // sees the node (unless etcd is out of reach).
        let mut lease = None;
        runtime.block_on(shared.publish_once(&mut lease));
        let (stop, stopped) = watch::channel(false);
        runtime.spawn(Shared::run(Arc::clone(&shared), stopped.clone()));
        runtime.spawn(Shared::publish(Arc::clone(&shared), lease, stopped));
        Ok(Node {
            shared,
            stop,
            runtime: Some(runtime),
            warmed,
        })
    }

    /// What each plugin came up on.
    pub fn warmed(&self) -> &BTreeMap<String, Warmed> {
        &self.warmed
    }

    /// What the node did so far (the last 10 000 events).
    pub fn events(&self) -> Vec<NodeEvent> {
        self.shared.local.lock().events.clone()
    }

    /// The status the node publishes.
    pub fn status(&self) -> NodeStatus {
        self.shared.status()
    }

    /// Stops the agent and withdraws the node's status (revoking its
    /// lease). A preparation under way is dropped, as at a crash.
    /// Inside an async context it cannot wait for the revocation: the
    /// status then goes when its lease expires, as after a crash.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_err() {
                // The publisher revokes the lease as it stops.
                runtime.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.stop.closed()).await;
                });
            }
            runtime.shutdown_background();
        }
    }
}

impl<P: Stateful> Drop for Node<P> {
    fn drop(&mut self) {
        {
            let mut local = self.shared.local.lock();
            local.stopped = true;
            // Preparations waiting for a decision drop what they prepared.
            for p in local.preparing.values_mut() {
                let _ = p.decide.send(Decision::Abort {
                    reason: "the node stopped".to_owned(),
                });
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl<P> Shared<P>
where
    P: Stateful,
    P::Context: Send + Sync + 'static,
{
    fn event(&self, plugin: &str, what: What) {
        let mut local = self.local.lock();
        if local.events.len() == MAX_EVENTS {
            local.events.remove(0);
        }
        local.events.push(NodeEvent {
            at_ms: now_ms(),
            plugin: plugin.to_owned(),
            what,
        });
    }

    fn serving(&self, plugin: &str) -> Option<Serving> {
        self.registry
            .list()
            .into_iter()
            .find(|i| i.name == plugin)
            .map(|i| Serving {
                version: i.version.to_string(),
                digest: i.digest.to_string(),
                generation: i.generation,
            })
    }

    fn status(&self) -> NodeStatus {
        let local = self.local.lock();
        NodeStatus {
            node: self.cfg.node.clone(),
            serving: self
                .cfg
                .plugins
                .iter()
                .filter_map(|p| self.serving(p).map(|s| (p.clone(), s)))
                .collect(),
            health: self
                .cfg
                .plugins
                .iter()
                .map(|p| {
                    // The host's code: a panic publishes no figures
                    // rather than stopping the node's status.
                    let h = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.health.health(p)
                    }));
                    (p.clone(), h.unwrap_or_default())
                })
                .collect(),
            behind: local
                .behind
                .iter()
                .map(|(p, (_, _, why))| (p.clone(), why.clone()))
                .collect(),
            at_ms: now_ms(),
        }
    }
}

/// Runs `f` on a thread of its own; whether one could be made (if not,
/// the caller takes back what it marked as under way, and the next step
/// tries again).
fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .is_ok()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
