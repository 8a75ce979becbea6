//! L1 with many waiters: any number of threads and tasks wait on one
//! draining version, with and without deadlines; the last release wakes
//! every one, and a waiter that gives up takes out only itself.
//!
//! A waiter left parked would hang, so the waiters report on a channel and
//! the test gives them a generous 60 s: a liveness check (was everyone
//! woken at all?), not a speed claim.

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use reload_core::testing::{Ledger, Probe};
use reload_core::{Initialized, Plugin, Slot};

fn ready(id: u64, ledger: &Arc<Ledger>) -> Plugin<Probe, Initialized> {
    Probe::ready(id, ledger)
}

struct ThreadWaker(thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

const LIVENESS: Duration = Duration::from_secs(60);

#[test]
fn every_thread_and_task_waiting_is_woken_and_those_that_give_up_leave_only_themselves() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    let old = Arc::new(slot.replace(ready(2, &ledger)).expect("replace"));
    let (woken_tx, woken) = mpsc::channel();
    // Four threads with no deadline, two with a far one, two tasks.
    for i in 0..8 {
        let (old, woken_tx) = (Arc::clone(&old), woken_tx.clone());
        thread::spawn(move || {
            let drained = match i {
                0..4 => old.wait_drained(None),
                4..6 => old.wait_drained(Some(Instant::now() + Duration::from_secs(3600))),
                _ => {
                    block_on(old.until_drained());
                    true
                }
            };
            let _ = woken_tx.send((i, drained));
        });
    }
    // Waiters that give up, before and after the others registered: each
    // must take out only itself (the bug this guards against unregistered
    // whoever had registered last).
    let (gave_up_tx, gave_up) = mpsc::channel();
    for _ in 0..3 {
        let (old, gave_up_tx) = (Arc::clone(&old), gave_up_tx.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(5);
            let _ = gave_up_tx.send(old.wait_drained(Some(deadline)));
        });
    }
    for _ in 0..3 {
        let drained = gave_up.recv_timeout(LIVENESS).expect("a deadline returns");
        assert!(!drained, "a lease is still out");
    }
    // A task that gives up: its future is dropped after registering.
    {
        let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
        let mut future = pin!(old.until_drained());
        assert!(future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
    }
    drop(lease);
    let mut seen: Vec<usize> = (0..8)
        .map(|_| {
            let (i, drained) = woken
                .recv_timeout(LIVENESS)
                .expect("every waiter is woken by the last release");
            assert!(drained, "waiter {i} woken before the drain");
            i
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    // Every waiter has let go of the handle; it finalizes without waiting.
    // The waiters send before they let go of their clones of the handle.
    let mut old = old;
    let old = loop {
        match Arc::try_unwrap(old) {
            Ok(old) => break old,
            Err(again) => {
                old = again;
                thread::yield_now();
            }
        }
    };
    let removed = old.try_finalize().expect("drained");
    assert_eq!(removed.report().generation, 1);
    assert_eq!(ledger.records()[&1].shutdowns, 1);
}
