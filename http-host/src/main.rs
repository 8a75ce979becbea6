//! `cargo run --release -p http-host [-- --connections N --rounds N]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut config = http_host::Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (arg.as_str(), value) {
            ("--connections", Some(n)) if n > 0 => config.connections = n,
            ("--rounds", Some(n)) => config.rounds = n,
            _ => {
                eprintln!("usage: http-host [--connections N (>0)] [--rounds N]");
                return ExitCode::from(2);
            }
        }
    }
    match http_host::run::run(&config) {
        Ok(report) => {
            print!("{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("http-host: {e}");
            ExitCode::FAILURE
        }
    }
}
