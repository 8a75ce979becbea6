//! Where everything lives in etcd, under one prefix (`/reload/` unless the
//! host picks another, so that several fleets can share an etcd):
//!
//! | key | value | written by |
//! |---|---|---|
//! | `nodes/<node>` | [`NodeStatus`](crate::NodeStatus), on the node's lease | the node |
//! | `active/<plugin>` | the rollout id going on for the plugin | the coordinator, once (created only if absent) |
//! | `rollouts/<id>/plan` | the [`Plan`](crate::Plan) | the coordinator |
//! | `rollouts/<id>/control` | [`Control`](crate::Control) | the command-line tool |
//! | `rollouts/<id>/stages/<k>/reports/<node>` | [`Report`](crate::Report) | the node |
//! | `rollouts/<id>/stages/<k>/decision` | [`Decision`](crate::Decision), written once | the coordinator, or a node that timed out |
//! | `rollouts/<id>/stages/<k>/gate` | [`GateVerdict`](crate::GateVerdict) | the coordinator |
//! | `rollouts/<id>/outcome` | [`Outcome`](crate::Outcome) | whoever ends the rollout |
//! | `assign/<node>/<plugin>` | [`Target`](crate::Target): what the fleet committed for the node | the transactions that decide a stage or end a rollout |
//! | `fleet/<plugin>` | [`Target`](crate::Target): the fleet's version, for nodes no rollout assigned | the transaction that completes a rollout |

/// The key layout of one fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new("/reload/")
    }
}

impl Keys {
    /// Keys under `prefix` (a `/` is added if it does not end with one).
    pub fn new(prefix: &str) -> Self {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    /// The prefix everything lives under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every node's status.
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    /// One node's status.
    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.prefix)
    }

    /// The rollouts going on, one per plugin.
    pub fn actives(&self) -> String {
        format!("{}active/", self.prefix)
    }

    /// The rollout going on for `plugin`.
    pub fn active(&self, plugin: &str) -> String {
        format!("{}active/{plugin}", self.prefix)
    }

    /// Everything of one rollout.
    pub fn rollout(&self, id: &str) -> String {
        format!("{}rollouts/{id}/", self.prefix)
    }

    /// A rollout's plan.
    pub fn plan(&self, id: &str) -> String {
        format!("{}rollouts/{id}/plan", self.prefix)
    }

    /// A rollout's control (pause, resume, abort).
    pub fn control(&self, id: &str) -> String {
        format!("{}rollouts/{id}/control", self.prefix)
    }

    /// A rollout's outcome.
    pub fn outcome(&self, id: &str) -> String {
        format!("{}rollouts/{id}/outcome", self.prefix)
    }

    /// One node's report for a stage.
    pub fn report(&self, id: &str, stage: usize, node: &str) -> String {
        format!("{}rollouts/{id}/stages/{stage}/reports/{node}", self.prefix)
    }

    /// A stage's decision.
    pub fn decision(&self, id: &str, stage: usize) -> String {
        format!("{}rollouts/{id}/stages/{stage}/decision", self.prefix)
    }

    /// A stage's health gate.
    pub fn gate(&self, id: &str, stage: usize) -> String {
        format!("{}rollouts/{id}/stages/{stage}/gate", self.prefix)
    }

    /// Every assignment of one node.
    pub fn assigns(&self, node: &str) -> String {
        format!("{}assign/{node}/", self.prefix)
    }

    /// What the fleet committed for `node` of `plugin`.
    pub fn assign(&self, node: &str, plugin: &str) -> String {
        format!("{}assign/{node}/{plugin}", self.prefix)
    }

    /// The fleet's version of `plugin`.
    pub fn fleet(&self, plugin: &str) -> String {
        format!("{}fleet/{plugin}", self.prefix)
    }

    /// The fleet's versions, every plugin.
    pub fn fleets(&self) -> String {
        format!("{}fleet/", self.prefix)
    }
}

/// Whether `name` can be one segment of a key: non-empty, at most 128
/// bytes of ASCII letters, digits, `-`, `_` and `.`, and not `.` or `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_the_prefix() {
        let k = Keys::new("/f1");
        assert_eq!(k.node("a"), "/f1/nodes/a");
        assert_eq!(k.report("r1", 2, "a"), "/f1/rollouts/r1/stages/2/reports/a");
        assert!(k.report("r1", 2, "a").starts_with(&k.rollout("r1")));
        assert!(k.assign("a", "udf").starts_with(&k.assigns("a")));
        assert_eq!(Keys::default().fleet("udf"), "/reload/fleet/udf");
    }

    #[test]
    fn names_that_would_escape_their_segment_are_refused() {
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["node-1", "udf_v2", "a.b", &"x".repeat(128)] {
            assert!(valid_name(good), "{good:?}");
        }
    }
}
