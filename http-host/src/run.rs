//! The run: build and register the plugins, serve, load, deploy round
//! after round by renaming files onto the watched paths, revert the bad
//! version the clients notice, then shut down with a deadline.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use reload_core::dylib::{AutoReload, DylibPlugin, Loader, Outcome};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;

use crate::load::{self, Conn, Load};
use crate::plugins::{self, Builds};
use crate::server::{self, Routes};
use crate::{Config, Report};

const KINDS: [&str; 3] = ["transform", "filter", "stream"];
/// How long a deploy's outcome (its drain included) may take.
const OUTCOME_WAIT: Duration = Duration::from_secs(60);

/// What a deploy should do.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Reload,
    Refuse(&'static str),
}

/// The deploys of round `r`.
fn round(r: usize) -> Vec<(&'static str, &'static str, Expect)> {
    let good = if r.is_multiple_of(2) {
        "1.1.0"
    } else {
        "1.0.0"
    };
    let mut steps = vec![
        ("transform", good, Expect::Reload),
        ("filter", good, Expect::Reload),
        ("stream", good, Expect::Reload),
    ];
    match r {
        1 => steps.push(("transform", "1.2.0", Expect::Refuse("ABI"))),
        2 => steps.push(("stream", "1.2.0", Expect::Reload)),
        3 => steps.push(("filter", "1.2.0", Expect::Reload)),
        _ => {}
    }
    steps
}

fn deploy_file(from: &Path, live: &Path) -> std::io::Result<()> {
    let tmp = live.with_extension("tmp");
    fs::copy(from, &tmp)?;
    fs::rename(&tmp, live)
}

/// Runs the demo.
///
/// # Errors
///
/// A setup step failed (a build, the loader, the registry, the server).
pub fn run(config: &Config) -> Result<Report, String> {
    println!("building the plugin libraries...");
    let builds = plugins::build()?;
    let stage = std::env::temp_dir().join(format!("http-host-{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    let live_dir = stage.join("live");
    fs::create_dir_all(&live_dir).map_err(|e| e.to_string())?;
    let live = |kind: &str| live_dir.join(format!("{kind}{}", std::env::consts::DLL_SUFFIX));
    let loader = Arc::new(Loader::in_dir(stage.join("copies")).map_err(|e| e.to_string())?);
    let registry: Arc<Registry<DylibPlugin>> = Arc::new(Registry::new(Unchecked));
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| e.to_string())?;
    for kind in KINDS {
        deploy_file(&builds.path(kind, "1.0.0"), &live(kind)).map_err(|e| e.to_string())?;
        let package = loader.package(&live(kind)).map_err(|e| e.to_string())?;
        registry.register(package, b"").map_err(|r| r.to_string())?;
    }
    let mut watchers = BTreeMap::new();
    for kind in KINDS {
        // The transform reloads quiesced: its requests wait at the gate
        // (backpressure) while the old version drains.
        let options = if kind == "transform" {
            ReloadOptions::quiesced(Duration::from_secs(10))
        } else {
            ReloadOptions::immediate()
        };
        let watcher = AutoReload::spawn_with_config(
            Arc::clone(&registry),
            Arc::clone(&loader),
            &live(kind),
            Duration::from_millis(20),
            options,
            Duration::from_secs(30),
            Vec::new(),
        )
        .map_err(|e| e.to_string())?;
        watchers.insert(kind, watcher);
    }
    let handle = |name: &str| registry.handle(name).map_err(|e| e.to_string());
    let routes = Routes {
        transform: handle("transform")?,
        filter: handle("filter")?,
        stream: handle("stream")?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = server::router(&routes, metrics);
    let server = runtime.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });

    let load = Arc::new(Load::default());
    let started = Instant::now();
    let clients: Vec<_> = (0..config.connections)
        .map(|c| runtime.spawn(load::client(Arc::clone(&load), addr, c as u64)))
        .collect();
    // Versions draining, sampled every 10 ms.
    let sampler = {
        let (registry, load) = (Arc::clone(&registry), Arc::clone(&load));
        runtime.spawn(async move {
            let mut samples = Vec::new();
            while !load.stop.load(SeqCst) {
                let draining: usize = KINDS
                    .iter()
                    .filter_map(|k| registry.handle(k).ok())
                    .map(|h| h.stats().draining_now)
                    .sum();
                samples.push(draining);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples
        })
    };

    let mut report = Report {
        shutdown_deadline: config.shutdown_deadline,
        ..Report::default()
    };
    std::thread::sleep(Duration::from_millis(300));
    for r in 0..config.rounds {
        for (kind, version, expect) in round(r) {
            load.deploying.fetch_add(1, SeqCst);
            let result = deploy_one(
                &watchers[kind],
                &builds,
                kind,
                version,
                expect,
                &live(kind),
                &mut report,
            );
            load.deploying.fetch_add(1, SeqCst);
            if let Err(e) = result {
                report.unexpected.push(format!("{kind} {version}: {e}"));
            }
            if (kind, version) == ("filter", "1.2.0") {
                if let Err(e) = health_check_and_revert(&registry, &load, &mut report) {
                    report.unexpected.push(format!("the bad filter: {e}"));
                }
            }
            std::thread::sleep(config.pause);
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    // The figures, as a scraper sees them.
    match runtime.block_on(scrape(addr)) {
        Ok(text) => {
            report.metrics_ok = text.contains("reload_core_reloads_total")
                && text.contains("reload_core_drain_seconds");
            report.metrics_sample = text
                .lines()
                .filter(|l| l.starts_with("reload_core_reloads_total"))
                .map(str::to_owned)
                .collect();
        }
        Err(e) => report.unexpected.push(format!("scraping /metrics: {e}")),
    }

    load.stop.store(true, SeqCst);
    for c in clients {
        if runtime.block_on(c).is_err() {
            report.unexpected.push("a client panicked".to_owned());
        }
    }
    let samples = runtime.block_on(sampler).unwrap_or_default();
    report.seconds = started.elapsed().as_secs_f64();
    report.max_draining = samples.iter().copied().max().unwrap_or(0);
    report.draining_share =
        samples.iter().filter(|&&n| n > 0).count() as f64 / samples.len().max(1) as f64;

    let serving = Serving {
        runtime,
        addr,
        server,
        stop_server,
    };
    shutdown(
        config,
        serving,
        &watchers,
        &builds,
        &live,
        &registry,
        &mut report,
    )?;
    drop(watchers);
    report.tally = std::mem::take(&mut *load.tally.lock());
    let _ = fs::remove_dir_all(&stage);
    Ok(report)
}

fn deploy_one(
    watcher: &AutoReload,
    builds: &Builds,
    kind: &str,
    version: &str,
    expect: Expect,
    live: &Path,
    report: &mut Report,
) -> Result<(), String> {
    let from: PathBuf = builds.path(kind, version);
    deploy_file(&from, live).map_err(|e| e.to_string())?;
    let outcome = watcher
        .next_outcome(OUTCOME_WAIT)
        .ok_or("no outcome from the watcher")?;
    match (outcome, expect) {
        (Outcome::Reloaded { to, drained_in, .. }, Expect::Reload) => {
            if to.to_string() != version {
                return Err(format!("reloaded to {to}"));
            }
            *report.reloads.entry(kind.to_owned()).or_default() += 1;
            let drained = drained_in.ok_or("the old version did not drain in time")?;
            report
                .drains
                .entry(kind.to_owned())
                .or_default()
                .push(drained);
            Ok(())
        }
        (Outcome::Refused { why, .. }, Expect::Refuse(text)) => {
            let why = why.to_string();
            if !why.contains(text) {
                return Err(format!("refused, but not for `{text}`: {why}"));
            }
            report.refusals.push(format!("{kind} {version}: {why}"));
            Ok(())
        }
        (other, _) => Err(format!("expected {expect:?}, got {other:?}")),
    }
}

/// Waits until the clients see the bad filter's wrong answers (the health
/// check), then reverts it to the version before.
fn health_check_and_revert(
    registry: &Registry<DylibPlugin>,
    load: &Load,
    report: &mut Report,
) -> Result<(), String> {
    let deadline = Instant::now() + OUTCOME_WAIT;
    while load
        .tally
        .lock()
        .wrong
        .get("filter 1.2.0")
        .copied()
        .unwrap_or(0)
        == 0
    {
        if Instant::now() > deadline {
            return Err("never noticed".to_owned());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let reverted = registry
        .revert("filter", &b""[..], ReloadOptions::immediate())
        .map_err(|r| format!("revert refused: {r}"))?;
    *load.reverted_at.lock() = Some(Instant::now());
    for change in reverted.changes {
        change
            .committed
            .old
            .wait_timeout(OUTCOME_WAIT)
            .map_err(|_| "the bad version did not drain")?;
    }
    report.reverts += 1;
    Ok(())
}

/// `GET /metrics`.
async fn scrape(addr: std::net::SocketAddr) -> Result<String, String> {
    let mut conn = Conn::connect(addr).await?;
    let (status, _, body) = conn
        .request(http::Method::GET, "/metrics", String::new())
        .await?;
    if status != http::StatusCode::OK {
        return Err(format!("{status}"));
    }
    Ok(body)
}

/// The running server.
struct Serving {
    runtime: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_server: tokio::sync::oneshot::Sender<()>,
}

/// Graceful shutdown with a deadline: a long stream on the slow version
/// is open when it starts; the server stops accepting and waits up to the
/// deadline for what is open; what is still open then is cut (the runtime
/// goes, with every connection task: their bodies drop and give their
/// leases back); then every plugin is unregistered and drained.
fn shutdown(
    config: &Config,
    serving: Serving,
    watchers: &BTreeMap<&str, AutoReload>,
    builds: &Builds,
    live: &dyn Fn(&str) -> PathBuf,
    registry: &Registry<DylibPlugin>,
    report: &mut Report,
) -> Result<(), String> {
    // The slow stream version, and a long stream on it (100 chunks, 10 s).
    deploy_one(
        &watchers["stream"],
        builds,
        "stream",
        "1.2.0",
        Expect::Reload,
        &live("stream"),
        report,
    )
    .unwrap_or_else(|e| {
        report
            .unexpected
            .push(format!("stream 1.2.0 before shutdown: {e}"))
    });
    let Serving {
        runtime,
        addr,
        server,
        stop_server,
    } = serving;
    let _long = runtime.spawn(async move {
        let mut conn = Conn::connect(addr).await?;
        conn.request(http::Method::GET, "/stream?n=100", String::new())
            .await
    });
    let stream = registry.handle("stream").map_err(|e| e.to_string())?;
    let deadline = Instant::now() + OUTCOME_WAIT;
    while stream.stats().in_flight == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = stop_server.send(());
    let graceful =
        runtime.block_on(async { tokio::time::timeout(config.shutdown_deadline, server).await });
    if graceful.is_err() {
        // Still serving at the deadline: count what is open, then cut it.
        for kind in KINDS {
            let open = registry.handle(kind).map_or(0, |h| h.stats().in_flight);
            if open > 0 {
                report.cut += open;
                report.cut_on.push(format!("{open} on {kind}"));
            }
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    for kind in KINDS {
        let version = registry
            .enter(kind)
            .map(|call| call.manifest().version().to_string())
            .unwrap_or_default();
        let started = Instant::now();
        match registry.unregister(kind) {
            Ok(Some(draining)) => match draining.wait_timeout(Duration::from_secs(5)) {
                Ok(_) => report.shutdown.push(format!(
                    "{kind} {version}: drained and shut down in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1e3
                )),
                Err(_) => report
                    .unexpected
                    .push(format!("{kind} {version} did not drain at shutdown")),
            },
            Ok(None) => {}
            Err(e) => report.unexpected.push(format!("unregistering {kind}: {e}")),
        }
    }
    report.shutdown_ok = report.shutdown.len() == KINDS.len();
    Ok(())
}
