//! The fleet's reads and transactions on etcd. Every decision is one
//! transaction guarded on etcd's own state (a key's absence), so that who
//! writes first wins and everyone else reads what won: that is what makes
//! the coordinator replaceable at any point and lets a node that gave up
//! waiting abort a stage without a race (the model's `CoordinatorCommit`,
//! `CoordinatorAbort`, `NodeTimeout`, ... are these functions).

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp,
    TxnOpResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::FleetError;
use crate::keys::Keys;
use crate::records::{
    decode, encode, Control, Decision, GateVerdict, Outcome, Plan, Report, Target,
};

/// A connection to the fleet's etcd and its key layout. Cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    keys: Keys,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("keys", &self.keys).finish()
    }
}

/// Everything etcd holds of one rollout, read in one request (so one
/// revision: a consistent snapshot).
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutState {
    /// The plan.
    pub plan: Plan,
    /// Reports by stage, then node.
    pub reports: BTreeMap<usize, BTreeMap<String, Report>>,
    /// Decisions by stage.
    pub decisions: BTreeMap<usize, Decision>,
    /// Gate verdicts by stage.
    pub gates: BTreeMap<usize, GateVerdict>,
    /// How it ended, if it has.
    pub outcome: Option<Outcome>,
    /// The operator's say.
    pub control: Control,
}

impl RolloutState {
    /// The stage nodes prepare for now: the first one undecided, every
    /// stage before it committed with its gate passed. `None` once the
    /// rollout has ended, or while a committed stage awaits its gate.
    pub fn open_stage(&self) -> Option<usize> {
        if self.outcome.is_some() {
            return None;
        }
        let k = (0..self.plan.stages.len()).find(|k| !self.decisions.contains_key(k))?;
        (0..k)
            .all(|j| self.gates.get(&j).is_some_and(|g| g.passed))
            .then_some(k)
    }

    /// The stage whose gate is due: committed, not yet judged.
    pub fn ungated_stage(&self) -> Option<usize> {
        if self.outcome.is_some() {
            return None;
        }
        (0..self.plan.stages.len()).find(|k| {
            self.decisions.get(k) == Some(&Decision::Commit) && !self.gates.contains_key(k)
        })
    }
}

impl Etcd {
    /// Connects to `endpoints` (lazily: a client made while etcd is down
    /// works once it is up), every request bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// [`FleetError::Etcd`]: the endpoints are malformed.
    pub async fn connect(
        endpoints: &[String],
        keys: Keys,
        timeout: Duration,
    ) -> Result<Self, FleetError> {
        let options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout);
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Etcd { client, keys })
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The client, for what this type does not cover.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The record at `key`, if any.
    ///
    /// # Errors
    ///
    /// etcd's, or [`FleetError::Record`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, FleetError> {
        let resp = self.client.clone().get(key, None).await?;
        resp.kvs()
            .first()
            .map(|kv| decode(key, kv.value()))
            .transpose()
    }

    /// Every record under `prefix`, by the rest of its key.
    ///
    /// # Errors
    ///
    /// etcd's, or [`FleetError::Record`].
    pub async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, FleetError> {
        let resp = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let rest = key.strip_prefix(prefix).unwrap_or(&key).to_owned();
                decode(&key, kv.value()).map(|v| (rest, v))
            })
            .collect()
    }

    /// Writes `value` at `key`.
    ///
    /// # Errors
    ///
    /// etcd's.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), FleetError> {
        self.client.clone().put(key, encode(value), None).await?;
        Ok(())
    }

    /// The rollouts going on, `(plugin, rollout id)`, of those whose
    /// `active` record is readable (one unreadable record does not hide the
    /// others).
    ///
    /// # Errors
    ///
    /// etcd's.
    pub async fn actives(&self) -> Result<Vec<(String, String)>, FleetError> {
        let prefix = self.keys.actives();
        let resp = self
            .client
            .clone()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let id: String = serde_json::from_slice(kv.value()).ok()?;
                Some((key.strip_prefix(&prefix)?.to_owned(), id))
            })
            .collect())
    }

    /// One rollout, read at one revision.
    ///
    /// # Errors
    ///
    /// [`FleetError::NoSuchRollout`], etcd's, or [`FleetError::Record`].
    pub async fn rollout(&self, id: &str) -> Result<RolloutState, FleetError> {
        let prefix = self.keys.rollout(id);
        let resp = self
            .client
            .clone()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut plan = None;
        let mut control = Control::Run;
        let mut outcome = None;
        let mut reports: BTreeMap<usize, BTreeMap<String, Report>> = BTreeMap::new();
        let mut decisions = BTreeMap::new();
        let mut gates = BTreeMap::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let rest = &key[prefix.len().min(key.len())..];
            let parts: Vec<&str> = rest.split('/').collect();
            let stage = |s: &str| -> Result<usize, FleetError> {
                s.parse().map_err(|_| FleetError::Record {
                    key: key.clone(),
                    reason: "the stage is not a number".to_owned(),
                })
            };
            match parts.as_slice() {
                ["plan"] => plan = Some(decode::<Plan>(&key, kv.value())?),
                ["control"] => control = decode(&key, kv.value())?,
                ["outcome"] => outcome = Some(decode(&key, kv.value())?),
                ["stages", k, "decision"] => {
                    decisions.insert(stage(k)?, decode(&key, kv.value())?);
                }
                ["stages", k, "gate"] => {
                    gates.insert(stage(k)?, decode(&key, kv.value())?);
                }
                ["stages", k, "reports", node] => {
                    reports
                        .entry(stage(k)?)
                        .or_default()
                        .insert((*node).to_owned(), decode(&key, kv.value())?);
                }
                // Keys of later versions of this crate: not ours to judge.
                _ => {}
            }
        }
        Ok(RolloutState {
            plan: plan.ok_or_else(|| FleetError::NoSuchRollout(id.to_owned()))?,
            reports,
            decisions,
            gates,
            outcome,
            control,
        })
    }

    /// Creates a rollout: its plan, and the plugin's `active` key, only if
    /// no rollout of the plugin is going on.
    ///
    /// # Errors
    ///
    /// [`FleetError::Busy`], or etcd's.
    pub async fn create(&self, plan: &Plan) -> Result<(), FleetError> {
        let active = self.keys.active(&plan.plugin);
        let plan_key = self.keys.plan(&plan.id);
        let txn = Txn::new()
            .when([
                Compare::create_revision(active.as_str(), CompareOp::Equal, 0),
                Compare::create_revision(plan_key.as_str(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(active.as_str(), encode(&plan.id), None),
                TxnOp::put(plan_key.as_str(), encode(plan), None),
                TxnOp::put(self.keys.control(&plan.id), encode(&Control::Run), None),
            ])
            .or_else([TxnOp::get(active.as_str(), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            return Ok(());
        }
        let current = first_value(&resp.op_responses())
            .and_then(|v| serde_json::from_slice::<String>(&v).ok());
        Err(match current {
            Some(active) => FleetError::Busy {
                plugin: plan.plugin.clone(),
                active,
            },
            None => FleetError::Plan(format!("a rollout `{}` exists already", plan.id)),
        })
    }

    /// Decides `stage` commit, and assigns its nodes the new version, if
    /// nothing is decided yet. Returns the decision that stands.
    ///
    /// # Errors
    ///
    /// etcd's, or [`FleetError::Record`].
    pub async fn commit_stage(&self, plan: &Plan, stage: usize) -> Result<Decision, FleetError> {
        let mut ops = vec![TxnOp::put(
            self.keys.decision(&plan.id, stage),
            encode(&Decision::Commit),
            None,
        )];
        for node in plan
            .stages
            .get(stage)
            .map(|s| s.nodes.as_slice())
            .unwrap_or_default()
        {
            ops.push(TxnOp::put(
                self.keys.assign(node, &plan.plugin),
                encode(&plan.to),
                None,
            ));
        }
        self.decide(plan, stage, ops).await
    }

    /// Decides `stage` abort, if nothing is decided yet, ending the
    /// rollout: every node of the plan is assigned the old version again
    /// (stages committed before this one are reverted). Returns the
    /// decision that stands.
    ///
    /// # Errors
    ///
    /// etcd's, or [`FleetError::Record`].
    pub async fn abort_stage(
        &self,
        plan: &Plan,
        stage: usize,
        reason: &str,
    ) -> Result<Decision, FleetError> {
        let decision = Decision::Abort {
            reason: reason.to_owned(),
        };
        let outcome = Outcome::Aborted {
            stage,
            reason: reason.to_owned(),
        };
        let mut ops = vec![TxnOp::put(
            self.keys.decision(&plan.id, stage),
            encode(&decision),
            None,
        )];
        ops.extend(self.ending(plan, &outcome, &plan.from));
        self.decide(plan, stage, ops).await
    }

    async fn decide(
        &self,
        plan: &Plan,
        stage: usize,
        ops: Vec<TxnOp>,
    ) -> Result<Decision, FleetError> {
        let key = self.keys.decision(&plan.id, stage);
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                Compare::create_revision(self.keys.outcome(&plan.id), CompareOp::Equal, 0),
            ])
            .and_then(ops)
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            // Read back what was written, the one source of truth.
            return self.get(&key).await?.ok_or_else(|| FleetError::Record {
                key,
                reason: "written and gone".to_owned(),
            });
        }
        match first_value(&resp.op_responses()) {
            Some(bytes) => decode(&key, &bytes),
            // Undecided, but the rollout ended (an operator, a revert):
            // nothing may commit.
            None => Ok(Decision::Abort {
                reason: "the rollout has ended".to_owned(),
            }),
        }
    }

    /// Records a stage's gate, once; a failed gate reverts the rollout
    /// (every node of the plan assigned the old version). Nothing happens
    /// if the rollout ended or the gate was judged already. Returns whether
    /// this call wrote the verdict.
    ///
    /// # Errors
    ///
    /// etcd's.
    pub async fn judge(
        &self,
        plan: &Plan,
        stage: usize,
        verdict: &GateVerdict,
    ) -> Result<bool, FleetError> {
        let mut ops = vec![TxnOp::put(
            self.keys.gate(&plan.id, stage),
            encode(verdict),
            None,
        )];
        if !verdict.passed {
            let outcome = Outcome::Reverted {
                stage,
                reason: verdict
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the gate failed".to_owned()),
            };
            ops.extend(self.ending(plan, &outcome, &plan.from));
        }
        // Written once: two coordinators that judged differently cannot
        // both stand (the first verdict does).
        let gate = Some(self.keys.gate(&plan.id, stage));
        self.if_running_and(plan, gate, ops).await
    }

    /// Reverts a rollout (an operator's abort after a commit), if it has
    /// not ended. Returns whether this call ended it.
    ///
    /// # Errors
    ///
    /// etcd's.
    pub async fn revert(
        &self,
        plan: &Plan,
        stage: usize,
        reason: &str,
    ) -> Result<bool, FleetError> {
        let outcome = Outcome::Reverted {
            stage,
            reason: reason.to_owned(),
        };
        let ops = self.ending(plan, &outcome, &plan.from);
        self.if_running(plan, ops).await
    }

    /// Completes a rollout: the fleet's version becomes the new one.
    /// Returns whether this call ended it.
    ///
    /// # Errors
    ///
    /// etcd's.
    pub async fn complete(&self, plan: &Plan) -> Result<bool, FleetError> {
        let mut ops = self.ending(plan, &Outcome::Done, &plan.to);
        ops.push(TxnOp::put(
            self.keys.fleet(&plan.plugin),
            encode(&plan.to),
            None,
        ));
        self.if_running(plan, ops).await
    }

    async fn if_running(&self, plan: &Plan, ops: Vec<TxnOp>) -> Result<bool, FleetError> {
        self.if_running_and(plan, None, ops).await
    }

    /// `ops` if the rollout has not ended (and, given `absent`, that key
    /// does not exist).
    async fn if_running_and(
        &self,
        plan: &Plan,
        absent: Option<String>,
        ops: Vec<TxnOp>,
    ) -> Result<bool, FleetError> {
        let mut when = vec![Compare::create_revision(
            self.keys.outcome(&plan.id),
            CompareOp::Equal,
            0,
        )];
        if let Some(key) = absent {
            when.push(Compare::create_revision(key, CompareOp::Equal, 0));
        }
        let txn = Txn::new().when(when).and_then(ops);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    /// The writes that end a rollout: its outcome, every node of the plan
    /// assigned `to`, and the plugin free for the next rollout.
    fn ending(&self, plan: &Plan, outcome: &Outcome, to: &Target) -> Vec<TxnOp> {
        let mut ops = vec![
            TxnOp::put(self.keys.outcome(&plan.id), encode(outcome), None),
            TxnOp::delete(self.keys.active(&plan.plugin), None::<DeleteOptions>),
        ];
        for stage in &plan.stages {
            for node in &stage.nodes {
                ops.push(TxnOp::put(
                    self.keys.assign(node, &plan.plugin),
                    encode(to),
                    None,
                ));
            }
        }
        ops
    }
}

fn first_value(responses: &[TxnOpResponse]) -> Option<Vec<u8>> {
    responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    })
}
