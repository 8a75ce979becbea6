//! Quiesced, stateful reloads under load: worker threads increment a
//! counter plugin (its state), which also keeps a change stream and an
//! index (its resources), while the host reloads it many times, migrating
//! its state schema once and injecting a failure into some versions. Prints
//! what happened; exits non-zero if an increment was lost or doubled, or a
//! failed reload left anything but the old version serving.
//!
//! ```text
//! cargo run --release -p reload-core --example stateful_reload -- --reloads 500 --workers 2 --interval-us 200
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reload_core::testing::{Book, Counter, CounterFaults, ResourceState};
use reload_core::{Plugin, ReloadOptions, Slot};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let reloads = arg("--reloads", 500);
    let workers = arg("--workers", 2) as usize;
    let interval = Duration::from_micros(arg("--interval-us", 200));
    let mut restores_expected = 0u64;
    let book = Book::new();
    let first = match Plugin::new(Counter::new("g1", 1, &book)).ready(&()) {
        Ok(first) => first,
        Err(e) => {
            eprintln!("the first version failed to prepare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let slot = Slot::new(first);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut problems = Vec::new();
    let mut failed_as_planned = 0;
    let made: u64 = thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut made = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if slot.call(Counter::inc).is_ok() {
                            made += 1;
                        }
                    }
                    made
                })
            })
            .collect();
        let mut serving = "g1".to_owned();
        for i in 0..reloads {
            let label = format!("g{}", i + 2);
            thread::sleep(interval);
            // One version in ten fails a step of the transfer: restore,
            // then (after restoring) resume, then open.
            let faults = match i % 30 {
                3 => CounterFaults {
                    fail_restore: true,
                    ..CounterFaults::default()
                },
                13 => CounterFaults {
                    fail_resume: true,
                    ..CounterFaults::default()
                },
                23 => CounterFaults {
                    fail_open: true,
                    ..CounterFaults::default()
                },
                _ => CounterFaults::default(),
            };
            let planned_failure = faults.fail_restore || faults.fail_resume || faults.fail_open;
            if !faults.fail_restore {
                restores_expected += 1;
            }
            // The first reload migrates the state schema 1 -> 2 -> 3.
            let next = Plugin::new(Counter::next(&label, 3, &book).with_faults(faults));
            let outcome = slot
                .prepare(next, &(), ReloadOptions::quiesced(Duration::from_secs(5)))
                .and_then(|p| p.commit());
            match (outcome, planned_failure) {
                (Ok(committed), false) => {
                    if let Err(e) = committed.old.wait() {
                        problems.push(format!("{serving} failed to shut down: {e}"));
                    }
                    serving = label;
                }
                (Err(e), true) => {
                    failed_as_planned += 1;
                    let still = slot.enter().map(|l| l.label().to_owned());
                    if still.as_deref() != Ok(serving.as_str()) {
                        problems.push(format!("after `{e}`, {still:?} serves, not {serving}"));
                    }
                    if book.resource(&serving, "idx") != Some(ResourceState::Open) {
                        problems.push(format!("after `{e}`, {serving}'s index is not open"));
                    }
                }
                (Ok(_), true) => problems.push(format!("{label} should have failed")),
                (Err(e), false) => problems.push(format!("{label} failed: {e}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let elapsed = started.elapsed();
    let (count, position) = match slot.enter() {
        Ok(lease) => (lease.count(), lease.position()),
        Err(e) => {
            eprintln!("the slot closed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stats = slot.stats();
    println!(
        "stateful reload demo: {workers} workers, {reloads} quiesced reloads in {elapsed:.2?}"
    );
    println!("  increments made by callers     {made}");
    println!("  count in the serving version   {count}");
    println!("  stream position                {position}");
    println!(
        "  reloads committed / failed     {} / {} (rolled back {}; {failed_as_planned} failed as injected)",
        stats.reloads, stats.failed_reloads, stats.rolled_back
    );
    println!(
        "  saves / restores               {} / {}",
        book.saves(),
        book.restores()
    );
    let q = stats.quiesce_time;
    println!(
        "  calls held at the gate         p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        q.p50, q.p90, q.p99, q.max
    );
    if count != made {
        problems.push(format!("count {count} != increments made {made}"));
    }
    if position != made {
        problems.push(format!(
            "stream position {position} != increments made {made}"
        ));
    }
    if book.restores() != restores_expected || book.saves() != reloads {
        problems.push("a reload did not save, or restore, exactly once".to_owned());
    }
    if problems.is_empty() {
        println!(
            "RESULT: ok, no increment lost or doubled, every failure left the old version serving"
        );
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        ExitCode::FAILURE
    }
}
