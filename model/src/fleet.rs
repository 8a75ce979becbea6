//! A rollout across a fleet of processes, coordinated through etcd
//! (`reload-fleet`): one plugin goes from version 0 (old) to version 1
//! (new) in stages (a canary, then the rest).
//!
//! Roles:
//! - **etcd** is a linearizable store: every write below is one etcd
//!   transaction, so it is one atomic step here. It holds, per stage, each
//!   node's report (ready or refused) and the stage's **decision**, written
//!   once (a transaction guarded on the key not existing); and per node its
//!   **assignment**, the version the fleet committed for it, changed only by
//!   the transactions that decide a stage or revert the rollout.
//! - **nodes** prepare when their stage opens (fetch, verify, link, init,
//!   the reload's own prepare; a node may refuse), report, and commit or
//!   abort their prepared reload on the decision. A node that waits too long
//!   writes `abort` itself, if nothing is decided yet, and drops what it
//!   prepared. Apart from that, a node only ever moves to its assignment
//!   (reconciling after a revert, a lost event, or a reconnection). Nodes
//!   crash and restart (coming up on their assignment, or, cut off from
//!   etcd, on the last assignment they applied, kept on local disk), and
//!   lose etcd for a while (keeping their version meanwhile). A lost watch
//!   event is an interleaving in which the node does not act yet: every node
//!   action reads the store when it happens.
//! - **the coordinator** keeps nothing of its own: each of its actions is a
//!   transaction guarded only on what etcd holds, so a crash at any point is
//!   an interleaving where it stops acting, and a takeover is another
//!   process taking the same actions. It commits a stage when every node of
//!   it reported ready; aborts it on a refusal or a timeout (and reverts the
//!   stages committed before it); after a committed stage, passes its health
//!   gate or, for a bad version, fails it and reverts the fleet.
//!
//! Properties: **only nodes of committed stages serve the new version**,
//! **an aborted stage leaves every node on the old version**, and, on every
//! path, **every node ends on its assignment, and the rollout decided**.
//! Two broken designs must be refuted ([`Design`]): nodes that commit as
//! soon as they are ready (no barrier), and nodes that restart on the
//! plan's version rather than their assignment.

use stateright::{Model, Property};

/// Which design is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Design {
    /// `reload-fleet`'s: prepare, report, commit on the stage's decision.
    Barrier,
    /// Each node commits as soon as it has prepared; a refusal elsewhere
    /// aborts the stage after the fact.
    CommitOnReady,
    /// A restarting node loads the version the rollout's plan names.
    RestartOnPlan,
}

/// The system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSys {
    /// The stages, each a list of node indexes; every node is in one.
    pub stages: Vec<Vec<u8>>,
    /// A node that refuses the new version when it prepares.
    pub refuser: Option<u8>,
    /// The new version fails its health gate (may: the gate's verdict is
    /// the coordinator's choice here).
    pub bad_version: bool,
    /// Node crashes allowed in all.
    pub crashes: u8,
    /// Losses of etcd allowed in all (one node's, for a while).
    pub outages: u8,
    /// The design checked.
    pub design: Design,
}

impl FleetSys {
    /// The configuration `cargo test` checks by default: a canary and a
    /// stage of two, one crash, one outage, a version that may fail its
    /// gate.
    pub fn small() -> Self {
        FleetSys {
            stages: vec![vec![0], vec![1, 2]],
            refuser: None,
            bad_version: true,
            crashes: 1,
            outages: 1,
            design: Design::Barrier,
        }
    }

    fn nodes(&self) -> usize {
        self.stages.iter().map(Vec::len).sum()
    }

    fn stage_of(&self, node: u8) -> usize {
        self.stages
            .iter()
            .position(|s| s.contains(&node))
            .unwrap_or(usize::MAX)
    }
}

/// A stage's report from one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Report {
    /// Prepared: it can commit.
    Ready,
    /// Refused: it cannot run the new version.
    Refused,
}

/// A stage's decision, written once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Every node of the stage commits its prepared reload.
    Commit,
    /// Every node drops what it prepared.
    Abort,
}

/// Where the rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Stages are going on.
    Running,
    /// Every stage committed and passed its gate.
    Done,
    /// A stage aborted; every assignment is back on the old version.
    Aborted,
    /// A gate failed; every assignment is back on the old version.
    Reverted,
}

/// What etcd holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Store {
    /// Per stage, per node (index into the fleet), its report.
    pub reports: Vec<Vec<Option<Report>>>,
    /// Per stage, the decision.
    pub decisions: Vec<Option<Decision>>,
    /// Per stage, its health gate passed.
    pub passed: Vec<bool>,
    /// Per node, the version the fleet committed for it.
    pub assign: Vec<u8>,
    /// The rollout.
    pub outcome: Outcome,
}

/// One node process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// The version it serves (`None`: down).
    pub serving: Option<u8>,
    /// It holds a prepared reload of the new version.
    pub prepared: bool,
    /// It reaches etcd.
    pub connected: bool,
    /// The last assignment it applied (on its disk: survives a crash).
    pub disk: u8,
}

/// The state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FState {
    /// etcd.
    pub store: Store,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Crashes left.
    pub crashes_left: u8,
    /// Outages left.
    pub outages_left: u8,
    /// A node restarted while the rollout was running.
    pub restarted: bool,
    /// A node dropped a prepared reload on its own timeout.
    pub timed_out: bool,
}

/// An action, prefixed with its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FAction {
    /// Prepare the new version for its open stage and report.
    NodePrepare(u8),
    /// Commit the prepared reload: the stage decided commit.
    NodeCommit(u8),
    /// Drop the prepared reload: the stage decided abort.
    NodeAbort(u8),
    /// Waited too long: write `abort` if nothing is decided (only when
    /// connected), and drop the prepared reload.
    NodeTimeout(u8),
    /// Move to its assignment (not while it holds a prepared reload).
    NodeReconcile(u8),
    /// The process dies.
    NodeCrash(u8),
    /// The process starts again.
    NodeRestart(u8),
    /// It loses etcd.
    NodeLoseEtcd(u8),
    /// It reaches etcd again.
    NodeRegainEtcd(u8),
    /// Every node of the stage is ready: decide commit and assign them the
    /// new version.
    CoordinatorCommit(u8),
    /// A refusal or a timeout: decide abort, and revert the rollout.
    CoordinatorAbort(u8),
    /// The stage's soak went well.
    CoordinatorPassGate(u8),
    /// The stage's soak went badly: revert the rollout.
    CoordinatorFailGate(u8),
}

/// Only nodes whose stage committed serve version 1.
pub const ONLY_COMMITTED_STAGES_SERVE_NEW: &str =
    "only nodes of committed stages serve the new version";
/// A stage decided `abort` has every node of it on version 0.
pub const ABORTED_STAGE_STAYS_OLD: &str = "an aborted stage leaves every node on the old version";
/// On every path the rollout is decided and every node ends on its
/// assignment (up and connected).
pub const CONVERGES: &str = "every node ends on its assignment, and the rollout decided";
/// Non-vacuity: the whole rollout commits.
pub const ROLLOUT_COMPLETES: &str = "a rollout completes on every node";
/// Non-vacuity: a rollout is reverted by its gate.
pub const GATE_REVERTS: &str = "a failed gate reverts the fleet";
/// Non-vacuity: a stage aborts.
pub const STAGE_ABORTS: &str = "a stage aborts";
/// Non-vacuity: a node restarts mid-rollout.
pub const NODE_RESTARTS_MID_ROLLOUT: &str = "a node restarts mid-rollout";
/// Non-vacuity: a node times out on its own.
pub const NODE_TIMES_OUT: &str = "a node drops a prepared reload on its own timeout";

impl FleetSys {
    /// The stage open for preparing: the first undecided one, every one
    /// before it committed with its gate passed.
    fn open_stage(&self, st: &Store) -> Option<usize> {
        if st.outcome != Outcome::Running {
            return None;
        }
        let s = st.decisions.iter().position(Option::is_none)?;
        (0..s).all(|k| st.passed[k]).then_some(s)
    }

    /// Reverts: every assignment back to version 0.
    fn revert(st: &mut Store, outcome: Outcome) {
        st.outcome = outcome;
        st.assign.iter_mut().for_each(|a| *a = 0);
    }
}

impl Model for FleetSys {
    type State = FState;
    type Action = FAction;

    fn init_states(&self) -> Vec<FState> {
        let n = self.nodes();
        let s = self.stages.len();
        vec![FState {
            store: Store {
                reports: vec![vec![None; n]; s],
                decisions: vec![None; s],
                passed: vec![false; s],
                assign: vec![0; n],
                outcome: Outcome::Running,
            },
            nodes: vec![
                Node {
                    serving: Some(0),
                    prepared: false,
                    connected: true,
                    disk: 0,
                };
                n
            ],
            crashes_left: self.crashes,
            outages_left: self.outages,
            restarted: false,
            timed_out: false,
        }]
    }

    fn actions(&self, s: &FState, actions: &mut Vec<FAction>) {
        let st = &s.store;
        let open = self.open_stage(st);
        for (i, node) in s.nodes.iter().enumerate() {
            let id = i as u8;
            let stage = self.stage_of(id);
            let Some(_) = node.serving else {
                actions.push(FAction::NodeRestart(id));
                continue;
            };
            if node.connected {
                if open == Some(stage) && !node.prepared && st.reports[stage][i].is_none() {
                    actions.push(FAction::NodePrepare(id));
                }
                if node.prepared {
                    match st.decisions[stage] {
                        Some(Decision::Commit) => actions.push(FAction::NodeCommit(id)),
                        Some(Decision::Abort) => actions.push(FAction::NodeAbort(id)),
                        None => {}
                    }
                } else if node.serving != Some(st.assign[i]) {
                    actions.push(FAction::NodeReconcile(id));
                }
                if s.outages_left > 0 {
                    actions.push(FAction::NodeLoseEtcd(id));
                }
            } else {
                actions.push(FAction::NodeRegainEtcd(id));
            }
            if node.prepared {
                actions.push(FAction::NodeTimeout(id));
            }
            if s.crashes_left > 0 {
                actions.push(FAction::NodeCrash(id));
            }
        }
        if let Some(k) = open {
            let reports = self.stages[k]
                .iter()
                .map(|&n| st.reports[k][usize::from(n)]);
            if reports.clone().all(|r| r == Some(Report::Ready)) {
                actions.push(FAction::CoordinatorCommit(k as u8));
            }
            // A refusal, or a timeout: the coordinator may always give up.
            actions.push(FAction::CoordinatorAbort(k as u8));
        }
        if st.outcome == Outcome::Running {
            let committed = st
                .decisions
                .iter()
                .zip(&st.passed)
                .position(|(d, p)| *d == Some(Decision::Commit) && !p);
            if let Some(k) = committed {
                actions.push(FAction::CoordinatorPassGate(k as u8));
                if self.bad_version {
                    actions.push(FAction::CoordinatorFailGate(k as u8));
                }
            }
        }
    }

    fn next_state(&self, last: &FState, action: FAction) -> Option<FState> {
        let mut s = last.clone();
        let running = s.store.outcome == Outcome::Running;
        match action {
            FAction::NodePrepare(id) => {
                let i = usize::from(id);
                let stage = self.stage_of(id);
                if self.refuser == Some(id) {
                    s.store.reports[stage][i] = Some(Report::Refused);
                } else {
                    s.store.reports[stage][i] = Some(Report::Ready);
                    if self.design == Design::CommitOnReady {
                        s.nodes[i].serving = Some(1);
                        s.nodes[i].disk = 1;
                    } else {
                        s.nodes[i].prepared = true;
                    }
                }
            }
            FAction::NodeCommit(id) => {
                let node = &mut s.nodes[usize::from(id)];
                node.prepared = false;
                node.serving = Some(1);
                node.disk = 1;
            }
            FAction::NodeAbort(id) => s.nodes[usize::from(id)].prepared = false,
            FAction::NodeTimeout(id) => {
                let i = usize::from(id);
                let stage = self.stage_of(id);
                if s.nodes[i].connected && s.store.decisions[stage].is_none() {
                    s.store.decisions[stage] = Some(Decision::Abort);
                    Self::revert(&mut s.store, Outcome::Aborted);
                }
                s.nodes[i].prepared = false;
                s.timed_out = true;
            }
            FAction::NodeReconcile(id) => {
                let i = usize::from(id);
                let to = s.store.assign[i];
                s.nodes[i].serving = Some(to);
                s.nodes[i].disk = to;
            }
            FAction::NodeCrash(id) => {
                let node = &mut s.nodes[usize::from(id)];
                node.serving = None;
                node.prepared = false;
                s.crashes_left -= 1;
            }
            FAction::NodeRestart(id) => {
                let i = usize::from(id);
                let node = &mut s.nodes[i];
                let version = if self.design == Design::RestartOnPlan && running {
                    1
                } else if node.connected {
                    s.store.assign[i]
                } else {
                    // Cut off: the host's fallback, the last assignment
                    // this node applied.
                    node.disk
                };
                node.serving = Some(version);
                node.disk = version;
                s.restarted |= running;
            }
            FAction::NodeLoseEtcd(id) => {
                s.nodes[usize::from(id)].connected = false;
                s.outages_left -= 1;
            }
            FAction::NodeRegainEtcd(id) => s.nodes[usize::from(id)].connected = true,
            FAction::CoordinatorCommit(k) => {
                let k = usize::from(k);
                s.store.decisions[k] = Some(Decision::Commit);
                for &n in &self.stages[k] {
                    s.store.assign[usize::from(n)] = 1;
                }
            }
            FAction::CoordinatorAbort(k) => {
                s.store.decisions[usize::from(k)] = Some(Decision::Abort);
                Self::revert(&mut s.store, Outcome::Aborted);
            }
            FAction::CoordinatorPassGate(k) => {
                s.store.passed[usize::from(k)] = true;
                if s.store.passed.iter().all(|p| *p) {
                    s.store.outcome = Outcome::Done;
                }
            }
            FAction::CoordinatorFailGate(_) => Self::revert(&mut s.store, Outcome::Reverted),
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::<Self>::always(ONLY_COMMITTED_STAGES_SERVE_NEW, |m, s| {
                s.nodes.iter().enumerate().all(|(i, n)| {
                    n.serving != Some(1)
                        || s.store.decisions[m.stage_of(i as u8)] == Some(Decision::Commit)
                })
            }),
            Property::<Self>::always(ABORTED_STAGE_STAYS_OLD, |m, s| {
                m.stages.iter().enumerate().all(|(k, nodes)| {
                    s.store.decisions[k] != Some(Decision::Abort)
                        || nodes
                            .iter()
                            .all(|&n| s.nodes[usize::from(n)].serving != Some(1))
                })
            }),
            Property::<Self>::eventually(CONVERGES, |_, s| {
                s.store.outcome != Outcome::Running
                    && s.nodes.iter().enumerate().all(|(i, n)| {
                        n.connected && !n.prepared && n.serving == Some(s.store.assign[i])
                    })
            }),
            Property::<Self>::sometimes(ROLLOUT_COMPLETES, |_, s| {
                s.store.outcome == Outcome::Done && s.nodes.iter().all(|n| n.serving == Some(1))
            }),
            Property::<Self>::sometimes(GATE_REVERTS, |_, s| {
                s.store.outcome == Outcome::Reverted && s.nodes.iter().all(|n| n.serving == Some(0))
            }),
            Property::<Self>::sometimes(STAGE_ABORTS, |_, s| s.store.outcome == Outcome::Aborted),
            Property::<Self>::sometimes(NODE_RESTARTS_MID_ROLLOUT, |_, s| s.restarted),
            Property::<Self>::sometimes(NODE_TIMES_OUT, |_, s| s.timed_out),
        ]
    }
}
