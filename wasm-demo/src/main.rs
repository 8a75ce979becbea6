//! The WebAssembly demo: `cargo run --release -p wasm-demo` (`--workers N`,
//! `--reloads M`). Exits non-zero if an invariant broke.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut config = wasm_demo::Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (arg.as_str(), value) {
            ("--workers", Some(n)) => config.workers = n.max(1),
            ("--reloads", Some(n)) => config.reloads = n.max(10),
            _ => {
                eprintln!("usage: wasm-demo [--workers N] [--reloads M]");
                return ExitCode::from(2);
            }
        }
    }
    match wasm_demo::run(&config) {
        Ok(report) => {
            println!("{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("the demo could not start: {e}");
            ExitCode::FAILURE
        }
    }
}
