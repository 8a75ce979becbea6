//! A quiesced commit racing a call, and a quiesce that times out and rolls
//! back: no update is lost (the save is ordered after every call on the old
//! version, the restore before every call on the new one) and a call at the
//! gate proceeds on whichever version is current when the gate opens.
#![cfg(loom)]

mod loom_support;

use std::sync::Arc;
use std::time::Duration;

use loom_support::{model, tallied_slot, Explored, Tallied, Tally};
use reload_core::{Committed, ReloadError, ReloadFault, ReloadOptions, Slot};

/// A slot on v1, one thread calling it once, and a quiesced commit to v2
/// (waiting at most `timeout` for the drain) racing that call. Returns the
/// commit's outcome and which version served the call.
#[allow(clippy::type_complexity)]
fn commit_racing_a_call(
    timeout: Duration,
) -> (
    Arc<Tally>,
    Arc<Slot<Tallied>>,
    Result<Committed<Tallied>, ReloadError<Tallied>>,
    u64,
) {
    let tally = Tally::new();
    let slot = tallied_slot(&tally);
    let caller = {
        let slot = Arc::clone(&slot);
        loom::thread::spawn(move || slot.call(Tallied::inc))
    };
    let outcome = slot
        .prepare(
            Tallied::new(2, &tally),
            &(),
            ReloadOptions::quiesced(timeout),
        )
        .and_then(|p| p.commit());
    let served_by = caller.join().expect("caller").expect("served");
    (tally, slot, outcome, served_by)
}

/// No deadline: a lost wake-up would park the commit forever, which loom
/// reports as a deadlock rather than letting a timeout hide it.
#[test]
fn quiesced_commit_races_a_call() {
    model(|| {
        let (tally, slot, outcome, served_by) = commit_racing_a_call(Duration::MAX);
        let Ok(committed) = outcome else {
            panic!("with no deadline the commit cannot fail");
        };
        // Drained before the cut-in: finalizing does not wait.
        assert!(committed.old.is_drained());
        let removed = committed.old.wait().expect("finalizes");
        let lease = slot.enter().expect("serving");
        assert_eq!(lease.id, 2);
        // The one update is counted exactly once, wherever it ran: on v1
        // before the save (carried) or on v2 after the restore.
        assert_eq!(lease.count(), 1, "served by v{served_by}");
        assert_eq!(removed.get().count(), u64::from(served_by == 1));
        assert_eq!(tally.shutdowns(), 1);
    });
}

/// A deadline (under loom it has passed at once, and the drain looks one
/// last time): the commit either drains in time or rolls back, and the gate
/// reopens either way. Both outcomes must be explored.
#[test]
fn quiesce_times_out_and_rolls_back() {
    static EXPLORED: Explored = Explored::new();
    model(|| {
        let (tally, slot, outcome, served_by) = commit_racing_a_call(Duration::from_secs(1));
        EXPLORED.saw(outcome.is_ok());
        let lease = slot.enter().expect("serving");
        match outcome {
            Ok(committed) => {
                assert_eq!(lease.id, 2);
                drop(lease);
                committed.old.wait().expect("finalizes");
            }
            Err(e) => {
                assert!(matches!(e.fault(), ReloadFault::DrainTimeout { .. }));
                // Rolled back: v1 serves on and took the call.
                assert_eq!((lease.id, served_by), (1, 1));
                assert_eq!(tally.shutdowns(), 0);
                drop(lease);
            }
        }
        assert_eq!(slot.enter().expect("serving").count(), 1);
    });
    EXPLORED.assert_both(["committed", "rolled back"]);
}

/// A caller at the gate through two quiesced reloads in a row: woken when
/// the first gate opens, it may find the second one closed already; it
/// waits again rather than giving up (a gate is a wait, never a refusal).
/// No deadline: a lost wake-up is a deadlock.
#[test]
fn a_call_waits_through_back_to_back_gates() {
    model(|| {
        let tally = Tally::new();
        let slot = tallied_slot(&tally);
        let caller = {
            let slot = Arc::clone(&slot);
            loom::thread::spawn(move || slot.call(Tallied::inc))
        };
        for id in [2, 3] {
            let committed = slot
                .prepare(
                    Tallied::new(id, &tally),
                    &(),
                    ReloadOptions::quiesced(Duration::MAX),
                )
                .and_then(|p| p.commit())
                .unwrap_or_else(|e| panic!("no deadline, so it commits: {e}"));
            committed.old.wait().expect("finalizes");
        }
        let served_by = caller.join().expect("caller").expect("served");
        assert!((1..=3).contains(&served_by));
        assert_eq!(slot.enter().expect("serving").count(), 1);
        assert_eq!(tally.shutdowns(), 2);
    });
}
