//! Shared by the benchmarks: the plugin under test and a way to measure one
//! thread's operations while other threads hammer the same thing.
#![allow(dead_code)] // each bench uses a part

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

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

pub fn ready(value: u64) -> Plugin<Val, Initialized> {
    match Plugin::new(Val { value }).prepare(&()) {
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
