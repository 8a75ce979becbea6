//! [`Names`]: the name map as calls by name read it, in a slot of its own.
//!
//! The registry's map is copy-on-write: every registration and
//! unregistration publishes a new snapshot. Its admin paths read the
//! snapshot through `arc-swap`, whose load writes the thread's debt slot
//! with a locked instruction (and its guard's drop pays it back with
//! another). A call by name needs the snapshot for longer than the lookup,
//! since the plugin's slot lives in it, and wants no locked instruction.
//! So the same snapshots are also published as the versions of a [`Slot`]:
//! a call by name takes a borrowed lease on the current snapshot (no locked
//! instruction, see the drain's design), finds the plugin, and keeps that
//! lease until the call ends, so the node it found outlives its own lease.
//!
//! A snapshot replaced here drains like any version: it is an orphan (its
//! handle is dropped at once, publication never waits on calls), finalized
//! by the next publication's reap, or by the registry's drop, once no call
//! by name holds it. Both copies are published under the admin lock, map
//! first: a call by name may read a snapshot an instant older than the
//! map, as if it had started an instant earlier, and by the time a
//! registration or unregistration returns, both show it.

use std::sync::Arc;

use super::Map;
use crate::{Hooks, Initialized, Plugin, Slot, Stateful};

/// One snapshot of the name map, as a slot version.
pub(crate) struct Names<P: Stateful>(pub(crate) Arc<Map<P>>);

impl<P: Stateful> Hooks for Names<P> {
    type Context = ();

    fn name(&self) -> &str {
        // Kept out of `tracing` and `metrics` (see the constant).
        crate::events::INTERNAL
    }
}

/// A snapshot, ready to publish.
fn ready<P: Stateful>(map: &Arc<Map<P>>) -> Plugin<Names<P>, Initialized> {
    // `Names` keeps the default hooks: its `init` does nothing and cannot
    // fail or panic.
    match Plugin::new(Names(Arc::clone(map))).ready(&()) {
        Ok(ready) => ready,
        Err(_) => unreachable!("the default init hook cannot fail"),
    }
}

/// The slot of snapshots.
pub(crate) fn slot<P: Stateful>(map: &Arc<Map<P>>) -> Slot<Names<P>> {
    Slot::new(ready(map))
}

/// Publishes `map` to calls by name; the replaced snapshot drains as an
/// orphan, and the ones that drained are finalized.
pub(crate) fn publish<P: Stateful>(names: &Slot<Names<P>>, map: &Arc<Map<P>>) {
    // Neither step can fail: `Names` has no hooks that could, the admin
    // lock serializes publications (no turn is held), and the slot is
    // never closed. Were one to fail anyway, the calls by name would keep
    // reading the previous snapshot: stale, never unsound.
    let _ = names.replace(ready(map));
    names.reap();
}
