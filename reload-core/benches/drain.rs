//! The drain and the reload.
//!
//! - Drain detection: from the release of the last lease to the waiting
//!   drain returning (`wait_drained`, which does not finalize), ours
//!   (parked, woken by that release) against a
//!   sleep-poll of a counter every 100 us and every 10 ms, and against a
//!   bare `thread::unpark` handoff between the same two threads (the floor
//!   for any parked waiter).
//! - Reload latency: `replace` and `wait` with no lease out.
//! - Throughput: calls per second from two threads, with no reloads and
//!   with a reload every millisecond.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use reload_core::{Lease, Slot};

mod common;
use common::{ready, Val};

/// How long the releasing thread waits before releasing, so that the
/// waiter is parked (or asleep) by then, as it is in a real drain.
const SETTLE: Duration = Duration::from_micros(200);

/// Sums, over `iters` handoffs, the time from the releaser's timestamp to
/// the waiter's return. `wait` blocks until the release; `release` performs it.
fn handoffs<S: Sync>(
    iters: u64,
    shared: &S,
    arm: impl Fn(&S),
    wait: impl Fn(&S),
    release: impl Fn(&S) + Sync,
) -> Duration {
    let released_at = AtomicU64::new(0);
    let base = Instant::now();
    let mut total = Duration::ZERO;
    thread::scope(|s| {
        let (go, went) = mpsc::channel::<()>();
        let (done, finished) = mpsc::channel::<()>();
        let (released_at, release) = (&released_at, &release);
        let releaser = s.spawn(move || {
            for () in went {
                thread::sleep(SETTLE);
                released_at.store(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
                release(shared);
                if done.send(()).is_err() {
                    break;
                }
            }
        });
        for _ in 0..iters {
            arm(shared);
            go.send(()).expect("releaser alive");
            wait(shared);
            let noticed = base.elapsed().as_nanos() as u64;
            finished.recv().expect("releaser alive");
            total +=
                Duration::from_nanos(noticed.saturating_sub(released_at.load(Ordering::SeqCst)));
        }
        drop(go);
        releaser.join().expect("releaser");
    });
    total
}

fn drain_detection(c: &mut Criterion) {
    let mut group = common::group(c, "drain_detection", 3, 20);

    group.bench_function("ours_parked", |b| {
        b.iter_custom(|iters| {
            let slot = Slot::new(ready(0));
            // One lease per iteration, taken before the replace and released
            // by the other thread; the waiter is `Plugin::wait`.
            let pending: std::sync::Mutex<Option<Lease<'_, Val>>> = std::sync::Mutex::new(None);
            let draining: std::sync::Mutex<
                Option<reload_core::Plugin<Val, reload_core::Draining>>,
            > = std::sync::Mutex::new(None);
            let state = (&slot, &pending, &draining);
            handoffs(
                iters,
                &state,
                |(slot, pending, draining)| {
                    if let Some(drained) = draining.lock().expect("lock").take() {
                        black_box(drained.try_finalize().is_ok());
                    }
                    let lease = slot.enter().expect("open");
                    *pending.lock().expect("lock") = Some(lease);
                    *draining.lock().expect("lock") = Some(slot.replace(ready(1)).expect("open"));
                },
                |(_, _, draining)| {
                    // Timed: the drain noticing. Finalizing (shutdown, retire)
                    // is not, it happens at the next arm; `reload` measures it.
                    let guard = draining.lock().expect("lock");
                    let old = guard.as_ref().expect("armed");
                    black_box(old.wait_drained(None));
                },
                |(_, pending, _)| drop(pending.lock().expect("lock").take()),
            )
        })
    });

    for (name, period) in [
        ("sleep_poll_100us", Duration::from_micros(100)),
        ("sleep_poll_10ms", Duration::from_millis(10)),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let count = AtomicUsize::new(0);
                handoffs(
                    iters,
                    &count,
                    |c| c.store(1, Ordering::SeqCst),
                    |c| {
                        while c.load(Ordering::SeqCst) != 0 {
                            thread::sleep(period);
                        }
                    },
                    |c| c.store(0, Ordering::SeqCst),
                )
            })
        });
    }

    group.bench_function("bare_unpark", |b| {
        b.iter_custom(|iters| {
            let flag = AtomicBool::new(false);
            let waiter = thread::current();
            let state = (&flag, &waiter);
            handoffs(
                iters,
                &state,
                |(flag, _)| flag.store(false, Ordering::SeqCst),
                |(flag, _)| {
                    while !flag.load(Ordering::SeqCst) {
                        thread::park();
                    }
                },
                |(flag, waiter)| {
                    flag.store(true, Ordering::SeqCst);
                    waiter.unpark();
                },
            )
        })
    });
    group.finish();
}

fn reload_latency(c: &mut Criterion) {
    let slot = Slot::new(ready(0));
    c.bench_function("reload/replace_and_wait_no_leases", |b| {
        b.iter_batched(
            || ready(1),
            |next| black_box(slot.replace(next).expect("open").wait().is_ok()),
            BatchSize::SmallInput,
        )
    });
}

/// Time per call (aggregate over two calling threads) while a third thread
/// reloads every `reload_every`, if any; panics if any call failed.
fn throughput(iters: u64, reload_every: Option<Duration>) -> Duration {
    let slot = Slot::new(ready(0));
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let elapsed = thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let lease = slot.enter().expect("no call may fail while reloading");
                        black_box(lease.value);
                    }
                    n += 256;
                    if done.fetch_add(256, Ordering::Relaxed) + 256 >= iters {
                        break;
                    }
                }
                n
            });
        }
        if let Some(period) = reload_every {
            let mut next = Instant::now();
            let mut generation = 1;
            while done.load(Ordering::Relaxed) < iters {
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                generation += 1;
                drop(slot.replace(ready(generation)).expect("open").wait());
            }
        } else {
            while done.load(Ordering::Relaxed) < iters {
                thread::sleep(Duration::from_micros(200));
            }
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    });
    assert_eq!(slot.stats().failed_reloads, 0);
    elapsed
}

fn reload_throughput(c: &mut Criterion) {
    let mut group = common::group(c, "throughput_2_callers", 3, 20);
    group.bench_function("no_reloads", |b| {
        b.iter_custom(|iters| throughput(iters, None))
    });
    group.bench_function("reload_every_1ms", |b| {
        b.iter_custom(|iters| throughput(iters, Some(Duration::from_millis(1))))
    });
    group.finish();
}

criterion_group!(benches, drain_detection, reload_latency, reload_throughput);
criterion_main!(benches);
