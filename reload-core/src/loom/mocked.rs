//! The primitives a `--cfg loom` build uses: loom's models, so that loom
//! explores every interleaving and every weak-memory outcome of the drain.

use std::time::Instant;

use crossbeam_epoch::{Collector, Guard, LocalHandle};

pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
pub(crate) use loom::thread::{current as current_thread, park, Thread};

use super::Parked;

/// Two shards: enough for a lease to be released on another shard than
/// the one a concurrent drain reads first, small enough to keep the state
/// space loom explores tractable. The first two threads of an execution
/// own one each; a third shares (see `this_thread_shard`), so a test with
/// three threads explores both ways of counting.
pub(crate) const SHARDS: usize = 2;

/// loom has no `membarrier`, and its model has no weaker fence that a
/// barrier in another thread could complete. The asymmetric pair is
/// modelled as what it implements: a `SeqCst` fence on both sides. That is
/// the right model because the heavy side's guarantee is exactly that each
/// other thread executes a full fence at some point between the call's
/// entry and return, and wherever that point falls in a caller's "write;
/// light; read", it orders the two as a `SeqCst` fence between them would
/// (`docs/drain.md`, "The asymmetric pair"). What loom checks is then the
/// protocol's argument; what the pair delivers on hardware is the kernel's.
pub(crate) fn light_fence() {
    fence(Ordering::SeqCst);
}

/// The reloader's side; see [`light_fence`].
pub(crate) fn heavy_fence() {
    fence(Ordering::SeqCst);
}

/// Nothing to choose under loom.
pub(crate) fn init_fences() {}

/// loom runs the symmetric model of both pairs.
pub(crate) fn fence_mode() -> super::FenceMode {
    super::FenceMode::Symmetric
}

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

/// As in `std.rs`: the collector handle, and the thread's shard with
/// whether it owns it.
struct ThreadState {
    handle: LocalHandle,
    shard: (usize, bool),
}

loom::thread_local! {
    static THREAD: ThreadState = ThreadState {
        handle: collector().register(),
        shard: claim(),
    };
}

pub(crate) fn pin() -> Guard {
    THREAD
        .try_with(|t| t.handle.pin())
        .unwrap_or_else(|_| collector().register().pin())
}

pub(crate) fn this_thread_shard() -> (usize, bool) {
    THREAD.try_with(|t| t.shard).unwrap_or((0, false))
}

pub(crate) fn owns_shard(shard: usize) -> bool {
    THREAD
        .try_with(|t| t.shard == (shard, true))
        .unwrap_or(false)
}

/// The first `SHARDS` threads to call own a shard each; later ones share,
/// round-robin (threads do not exit mid-test, so no shard is given back).
fn claim() -> (usize, bool) {
    loom::lazy_static! {
        // Reset by loom at the start of every execution, so shard
        // assignment depends only on the schedule loom chose.
        static ref NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (n % SHARDS, n < SHARDS)
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
