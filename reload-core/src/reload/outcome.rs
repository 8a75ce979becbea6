//! What a committed reload hands the host: [`Committed`]. (A failed one
//! is a [`ReloadError`](crate::ReloadError).)

use std::fmt;
use std::time::Duration;

use crate::state::Draining;
use crate::transfer::Transfer;
use crate::{Hooks, Plugin};

/// A committed reload: the old version (`Draining`; already drained in
/// quiesced mode) and what happened.
pub struct Committed<P: Hooks> {
    /// The version cut over from. Wait on it to see it finalized.
    pub old: Plugin<P, Draining>,
    /// Generation cut over to.
    pub generation: u64,
    /// How long new calls waited at the gate (quiesced mode).
    pub quiesce: Option<Duration>,
    /// What was carried over.
    pub transfer: Transfer,
}

impl<P: Hooks> fmt::Debug for Committed<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("old", &self.old)
            .field("generation", &self.generation)
            .field("quiesce", &self.quiesce)
            .field("transfer", &self.transfer)
            .finish()
    }
}
