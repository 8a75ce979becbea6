//! `Registry::reload_with_barrier`: the participant's side of a
//! distributed commit. Everything is prepared while the old version
//! serves; the barrier decides; a withheld commit (an error or a panic)
//! aborts what was prepared and hands the packages back, the old version
//! serving on with its state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reload_core::manifest::Manifest;
use reload_core::registry::{Package, Registry, RegistryError};
use reload_core::verify::Unchecked;
use reload_core::{BoxError, Hooks, ReloadOptions, Stateful};

#[derive(Debug)]
struct Counter {
    version: String,
    count: AtomicU64,
    inits: Arc<AtomicU64>,
}

impl Hooks for Counter {
    type Context = ();
    fn version(&self) -> &str {
        &self.version
    }
    fn init(&mut self, _: &()) -> Result<(), BoxError> {
        self.inits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl Stateful for Counter {
    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(
            self.count.load(Ordering::SeqCst).to_le_bytes().to_vec(),
        ))
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "eight bytes")?;
        *self.count.get_mut() = u64::from_le_bytes(bytes);
        Ok(())
    }
}

fn package(version: &str, inits: &Arc<AtomicU64>) -> Package<Counter> {
    let manifest = Manifest::new("counter", version).expect("manifest");
    let plugin = Counter {
        version: version.to_owned(),
        count: AtomicU64::new(0),
        inits: Arc::clone(inits),
    };
    Package::new(plugin, manifest, version.as_bytes().to_vec())
}

fn add(registry: &Registry<Counter>) -> (String, u64) {
    registry
        .call("counter", |c| {
            let p = c.plugin();
            (
                p.version.clone(),
                p.count.fetch_add(1, Ordering::SeqCst) + 1,
            )
        })
        .expect("served")
}

fn quiesced() -> ReloadOptions {
    ReloadOptions::quiesced(Duration::from_secs(60))
}

fn registered(inits: &Arc<AtomicU64>) -> Registry<Counter> {
    let registry = Registry::new(Unchecked);
    registry
        .register(package("1.0.0", inits), &())
        .expect("registered");
    assert_eq!(add(&registry), ("1.0.0".to_owned(), 1));
    registry
}

#[test]
fn the_barrier_sees_the_prepared_versions_while_the_old_one_serves_then_commits() {
    let inits = Arc::new(AtomicU64::new(0));
    let registry = registered(&inits);
    let mut seen = Vec::new();
    let report = registry
        .reload_with_barrier(
            vec![package("1.1.0", &inits)],
            &(),
            quiesced(),
            |prepared| {
                // The new version is initialized, and not serving yet.
                assert_eq!(inits.load(Ordering::SeqCst), 2);
                seen = prepared
                    .iter()
                    .map(|m| format!("{} {}", m.name(), m.version()))
                    .collect();
                assert_eq!(add(&registry), ("1.0.0".to_owned(), 2));
                Ok(())
            },
        )
        .expect("committed");
    assert_eq!(seen, ["counter 1.1.0"]);
    assert_eq!(report.changes.len(), 1);
    // State carried: the second call's count, then one more.
    assert_eq!(add(&registry), ("1.1.0".to_owned(), 3));
}

#[test]
fn a_withheld_commit_hands_the_package_back_and_the_old_version_serves_on() {
    let inits = Arc::new(AtomicU64::new(0));
    let registry = registered(&inits);
    let rejected = registry
        .reload_with_barrier(vec![package("1.1.0", &inits)], &(), quiesced(), |_| {
            Err("stage 1 aborted: node b refused".to_owned())
        })
        .expect_err("withheld");
    match &rejected.error {
        RegistryError::Withheld { reason } => assert_eq!(reason, "stage 1 aborted: node b refused"),
        other => panic!("expected Withheld, got {other:?}"),
    }
    assert_eq!(rejected.error.reason(), "withheld");
    assert_eq!(rejected.packages.len(), 1);
    assert_eq!(
        rejected.packages[0].manifest().version().to_string(),
        "1.1.0"
    );
    assert_eq!(add(&registry), ("1.0.0".to_owned(), 2));
    assert_eq!(registry.stats().refused, 1);

    // The package handed back is whole: reloading it commits.
    let again = rejected.packages.into_iter().next().expect("one");
    registry
        .reload(vec![again], &(), quiesced())
        .expect("reloaded");
    assert_eq!(add(&registry), ("1.1.0".to_owned(), 3));
}

#[test]
fn a_barrier_that_panics_withholds_the_commit() {
    let inits = Arc::new(AtomicU64::new(0));
    let registry = registered(&inits);
    let rejected = registry
        .reload_with_barrier(vec![package("1.1.0", &inits)], &(), quiesced(), |_| {
            panic!("the coordinator's client blew up")
        })
        .expect_err("withheld");
    match &rejected.error {
        RegistryError::Withheld { reason } => {
            assert_eq!(reason, "panicked: the coordinator's client blew up")
        }
        other => panic!("expected Withheld, got {other:?}"),
    }
    assert_eq!(add(&registry), ("1.0.0".to_owned(), 2));
}

#[test]
fn calls_from_other_threads_go_on_while_the_barrier_waits() {
    let inits = Arc::new(AtomicU64::new(0));
    let registry = registered(&inits);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let registry = &registry;
        let caller = s.spawn(move || {
            // 100 calls, all on the old version, while the barrier waits
            // for them.
            let versions: Vec<String> = (0..100).map(|_| add(registry).0).collect();
            tx.send(()).expect("barrier waits");
            versions
        });
        registry
            .reload_with_barrier(vec![package("1.1.0", &inits)], &(), quiesced(), |_| {
                rx.recv().map_err(|e| e.to_string())
            })
            .expect("committed");
        let versions = caller.join().expect("caller");
        assert!(versions.iter().all(|v| v == "1.0.0"));
    });
    assert_eq!(add(&registry), ("1.1.0".to_owned(), 102));
}
