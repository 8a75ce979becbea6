//! WebAssembly plugins hot-reloaded under live calls (reload-core's `wasm`
//! feature): the guests in WAT ([`guests`]), and the demo [`run`]:
//! workers call a stateful counter guest through a `Registry` while it is
//! reloaded hundreds of times, quiesced, its count carried; one version in
//! ten fails its restore, one loops forever on some input (interrupted at
//! its deadline, the drain still completes), and one lacks an export its
//! manifest lists (refused before instantiation).

pub mod guests;
pub mod udf;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reload_core::registry::Registry;
use reload_core::verify::{Digest, HashPin};
use reload_core::wasm::{Limits, Runtime, WasmError, WasmPlugin};
use reload_core::{ReloadOptions, Stateful};

use guests::Counter;

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Calling threads.
    pub workers: usize,
    /// Reload attempts.
    pub reloads: usize,
    /// The call deadline.
    pub deadline: Duration,
    /// Print progress.
    pub live: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 2,
            reloads: 300,
            deadline: Duration::from_millis(100),
            live: true,
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Calls that counted.
    pub calls: u64,
    /// Calls interrupted at their deadline (the looping version).
    pub interrupted: u64,
    /// Calls that failed otherwise (must be 0).
    pub dropped: u64,
    /// Calls that reached a version after its shutdown (must be 0).
    pub after_shutdown: u64,
    /// Reloads committed.
    pub reloads: u64,
    /// Refused: restore failed (old version serving).
    pub restore_refusals: u64,
    /// Refused before instantiation: a missing export.
    pub export_refusals: u64,
    /// Anything else unexpected.
    pub unexpected: Vec<String>,
    /// The count the last version holds.
    pub final_count: u64,
    /// The longest drain after a commit.
    pub max_drain: Duration,
    /// The reload away from the looping version, with a runaway call in
    /// flight on it: from the reload's start to the old version drained
    /// (the quiesce waits for the runaway call's interrupt).
    pub loop_drain: Option<Duration>,
    /// The call deadline.
    pub deadline: Duration,
    /// How long it took.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every invariant held: nothing dropped, nothing after
    /// shutdown, the count exact, every refusal the expected one.
    pub fn ok(&self) -> bool {
        self.dropped == 0
            && self.after_shutdown == 0
            && self.final_count == self.calls
            && self.unexpected.is_empty()
            && self.calls > 0
            && self.loop_drain.is_some()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== WebAssembly demo report ({:.1} s)",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "calls: {} counted, {} interrupted at their deadline, {} dropped, {} after shutdown",
            self.calls, self.interrupted, self.dropped, self.after_shutdown
        )?;
        writeln!(
            f,
            "state: final count {} (calls counted {}): {}",
            self.final_count,
            self.calls,
            if self.final_count == self.calls {
                "exact"
            } else {
                "WRONG"
            }
        )?;
        writeln!(
            f,
            "reloads: {} committed, {} refused at restore, {} refused for a missing export",
            self.reloads, self.restore_refusals, self.export_refusals
        )?;
        writeln!(
            f,
            "drains: max {:?}; reload away from the looping version with a runaway call in flight: {:?} (deadline {:?})",
            self.max_drain, self.loop_drain, self.deadline
        )?;
        for u in &self.unexpected {
            writeln!(f, "UNEXPECTED: {u}")?;
        }
        if self.ok() {
            write!(f, "RESULT: ok, every invariant held")
        } else {
            write!(f, "RESULT: FAILED, an invariant broke (see above)")
        }
    }
}

/// Which version attempt `i` of `reloads` is.
fn variant(i: usize, reloads: usize) -> Counter {
    let mut c = Counter::new(&format!("1.{}.0", i + 1));
    c.fail_restore = i % 10 == 9;
    c.loops = i == reloads / 2;
    c.missing_export = i == reloads / 3;
    c
}

/// Runs the demo.
///
/// # Errors
///
/// The engine or the first version could not start.
pub fn run(config: &Config) -> Result<Report, String> {
    let started = Instant::now();
    let limits = Limits {
        deadline: config.deadline,
        memory: 1 << 20,
        ..Limits::default()
    };
    let runtime = Runtime::new(limits).map_err(|e| e.to_string())?;
    let modules: Vec<Vec<u8>> = (0..config.reloads)
        .map(|i| guests::counter(&variant(i, config.reloads)))
        .collect();
    let first = guests::counter(&Counter::new("1.0.0"));
    let pins = modules
        .iter()
        .chain([&first])
        .fold(HashPin::new(), |p, m| p.with("counter", Digest::of(m)));
    let registry: Arc<Registry<WasmPlugin>> = Arc::new(Registry::new(pins));
    let package = runtime.package(first).map_err(|e| e.to_string())?;
    registry.register(package, b"").map_err(|r| r.to_string())?;

    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let interrupted = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let after_shutdown = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..config.workers)
        .map(|w| {
            let registry = Arc::clone(&registry);
            let stop = Arc::clone(&stop);
            let counted = Arc::clone(&counted);
            let interrupted = Arc::clone(&interrupted);
            let dropped = Arc::clone(&dropped);
            let after_shutdown = Arc::clone(&after_shutdown);
            thread::spawn(move || {
                let mut n = w as u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Now and then the input the looping version spins on.
                    let input = [if n.is_multiple_of(5_000) { 0xff } else { 1 }];
                    match registry.call("counter", |c| c.plugin().call(&input)) {
                        Ok(Ok(_)) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(WasmError::Interrupted { .. })) => {
                            interrupted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(WasmError::Failed { message, .. }))
                            if message.contains("shutdown") =>
                        {
                            after_shutdown.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let mut report = Report {
        deadline: config.deadline,
        ..Report::default()
    };
    let options = ReloadOptions::quiesced(Duration::from_secs(5));
    for (i, module) in modules.into_iter().enumerate() {
        let v = variant(i, config.reloads);
        let package = match runtime.package(module) {
            Ok(p) => p,
            Err(WasmError::MissingExport { name }) if v.missing_export && name == "count" => {
                report.export_refusals += 1;
                continue;
            }
            Err(e) => {
                report.unexpected.push(format!("{}: {e}", v.version));
                continue;
            }
        };
        // Leaving the looping version: a runaway call is in flight on it
        // (it holds its lease until interrupted), and the reload's drain
        // must still complete, after the deadline.
        let runaway = (i > 0 && variant(i - 1, config.reloads).loops).then(|| {
            let caller = Arc::clone(&registry);
            let entered = Arc::new(AtomicBool::new(false));
            let signal = Arc::clone(&entered);
            let spun = thread::spawn(move || {
                caller.call("counter", |c| {
                    // Leased: this call is on the looping version now.
                    signal.store(true, Ordering::SeqCst);
                    c.plugin().call(&[0xff])
                })
            });
            while !entered.load(Ordering::SeqCst) && !spun.is_finished() {
                thread::yield_now();
            }
            spun
        });
        let reload_started = Instant::now();
        match registry.reload(vec![package], b"", options.clone()) {
            Ok(r) => {
                report.reloads += 1;
                for change in r.changes {
                    let cut = Instant::now();
                    if change
                        .committed
                        .old
                        .wait_timeout(Duration::from_secs(30))
                        .is_err()
                    {
                        report
                            .unexpected
                            .push(format!("{}: the old version did not drain", v.version));
                    }
                    let drain = cut.elapsed();
                    report.max_drain = report.max_drain.max(drain);
                    if runaway.is_some() {
                        report.loop_drain = Some(reload_started.elapsed());
                    }
                }
            }
            Err(r) if v.fail_restore && r.error.to_string().contains("restore refused") => {
                report.restore_refusals += 1;
            }
            Err(r) => report
                .unexpected
                .push(format!("{}: {}", v.version, r.error)),
        }
        if let Some(spun) = runaway {
            match spun.join() {
                Ok(Ok(Err(WasmError::Interrupted { .. }))) => {
                    interrupted.fetch_add(1, Ordering::Relaxed);
                }
                other => report
                    .unexpected
                    .push(format!("the runaway call was not interrupted: {other:?}")),
            }
        }
        if v.loops {
            // Keep the looping version current long enough to be hit.
            thread::sleep(config.deadline * 3);
        }
        if config.live && i % 50 == 49 {
            println!(
                "[{:>5.1}s] reloads {}, calls {}, interrupted {}",
                started.elapsed().as_secs_f64(),
                report.reloads,
                counted.load(Ordering::Relaxed),
                interrupted.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        if w.join().is_err() {
            report.unexpected.push("a worker panicked".to_owned());
        }
    }
    let state = registry
        .call("counter", |c| {
            Stateful::save(c.plugin()).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())??
        .ok_or("the counter saved no state")?;
    report.final_count = state
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    report.calls = counted.load(Ordering::Relaxed);
    report.interrupted = interrupted.load(Ordering::Relaxed);
    report.dropped = dropped.load(Ordering::Relaxed);
    report.after_shutdown = after_shutdown.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    Ok(report)
}
