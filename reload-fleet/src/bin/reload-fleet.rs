//! `reload-fleet`: start, watch, pause, resume, abort and take over plugin
//! rollouts across a fleet, and show what every node serves.
//!
//! Exit codes: 0 when the command did what it says (for `start` and
//! `drive`: the rollout completed), 2 when a rollout ended aborted or
//! reverted, 1 on an error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use reload_fleet::{Control, Coordinator, DirStore, FleetError, Keys, Outcome, PlanSpec};

#[derive(Parser)]
#[command(
    name = "reload-fleet",
    version,
    about = "Plugin rollouts across a fleet, on etcd"
)]
struct Cli {
    /// etcd's client endpoints, comma-separated.
    #[arg(
        long,
        env = "RELOAD_FLEET_ETCD",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    endpoints: Vec<String>,
    /// The fleet's key prefix.
    #[arg(long, default_value = "/reload/")]
    prefix: String,
    /// Each etcd request's bound, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copies a package into a store directory and prints its target
    /// (version, SHA-256, location) as JSON, for a plan's `to`.
    Publish {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// The package file.
        file: PathBuf,
        /// Its name in the store.
        #[arg(long)]
        name: String,
        /// The plugin version it holds.
        #[arg(long)]
        version: String,
    },
    /// Resolves a plan (JSON, a `PlanSpec`) against the live fleet and
    /// prints it, without starting it.
    Plan {
        /// The plan file.
        file: PathBuf,
    },
    /// Starts a rollout and drives it to its end, printing its progress.
    Start {
        /// The plan file.
        file: PathBuf,
        /// Start it and return (drive it later with `drive`).
        #[arg(long)]
        detach: bool,
    },
    /// Drives a rollout that is going on (taking over from a coordinator
    /// that stopped).
    Drive {
        /// The rollout.
        id: String,
    },
    /// Prints a rollout's progress until it ends, without driving it.
    Watch {
        /// The rollout.
        id: String,
    },
    /// Opens no further stage.
    Pause {
        /// The rollout.
        id: String,
    },
    /// Goes on after a pause.
    Resume {
        /// The rollout.
        id: String,
    },
    /// Aborts the stage under way, or reverts what committed.
    Abort {
        /// The rollout.
        id: String,
    },
    /// What every live node serves, and its health.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reload-fleet: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reload-fleet: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, FleetError> {
    if let Command::Publish {
        store,
        file,
        name,
        version,
    } = &cli.command
    {
        let target = DirStore::new(store)
            .publish(file, name, version)
            .map_err(|e| FleetError::Plan(e.to_string()))?;
        println!("{}", json(&target));
        return Ok(ExitCode::SUCCESS);
    }
    let c = Coordinator::connect(
        &cli.endpoints,
        Keys::new(&cli.prefix),
        Duration::from_millis(cli.timeout_ms),
    )
    .await?;
    match cli.command {
        Command::Publish { .. } => unreachable!("handled above"),
        Command::Plan { file } => {
            let plan = c.plan(read_spec(&file)?).await?;
            println!("{}", json(&plan));
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { file, detach } => {
            let plan = c.plan(read_spec(&file)?).await?;
            c.start(&plan).await?;
            println!(
                "rollout {} of {} started: {} -> {}",
                plan.id, plan.plugin, plan.from.version, plan.to.version
            );
            for (k, s) in plan.stages.iter().enumerate() {
                println!("  stage {k} ({}): {}", s.name, s.nodes.join(", "));
            }
            if detach {
                return Ok(ExitCode::SUCCESS);
            }
            drive(&c, &plan.id).await
        }
        Command::Drive { id } => drive(&c, &id).await,
        Command::Watch { id } => {
            let mut last = None;
            loop {
                let state = c.etcd().rollout(&id).await?;
                let line = format!(
                    "decided {:?}, gates {:?}, control {:?}",
                    state.decisions.keys().collect::<Vec<_>>(),
                    state
                        .gates
                        .iter()
                        .map(|(k, g)| (k, g.passed))
                        .collect::<Vec<_>>(),
                    state.control
                );
                if last.as_ref() != Some(&line) {
                    println!("{line}");
                    last = Some(line);
                }
                if let Some(outcome) = state.outcome {
                    println!("ended: {outcome}");
                    return Ok(exit_for(&outcome));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Command::Pause { id } => set(&c, &id, Control::Pause).await,
        Command::Resume { id } => set(&c, &id, Control::Run).await,
        Command::Abort { id } => set(&c, &id, Control::Abort).await,
        Command::Status => {
            println!(
                "{:<12} {:<12} {:<10} {:<14} {:>10} {:>8} {:>8}  behind",
                "node", "plugin", "version", "digest", "calls", "errors", "p99 µs"
            );
            for (node, status) in c.nodes().await? {
                for (plugin, s) in &status.serving {
                    let h = status.health.get(plugin).copied().unwrap_or_default();
                    println!(
                        "{node:<12} {plugin:<12} {:<10} {:<14} {:>10} {:>8} {:>8}  {}",
                        s.version,
                        &s.digest[..s.digest.len().min(12)],
                        h.calls,
                        h.errors,
                        h.p99_us,
                        status.behind.get(plugin).map_or("", String::as_str)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn set(c: &Coordinator, id: &str, control: Control) -> Result<ExitCode, FleetError> {
    c.control(id, control).await?;
    println!("rollout {id}: {control:?}");
    Ok(ExitCode::SUCCESS)
}

async fn drive(c: &Coordinator, id: &str) -> Result<ExitCode, FleetError> {
    let start = Instant::now();
    let outcome = c
        .drive(id, |p| {
            println!("[{:6.1}s] {p}", start.elapsed().as_secs_f64())
        })
        .await?;
    Ok(exit_for(&outcome))
}

fn exit_for(o: &Outcome) -> ExitCode {
    match o {
        Outcome::Done => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    }
}

fn read_spec(file: &PathBuf) -> Result<PlanSpec, FleetError> {
    let bytes = std::fs::read(file).map_err(|source| FleetError::Io {
        path: file.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| FleetError::Plan(format!("{}: {e}", file.display())))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
