//! Shared by the benchmarks: the plugin under test and a way to measure one
//! thread's operations while other threads hammer the same thing.
#![allow(dead_code)] // each bench uses a part

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use reload_core::{Hooks, Initialized, Plugin};

/// The plugin: one field, read by every call.
pub struct Val {
    pub value: u64,
}

impl Hooks for Val {
    type Context = ();
    fn name(&self) -> &str {
        "val"
    }
}

/// No state: so it also fits a registry.
impl reload_core::Stateful for Val {}

pub fn ready(value: u64) -> Plugin<Val, Initialized> {
    match Plugin::new(Val { value }).ready(&()) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Times `iters` calls of `op` on this thread while `threads - 1` other
/// threads call `op` in a loop on the same shared state.
pub fn contended<F: Fn() + Sync>(threads: usize, iters: u64, op: &F) -> Duration {
    let stop = AtomicBool::new(false);
    let start_line = Barrier::new(threads);
    thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(|| {
                start_line.wait();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        op();
                    }
                }
            });
        }
        start_line.wait();
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

/// A benchmark group with the settings every group here uses: half a second
/// of warm-up, `seconds` of measurement, `samples` samples.
pub fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    seconds: u64,
    samples: usize,
) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(seconds))
        .sample_size(samples);
    group
}
