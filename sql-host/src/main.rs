//! The main job: builds the plugin libraries, runs the SQL host under load
//! while deploying versions, prints a live line and the report, and exits
//! non-zero if an invariant broke; writes the timeline (SVG, `--timeline PATH`,
//! `target/sql-host-timeline.svg` by default). `--clients N`, `--rounds M`,
//! `--keep`, `--quiet`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut config = sql_host::Config::default();
    // Beside the build's other outputs unless told otherwise.
    let mut timeline: std::path::PathBuf =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), Into::into);
    timeline.push("sql-host-timeline.svg");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Option<usize> {
            let n = args.next().and_then(|v| v.parse().ok());
            if n.is_none() {
                eprintln!("{name} takes a number");
            }
            n
        };
        match arg.as_str() {
            "--clients" => match number("--clients") {
                Some(n) => config.clients = n.max(1),
                None => return ExitCode::from(2),
            },
            "--rounds" => match number("--rounds") {
                Some(n) => config.rounds = n,
                None => return ExitCode::from(2),
            },
            "--keep" => config.keep = true,
            "--timeline" => match args.next() {
                Some(path) => timeline = path.into(),
                None => {
                    eprintln!("--timeline takes a path");
                    return ExitCode::from(2);
                }
            },
            "--quiet" => config.live = false,
            other => {
                eprintln!("unknown argument {other} (--clients N, --rounds M, --keep, --quiet, --timeline PATH)");
                return ExitCode::from(2);
            }
        }
    }
    println!("building the plugin libraries...");
    let builds = match sql_host::plugins::build() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match sql_host::run(&builds, &config) {
        Ok(report) => {
            println!("{report}");
            match sql_host::timeline::write(&report, &timeline) {
                Ok(()) => println!("timeline: {}", timeline.display()),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("the run could not start: {e}");
            ExitCode::FAILURE
        }
    }
}
