//! Live reloads under load, with a report of what happened.
//!
//! Worker threads call a plugin through a slot as fast as they can while the
//! main thread reloads it, again and again. Some versions are slow (their
//! drains overlap live calls), one fails to link, one fails in init, one
//! panics in init, one panics in some of its calls, one panics in shutdown.
//! Drains run on a pool of drainer threads, so several versions drain at once.
//!
//! It prints a live line every so often and a final report, and exits
//! non-zero if any invariant broke: a dropped call, a call on a version whose
//! shutdown had begun, a shutdown or drop that did not happen exactly once,
//! or calls that do not add up.
//!
//! ```text
//! cargo run --release -p reload-core --example live_reload -- [--workers N] [--reloads M]
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use reload_core::testing::{Faults, Ledger, Probe};
use reload_core::{CallError, Draining, Plugin, Slot};

struct Args {
    workers: u64,
    reloads: u64,
    interval: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        workers: 2,
        reloads: 300,
        interval: Duration::from_millis(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a whole number"))
        };
        match flag.as_str() {
            "--workers" => args.workers = value("--workers")?.max(1),
            "--reloads" => args.reloads = value("--reloads")?,
            "--interval-us" => args.interval = Duration::from_micros(value("--interval-us")?),
            "-h" | "--help" => {
                return Err(
                    "usage: live_reload [--workers N] [--reloads M] [--interval-us U]".into(),
                )
            }
            other => return Err(format!("unknown argument {other}; try --help")),
        }
    }
    Ok(args)
}

/// What version `id` of the demo plugin does wrong, if anything.
fn faults_of(id: u64) -> (Faults, &'static str) {
    let mut f = Faults::default();
    let what = match id {
        23 => {
            f.fail_link = true;
            "fails to link"
        }
        37 => {
            f.fail_init = true;
            "fails in init"
        }
        61 => {
            f.panic_init = true;
            "panics in init"
        }
        88 => {
            f.panic_every = Some(500);
            "panics in every 500th call"
        }
        120 => {
            f.panic_shutdown = true;
            "panics in shutdown"
        }
        id if id % 10 == 5 => {
            f.call_delay = Some(Duration::from_micros(200));
            "slow calls (200 us)"
        }
        _ => "",
    };
    (f, what)
}

#[derive(Default)]
struct WorkerTally {
    served: BTreeMap<u64, u64>,
    panics: BTreeMap<u64, u64>,
    attempts: u64,
    refused: u64,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    // The misbehaving versions panic on purpose, and the slot reports each
    // contained panic with its version; print a short line for those
    // rather than a backtrace. Any other panic is a bug and prints in full.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str);
        if !msg.is_some_and(|m| m.starts_with("probe ")) {
            default_hook(info);
        }
    }));
    let ledger = Ledger::new();
    let make = |id| {
        let (faults, _) = faults_of(id);
        Plugin::new(Probe::with_faults(id, &ledger, faults))
    };
    let first = match make(0).ready(&()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("version 0 failed to prepare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let slot = Slot::new(first);
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let started = Instant::now();
    println!(
        "live reload demo: {} workers calling, {} reloads every {:?}",
        args.workers, args.reloads, args.interval
    );

    let mut failed = Vec::new();
    // Two drainer threads wait on old versions, so drains overlap each
    // other and the next reloads.
    let (to_drain, drain_rx) = mpsc::channel::<Plugin<Probe, Draining>>();
    let drain_rx = std::sync::Mutex::new(drain_rx);
    let (tallies, removed) = thread::scope(|s| {
        let workers: Vec<_> = (0..args.workers)
            .map(|_| {
                let (slot, stop, calls) = (&slot, &stop, &calls);
                s.spawn(move || {
                    let mut t = WorkerTally::default();
                    while !stop.load(Ordering::Relaxed) {
                        t.attempts += 1;
                        match slot.call(|p| p.call()) {
                            Ok(id) => *t.served.entry(id).or_default() += 1,
                            Err(CallError::Panicked(f)) => {
                                *t.panics.entry(f.generation.unwrap_or(0)).or_default() += 1;
                            }
                            Err(CallError::Closed(_)) => t.refused += 1,
                        }
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    t
                })
            })
            .collect();

        let drainers: Vec<_> = (0..2)
            .map(|_| {
                let drain_rx = &drain_rx;
                s.spawn(move || {
                    // Drain times of clean removals; the removed values are
                    // dropped here, as a host would.
                    let mut done: Vec<Result<Duration, String>> = Vec::new();
                    loop {
                        let next = drain_rx
                            .lock()
                            .map_err(|_| ())
                            .and_then(|rx| rx.recv().map_err(|_| ()));
                        let Ok(draining) = next else { break done };
                        done.push(match draining.wait() {
                            Ok(removed) => Ok(removed.report().drain_time),
                            Err(e) => {
                                println!("  shutdown failure reported: {e}");
                                Err(e.to_string())
                            }
                        });
                    }
                })
            })
            .collect();

        let mut generation_of = BTreeMap::new();
        generation_of.insert(1, 0);
        for id in 1..=args.reloads {
            thread::sleep(args.interval);
            match slot.reload(make(id), &()) {
                Ok(old) => {
                    generation_of.insert(slot.generation().unwrap_or(0), id);
                    if to_drain.send(old).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    println!("  reload to version {id} refused, old version keeps serving: {e}");
                    failed.push(id);
                }
            }
            if id % 50 == 0 {
                let st = slot.stats();
                println!(
                    "  reload {id:>4}/{}: generation {}, {} draining, {} calls so far",
                    args.reloads,
                    st.generation.unwrap_or(0),
                    st.draining_now,
                    calls.load(Ordering::Relaxed)
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        let tallies: Vec<WorkerTally> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect();
        if let Some(last) = slot.close() {
            let _ = to_drain.send(last);
        }
        drop(to_drain);
        let removed: Vec<_> = drainers
            .into_iter()
            .flat_map(|d| d.join().unwrap_or_default())
            .collect();
        (tallies, (removed, generation_of))
    });
    let elapsed = started.elapsed();
    let (removed, generation_of) = removed;
    let stats = slot.stats();
    drop(slot);

    report(
        &args,
        elapsed,
        &ledger,
        &tallies,
        &removed,
        &generation_of,
        &failed,
        &stats,
    )
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    elapsed: Duration,
    ledger: &Ledger,
    tallies: &[WorkerTally],
    removed: &[Result<Duration, String>],
    generation_of: &BTreeMap<u64, u64>,
    failed: &[u64],
    stats: &reload_core::SlotStats,
) -> ExitCode {
    let mut served: BTreeMap<u64, u64> = BTreeMap::new();
    let mut panics: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut attempts, mut refused) = (0, 0);
    for t in tallies {
        attempts += t.attempts;
        refused += t.refused;
        for (id, n) in &t.served {
            *served.entry(*id).or_default() += n;
        }
        for (generation, n) in &t.panics {
            let id = generation_of.get(generation).copied().unwrap_or(u64::MAX);
            *panics.entry(id).or_default() += n;
        }
    }
    let served_total: u64 = served.values().sum();
    let panics_total: u64 = panics.values().sum();
    let dropped = attempts - served_total - panics_total - refused;

    let records = ledger.records();
    let installed: Vec<u64> = generation_of.values().copied().collect();
    let mut problems = Vec::new();
    for id in &installed {
        let r = records.get(id).copied().unwrap_or_default();
        if r.shutdowns != 1 || r.drops != 1 {
            problems.push(format!(
                "version {id}: shut down {} times, dropped {} times",
                r.shutdowns, r.drops
            ));
        }
        let seen = served.get(id).copied().unwrap_or(0) + panics.get(id).copied().unwrap_or(0);
        if r.calls != seen {
            problems.push(format!(
                "version {id}: counted {} calls itself, callers saw {seen}",
                r.calls
            ));
        }
    }
    for id in failed {
        let r = records.get(id).copied().unwrap_or_default();
        if r.shutdowns != 0 || r.drops != 1 || r.calls != 0 {
            problems.push(format!("refused version {id}: {r:?}"));
        }
    }
    let after_shutdown = ledger.calls_after_shutdown();
    if dropped != 0 {
        problems.push(format!("{dropped} calls dropped"));
    }
    if after_shutdown != 0 {
        problems.push(format!("{after_shutdown} calls ran on a shut-down version"));
    }

    let mut drains: Vec<Duration> = removed
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    drains.sort();
    let pct = |q: f64| {
        drains
            .get(((drains.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };

    println!();
    println!(
        "=== report: {} workers, {:.2} s ===",
        args.workers,
        elapsed.as_secs_f64()
    );
    println!("calls attempted          {attempts:>12}");
    println!(
        "calls served             {served_total:>12}  ({:.0}/s)",
        served_total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "calls that panicked      {panics_total:>12}  (contained, reported with their version)"
    );
    println!("calls refused (closed)   {refused:>12}  (after the final close)");
    println!("calls dropped            {dropped:>12}  (must be 0)");
    println!("calls after shutdown     {after_shutdown:>12}  (must be 0)");
    println!(
        "reloads ok / failed      {:>5} / {}  (failed: versions {failed:?})",
        stats.reloads, stats.failed_reloads
    );
    println!("versions installed       {:>12}", installed.len());
    println!(
        "shutdown failures        {:>12}  (contained; the version was removed anyway)",
        removed.iter().filter(|r| r.is_err()).count()
    );
    println!(
        "drain time               median {:?}, p90 {:?}, max {:?} over {} drains",
        pct(0.5),
        pct(0.9),
        drains.last().copied().unwrap_or_default(),
        drains.len()
    );
    println!("calls served per version (version:calls):");
    let cells: Vec<String> = installed
        .iter()
        .map(|id| {
            let (_, what) = faults_of(*id);
            let mark = if what.is_empty() { "" } else { "*" };
            format!("{id:>4}{mark}:{:<8}", served.get(id).copied().unwrap_or(0))
        })
        .collect();
    for row in cells.chunks(8) {
        println!("  {}", row.join(" "));
    }
    println!("  (* = misbehaving version:");
    for id in &installed {
        let (_, what) = faults_of(*id);
        if !what.is_empty() && !what.starts_with("slow") {
            println!("     {id}: {what}");
        }
    }
    println!("     and every version ending in 5: slow calls)");

    if problems.is_empty() {
        println!("\nRESULT: ok, every invariant held");
        ExitCode::SUCCESS
    } else {
        println!("\nRESULT: FAILED");
        for p in problems {
            println!("  - {p}");
        }
        ExitCode::FAILURE
    }
}
