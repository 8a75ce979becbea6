//! `model`: check the reload protocol at sizes beyond `cargo test`, or
//! explore it in stateright's browser UI.
//!
//! ```text
//! cargo run -p model --release -- check --workers 3 --reloads 3 [--calls 1] [--timeouts] [--init-failure] [--close] [--observers] [--asymmetric] [--threads 2] [--bfs]
//! cargo run -p model --release -- explore [--port 3000] [same options]
//! cargo run -p model --release -- refute      # the broken designs' counterexamples
//! ```

use std::process::ExitCode;
use std::time::Instant;

use model::broken::phantom_refs::PhantomRefsSys;
use model::broken::ring::RingSys;
use model::protocol::{Fences, ReloadSys, ALL_REMOVED_AT_THE_END, NO_CALL_INTO_FINALIZED};
use model::trace::counterexample;
use stateright::{Checker, Model};

const USAGE: &str = "usage: model <check|explore|refute> [--workers N] [--calls N] [--reloads N] \
[--timeouts] [--init-failure] [--close] [--observers] [--asymmetric] [--threads N] [--bfs] [--port N]";

struct Options {
    sys: ReloadSys,
    threads: usize,
    port: u16,
    /// Breadth-first finds the shortest counterexample but holds the whole
    /// frontier of states in memory; depth-first holds fingerprints and one
    /// path, and is what fits the large configurations.
    bfs: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        sys: ReloadSys::small(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        port: 3000,
        bfs: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut number = || {
            it.next()
                .and_then(|v| v.parse::<u16>().ok())
                .ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))
        };
        let small = |n: u16| u8::try_from(n).map_err(|_| format!("{flag} is at most 255"));
        match flag.as_str() {
            "--workers" => o.sys.workers = small(number()?)?,
            "--calls" => o.sys.calls_per_worker = small(number()?)?,
            "--reloads" => o.sys.reloads = small(number()?)?,
            "--threads" => o.threads = usize::from(number()?).max(1),
            "--port" => o.port = number()?,
            "--timeouts" => o.sys.drain_timeouts = true,
            "--init-failure" => o.sys.init_failure = true,
            "--close" => o.sys.close = true,
            "--observers" => o.sys.observers = true,
            // Callers' counts in store buffers, the drain's heavy barrier.
            "--asymmetric" => o.sys.fences = Fences::Asymmetric,
            "--bfs" => o.bfs = true,
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if o.sys.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    Ok(o)
}

fn check(o: &Options) -> ExitCode {
    let strategy = if o.bfs {
        "breadth-first"
    } else {
        "depth-first"
    };
    println!("checking {:?}, {strategy} on {} threads", o.sys, o.threads);
    let start = Instant::now();
    let builder = o.sys.clone().checker().threads(o.threads);
    if o.bfs {
        report(o, builder.spawn_bfs().join(), start)
    } else {
        report(o, builder.spawn_dfs().join(), start)
    }
}

fn report(o: &Options, checker: impl Checker<ReloadSys>, start: Instant) -> ExitCode {
    let elapsed = start.elapsed();
    println!(
        "states: {} unique ({} generated), max depth {}, {:.1} s",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        elapsed.as_secs_f64()
    );
    let mut failed = false;
    for property in o.sys.properties() {
        let found = checker.discovery(property.name).is_some();
        let ok = match property.expectation {
            stateright::Expectation::Always | stateright::Expectation::Eventually => !found,
            stateright::Expectation::Sometimes => found,
        };
        failed |= !ok;
        println!(
            "  {} {:?} \"{}\"",
            if ok { "ok  " } else { "FAIL" },
            property.expectation,
            property.name
        );
        if !ok && found {
            if let Some(trace) = counterexample(&checker, property.name) {
                println!("{trace}");
            }
        }
    }
    if failed {
        println!("RESULT: a property failed");
        ExitCode::FAILURE
    } else {
        println!("RESULT: every property holds");
        ExitCode::SUCCESS
    }
}

fn refute() -> ExitCode {
    let ring = RingSys { workers: 1 }.checker().spawn_bfs().join();
    let phantom = PhantomRefsSys { workers: 1 }.checker().spawn_bfs().join();
    let no_barrier = ReloadSys::without_heavy_barrier()
        .checker()
        .spawn_bfs()
        .join();
    let unfenced_sum = ReloadSys::unfenced_release_sum()
        .checker()
        .spawn_bfs()
        .join();
    let traces = [
        (
            "8-slot epoch ring, drain before swap",
            counterexample(&ring, NO_CALL_INTO_FINALIZED),
        ),
        (
            "drain on references nobody holds",
            counterexample(&phantom, NO_CALL_INTO_FINALIZED),
        ),
        (
            "compiler fences on the call path, no heavy barrier",
            counterexample(&no_barrier, NO_CALL_INTO_FINALIZED),
        ),
        (
            "asymmetric fences, a release's sum with no full fence",
            counterexample(&unfenced_sum, ALL_REMOVED_AT_THE_END),
        ),
    ];
    let mut ok = true;
    for (name, trace) in traces {
        match trace {
            Some(trace) => println!("{name}: refuted\n{trace}"),
            None => {
                println!("{name}: NOT refuted (the model has lost its teeth)");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match command.as_str() {
        "check" => check(&options),
        "refute" => refute(),
        "explore" => {
            let address = format!("127.0.0.1:{}", options.port);
            println!(
                "exploring {:?}: open http://{address}/ (Ctrl-C to stop)",
                options.sys
            );
            options.sys.checker().serve(address.as_str());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
