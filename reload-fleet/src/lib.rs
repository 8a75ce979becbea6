//! Plugin rollouts across a fleet of processes, on etcd.
//!
//! `reload-core` makes one process reload a plugin safely: every call on
//! one version, the old version drained before it is shut down, nothing
//! lost when a reload fails. Between processes there is nothing: a file
//! watcher on each node picks a new version up when it appears, so a bad
//! version reaches every node at once, and a version one node refuses is
//! already live on the others. This crate rolls a version out as a
//! transaction across processes, through etcd:
//!
//! - **two phases per stage.** Every node of a stage *prepares* the new
//!   version ([`Registry::reload_with_barrier`](reload_core::registry::Registry::reload_with_barrier):
//!   fetched, digest verified, linked, initialized, state and resources
//!   checked, the old version serving) and reports ready or a typed
//!   [`Refusal`]. Only when every node is ready does the coordinator write
//!   the stage's decision, `commit`; one refusal, or silence past the
//!   plan's timeout, writes `abort`, and no node of the stage ever serves
//!   the new version.
//! - **stages with health gates.** A canary first, then wider stages; after
//!   each commit, the stage serves for a soak window and the coordinator
//!   judges the nodes' published [`Health`] (error rate, calls, p99). A
//!   failed gate **reverts the fleet**: every node is assigned the old
//!   version again and moves back with an ordinary drained reload.
//! - **one source of truth.** A stage's decision is written once (a
//!   transaction guarded on the key's absence), together with the
//!   assignments it implies; a node moves to a version only on a `commit`
//!   decision or its assignment. The coordinator keeps nothing of its own,
//!   so any process can take over by driving the rollout again.
//! - **nodes that fail.** A node that loses etcd serves on; one that waits
//!   too long for a decision aborts the stage itself (if nothing is decided
//!   yet) and drops what it prepared; one that restarts comes up on its
//!   assignment, or, with etcd out of reach, on the last assignment it
//!   applied (kept with its package in its state directory), or on what
//!   the host registered.
//!
//! The protocol is modelled and checked exhaustively in the workspace's
//! `model` crate (`model::fleet`): only nodes of committed stages serve
//! the new version, an aborted stage leaves every node on the old one, and
//! every node ends on its assignment, under node crashes, restarts and
//! etcd outages; committing on ready without the barrier, and restarting
//! on the plan's version, are refuted with counterexamples.
//!
//! # Parts
//!
//! - [`Node`]: the agent a host process runs beside its
//!   [`Registry`](reload_core::registry::Registry).
//! - [`Coordinator`]: plans, starts and drives rollouts; the
//!   `reload-fleet` command-line tool wraps it.
//! - [`PackageStore`] / [`DirStore`], [`Unpack`]: where packages come from
//!   and how they become a host's plugins.
//! - [`records`]: what lives in etcd, and [`Keys`]: where.

pub mod coordinator;
mod error;
mod etcd;
mod health;
pub mod keys;
pub mod node;
mod package;
pub mod records;

pub use coordinator::{Coordinator, PlanSpec, Progress, StageSpec};
pub use error::FleetError;
pub use etcd::{Etcd, RolloutState};
pub use health::{Counters, HealthSource};
pub use keys::Keys;
pub use node::{Node, NodeConfig, NodeEvent, Warmed, What};
pub use package::{DirStore, PackageStore, Unpack};
pub use records::{
    Control, Decision, GateSpec, GateVerdict, Health, NodeStatus, Outcome, Plan, Refusal, Report,
    Serving, Stage, Target,
};
