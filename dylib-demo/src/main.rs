//! The main job: `cargo run --release -p dylib-demo`. Builds the example
//! plugin libraries, then hot-reloads them by replacing their file under
//! live calls, and reports what happened (see the crate docs). Takes
//! `--workers N`, `--reloads M`, `--broken-every K`; exits non-zero if an
//! invariant broke.

use std::process::ExitCode;

use dylib_demo::{build_plugins, run, Config};

fn main() -> ExitCode {
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (flag.as_str(), value) {
            ("--workers", Some(v)) => config.workers = v.max(1),
            ("--reloads", Some(v)) => config.reloads = v.max(2),
            ("--broken-every", Some(v)) => config.broken_every = v,
            _ => {
                eprintln!("usage: dylib-demo [--workers N] [--reloads M] [--broken-every K]");
                return ExitCode::from(2);
            }
        }
    }
    if config.slow_deploy.is_some_and(|n| n >= config.reloads) {
        config.slow_deploy = None;
    }
    println!("building the plugin libraries (plugins/adder-v1, adder-v2, adder-broken)...");
    let libs = match build_plugins() {
        Ok(libs) => libs,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "hot-reloading `adder` by replacing its file {} times under {} calling threads \
         (every {}th deploy is a library with a future ABI; deploy {:?} is written slowly in place)",
        config.reloads, config.workers, config.broken_every, config.slow_deploy
    );
    let report = match run(&libs, &config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("the demo could not run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let total: u64 = report.calls.values().sum();
    println!("\n== report ({:.2} s)", report.elapsed.as_secs_f64());
    for (version, n) in &report.calls {
        println!("calls served by adder {version:<6} {n:>10}");
    }
    println!("calls served, total         {total:>10}");
    println!("calls dropped               {:>10}", report.dropped);
    println!("wrong results               {:>10}", report.wrong);
    println!("calls on shut-down code     {:>10}", report.after_shutdown);
    println!("file changes seen           {:>10}", report.changes);
    println!("reloads committed           {:>10}", report.reloaded);
    println!(
        "refused: ABI mismatch       {:>10}  (the broken library; the old version kept serving)",
        report.refused_abi
    );
    println!(
        "refused: incomplete file    {:>10}  (caught mid-write, reloaded once whole)",
        report.refused_incomplete
    );
    for other in &report.refused_other {
        println!("refused, unexpectedly: {other}");
    }
    println!(
        "old versions drained        {:>10}  (p50 {:?}, p99 {:?}, max {:?})",
        report.drains.len(),
        report.drain_quantile(0.5),
        report.drain_quantile(0.99),
        report.drain_quantile(1.0)
    );
    println!("serving at the end          {:>10}", report.final_version);
    println!("private copies left         {:>10}", report.copies_left);
    match report.still_mapped {
        Some(n) => println!("libraries still mapped      {n:>10}  (dlclose unmapped the rest)"),
        None => println!("libraries still mapped             n/a  (no /proc/self/maps)"),
    }
    if report.ok(&config) {
        println!("RESULT: ok, every invariant held");
        ExitCode::SUCCESS
    } else {
        println!("RESULT: FAILED");
        ExitCode::FAILURE
    }
}
