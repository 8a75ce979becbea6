//! The call path: acquire the current version, read a field, release.
//!
//! Compared in one run, at 1, 2 and 4 threads hammering the same slot:
//! our lease, borrowed and owned; `parking_lot::RwLock<Arc<T>>` read-and-clone; cloning a shared
//! `Arc`; the 8-slot epoch ring counter plus `RwLock<Arc<T>>` (the design
//! this crate replaces); `ArcSwap::load` and `load_full`; and a direct field
//! read as the floor. Then our lease with 0, 1 and 4 versions draining.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use parking_lot::RwLock;
use reload_core::Slot;

mod common;
use common::{contended, ready, Val};

/// The design being replaced: callers count themselves into
/// `ring[epoch % 8]` and read the plugin through a lock.
struct Ring {
    epoch: AtomicUsize,
    ring: [AtomicUsize; 8],
    current: RwLock<Arc<Val>>,
}

impl Ring {
    fn call(&self) -> u64 {
        let slot = &self.ring[self.epoch.load(Ordering::Acquire) % 8];
        slot.fetch_add(1, Ordering::AcqRel);
        let plugin = self.current.read().clone();
        let value = plugin.value;
        drop(plugin);
        slot.fetch_sub(1, Ordering::Release);
        value
    }
}

fn call_path(c: &mut Criterion) {
    let slot = Slot::new(ready(7));
    let rwlock = RwLock::new(Arc::new(Val { value: 7 }));
    let shared = Arc::new(Val { value: 7 });
    let ring = Ring {
        epoch: AtomicUsize::new(0),
        ring: Default::default(),
        current: RwLock::new(Arc::new(Val { value: 7 })),
    };
    let swap = ArcSwap::from_pointee(Val { value: 7 });
    let plain = Val { value: 7 };

    let mut group = common::group(c, "call", 2, 40);
    for threads in [1usize, 2, 4] {
        let mut bench = |name: &str, op: &(dyn Fn() + Sync)| {
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &t| {
                b.iter_custom(|iters| contended(t, iters, &op))
            });
        };
        bench("lease", &|| {
            black_box(slot.enter().map(|lease| lease.value).ok());
        });
        bench("owned_lease", &|| {
            black_box(slot.enter_owned().map(|lease| lease.value).ok());
        });
        bench("arcswap_load", &|| {
            black_box(swap.load().value);
        });
        bench("arcswap_load_full", &|| {
            black_box(swap.load_full().value);
        });
        bench("rwlock_arc", &|| {
            black_box(rwlock.read().clone().value);
        });
        bench("arc_clone", &|| {
            black_box(Arc::clone(&shared).value);
        });
        bench("ring_rwlock", &|| {
            black_box(ring.call());
        });
        bench("direct", &|| {
            black_box(black_box(&plain).value);
        });
    }
    group.finish();
}

fn call_while_draining(c: &mut Criterion) {
    let mut group = common::group(c, "call_with_draining_versions", 2, 40);
    for draining in [0usize, 1, 4] {
        let slot = Slot::new(ready(0));
        // Hold a lease on each old version so it stays draining.
        let mut held = Vec::new();
        let mut handles = Vec::new();
        for i in 0..draining {
            held.push(slot.enter().expect("open"));
            handles.push(slot.replace(ready(i as u64 + 1)).expect("open"));
        }
        assert_eq!(slot.stats().draining_now, draining);
        group.bench_with_input(BenchmarkId::new("lease", draining), &draining, |b, _| {
            b.iter(|| black_box(slot.enter().map(|lease| lease.value).ok()))
        });
        drop(held);
        for h in handles {
            drop(h.wait());
        }
    }
    group.finish();
}

criterion_group!(benches, call_path, call_while_draining);
criterion_main!(benches);
