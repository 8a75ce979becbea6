//! The coordinator: turns a [`PlanSpec`] into a [`Plan`], writes it, and
//! drives it: per stage, wait for every node's report and decide (commit
//! when all are ready, abort on a refusal or a timeout); after a commit,
//! wait until the stage's nodes serve the new version, soak, and judge the
//! health gate (a failure reverts the fleet); after the last gate, make the
//! new version the fleet's.
//!
//! It keeps nothing of its own: each step reads the rollout from etcd and
//! writes with a transaction guarded on what it read, so a coordinator
//! that dies is replaced by running [`Coordinator::drive`] again anywhere
//! (the command-line tool's `drive`), and two that run at once cannot
//! decide differently.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::FleetError;
use crate::etcd::{Etcd, RolloutState};
use crate::keys::{valid_name, Keys};
use crate::records::{
    Control, Decision, GateSpec, GateVerdict, Health, NodeStatus, Outcome, Plan, Report, Stage,
    Target,
};

/// A stage as an operator writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageSpec {
    /// These nodes.
    Nodes {
        /// A name for people.
        name: String,
        /// The nodes.
        nodes: Vec<String>,
    },
    /// This share of the live nodes hosting the plugin (rounded up, at
    /// least one), taken in name order from those no earlier stage took.
    Percent {
        /// A name for people.
        name: String,
        /// 1 to 100.
        percent: u8,
    },
    /// Every live node hosting the plugin that no earlier stage took.
    Rest {
        /// A name for people.
        name: String,
    },
}

/// A rollout as an operator asks for it; [`Coordinator::plan`] resolves
/// it against the live fleet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanSpec {
    /// The rollout's id.
    pub id: String,
    /// The plugin.
    pub plugin: String,
    /// The version rolled out.
    pub to: Target,
    /// The version it replaces (default: the fleet's version of the
    /// plugin).
    #[serde(default)]
    pub from: Option<Target>,
    /// The stages.
    pub stages: Vec<StageSpec>,
    /// Each stage's gate.
    #[serde(default)]
    pub gate: GateSpec,
    /// See [`Plan::prepare_timeout`] (milliseconds; default 10 s).
    #[serde(default = "default_prepare_ms")]
    pub prepare_timeout_ms: u64,
    /// See [`Plan::apply_timeout`] (milliseconds; default 10 s).
    #[serde(default = "default_prepare_ms")]
    pub apply_timeout_ms: u64,
}

fn default_prepare_ms() -> u64 {
    10_000
}

/// What a rollout did, as the coordinator saw it (for a progress display).
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// A stage opened: its nodes prepare.
    Opened {
        /// The stage.
        stage: usize,
        /// Its nodes.
        nodes: Vec<String>,
    },
    /// A node answered.
    Reported {
        /// The stage.
        stage: usize,
        /// The node.
        node: String,
        /// Its answer.
        report: Report,
    },
    /// A stage was decided.
    Decided {
        /// The stage.
        stage: usize,
        /// The decision.
        decision: Decision,
    },
    /// Every node of the stage serves the new version; the soak begins.
    Soaking {
        /// The stage.
        stage: usize,
    },
    /// A gate was judged.
    Judged {
        /// The stage.
        stage: usize,
        /// The verdict.
        verdict: GateVerdict,
    },
    /// The rollout is paused before its next stage.
    Paused,
    /// etcd could not be reached; trying again.
    Unreachable(String),
    /// The rollout ended.
    Ended(Outcome),
}

/// One line for a progress display (the command-line tool's and the
/// demo's).
impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Opened { stage, nodes } => {
                write!(f, "stage {stage} open: {}", nodes.join(", "))
            }
            Progress::Reported {
                stage,
                node,
                report: Report::Ready,
            } => write!(f, "stage {stage}: {node} ready"),
            Progress::Reported {
                stage,
                node,
                report: Report::Refused(r),
            } => write!(f, "stage {stage}: {node} REFUSED: {r}"),
            Progress::Decided { stage, decision } => write!(f, "stage {stage}: {decision:?}"),
            Progress::Soaking { stage } => {
                write!(f, "stage {stage}: every node serves it; soaking")
            }
            Progress::Judged { stage, verdict } => write!(
                f,
                "stage {stage} gate {}: {} calls, {} errors, p99 {} µs{}",
                if verdict.passed { "passed" } else { "FAILED" },
                verdict.calls,
                verdict.errors,
                verdict.p99_us,
                verdict
                    .reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            Progress::Paused => write!(f, "paused"),
            Progress::Unreachable(e) => write!(f, "etcd out of reach: {e}"),
            Progress::Ended(o) => write!(f, "ended: {o}"),
        }
    }
}

/// The coordinator.
#[derive(Clone, Debug)]
pub struct Coordinator {
    etcd: Etcd,
    poll: Duration,
}

impl Coordinator {
    /// Connects to `endpoints`; every request bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// [`FleetError::Etcd`] for malformed endpoints.
    pub async fn connect(
        endpoints: &[String],
        keys: Keys,
        timeout: Duration,
    ) -> Result<Self, FleetError> {
        Ok(Coordinator {
            etcd: Etcd::connect(endpoints, keys, timeout).await?,
            poll: Duration::from_millis(100),
        })
    }

    /// How often it looks at etcd while it waits (default 100 ms).
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The etcd connection.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The live nodes' statuses, by node.
    ///
    /// # Errors
    ///
    /// etcd's, or an unreadable status.
    pub async fn nodes(&self) -> Result<BTreeMap<String, NodeStatus>, FleetError> {
        Ok(self
            .etcd
            .list(&self.etcd.keys().nodes())
            .await?
            .into_iter()
            .collect())
    }

    /// Resolves `spec` against the live fleet: stages as node lists, the
    /// version replaced.
    ///
    /// # Errors
    ///
    /// [`FleetError::Plan`]: a bad name, an empty stage, a node in two
    /// stages or not live, no version to go back to; etcd's.
    pub async fn plan(&self, spec: PlanSpec) -> Result<Plan, FleetError> {
        let bad = |m: String| Err(FleetError::Plan(m));
        if !valid_name(&spec.id) || !valid_name(&spec.plugin) {
            return bad(format!(
                "`{}` / `{}`: ids and plugins are key segments",
                spec.id, spec.plugin
            ));
        }
        let from = match spec.from {
            Some(f) => f,
            None => match self
                .etcd
                .get::<Target>(&self.etcd.keys().fleet(&spec.plugin))
                .await?
            {
                Some(f) => f,
                None => {
                    return bad(format!(
                        "the fleet has no version of `{}` to go back to: give `from`",
                        spec.plugin
                    ))
                }
            },
        };
        if from.digest == spec.to.digest {
            return bad("`to` is the version the fleet has".to_owned());
        }
        let live: Vec<String> = self
            .nodes()
            .await?
            .into_iter()
            .filter(|(_, s)| s.serving.contains_key(&spec.plugin))
            .map(|(n, _)| n)
            .collect();
        let mut taken = BTreeSet::new();
        let mut stages = Vec::new();
        for s in spec.stages {
            let (name, nodes) = match s {
                StageSpec::Nodes { name, nodes } => {
                    if let Some(n) = nodes.iter().find(|n| !valid_name(n)) {
                        return bad(format!("`{n}` cannot name a node"));
                    }
                    if let Some(n) = nodes.iter().find(|n| !live.contains(n)) {
                        return bad(format!(
                            "node `{n}` is not live, or does not host `{}`",
                            spec.plugin
                        ));
                    }
                    (name, nodes)
                }
                StageSpec::Percent { name, percent } => {
                    if !(1..=100).contains(&percent) {
                        return bad(format!("stage `{name}`: {percent} % is not 1 to 100"));
                    }
                    let want = (live.len() * usize::from(percent)).div_ceil(100).max(1);
                    let nodes = live
                        .iter()
                        .filter(|n| !taken.contains(*n))
                        .take(want)
                        .cloned()
                        .collect();
                    (name, nodes)
                }
                StageSpec::Rest { name } => {
                    let nodes = live
                        .iter()
                        .filter(|n| !taken.contains(*n))
                        .cloned()
                        .collect();
                    (name, nodes)
                }
            };
            if nodes.is_empty() {
                return bad(format!("stage `{name}` has no node"));
            }
            for n in &nodes {
                if !taken.insert(n.clone()) {
                    return bad(format!("node `{n}` is in two stages"));
                }
            }
            stages.push(Stage { name, nodes });
        }
        if stages.is_empty() {
            return bad("a plan needs a stage".to_owned());
        }
        if !(0.0..=1.0).contains(&spec.gate.max_error_rate) {
            return bad(format!(
                "max_error_rate {} is not 0 to 1",
                spec.gate.max_error_rate
            ));
        }
        Ok(Plan {
            id: spec.id,
            plugin: spec.plugin,
            to: spec.to,
            from,
            stages,
            gate: spec.gate,
            prepare_timeout: Duration::from_millis(spec.prepare_timeout_ms.max(1)),
            apply_timeout: Duration::from_millis(spec.apply_timeout_ms.max(1)),
        })
    }

    /// Writes the plan: stage 0 opens.
    ///
    /// # Errors
    ///
    /// [`FleetError::Busy`] while another rollout of the plugin goes on;
    /// etcd's.
    pub async fn start(&self, plan: &Plan) -> Result<(), FleetError> {
        self.etcd.create(plan).await
    }

    /// Sets a rollout's control.
    ///
    /// # Errors
    ///
    /// [`FleetError::NoSuchRollout`]; etcd's.
    pub async fn control(&self, id: &str, control: Control) -> Result<(), FleetError> {
        self.etcd.rollout(id).await?;
        self.etcd.put(&self.etcd.keys().control(id), &control).await
    }

    /// Drives rollout `id` to its end (see the [module docs](self)),
    /// telling `progress` what happens. etcd out of reach is waited out.
    ///
    /// # Errors
    ///
    /// [`FleetError::NoSuchRollout`], an unreadable record.
    pub async fn drive(
        &self,
        id: &str,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Outcome, FleetError> {
        let mut seen = Seen::default();
        loop {
            let state = match self.etcd.rollout(id).await {
                Ok(s) => s,
                Err(FleetError::Etcd(e)) => {
                    progress(&Progress::Unreachable(e.to_string()));
                    tokio::time::sleep(self.poll.max(Duration::from_millis(500))).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.step(&state, &mut seen, &mut progress).await {
                Ok(Some(outcome)) => {
                    progress(&Progress::Ended(outcome.clone()));
                    return Ok(outcome);
                }
                Ok(None) => {}
                Err(FleetError::Etcd(e)) => progress(&Progress::Unreachable(e.to_string())),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn step(
        &self,
        state: &RolloutState,
        seen: &mut Seen,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<Option<Outcome>, FleetError> {
        let plan = &state.plan;
        for (&k, d) in &state.decisions {
            if seen.decided.insert(k) {
                progress(&Progress::Decided {
                    stage: k,
                    decision: d.clone(),
                });
            }
        }
        if let Some(outcome) = &state.outcome {
            return Ok(Some(outcome.clone()));
        }
        if let Some(k) = state.ungated_stage() {
            if state.control == Control::Abort {
                self.etcd.revert(plan, k, "aborted by an operator").await?;
                return Ok(None);
            }
            self.gate(state, k, seen, progress).await?;
            return Ok(None);
        }
        let Some(k) = state.open_stage() else {
            // Every stage committed and passed: the fleet's version.
            self.etcd.complete(plan).await?;
            return Ok(None);
        };
        let opened = *seen.opened.entry(k).or_insert_with(|| {
            progress(&Progress::Opened {
                stage: k,
                nodes: plan.stages[k].nodes.clone(),
            });
            Instant::now()
        });
        if state.control == Control::Abort {
            self.etcd
                .abort_stage(plan, k, "aborted by an operator")
                .await?;
            return Ok(None);
        }
        let reports = state.reports.get(&k).cloned().unwrap_or_default();
        for (node, report) in &reports {
            if seen.reported.insert((k, node.clone())) {
                progress(&Progress::Reported {
                    stage: k,
                    node: node.clone(),
                    report: report.clone(),
                });
            }
        }
        let nodes = &plan.stages[k].nodes;
        if let Some((node, Report::Refused(why))) = reports
            .iter()
            .find(|(_, r)| matches!(r, Report::Refused(_)))
        {
            self.etcd
                .abort_stage(plan, k, &format!("node {node} refused: {why}"))
                .await?;
        } else if nodes.iter().all(|n| reports.get(n) == Some(&Report::Ready)) {
            self.etcd.commit_stage(plan, k).await?;
        } else if opened.elapsed()
            > plan
                .prepare_timeout
                .saturating_add(plan.prepare_timeout / 2)
        {
            let missing: Vec<&str> = nodes
                .iter()
                .filter(|n| !reports.contains_key(*n))
                .map(String::as_str)
                .collect();
            let why = format!(
                "no report from {} within {:?}",
                missing.join(", "),
                opened.elapsed()
            );
            self.etcd.abort_stage(plan, k, &why).await?;
        }
        Ok(None)
    }

    /// Waits until stage `k`'s nodes serve the new version, soaks, and
    /// judges the gate over every node on the new version.
    async fn gate(
        &self,
        state: &RolloutState,
        k: usize,
        seen: &mut Seen,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<(), FleetError> {
        let plan = &state.plan;
        let started = Instant::now();
        let fail = |reason: String| GateVerdict {
            passed: false,
            calls: 0,
            errors: 0,
            p99_us: 0,
            reason: Some(reason),
        };
        // Applied: every node of the stage serves the new version.
        loop {
            let nodes = self.nodes().await?;
            let lagging: Vec<&String> = plan.stages[k]
                .nodes
                .iter()
                .filter(|n| {
                    nodes
                        .get(*n)
                        .and_then(|s| s.serving.get(&plan.plugin))
                        .is_none_or(|s| s.digest != plan.to.digest)
                })
                .collect();
            if lagging.is_empty() {
                break;
            }
            if started.elapsed() > plan.apply_timeout {
                let names: Vec<&str> = lagging.iter().map(|s| s.as_str()).collect();
                let verdict = fail(format!(
                    "{} not serving {} within {:?}",
                    names.join(", "),
                    plan.to.version,
                    plan.apply_timeout
                ));
                if self.etcd.judge(plan, k, &verdict).await? {
                    progress(&Progress::Judged { stage: k, verdict });
                }
                return Ok(());
            }
            tokio::time::sleep(self.poll).await;
        }
        if seen.soaking.insert(k) {
            progress(&Progress::Soaking { stage: k });
        }
        let on_new: Vec<String> = plan.stages[..=k]
            .iter()
            .flat_map(|s| s.nodes.clone())
            .collect();
        let before = self.health(&plan.plugin, &on_new).await?;
        // A soak of more than a century is a century: `Instant` cannot
        // hold every `Duration` past now.
        let soak_end = Instant::now() + plan.gate.soak.min(Duration::from_secs(3_155_760_000));
        while Instant::now() < soak_end {
            if self.etcd.rollout(&plan.id).await?.control == Control::Abort {
                self.etcd.revert(plan, k, "aborted by an operator").await?;
                return Ok(());
            }
            tokio::time::sleep(
                self.poll
                    .min(soak_end.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        let after = self.health(&plan.plugin, &on_new).await?;
        let mut calls = 0;
        let mut errors = 0;
        let mut p99 = 0;
        for (node, a) in &after {
            let b = before.get(node).copied().unwrap_or_default();
            // A node that restarted counts from zero again.
            let (dc, de) = if a.calls < b.calls {
                (a.calls, a.errors)
            } else {
                (a.calls - b.calls, a.errors.saturating_sub(b.errors))
            };
            calls += dc;
            errors += de;
            p99 = p99.max(a.p99_us);
        }
        let g = &plan.gate;
        let reason = if calls < g.min_calls {
            Some(format!(
                "{calls} calls over the soak, fewer than the {} needed to judge",
                g.min_calls
            ))
        } else if (errors as f64) > g.max_error_rate * (calls as f64) {
            Some(format!(
                "error rate {:.4} ({errors} of {calls}) above {}",
                errors as f64 / calls as f64,
                g.max_error_rate
            ))
        } else if g.max_p99_us.is_some_and(|max| p99 > max) {
            Some(format!(
                "p99 {p99} µs above {} µs",
                g.max_p99_us.unwrap_or_default()
            ))
        } else {
            None
        };
        let verdict = GateVerdict {
            passed: reason.is_none(),
            calls,
            errors,
            p99_us: p99,
            reason,
        };
        if verdict.passed {
            // Paused: the passing verdict (which opens the next stage)
            // waits for a resume, or an abort.
            let mut told = false;
            loop {
                let control = self.etcd.rollout(&plan.id).await?.control;
                match control {
                    Control::Run => break,
                    Control::Abort => {
                        self.etcd.revert(plan, k, "aborted by an operator").await?;
                        return Ok(());
                    }
                    Control::Pause => {
                        if !told {
                            progress(&Progress::Paused);
                            told = true;
                        }
                        tokio::time::sleep(self.poll).await;
                    }
                }
            }
        }
        // Another coordinator may have judged first: its verdict stands.
        if self.etcd.judge(plan, k, &verdict).await? {
            progress(&Progress::Judged { stage: k, verdict });
        }
        Ok(())
    }

    async fn health(
        &self,
        plugin: &str,
        nodes: &[String],
    ) -> Result<BTreeMap<String, Health>, FleetError> {
        let statuses = self.nodes().await?;
        Ok(nodes
            .iter()
            .filter_map(|n| {
                let h = statuses.get(n)?.health.get(plugin)?;
                Some((n.clone(), *h))
            })
            .collect())
    }
}

/// What the progress display was told already.
#[derive(Default)]
struct Seen {
    opened: BTreeMap<usize, Instant>,
    reported: BTreeSet<(usize, String)>,
    decided: BTreeSet<usize>,
    soaking: BTreeSet<usize>,
}
