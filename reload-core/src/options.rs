//! How to reload: [`ReloadOptions`] and the cut-over [`Mode`].

use std::fmt;
use std::time::Duration;

/// How a prepared reload cuts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// New calls go to the new version at once. State and resources are
    /// carried from a snapshot taken at prepare, while the old version was
    /// still serving: updates it makes after that are not carried. For
    /// plugins whose state is a cache or is rebuilt.
    Immediate,
    /// From commit, new calls wait at the old version's gate (for at most
    /// `timeout` plus the state transfer) while it drains; then its state
    /// and resources are carried over with no call running, and the new
    /// version is cut in. No update is lost. If the drain does not finish
    /// within `timeout`, or any step of the transfer fails, the gate reopens
    /// on the old version, which serves on with everything it had.
    Quiesced {
        /// How long to wait for the old version's drain.
        timeout: Duration,
    },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Immediate => f.write_str("immediate"),
            Mode::Quiesced { timeout } => write!(f, "quiesced({timeout:?})"),
        }
    }
}

/// How to reload: the [`Mode`], whether to wait for a reload already in
/// progress, and where the new version's state comes from.
#[derive(Clone, Debug)]
pub struct ReloadOptions {
    pub(crate) mode: Mode,
    pub(crate) wait_for_turn: Option<Duration>,
    pub(crate) state: StateSource,
}

#[derive(Clone, Debug)]
pub(crate) enum StateSource {
    /// `save` on the old version.
    Old,
    /// An envelope the host kept (a snapshot, or the salvage of a failed
    /// reload).
    Envelope(Vec<u8>),
}

impl ReloadOptions {
    /// Immediate cut-over (see [`Mode::Immediate`]).
    pub fn immediate() -> Self {
        ReloadOptions {
            mode: Mode::Immediate,
            wait_for_turn: None,
            state: StateSource::Old,
        }
    }

    /// Quiesced cut-over, waiting at most `timeout` for the drain (see
    /// [`Mode::Quiesced`]).
    pub fn quiesced(timeout: Duration) -> Self {
        ReloadOptions {
            mode: Mode::Quiesced { timeout },
            ..ReloadOptions::immediate()
        }
    }

    /// If another reload of the slot is in progress, wait up to `timeout`
    /// for it to finish instead of failing with [`ReloadFault::InProgress`](crate::ReloadFault::InProgress).
    pub fn wait_for_turn(mut self, timeout: Duration) -> Self {
        self.wait_for_turn = Some(timeout);
        self
    }

    /// Restore the new version from `envelope` (bytes of
    /// [`SavedState::encode`](crate::SavedState::encode), for example the salvage of a failed reload
    /// or a snapshot from [`Slot::snapshot`](crate::Slot::snapshot)) instead of saving the old
    /// version. Resources are still handed over from the old version.
    pub fn restore_from(mut self, envelope: Vec<u8>) -> Self {
        self.state = StateSource::Envelope(envelope);
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}
