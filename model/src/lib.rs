//! An exhaustive model of the reload protocol, checked with `stateright`.
//!
//! [`protocol`] models what `reload-core` does, one atomic step per action,
//! with the properties of the contract (`docs/contract.md`)
//! as named consts. [`quiesce`] models the quiesced reload with its state
//! transfer and two-phase resource handoff. [`registry`] models two plugins,
//! one requiring the other, reloaded as a group under calls that lease both.
//! [`fleet`] models a staged rollout across processes through etcd. [`broken`] models two designs seen in public hot-reload
//! implementations; the checker must refute them, which is what shows the
//! model can fail at all. [`trace`] prints a counterexample readably.
//!
//! ```
//! use model::protocol::ReloadSys;
//! use stateright::{Checker, Model};
//!
//! let checker = ReloadSys::small().checker().spawn_bfs().join();
//! checker.assert_properties();
//! assert!(checker.unique_state_count() > 1_000);
//! ```

pub mod broken;
pub mod fleet;
pub mod protocol;
pub mod quiesce;
pub mod registry;
pub mod trace;
