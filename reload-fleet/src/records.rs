//! What goes into etcd, as JSON: plans, reports, decisions, gate verdicts,
//! outcomes, node statuses. Every record is read back with a typed error
//! on garbage ([`crate::FleetError::Record`]), never a
//! panic: etcd is shared, and anyone with access can write anything.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::FleetError;

/// One package: a version of a plugin, where to fetch it, and its
/// SHA-256 (the bytes fetched must have it, or nothing is loaded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The plugin's version (as its manifest says).
    pub version: String,
    /// SHA-256 of the package's bytes, lowercase hex.
    pub digest: String,
    /// Where the package is, for the [`PackageStore`](crate::PackageStore).
    pub location: String,
}

/// One stage of a plan: the nodes that prepare and commit together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// A name for people (`canary`, `half`, `rest`).
    pub name: String,
    /// Its nodes.
    pub nodes: Vec<String>,
}

/// What a stage must show after its commit, over its soak window, for the
/// rollout to go on. Figures are the [`Health`] the stage's nodes publish,
/// counted from the moment every node of the stage serves the new version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    /// How long the stage serves before it is judged.
    #[serde(with = "millis")]
    pub soak: Duration,
    /// The highest share of calls that may fail (0.0 to 1.0).
    pub max_error_rate: f64,
    /// Calls the stage must serve over the soak to be judged at all: fewer
    /// is no evidence, and fails the gate.
    pub min_calls: u64,
    /// The highest p99 latency a node may report, in microseconds (`None`:
    /// not judged).
    pub max_p99_us: Option<u64>,
}

impl Default for GateSpec {
    fn default() -> Self {
        GateSpec {
            soak: Duration::from_secs(10),
            max_error_rate: 0.01,
            min_calls: 1,
            max_p99_us: None,
        }
    }
}

/// A rollout: one plugin, from one version to another, in stages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The rollout's id (a key segment).
    pub id: String,
    /// The plugin.
    pub plugin: String,
    /// The version rolled out.
    pub to: Target,
    /// The version it replaces, which a revert goes back to.
    pub from: Target,
    /// The stages, in order; every node in at most one.
    pub stages: Vec<Stage>,
    /// Each stage's health gate.
    pub gate: GateSpec,
    /// How long a node waits for its stage's decision once it has
    /// prepared, before it aborts the stage itself (and how long the
    /// coordinator waits for every report).
    #[serde(with = "millis")]
    pub prepare_timeout: Duration,
    /// How long, after a commit, every node of the stage has to serve the
    /// new version before the gate fails.
    #[serde(with = "millis")]
    pub apply_timeout: Duration,
}

/// A node's answer to a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Prepared: fetched, verified, linked, initialized, its state and
    /// resources checked; waiting for the decision, the old version
    /// serving.
    Ready,
    /// It cannot run the version.
    Refused(Refusal),
}

/// Why a node refused a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// The package could not be fetched.
    #[error("fetching {location} failed: {reason}")]
    Fetch {
        /// Where from.
        location: String,
        /// The store's error.
        reason: String,
    },
    /// The bytes fetched are not the ones the plan names.
    #[error("digest mismatch: the plan names {expected}, the bytes are {found}")]
    Digest {
        /// The plan's.
        expected: String,
        /// The bytes'.
        found: String,
    },
    /// The bytes are not a package the host can load.
    #[error("unpacking failed: {reason}")]
    Unpack {
        /// The host's error.
        reason: String,
    },
    /// The node's registry refused the reload (link, init, a requirement,
    /// the verifier, state that does not carry, a resource check, ...).
    #[error("the registry refused it ({reason}): {message}")]
    Registry {
        /// [`RegistryError::reason`](reload_core::registry::RegistryError::reason).
        reason: String,
        /// The error, as text.
        message: String,
    },
    /// The node does not host the plugin.
    #[error("this node does not host `{plugin}`")]
    NotHosted {
        /// The plugin.
        plugin: String,
    },
}

/// A stage's decision: written once, by whoever writes first (the
/// coordinator, or a node that gave up waiting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Every node of the stage commits what it prepared.
    Commit,
    /// Every node drops what it prepared; the rollout ends, reverted.
    Abort {
        /// Why (a refusal, a timeout, an operator).
        reason: String,
    },
}

/// A stage's health gate, judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// The gate passed.
    pub passed: bool,
    /// Calls the stage served over the soak.
    pub calls: u64,
    /// Of those, failed.
    pub errors: u64,
    /// The highest p99 a node of the stage reported, in microseconds.
    pub p99_us: u64,
    /// Why it failed, if it did.
    pub reason: Option<String>,
}

/// How a rollout ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every stage committed and passed its gate; the fleet's version is
    /// the new one.
    Done,
    /// A stage was aborted before it committed; every node is assigned the
    /// old version.
    Aborted {
        /// The stage.
        stage: usize,
        /// Why.
        reason: String,
    },
    /// A gate failed (or an operator aborted after a commit); every node is
    /// assigned the old version.
    Reverted {
        /// The stage whose gate failed.
        stage: usize,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Done => write!(f, "done: the fleet serves the new version"),
            Outcome::Aborted { stage, reason } => write!(f, "aborted at stage {stage}: {reason}"),
            Outcome::Reverted { stage, reason } => {
                write!(f, "reverted after stage {stage}: {reason}")
            }
        }
    }
}

/// An operator's say over a running rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Go on.
    Run,
    /// Open no further stage (one under way finishes its decision and
    /// gate).
    Pause,
    /// Abort the stage under way, or revert what committed.
    Abort,
}

/// A node's health figures for one plugin, cumulative since the node
/// started (the coordinator takes differences).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Calls served.
    pub calls: u64,
    /// Of those, failed.
    pub errors: u64,
    /// The p99 latency over the last period, in microseconds.
    pub p99_us: u64,
}

/// What a node serves of one plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serving {
    /// Version.
    pub version: String,
    /// SHA-256 of its package.
    pub digest: String,
    /// Its generation in the node's slot.
    pub generation: Option<u64>,
}

/// What a node publishes under `nodes/<node>`, on its lease.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// What it serves, by plugin.
    pub serving: BTreeMap<String, Serving>,
    /// Its health, by plugin.
    pub health: BTreeMap<String, Health>,
    /// An assignment it could not apply, by plugin: why.
    pub behind: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch, when published.
    pub at_ms: u64,
}

/// Reads a record, or says what is wrong with it.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &str,
    bytes: &[u8],
) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|e| FleetError::Record {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A record as JSON.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records hold strings, numbers, maps with string keys and
    // durations: serde_json cannot fail on them.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Durations as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_a_typed_error() {
        let report = Report::Refused(Refusal::Digest {
            expected: "aa".into(),
            found: "bb".into(),
        });
        let bytes = encode(&report);
        assert_eq!(decode::<Report>("k", &bytes).expect("decoded"), report);
        assert_eq!(
            String::from_utf8(encode(&Report::Ready)).expect("utf8"),
            r#"{"report":"ready"}"#
        );
        match decode::<Report>("/reload/x", b"\xff not json") {
            Err(FleetError::Record { key, .. }) => assert_eq!(key, "/reload/x"),
            other => panic!("expected a record error, got {other:?}"),
        }
        let gate = GateSpec::default();
        let back: GateSpec = decode("g", &encode(&gate)).expect("decoded");
        assert_eq!(back, gate);
    }
}
