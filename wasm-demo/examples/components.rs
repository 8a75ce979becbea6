//! Components reloaded under load: `cargo run --release -p wasm-demo
//! --example components` (`--workers N`, `--reloads M`). Needs the C
//! toolchain of `guests/` (`bash ci/guest-deps.sh`).
//!
//! Workers add 1 through the C counter component (`guests/c/counter.c`,
//! world `stateful-plugin`) while it is reloaded `M` times, quiesced, its
//! typed state carried (schema 1 migrated to 2 at the first reload). On
//! the way:
//!
//! - one version in ten refuses its configuration at `init`: refused, the
//!   old version serving;
//! - one in twenty-five is a component of another world (`my:udf`):
//!   refused before instantiation, `Incompatible`;
//! - half way, a call traps the current version: its instance is lost
//!   with its state, every call fails `Poisoned`, the next reload is
//!   refused (the state cannot be saved), and after the host forgets the
//!   state the next version starts from nothing.
//!
//! The invariants, checked at the end (exit 1 if one broke): no call
//! dropped (every failure is one of the expected, typed ones), the final
//! count equal to the calls counted since the state was forgotten, every
//! refusal the expected one.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::wasm::component::{ComponentPlugin, ComponentRuntime, PluginWorld};
use reload_core::wasm::{Limits, WasmError};
use reload_core::{ReloadOptions, Stateful};
use wasm_guests::{plugin_wit, wat, with_manifest};

type Counter = ComponentPlugin<PluginWorld>;

fn manifest(version: &str) -> String {
    format!("reload-manifest 1\nname counter\nversion {version}\nexport call\n")
}

#[derive(Default)]
struct Tally {
    counted: AtomicU64,
    poisoned: AtomicU64,
    dropped: AtomicU64,
    /// Workers that have seen `Poisoned` since the trap.
    saw_poison: AtomicUsize,
}

fn main() -> ExitCode {
    let (mut workers, mut reloads) = (2usize, 200usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (arg.as_str(), value) {
            ("--workers", Some(n)) => workers = n.max(1),
            ("--reloads", Some(n)) => reloads = n.max(30),
            _ => {
                eprintln!("usage: components [--workers N] [--reloads M]");
                return ExitCode::from(2);
            }
        }
    }
    match run(workers, reloads) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("the demo could not start: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build(schema: u32) -> Result<Vec<u8>, String> {
    wasm_guests::c_component(
        &wasm_guests::c_source("counter.c"),
        &plugin_wit(),
        "stateful-plugin",
        &[&format!("COUNTER_SCHEMA={schema}")],
    )
    .map_err(|e| e.to_string())
}

#[allow(clippy::too_many_lines)]
fn run(workers: usize, reloads: usize) -> Result<bool, String> {
    let started = Instant::now();
    let (v1, v2) = (build(1)?, build(2)?);
    let runtime = ComponentRuntime::plugins(Limits {
        deadline: Duration::from_secs(5),
        ..Limits::default()
    })
    .map_err(|e| e.to_string())?;
    let registry: Arc<Registry<Counter>> = Arc::new(Registry::new(Unchecked));
    let first = runtime
        .package(with_manifest(&v1, &manifest("1.0.0")))
        .map_err(|e| e.to_string())?;
    registry.register(first, b"").map_err(|r| r.to_string())?;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (registry, stop, tally) =
                (Arc::clone(&registry), Arc::clone(&stop), Arc::clone(&tally));
            thread::spawn(move || {
                let mut poisoned_here = false;
                while !stop.load(Ordering::Relaxed) {
                    match registry.call("counter", |c| c.plugin().call(&1u64.to_le_bytes())) {
                        Ok(Ok(_)) => {
                            tally.counted.fetch_add(1, Ordering::Relaxed);
                            poisoned_here = false;
                        }
                        Ok(Err(WasmError::Poisoned { .. })) => {
                            tally.poisoned.fetch_add(1, Ordering::Relaxed);
                            if !poisoned_here {
                                poisoned_here = true;
                                tally.saw_poison.fetch_add(1, Ordering::SeqCst);
                            }
                            thread::yield_now();
                        }
                        _ => {
                            tally.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let options = ReloadOptions::quiesced(Duration::from_secs(10));
    let (mut committed, mut init_refused, mut incompatible) = (0u64, 0u64, 0u64);
    let mut lost_refused = 0u64;
    let mut lost_calls = 0u64;
    let mut unexpected: Vec<String> = Vec::new();
    let mut max_drain = Duration::ZERO;
    let trap_at = reloads / 2;
    for i in 0..reloads {
        let version = format!("1.{}.0", i + 1);
        if i % 50 == 0 && i > 0 {
            println!(
                "[{:>5.1}s] reloads {committed}, calls {}, poisoned {}",
                started.elapsed().as_secs_f64(),
                tally.counted.load(Ordering::Relaxed),
                tally.poisoned.load(Ordering::Relaxed)
            );
        }
        if i == trap_at {
            // Lose the current version's instance: every call fails typed
            // from here until a reload replaces it.
            let trapped = registry.call("counter", |c| c.plugin().call(b"trap"));
            if !matches!(trapped, Ok(Err(WasmError::Trap { .. }))) {
                unexpected.push(format!("the trap was not a typed trap: {trapped:?}"));
            }
            // Once every worker has met the lost instance, each has
            // counted every call it made before: those went with the state.
            let wait = Instant::now();
            while tally.saw_poison.load(Ordering::SeqCst) < workers
                && wait.elapsed() < Duration::from_secs(60)
            {
                thread::yield_now();
            }
            lost_calls = tally.counted.load(Ordering::SeqCst);
            let next = runtime
                .package(with_manifest(&v2, &manifest(&format!("{version}-lost"))))
                .map_err(|e| e.to_string())?;
            match registry.reload(vec![next], b"", options.clone()) {
                Err(r) if r.error.to_string().contains("lost to an earlier failure") => {
                    lost_refused += 1;
                }
                other => unexpected.push(format!(
                    "a reload of the lost version was not refused: {:?}",
                    other.map(|_| ()).map_err(|r| r.error.to_string())
                )),
            }
            let _ = registry.call("counter", |c| c.plugin().forget_lost_state());
        }
        let (bytes, config): (Vec<u8>, &[u8]) = if i % 25 == 24 {
            (wat::udf("1.0.0"), b"")
        } else if i % 10 == 9 {
            (v2.clone(), b"refuse")
        } else {
            (v2.clone(), b"")
        };
        let package = match runtime.package(with_manifest(&bytes, &manifest(&version))) {
            Ok(p) => p,
            Err(WasmError::Incompatible { .. }) if i % 25 == 24 => {
                incompatible += 1;
                continue;
            }
            Err(e) => {
                unexpected.push(format!("{version}: {e}"));
                continue;
            }
        };
        match registry.reload(vec![package], config, options.clone()) {
            Ok(report) => {
                committed += 1;
                for change in report.changes {
                    let cut = Instant::now();
                    if change
                        .committed
                        .old
                        .wait_timeout(Duration::from_secs(30))
                        .is_err()
                    {
                        unexpected.push(format!("{version}: the old version did not drain"));
                    }
                    max_drain = max_drain.max(cut.elapsed());
                }
            }
            Err(r) if !config.is_empty() && r.error.to_string().contains("says refuse") => {
                init_refused += 1;
            }
            Err(r) => unexpected.push(format!("{version}: {}", r.error)),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        if t.join().is_err() {
            unexpected.push("a worker panicked".to_owned());
        }
    }
    let saved = registry
        .call("counter", |c| {
            Stateful::save(c.plugin()).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())??
        .ok_or("the counter saved no state")?;
    let final_count = saved
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let counted = tally.counted.load(Ordering::SeqCst);
    let dropped = tally.dropped.load(Ordering::SeqCst);
    let since = counted - lost_calls;
    println!(
        "== components demo report ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "calls: {counted} counted ({lost_calls} before the trap, gone with the lost instance), {} failed Poisoned while it was lost, {dropped} dropped",
        tally.poisoned.load(Ordering::SeqCst)
    );
    println!(
        "state: final count {final_count} (calls since the state was forgotten {since}): {}",
        if final_count == since {
            "exact"
        } else {
            "WRONG"
        }
    );
    println!(
        "reloads: {committed} committed, {init_refused} refused at init, {incompatible} refused as incompatible, {lost_refused} refused for a lost state; longest drain {max_drain:?}"
    );
    for u in &unexpected {
        println!("UNEXPECTED: {u}");
    }
    let ok = dropped == 0
        && final_count == since
        && unexpected.is_empty()
        && lost_refused == 1
        && committed > 0
        && since > 0;
    if ok {
        println!("RESULT: ok, every invariant held");
    } else {
        println!("RESULT: FAILED, an invariant broke (see above)");
    }
    Ok(ok)
}
