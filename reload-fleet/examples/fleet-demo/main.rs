//! The fleet demo: a real etcd, four HTTP host processes (axum behind
//! `reload-tower`) serving a `rules` plugin under load, and five rollouts: a good version in
//! stages; a version one node refuses (aborted everywhere before any
//! commit); a version whose error rate trips the canary's gate (reverted
//! fleet-wide); a node killed mid-rollout and restarted; etcd stopped
//! mid-rollout and restarted. It prints each rollout's timeline and exits
//! non-zero if an invariant broke.
//!
//! `bash ci/fleet-demo.sh` installs what it needs (etcd, protoc) and runs
//! it; with those present, `cargo run --release --example fleet-demo` in
//! `reload-fleet/`.

mod driver;
mod load;
mod node;
mod rule;
// The tests' etcd on loopback, shared.
#[allow(dead_code)]
#[path = "../../tests/support/etcd.rs"]
mod etcd;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("node") {
        let run = node::Args::parse(&args[2..]).and_then(node::main);
        if let Err(e) = run {
            eprintln!("node: {e}");
            return std::process::ExitCode::from(1);
        }
        return std::process::ExitCode::SUCCESS;
    }
    driver::main()
}
