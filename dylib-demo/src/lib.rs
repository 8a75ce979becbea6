//! Native plugin libraries hot-reloaded by replacing their file, under live
//! calls: the workspace's main job (`src/main.rs`) and its integration test
//! (`tests/dylib.rs`) both run [`run`].
//!
//! What it does:
//!
//! 1. builds the example plugin libraries of this repository (`plugins/`:
//!    `adder` 1.0.0 adds one, 1.1.0 doubles, and a broken one whose
//!    descriptor claims an ABI this host does not speak) with `cargo`;
//! 2. deploys 1.0.0 to a watched path, registers it in a
//!    `Registry` whose verifier pins the
//!    SHA-256 of the three builds, and starts worker threads calling it;
//! 3. deploys the next version by atomic rename (every `broken_every`-th
//!    deploy is the broken library, and one deploy is written slowly, in
//!    two halves, as a non-atomic copy would be); an `AutoReload` watches
//!    the file, packages it on each settled change, reloads the registry
//!    and reports the outcome, which the loop tallies;
//! 4. reports calls per version, calls dropped, wrong results, calls that
//!    reached a version after its shutdown, reloads done and refused (and
//!    why), drain times, and the private copies left.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reload_core::dylib::{AutoReload, DylibError, DylibPlugin, Loader, Outcome, Refusal};
use reload_core::registry::{Registry, RegistryError};
use reload_core::verify::{Digest, HashPin};
use reload_core::ReloadOptions;

/// The three builds.
#[derive(Clone, Debug)]
pub struct Libraries {
    /// `adder` 1.0.0: adds one.
    pub v1: PathBuf,
    /// `adder` 1.1.0: doubles.
    pub v2: PathBuf,
    /// A library with a future ABI version.
    pub broken: PathBuf,
    /// A library whose replies are garbage (for the host's tests).
    pub garbage: PathBuf,
}

/// Builds the example plugins with `cargo` (the one running us, if any)
/// into `<target>/plugins`, and returns their paths.
///
/// # Errors
///
/// The build failed, or a library is not where cargo puts it.
pub fn build_plugins() -> Result<Libraries, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace root")?
        .to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "adder-v1",
            "-p",
            "adder-v2",
            "-p",
            "adder-broken",
            "-p",
            "garbage",
        ])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the plugins failed: {status}"));
    }
    let lib = |name: &str| {
        let path = target.join("release").join(format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        if path.exists() {
            Ok(path)
        } else {
            Err(format!("{} was not built", path.display()))
        }
    };
    Ok(Libraries {
        v1: lib("adder_v1")?,
        v2: lib("adder_v2")?,
        broken: lib("adder_broken")?,
        garbage: lib("garbage")?,
    })
}

/// How the run goes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Calling threads.
    pub workers: usize,
    /// File-triggered reload attempts.
    pub reloads: usize,
    /// Every n-th deploy is the broken library (0: never).
    pub broken_every: usize,
    /// Deploy number `n` (if any) is written slowly, in two halves.
    pub slow_deploy: Option<usize>,
    /// The watcher's debounce.
    pub debounce: Duration,
    /// Print a line per second while running.
    pub live: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 2,
            reloads: 120,
            broken_every: 10,
            slow_deploy: Some(55),
            debounce: Duration::from_millis(15),
            live: true,
        }
    }
}

/// What happened.
#[derive(Debug, Default)]
pub struct Report {
    /// Calls served, by version.
    pub calls: BTreeMap<String, u64>,
    /// Calls that failed to start or failed in the plugin.
    pub dropped: u64,
    /// Calls whose result was not the one their version computes.
    pub wrong: u64,
    /// Calls that reached a version after its shutdown (the plugin itself
    /// refuses and reports these).
    pub after_shutdown: u64,
    /// Settled file changes the watcher acted on.
    pub changes: u64,
    /// Reloads committed.
    pub reloaded: u64,
    /// Refused with an ABI mismatch (the broken library).
    pub refused_abi: u64,
    /// Refused as not a whole library (a file caught mid-write).
    pub refused_incomplete: u64,
    /// Refused for another reason (listed).
    pub refused_other: Vec<String>,
    /// Drain times of the old versions, from cut-over to drained.
    pub drains: Vec<Duration>,
    /// The version serving at the end.
    pub final_version: String,
    /// Private copies left after everything was unregistered and dropped.
    pub copies_left: usize,
    /// Plugin libraries still mapped in this process at the end (read from
    /// `/proc/self/maps`; `None` where there is none): a library whose
    /// `dlclose` did not unmap it (see `docs/dylib.md`).
    pub still_mapped: Option<usize>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every invariant held and the run did what it was asked.
    pub fn ok(&self, config: &Config) -> bool {
        let broken = config.reloads.checked_div(config.broken_every).unwrap_or(0);
        self.dropped == 0
            && self.wrong == 0
            && self.after_shutdown == 0
            && self.refused_other.is_empty()
            && self.refused_abi == broken as u64
            && self.reloaded == (config.reloads - broken) as u64
            && self.copies_left == 0
            && self.calls.len() >= 2
    }

    /// Drain time at quantile `q` (0..=1).
    pub fn drain_quantile(&self, q: f64) -> Duration {
        let mut d = self.drains.clone();
        d.sort();
        d.get(((d.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// Replaces `live` with `from`'s bytes by writing a temporary file in the
/// same directory and renaming it over (what build tools and deploy scripts
/// do). With `slow`, writes `live` in place, half, a pause, the rest (what a
/// careless copy does).
fn deploy(from: &Path, live: &Path, slow: Option<Duration>) -> std::io::Result<()> {
    let bytes = fs::read(from)?;
    if let Some(pause) = slow {
        let mut f = fs::File::create(live)?;
        let half = bytes.len() / 2;
        f.write_all(&bytes[..half])?;
        f.sync_all()?;
        thread::sleep(pause);
        f.write_all(&bytes[half..])?;
        return f.sync_all();
    }
    let tmp = live.with_extension("tmp");
    fs::write(&tmp, &bytes)?;
    fs::rename(&tmp, live)
}

/// Runs the demo (see the [crate docs](crate)).
///
/// # Errors
///
/// Setting up failed (files, the watcher, the first registration).
pub fn run(libs: &Libraries, config: &Config) -> Result<Report, String> {
    let started = Instant::now();
    let stage = std::env::temp_dir().join(format!("reload-demo-{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).map_err(|e| e.to_string())?;
    let live = stage.join(format!(
        "{}adder{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    deploy(&libs.v1, &live, None).map_err(|e| e.to_string())?;

    let digest = |p: &Path| {
        fs::read(p)
            .map(|b| Digest::of(&b))
            .map_err(|e| e.to_string())
    };
    let pins = HashPin::new()
        .with("adder", digest(&libs.v1)?)
        .with("adder", digest(&libs.v2)?)
        .with("adder", digest(&libs.broken)?);
    let loader = Arc::new(Loader::in_dir(stage.join("copies")).map_err(|e| e.to_string())?);
    let registry: Arc<Registry<DylibPlugin>> = Arc::new(Registry::new(pins));
    let first = loader.package(&live).map_err(|e| e.to_string())?;
    registry.register(first, b"").map_err(|r| r.to_string())?;
    // Watches the file and reloads the registry from it on each settled
    // change, reporting every outcome.
    let auto = AutoReload::spawn(
        Arc::clone(&registry),
        Arc::clone(&loader),
        &live,
        config.debounce,
        ReloadOptions::immediate(),
        Duration::from_secs(10),
    )
    .map_err(|e| e.to_string())?;

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..config.workers)
        .map(|w| {
            let (registry, stop, served) = (
                Arc::clone(&registry),
                Arc::clone(&stop),
                Arc::clone(&served),
            );
            thread::spawn(move || worker(w, &registry, &stop, &served))
        })
        .collect();

    let mut report = Report::default();
    let mut last_print = Instant::now();
    let mut serving_v1 = true;
    for n in 0..config.reloads {
        let broken = config.broken_every != 0 && n % config.broken_every == config.broken_every - 1;
        let next = if broken {
            &libs.broken
        } else if serving_v1 {
            &libs.v2
        } else {
            &libs.v1
        };
        // A slow deploy runs on its own thread, so that its half-written
        // state is what the watcher and the loader see first.
        let writer = if config.slow_deploy == Some(n) {
            let (next, live, pause) = (next.clone(), live.clone(), config.debounce * 8);
            Some(thread::spawn(move || deploy(&next, &live, Some(pause))))
        } else {
            deploy(next, &live, None).map_err(|e| e.to_string())?;
            None
        };
        // Reload on each settled change until this deploy's outcome is in
        // (a slow deploy may settle, half written, once before it is done).
        loop {
            // Generous: a starved machine may be slow, and a wait that is
            // not needed costs nothing.
            let Some(outcome) = auto.next_outcome(Duration::from_secs(120)) else {
                let why = auto.health().exit().map(|e| format!(": {e}"));
                return Err(format!(
                    "deploy {n}: no reload outcome within 120 s{}",
                    why.unwrap_or_default()
                ));
            };
            report.changes += 1;
            match outcome {
                Outcome::Reloaded { drained_in, .. } => {
                    report.reloaded += 1;
                    serving_v1 = !serving_v1;
                    match drained_in {
                        Some(d) => report.drains.push(d),
                        None => report
                            .refused_other
                            .push(format!("deploy {n}: drain timed out")),
                    }
                }
                Outcome::Refused {
                    why: Refusal::Package(DylibError::Elf { .. }),
                    ..
                } => {
                    // Caught mid-write: the finished file settles next.
                    report.refused_incomplete += 1;
                    continue;
                }
                Outcome::Refused {
                    why: Refusal::Reload(RegistryError::Reload { fault, .. }),
                    ..
                } if broken && fault.to_string().contains("ABI mismatch") => {
                    report.refused_abi += 1;
                }
                Outcome::Refused { why, .. } => {
                    report.refused_other.push(format!("deploy {n}: {why}"));
                }
                other => report.refused_other.push(format!("deploy {n}: {other:?}")),
            }
            break;
        }
        if let Some(writer) = writer {
            writer
                .join()
                .map_err(|_| "the slow deploy panicked".to_owned())?
                .map_err(|e| e.to_string())?;
        }
        if config.live && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let version = registry
                .list()
                .first()
                .map(|p| p.version.to_string())
                .unwrap_or_default();
            println!(
                "  [{:>5.1}s] deploy {:>3}/{}: serving adder {version}, {} calls so far, {} reloads, {} refused",
                started.elapsed().as_secs_f64(),
                n + 1,
                config.reloads,
                served.load(Ordering::Relaxed),
                report.reloaded,
                report.refused_abi + report.refused_incomplete,
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let tally = w.join().map_err(|_| "a worker panicked".to_owned())?;
        for (v, n) in tally.calls {
            *report.calls.entry(v).or_default() += n;
        }
        report.dropped += tally.dropped;
        report.wrong += tally.wrong;
        report.after_shutdown += tally.after_shutdown;
    }
    report.final_version = registry
        .list()
        .first()
        .map(|p| p.version.to_string())
        .unwrap_or_default();
    drop(auto);
    if let Some(last) = registry.unregister("adder").map_err(|e| e.to_string())? {
        last.wait().map_err(|e| e.to_string())?;
    }
    drop(registry);
    report.copies_left = loader.copies();
    report.still_mapped = mapped_from(loader.dir());
    drop(loader);
    let _ = fs::remove_dir_all(&stage);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Distinct files under `dir` mapped into this process now.
fn mapped_from(dir: &Path) -> Option<usize> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    let dir = dir.to_string_lossy();
    let files: std::collections::BTreeSet<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with(dir.as_ref()))
        .collect();
    Some(files.len())
}

#[derive(Default)]
struct Tally {
    calls: BTreeMap<String, u64>,
    dropped: u64,
    wrong: u64,
    after_shutdown: u64,
}

fn worker(
    w: usize,
    registry: &Registry<DylibPlugin>,
    stop: &AtomicBool,
    served: &AtomicU64,
) -> Tally {
    let mut tally = Tally::default();
    let Ok(handle) = registry.handle("adder") else {
        tally.dropped += 1;
        return tally;
    };
    let mut x = w as u64 * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        x += 1;
        let outcome = handle.call(|call| {
            let version = call.manifest().version().to_string();
            let result = call.plugin().call(&x.to_le_bytes());
            (version, result)
        });
        match outcome {
            Ok((version, Ok(out))) => {
                let expected = if version == "1.0.0" { x + 1 } else { x * 2 };
                if out.as_slice() != expected.to_le_bytes() {
                    tally.wrong += 1;
                }
                *tally.calls.entry(version).or_default() += 1;
                served.fetch_add(1, Ordering::Relaxed);
            }
            Ok((_, Err(DylibError::Failed(msg)))) if msg.contains("after its shutdown") => {
                tally.after_shutdown += 1;
            }
            Ok((_, Err(_))) | Err(_) => tally.dropped += 1,
        }
    }
    tally
}
