//! The primitives a normal build uses.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

use crossbeam_epoch::{Collector, Guard, LocalHandle};

pub(crate) use parking_lot::Mutex;
use std::sync::atomic::AtomicU32;
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
pub(crate) use std::thread::{current as current_thread, park, Thread};

pub(crate) use super::fences::{
    heavy as heavy_fence, init as init_fences, light as light_fence, mode as fence_mode,
};
use super::Parked;

/// In-flight counters per version. Each live thread claims a free shard
/// (see [`this_thread_shard`]) and is the only writer of that shard's own word.
pub(crate) const SHARDS: usize = 16;

/// The collector that reclaims what the slow paths retire (a slot's shared
/// part, and with it its version shells). It is ours alone, not
/// crossbeam's global one: a pin held elsewhere in the process (another
/// library's long traversal) cannot stall our reclamation, and ours cannot
/// stall theirs.
fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(Collector::new)
}

std::thread_local! {
    /// The thread's registration in our collector, for the paths that pin.
    static HANDLE: LocalHandle = collector().register();
    /// The thread's shard (see [`this_thread_shard`]). Constant-initialised
    /// and without a destructor, so the call path reads it with one load
    /// and no lazy-initialisation check; [`GIVE_BACK`] does the cleanup.
    static SHARD: Cell<usize> = const { Cell::new(UNCLAIMED) };
    /// Gives the thread's owned shard back when it exits. Registered (its
    /// destructor) at the thread's claim, not on the call path.
    static GIVE_BACK: ShardGuard = const { ShardGuard };
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

/// The shard this thread counts on, and whether it owns it (is its only
/// writer of the shard's own word) or shares it (counts with locked
/// read-modify-writes on the shard's shared word). Claims a shard at the
/// thread's first call.
#[inline(always)]
pub(crate) fn this_thread_shard() -> (usize, bool) {
    let mut state = SHARD.with(Cell::get);
    if state == UNCLAIMED {
        state = claim_for_this_thread();
    }
    // `% SHARDS`: a no-op on a claimed index, and it lets the compiler drop
    // the bounds check where the index is used.
    ((state & !SHARING) % SHARDS, state & SHARING == 0)
}

/// Whether this thread owns `shard` now (and so may write its own word).
#[inline(always)]
pub(crate) fn owns_shard(shard: usize) -> bool {
    SHARD.with(Cell::get) == shard
}

#[cold]
#[inline(never)]
fn claim_for_this_thread() -> usize {
    // Register the give-back first. A thread already running its
    // thread-local destructors cannot (and may be past it): it shares,
    // and owns nothing it would fail to give back.
    let state = if GIVE_BACK.try_with(|_| ()).is_ok() {
        claim()
    } else {
        next_shard() | SHARING
    };
    SHARD.with(|cell| cell.set(state));
    state
}

/// A thread's shard as `SHARD` holds it: unclaimed, an owned index, or a
/// shared index with the `SHARING` bit.
const UNCLAIMED: usize = usize::MAX;
const SHARING: usize = 1 << 16;
const _: () = assert!(SHARDS < SHARING, "shard indices fit below the flag");

/// Shards held by live threads, one bit each.
static CLAIMED: AtomicU32 = AtomicU32::new(0);
const _: () = assert!(SHARDS <= 32, "CLAIMED has one bit per shard");

/// A free shard if there is one (up to `SHARDS` live threads each own one),
/// else a shared one, round-robin. Which thread owns a shard changes only
/// at a claim and at a thread's exit, and the bitmap orders the two: the
/// exiting owner's last writes to the shard's words happen-before the next
/// owner's first (Release on the exit, Acquire on the claim), so each word
/// always has one writer at a time.
fn claim() -> usize {
    let mut used = CLAIMED.load(Ordering::Relaxed);
    loop {
        let free = (!used).trailing_zeros() as usize;
        if free >= SHARDS {
            return next_shard() | SHARING;
        }
        match CLAIMED.compare_exchange_weak(
            used,
            used | (1 << free),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return free,
            Err(now) => used = now,
        }
    }
}

/// The thread-local whose destructor gives an owned shard back when its
/// thread exits.
struct ShardGuard;

impl Drop for ShardGuard {
    fn drop(&mut self) {
        // `SHARD` has no destructor, so it is still there.
        let state = SHARD.with(|cell| cell.replace(UNCLAIMED));
        if state != UNCLAIMED && state & SHARING == 0 {
            // Release: see `claim`. From here on this thread's releases
            // (later thread-local destructors holding leases) find no owned
            // shard and count on shared words; a later `enter` shares.
            CLAIMED.fetch_and(!(1 << state), Ordering::Release);
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

    /// The shard bitmap is process-wide and the test harness runs tests in
    /// parallel: while one test holds every shard with `SHARDS + 4` live
    /// threads, another cannot expect a free one. The tests that fill or
    /// count shards take turns.
    static SHARD_TESTS: Mutex<()> = Mutex::new(());

    #[test]
    fn live_threads_own_distinct_shards_and_exited_ones_give_theirs_back() {
        let _turn = SHARD_TESTS.lock();
        let both_alive = Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                let shard = this_thread_shard();
                both_alive.wait();
                shard
            });
            let b = s.spawn(|| {
                let shard = this_thread_shard();
                both_alive.wait();
                shard
            });
            (
                a.join().unwrap_or((usize::MAX, false)),
                b.join().unwrap_or((usize::MAX, false)),
            )
        });
        assert!(a.1 && b.1, "each thread owns its shard: {a:?} {b:?}");
        assert_ne!(a.0, b.0, "two live threads shared a shard");
        assert!(a.0 < SHARDS && b.0 < SHARDS);
        // Both have exited (joined), so a new thread finds a free shard
        // rather than sharing one; and so does each of `SHARDS + 1` threads
        // run one after another. Were an exiting thread's shard not given
        // back, the last of them would find all of them taken.
        for nth in 0..=SHARDS {
            let owned = std::thread::spawn(|| {
                let (shard, owned) = this_thread_shard();
                owned && owns_shard(shard)
            })
            .join();
            assert_eq!(owned.ok(), Some(true), "thread {nth} found no free shard");
        }
    }

    #[test]
    fn threads_past_the_shard_count_share_and_own_nothing() {
        let _turn = SHARD_TESTS.lock();
        let live = SHARDS + 4;
        let all_alive = Barrier::new(live);
        let shards: Vec<(usize, bool, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..live)
                .map(|_| {
                    s.spawn(|| {
                        let (shard, owned) = this_thread_shard();
                        all_alive.wait();
                        (shard, owned, owns_shard(shard))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((usize::MAX, false, false)))
                .collect()
        });
        assert!(shards.iter().all(|&(shard, _, _)| shard < SHARDS));
        // Other tests' threads may hold shards too, so at most SHARDS own.
        let owners: Vec<usize> = shards.iter().filter(|s| s.1).map(|s| s.0).collect();
        assert!(owners.len() <= SHARDS);
        let mut distinct = owners.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            owners.len(),
            "an owned shard had two owners"
        );
        assert!(
            shards.len() - owners.len() >= 4,
            "past SHARDS, threads share"
        );
        // A sharing thread never writes an owned word.
        assert!(shards.iter().all(|&(_, owned, owns)| owned == owns));
    }
}
