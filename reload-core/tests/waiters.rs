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

/// A waker that counts its wakes; its `Arc`'s strong count tells whether
/// anyone still holds it.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);
impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
impl Counting {
    fn wakes(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A future polled again with another waker (moved to another task, or an
/// executor that changes wakers) is woken through the one it gave last;
/// dropping pending futures leaves no waker behind.
#[test]
fn the_last_waker_given_is_the_one_woken_and_dropped_futures_leave_none() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    let old = slot.replace(ready(2, &ledger)).expect("replace");
    let (first, second) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    let mut until = Box::pin(old.until_drained());
    for waker in [&first, &second] {
        let waker = Waker::from(Arc::clone(waker));
        assert!(until
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
    }
    // Another future on the same version, dropped while pending.
    let dropped = Arc::new(Counting::default());
    {
        let mut other = Box::pin(old.until_drained());
        let waker = Waker::from(Arc::clone(&dropped));
        assert!(other
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
    }
    assert_eq!(
        Arc::strong_count(&dropped),
        1,
        "a dropped future's waker is let go"
    );
    // The list holds the second waker only: the first was replaced.
    assert_eq!(Arc::strong_count(&first), 1, "the replaced waker is let go");
    assert_eq!(Arc::strong_count(&second), 2);
    drop(lease);
    assert_eq!((first.wakes(), second.wakes(), dropped.wakes()), (0, 1, 0));
    let waker = Waker::from(Arc::clone(&second));
    assert!(until
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_ready());
    drop(until);

    // The same for the finalizing future, `Drain`, dropped pending (its
    // version then goes to the slot, which finalizes it once drained).
    let lease = slot.enter().expect("open");
    let old = slot.replace(ready(3, &ledger)).expect("replace");
    let held = Arc::new(Counting::default());
    {
        let mut drain = Box::pin(old.drained());
        let waker = Waker::from(Arc::clone(&held));
        assert!(drain
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
    }
    assert_eq!(
        Arc::strong_count(&held),
        1,
        "a dropped drain's waker is let go"
    );
    drop(lease);
    assert_eq!(held.wakes(), 0);
    // A borrowed lease's release does not finalize; the slot's next reap
    // does (an owned lease's release would have).
    assert_eq!(slot.reap(), 1);
    assert_eq!(ledger.records()[&2].shutdowns, 1, "the slot finalized it");
}
