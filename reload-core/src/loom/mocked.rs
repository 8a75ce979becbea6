//! The primitives a `--cfg loom` build uses: loom's models, so that loom
//! explores every interleaving and every weak-memory outcome of the drain.

use std::time::Instant;

use crossbeam_epoch::{Collector, Guard, LocalHandle};

pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
pub(crate) use loom::thread::{current as current_thread, park, Thread};

use super::Parked;

/// Two shards: enough for a lease to be released on another shard than
/// the one a concurrent drain reads first, small enough to keep the state
/// space loom explores tractable.
pub(crate) const SHARDS: usize = 2;

/// loom's `Mutex` returns a `LockResult`; this wrapper has parking_lot's
/// shape so the drain code is the same under both.
#[derive(Debug)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        // A panic while holding this lock would already have failed the
        // loom test; recover the guard rather than cascade.
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

fn collector() -> &'static Collector {
    loom::lazy_static! {
        static ref COLLECTOR: Collector = Collector::new();
    }
    &COLLECTOR
}

/// As in `std.rs`: one thread-local for the collector handle and the shard.
struct ThreadState {
    handle: LocalHandle,
    shard: usize,
}

loom::thread_local! {
    static THREAD: ThreadState = ThreadState {
        handle: collector().register(),
        shard: next_shard(),
    };
}

pub(crate) fn pin() -> Guard {
    THREAD
        .try_with(|t| t.handle.pin())
        .unwrap_or_else(|_| collector().register().pin())
}

pub(crate) fn pin_with_shard() -> (Guard, usize) {
    THREAD
        .try_with(|t| (t.handle.pin(), t.shard))
        .unwrap_or_else(|_| (collector().register().pin(), 0))
}

fn next_shard() -> usize {
    loom::lazy_static! {
        // Reset by loom at the start of every execution, so shard
        // assignment depends only on the schedule loom chose.
        static ref NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    }
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS
}

/// loom has no clock. A bounded park reports the deadline as passed at
/// once; the waiter then looks one last time, and loom's preemptions put
/// the release before that look, after it, or not at all, so both a wake
/// that beats the deadline and a deadline that beats the wake are explored.
///
/// (It used to yield first. loom runs the other threads to completion
/// across a yield, so the lease was always given back before the waiter
/// looked again, and no roll back was ever explored: `loom_quiesce` now
/// counts both outcomes and fails if either is missing.)
pub(crate) fn park_until(deadline: Option<Instant>) -> Parked {
    match deadline {
        None => {
            park();
            Parked::Early
        }
        Some(_) => Parked::Expired,
    }
}
