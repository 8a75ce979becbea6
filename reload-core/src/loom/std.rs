//! The primitives a normal build uses.

use std::cell::OnceCell;
use std::sync::OnceLock;
use std::time::Instant;

use crossbeam_epoch::{Collector, Guard, LocalHandle};

pub(crate) use parking_lot::Mutex;
use std::sync::atomic::AtomicU32;
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
pub(crate) use std::thread::{current as current_thread, park, Thread};

use super::Parked;

/// In-flight counters per version. Each live thread claims a free shard
/// (see [`Shard`]); a lease remembers its shard, so sharing one is correct,
/// only slower.
pub(crate) const SHARDS: usize = 16;

/// The collector that reclaims every slot's retired versions. It is ours
/// alone, not crossbeam's global one: a pin held elsewhere in the process
/// (another library's long traversal) cannot stall our reclamation, and
/// ours cannot stall theirs.
fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(Collector::new)
}

/// What this crate keeps per thread, in one thread-local so that `enter`
/// looks it up once: the thread's registration in our collector, and its
/// in-flight shard, claimed at its first `enter` (a thread that only
/// releases leases never takes one).
struct ThreadState {
    handle: LocalHandle,
    shard: OnceCell<Shard>,
}

std::thread_local! {
    static THREAD: ThreadState = ThreadState {
        handle: collector().register(),
        shard: OnceCell::new(),
    };
}

/// Pins the current thread in our collector.
#[inline]
pub(crate) fn pin() -> Guard {
    // During thread teardown the thread-local may be gone already; a
    // temporary registration is slower but correct (crossbeam does the same).
    THREAD
        .try_with(|t| t.handle.pin())
        .unwrap_or_else(|_| collector().register().pin())
}

/// Pins the current thread and returns its in-flight shard, with one
/// thread-local lookup (this is `enter`'s first step).
#[inline]
pub(crate) fn pin_with_shard() -> (Guard, usize) {
    THREAD
        .try_with(|t| (t.handle.pin(), t.shard.get_or_init(Shard::claim).index))
        .unwrap_or_else(|_| (collector().register().pin(), next_shard()))
}

/// Shards held by live threads, one bit each.
static CLAIMED: AtomicU32 = AtomicU32::new(0);
const _: () = assert!(SHARDS <= 32, "CLAIMED has one bit per shard");

/// A thread's shard: a free one, claimed at the thread's first call and
/// given back when it exits, so that up to `SHARDS` live threads never share
/// a counter's cache line (round-robin assignment collides as soon as
/// threads come and go). Past `SHARDS` live threads, shards are shared
/// round-robin. A lease records its shard, so which thread holds a shard
/// never matters for correctness, only for contention.
struct Shard {
    index: usize,
    claimed: bool,
}

impl Shard {
    fn claim() -> Shard {
        // Relaxed: the bitmap only spreads threads over shards; nothing else
        // is published through it.
        let mut used = CLAIMED.load(Ordering::Relaxed);
        loop {
            let free = (!used).trailing_zeros() as usize;
            if free >= SHARDS {
                return Shard {
                    index: next_shard(),
                    claimed: false,
                };
            }
            match CLAIMED.compare_exchange_weak(
                used,
                used | (1 << free),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Shard {
                        index: free,
                        claimed: true,
                    }
                }
                Err(now) => used = now,
            }
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if self.claimed {
            CLAIMED.fetch_and(!(1 << self.index), Ordering::Relaxed);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn live_threads_get_distinct_shards_and_exited_ones_give_theirs_back() {
        let both_alive = Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                let (_guard, shard) = pin_with_shard();
                both_alive.wait();
                shard
            });
            let b = s.spawn(|| {
                let (_guard, shard) = pin_with_shard();
                both_alive.wait();
                shard
            });
            (
                a.join().unwrap_or(usize::MAX),
                b.join().unwrap_or(usize::MAX),
            )
        });
        assert_ne!(a, b, "two live threads shared a shard");
        assert!(a < SHARDS && b < SHARDS);
        // Both have exited (joined), so a new thread finds a free shard
        // rather than falling back to round-robin.
        let claimed = std::thread::spawn(|| {
            let (_guard, _) = pin_with_shard();
            THREAD.with(|t| t.shard.get().is_some_and(|s| s.claimed))
        })
        .join();
        assert_eq!(claimed.ok(), Some(true));
    }
}
