//! `AutoReload` and `Watcher` at the edges of their durations, and their
//! threads' health: the largest drain keeps reloading (it used to panic the
//! thread after the first reload, silently), a zero drain reports at once,
//! a drain waiting on a lease that is never given back does not wedge the
//! drop, and debounces of zero and of `Duration::MAX` mean what they say.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dylib_demo::{build_plugins, Libraries};
use reload_core::dylib::{AutoReload, DylibPlugin, Loader, Outcome, Watcher};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;

fn libs() -> &'static Libraries {
    static LIBS: OnceLock<Libraries> = OnceLock::new();
    LIBS.get_or_init(|| build_plugins().unwrap_or_else(|e| panic!("{e}")))
}

/// Generous: a starved machine may be slow, and a wait not needed costs
/// nothing.
const PATIENCE: Duration = Duration::from_secs(60);

struct Stage {
    dir: PathBuf,
    live: PathBuf,
    registry: Arc<Registry<DylibPlugin>>,
    loader: Arc<Loader>,
}

impl Stage {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("reload-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let live = dir.join(format!(
            "{}adder{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        deploy(&libs().v1, &live);
        let loader = Arc::new(Loader::in_dir(dir.join("copies")).expect("loader"));
        let registry = Arc::new(Registry::new(Unchecked));
        let first = loader.package(&live).expect("packages");
        registry.register(first, b"").expect("registers");
        Stage {
            dir,
            live,
            registry,
            loader,
        }
    }

    fn auto(&self, drain: Duration) -> AutoReload {
        AutoReload::spawn(
            Arc::clone(&self.registry),
            Arc::clone(&self.loader),
            &self.live,
            Duration::from_millis(50),
            ReloadOptions::immediate(),
            drain,
        )
        .expect("watches")
    }

    fn version(&self) -> String {
        self.registry.list()[0].version.to_string()
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn deploy(from: &Path, live: &Path) {
    let tmp = live.with_extension("tmp");
    fs::copy(from, &tmp).expect("copy");
    fs::rename(&tmp, live).expect("rename");
}

/// The next `Reloaded` outcome to `version`, and its drain time. On a
/// starved machine a deploy may also be seen half-settled (refused) or as
/// two changes (a second reload to the same file): those are skipped.
fn reloaded(auto: &AutoReload, version: &str) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        match auto.next_outcome(PATIENCE) {
            Some(Outcome::Reloaded { to, drained_in, .. }) if to.to_string() == version => {
                return drained_in
            }
            Some(Outcome::Reloaded { .. } | Outcome::Refused { .. }) => continue,
            Some(other) => panic!("{other:?}"),
            None => break,
        }
    }
    panic!(
        "no reload to {version} within {PATIENCE:?}; the reloader {}",
        match auto.health().exit() {
            Some(exit) => exit.to_string(),
            None => "runs".to_owned(),
        }
    );
}

#[test]
fn the_largest_drain_keeps_reloading() {
    let stage = Stage::new("autoreload-max");
    let auto = stage.auto(Duration::MAX);
    for (lib, version) in [
        (&libs().v2, "1.1.0"),
        (&libs().v1, "1.0.0"),
        (&libs().v2, "1.1.0"),
    ] {
        deploy(lib, &stage.live);
        let drained_in = reloaded(&auto, version);
        assert!(drained_in.is_some(), "no lease was held: drained");
        assert_eq!(stage.version(), version);
    }
    assert!(auto.health().is_running());
    assert_eq!(auto.health().exit(), None);
}

#[test]
fn a_zero_drain_reports_at_once_and_the_version_drains_later() {
    let stage = Stage::new("autoreload-zero");
    let auto = stage.auto(Duration::ZERO);
    let held = stage.registry.enter_owned("adder").expect("a call");
    deploy(&libs().v2, &stage.live);
    assert_eq!(reloaded(&auto, "1.1.0"), None, "a lease was out");
    // The held call still runs on 1.0.0, which drains when it ends.
    let out = held.plugin().call(&20u64.to_le_bytes()).expect("calls");
    assert_eq!(out, 21u64.to_le_bytes());
    drop(held);
    // With nothing in flight, even a zero wait sees the drain complete.
    deploy(&libs().v1, &stage.live);
    assert!(reloaded(&auto, "1.0.0").is_some());
}

#[test]
fn dropping_the_reloader_while_it_waits_on_a_drain_does_not_wedge() {
    for (i, drain) in [Duration::from_secs(3600), Duration::MAX]
        .into_iter()
        .enumerate()
    {
        let stage = Stage::new(&format!("autoreload-wedge-{i}"));
        let auto = stage.auto(drain);
        // A call that outlives the reloader: its drain never completes
        // while the reloader runs.
        let held = stage.registry.enter_owned("adder").expect("a call");
        deploy(&libs().v2, &stage.live);
        // Wait until the reload committed (the reloader is then in its
        // drain wait), then drop the reloader.
        let started = Instant::now();
        while stage.version() != "1.1.0" {
            assert!(started.elapsed() < PATIENCE, "the reload never committed");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        let dropping = Instant::now();
        drop(auto);
        let took = dropping.elapsed();
        eprintln!("dropped a reloader mid-drain ({drain:?}) in {took:?}");
        assert!(took < Duration::from_secs(10), "the drop waited {took:?}");
        drop(held);
    }
}

#[test]
fn debounces_of_zero_and_the_largest() {
    let stage = Stage::new("watch-edges");
    let zero = Watcher::new(&stage.live, Duration::ZERO).expect("watches");
    let never = Watcher::new(&stage.live, Duration::MAX).expect("watches");
    deploy(&libs().v2, &stage.live);
    let change = zero.next_change(PATIENCE).expect("a zero debounce reports");
    assert_eq!(change.path, stage.live);
    // The largest debounce never settles: nothing is reported, and dropping
    // the watch ends its thread at once (it used to sleep half of forever).
    assert_eq!(never.next_change(Duration::from_millis(500)), None);
    let health = never.health().clone();
    assert!(health.is_running());
    drop(never);
    let started = Instant::now();
    while health.is_running() {
        assert!(
            started.elapsed() < PATIENCE,
            "the settler outlived its watch"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(health.exit(), None, "an asked-for end is not a failure");
}
