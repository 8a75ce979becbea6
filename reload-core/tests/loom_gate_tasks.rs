//! Async callers at a quiesced reload's gate, and `close` racing a
//! quiesced commit.
//!
//! Two tasks on one executor thread call through `enter_async` while a
//! quiesced commit closes the gate, drains and cuts over: both are served,
//! exactly once each, on whichever version is current when they get
//! through. No deadline anywhere, so a lost wake-up is a loom deadlock.
#![cfg(loom)]

mod loom_support;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom_support::{model, slot, tallied_slot, witness, Tallied, Tally};
use reload_core::{Plugin, ReloadFault, ReloadOptions};

/// A single-threaded executor for two tasks: it polls a task only when its
/// own waker was woken, and parks while neither was. A wake that reaches one
/// task and not the other, or a task that leaving takes the other's
/// registration with it, leaves a task never polled again: a loom deadlock.
struct TaskWaker {
    woken: AtomicBool,
    thread: loom::thread::Thread,
}

impl Wake for TaskWaker {
    fn wake(self: std::sync::Arc<Self>) {
        // A swap, not a store: loom let the executor's later swap read
        // `false` past a plain SeqCst store here (the executor hung with its
        // task's flag set); read-modify-writes on both sides it orders.
        self.woken.swap(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[test]
fn two_tasks_at_the_gate_are_both_served() {
    model(|| {
        let tally = Tally::new();
        let slot = slot(1, &tally);
        let executor = {
            let slot = Arc::clone(&slot);
            loom::thread::spawn(move || {
                let mut tasks = [
                    Some(Box::pin(slot.enter_async())),
                    Some(Box::pin(slot.enter_async())),
                ];
                let wakers = [(); 2].map(|()| {
                    std::sync::Arc::new(TaskWaker {
                        woken: AtomicBool::new(true),
                        thread: loom::thread::current(),
                    })
                });
                let mut served = [0; 2];
                while tasks.iter().any(Option::is_some) {
                    for (i, task) in tasks.iter_mut().enumerate() {
                        let Some(future) = task else { continue };
                        if !wakers[i].woken.swap(false, Ordering::SeqCst) {
                            continue;
                        }
                        let waker = Waker::from(std::sync::Arc::clone(&wakers[i]));
                        if let Poll::Ready(lease) =
                            future.as_mut().poll(&mut Context::from_waker(&waker))
                        {
                            // Called and given back at once: a task holding
                            // its lease while the other waits at the gate
                            // would hold up the drain.
                            served[i] = lease.expect("open").call();
                            *task = None;
                        }
                    }
                    if tasks.iter().any(Option::is_some)
                        && !wakers.iter().any(|w| w.woken.load(Ordering::SeqCst))
                    {
                        loom::thread::park();
                    }
                }
                served
            })
        };
        let committed = slot
            .prepare(
                Plugin::new(witness(2, &tally)),
                &(),
                ReloadOptions::quiesced(Duration::MAX),
            )
            .and_then(|p| p.commit())
            .unwrap_or_else(|e| panic!("no deadline, so it commits: {e}"));
        let served = executor.join().expect("executor");
        committed.old.wait().expect("finalizes");
        assert!(served.iter().all(|v| *v == 1 || *v == 2), "{served:?}");
        assert_eq!(tally.calls.load(Ordering::SeqCst), 2);
        assert_eq!(tally.shutdowns(), 1);
    });
}

/// `close` while a quiesced commit may hold the gate: it waits for the
/// commit to finish, then closes the version that is current. Whatever the
/// order, the slot ends closed, nothing panics (a close that cut over under
/// a closed gate would leave the commit cutting from a version that is no
/// longer current), and every version is finalized exactly once.
#[test]
fn close_races_a_quiesced_commit() {
    model(|| {
        let tally = Tally::new();
        let slot = tallied_slot(&tally);
        let closer = {
            let slot = Arc::clone(&slot);
            loom::thread::spawn(move || {
                slot.close()
                    .map(|old| old.wait().map(|r| r.get().id).map_err(|e| e.to_string()))
            })
        };
        let committed = slot
            .prepare(
                Tallied::new(2, &tally),
                &(),
                ReloadOptions::quiesced(Duration::MAX),
            )
            .and_then(|p| p.commit());
        let closed = closer.join().expect("closer");
        match committed {
            Ok(committed) => {
                committed.old.wait().expect("v1 finalizes");
                // Closed after the cut-over: the version it closed was v2.
                assert!(matches!(closed, Some(Ok(2))), "{closed:?}");
                assert_eq!(tally.shutdowns(), 2);
            }
            Err(e) => {
                // Closed first: v2 comes back, never installed, never shut
                // down; v1 is the version the close finalized.
                assert!(matches!(e.fault(), ReloadFault::Closed), "{e}");
                assert!(matches!(closed, Some(Ok(1))), "{closed:?}");
                assert_eq!(tally.shutdowns(), 1);
            }
        }
        assert!(slot.is_closed());
    });
}
