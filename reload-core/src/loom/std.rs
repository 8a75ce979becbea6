//! The primitives a normal build uses.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

use crossbeam_epoch::{Collector, Guard, LocalHandle};

pub(crate) use parking_lot::Mutex;
pub(crate) use std::sync::atomic::{fence, AtomicUsize, Ordering};
pub(crate) use std::thread::{current as current_thread, park, Thread};

use super::Parked;

/// In-flight counters per version. Threads map onto shards round-robin; a
/// lease remembers its shard, so sharing one is correct, only slower.
pub(crate) const SHARDS: usize = 16;

/// The collector that reclaims every slot's retired versions. It is ours
/// alone, not crossbeam's global one: a pin held elsewhere in the process
/// (another library's long traversal) cannot stall our reclamation, and
/// ours cannot stall theirs.
fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(Collector::new)
}

std::thread_local! {
    static HANDLE: LocalHandle = collector().register();
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Pins the current thread in our collector.
#[inline]
pub(crate) fn pin() -> Guard {
    // During thread teardown the thread-local may be gone already; a
    // temporary registration is slower but correct (crossbeam does the same).
    HANDLE
        .try_with(LocalHandle::pin)
        .unwrap_or_else(|_| collector().register().pin())
}

/// This thread's in-flight shard.
#[inline]
pub(crate) fn shard_index() -> usize {
    SHARD
        .try_with(|cell| {
            let mut shard = cell.get();
            if shard == usize::MAX {
                shard = next_shard();
                cell.set(shard);
            }
            shard
        })
        .unwrap_or_else(|_| next_shard())
}

fn next_shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    // Relaxed: only spreads threads over shards; no other memory depends on it.
    NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
}

/// Parks until unparked (or spuriously), or until `deadline`.
pub(crate) fn park_until(deadline: Option<Instant>) -> Parked {
    match deadline {
        None => {
            park();
            Parked::Early
        }
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return Parked::Expired;
            }
            std::thread::park_timeout(deadline - now);
            if Instant::now() >= deadline {
                Parked::Expired
            } else {
                Parked::Early
            }
        }
    }
}
