//! The registry: dependency chains reloaded together under concurrent
//! callers, failures mid-chain, parallel and serialized reloads, typed
//! refusals, integrity checks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reload_core::manifest::{Manifest, Version};
use reload_core::registry::{
    EnterError, Package, Registry, RegistryError, Rejected, Source, VersionChange,
};
use reload_core::testing::{Part, PartFaults, Parts};
use reload_core::verify::{Digest, HashPin, Unchecked, VerifyError};
use reload_core::{BoxError, ReloadOptions};

// Generous: no test here expects the drain to time out, and a starved machine
// can keep a caller off the CPU for far longer than its call takes.
const QUIESCE: Duration = Duration::from_secs(60);

fn part(name: &str, version: &str, book: &Arc<Parts>, requires: &[(&str, &str)]) -> Package<Part> {
    Part::new(name, version, book)
        .package(requires)
        .expect("valid manifest")
}

fn faulty(
    name: &str,
    version: &str,
    book: &Arc<Parts>,
    requires: &[(&str, &str)],
    faults: PartFaults,
) -> Package<Part> {
    Part::new(name, version, book)
        .with_faults(faults)
        .package(requires)
        .expect("valid manifest")
}

/// A chain at major version `major`: a, b requiring a ^major, c requiring
/// b ^major.
fn chain(major: u64, book: &Arc<Parts>) -> Vec<Package<Part>> {
    let v = format!("{major}.0.0");
    let r = format!("^{major}");
    vec![
        part("a", &v, book, &[]),
        part("b", &v, book, &[("a", &r)]),
        part("c", &v, book, &[("b", &r)]),
    ]
}

/// A registry (no verifier, no source) serving the chain at major 1.
fn chain_registry() -> (Arc<Parts>, Registry<Part>) {
    let book = Arc::new(Parts::default());
    let registry = Registry::new(Unchecked);
    registry
        .register_all(chain(1, &book), &())
        .expect("registered");
    (book, registry)
}

/// Serves the next major of b and c, as a deploy would: `next[name]`.
#[derive(Default)]
struct Catalog {
    next: Mutex<BTreeMap<String, Package<Part>>>,
    fetched: AtomicU64,
}

struct Fetch(Arc<Catalog>);

impl Source<Part> for Fetch {
    fn next_version(&self, name: &str) -> Result<Option<Package<Part>>, BoxError> {
        self.0.fetched.fetch_add(1, Ordering::Relaxed);
        Ok(self.0.next.lock().remove(name))
    }
}

fn versions(registry: &Registry<Part>) -> Vec<(String, String)> {
    registry
        .list()
        .into_iter()
        .map(|p| (p.name, p.version.to_string()))
        .collect()
}

fn rejected<T>(result: Result<T, Rejected<Part>>) -> Rejected<Part> {
    match result {
        Ok(_) => panic!("expected a refusal"),
        Err(r) => r,
    }
}

/// What a worker saw in one call on c: the majors of c, b and a.
fn call_c(registry: &Registry<Part>) -> Result<[u64; 3], EnterError> {
    let call = registry.enter("c")?;
    let b = call.dependency("b").expect("c requires b");
    let a = call.dependency("a").expect("b requires a");
    for p in [call.plugin(), b.plugin(), a.plugin()] {
        p.run();
    }
    Ok([
        call.plugin().semver().major,
        b.semver().major,
        a.semver().major,
    ])
}

#[test]
fn a_chain_of_three_reloads_together_under_concurrent_callers() {
    const ROUNDS: u64 = 60;
    const WORKERS: usize = 3;
    let book = Arc::new(Parts::default());
    let catalog = Arc::new(Catalog::default());
    let registry = Arc::new(Registry::new(Unchecked).with_source(Fetch(Arc::clone(&catalog))));
    registry
        .register_all(chain(1, &book), &())
        .expect("registered");

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (registry, stop) = (Arc::clone(&registry), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut calls, mut mixed, mut failed) = (0u64, 0u64, 0u64);
                let mut seen = BTreeMap::<u64, u64>::new();
                while !stop.load(Ordering::Relaxed) {
                    match call_c(&registry) {
                        Ok([c, b, a]) => {
                            calls += 1;
                            // The declared ranges are ^major: c accepts b of
                            // its major, b accepts a of its major.
                            if c != b || b != a {
                                mixed += 1;
                            }
                            *seen.entry(c).or_default() += 1;
                        }
                        Err(_) => failed += 1,
                    }
                }
                (calls, mixed, failed, seen)
            })
        })
        .collect();

    let mut drained = 0;
    for round in 0..ROUNDS {
        let next = round + 2;
        let mut packages = chain(next, &book);
        let (c, b) = (packages.pop().expect("c"), packages.pop().expect("b"));
        catalog
            .next
            .lock()
            .extend([("b".to_owned(), b), ("c".to_owned(), c)]);
        // Only a is given: b and c must follow, fetched from the catalog.
        let options = if round % 2 == 0 {
            ReloadOptions::quiesced(QUIESCE)
        } else {
            ReloadOptions::immediate()
        };
        let report = registry
            .reload(packages, &(), options)
            .unwrap_or_else(|r| panic!("round {round}: {r}"));
        let order: Vec<_> = report.changes.iter().map(|c| c.plugin.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"], "dependencies first");
        assert!(report
            .changes
            .iter()
            .all(|c| c.kind == VersionChange::Upgrade));
        assert_eq!(
            report
                .changes
                .iter()
                .map(|c| c.followed)
                .collect::<Vec<_>>(),
            [false, true, true]
        );
        for change in report.changes {
            change
                .committed
                .old
                .wait()
                .expect("old version drains and shuts down");
            drained += 1;
        }
        // Let the workers run on the new chain before the next round.
        thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut per_major = BTreeMap::<u64, u64>::new();
    for w in workers {
        let (calls, mixed, failed, seen) = w.join().expect("worker");
        assert_eq!(failed, 0, "no call dropped");
        assert_eq!(
            mixed, 0,
            "no call across versions outside the declared ranges"
        );
        total += calls;
        for (k, v) in seen {
            *per_major.entry(k).or_default() += v;
        }
    }
    assert_eq!(drained, 3 * ROUNDS);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
    let shutdowns = book.shutdowns.lock();
    assert_eq!(
        shutdowns.len(),
        3 * ROUNDS as usize,
        "every old version shut down"
    );
    assert!(shutdowns.values().all(|&n| n == 1), "exactly once");
    drop(shutdowns);
    assert_eq!(
        versions(&registry),
        [("a", "61.0.0"), ("b", "61.0.0"), ("c", "61.0.0")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    let stats = registry.stats();
    assert_eq!(
        (stats.reloads, stats.plugins_reloaded, stats.followed),
        (ROUNDS, 3 * ROUNDS, 2 * ROUNDS)
    );
    assert_eq!(catalog.fetched.load(Ordering::Relaxed), 2 * ROUNDS);
    assert!(
        total > 0 && per_major.len() > 1,
        "calls were served across versions: {per_major:?}"
    );
    println!(
        "{total} calls over {} versions of the chain; {} retries, {} gate waits",
        per_major.len(),
        stats.call_retries,
        stats.gate_waits
    );
}

#[test]
fn a_failure_in_the_middle_of_the_chain_leaves_all_three_old() {
    for (name, quiesced, faults) in [
        (
            "init fails",
            false,
            PartFaults {
                fail_init: true,
                ..PartFaults::default()
            },
        ),
        (
            "init panics",
            true,
            PartFaults {
                panic_init: true,
                ..PartFaults::default()
            },
        ),
        // Restore runs at commit in quiesced mode: after a and c were
        // prepared and every gate closed, with a already carried over.
        (
            "restore fails at commit",
            true,
            PartFaults {
                fail_restore: true,
                ..PartFaults::default()
            },
        ),
    ] {
        let book = Arc::new(Parts::default());
        let registry = Registry::new(Unchecked);
        registry
            .register_all(chain(1, &book), &())
            .expect("registered");
        for _ in 0..5 {
            call_c(&registry).expect("served");
        }
        let packages = vec![
            part("a", "2.0.0", &book, &[]),
            faulty("b", "2.0.0", &book, &[("a", "^2")], faults),
            part("c", "2.0.0", &book, &[("b", "^2")]),
        ];
        let options = if quiesced {
            ReloadOptions::quiesced(QUIESCE)
        } else {
            ReloadOptions::immediate()
        };
        let r = rejected(registry.reload(packages, &(), options));
        assert!(
            matches!(&r.error, RegistryError::Reload { plugin, .. } if plugin == "b"),
            "{name}: {}",
            r.error
        );
        let mut back: Vec<_> = r
            .packages
            .iter()
            .map(|p| p.manifest().name().to_owned())
            .collect();
        back.sort();
        assert_eq!(back, ["a", "b", "c"], "{name}: every package handed back");
        assert_eq!(
            versions(&registry),
            [("a", "1.0.0"), ("b", "1.0.0"), ("c", "1.0.0")]
                .map(|(n, v)| (n.to_owned(), v.to_owned())),
            "{name}"
        );
        // The old chain serves on, with its counts intact, and a correct
        // reload goes through next.
        assert_eq!(call_c(&registry).expect("served"), [1, 1, 1]);
        let call = registry.enter("c").expect("served");
        assert_eq!(call.count(), 6, "{name}: c's state intact");
        drop(call);
        let report = registry
            .reload(chain(2, &book), &(), ReloadOptions::quiesced(QUIESCE))
            .expect("the next reload works");
        assert_eq!(report.changes.len(), 3);
        assert_eq!(call_c(&registry).expect("served"), [2, 2, 2]);
        assert_eq!(
            registry.enter("c").expect("served").count(),
            7,
            "{name}: state carried"
        );
        assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
    }
}

/// Blocks a part's init until told, and reports that it started.
fn gate_hook(
    started: mpsc::Sender<String>,
    release: Arc<Barrier>,
) -> reload_core::testing::InitHook {
    let started = Mutex::new(started);
    Arc::new(move |name: &str, _: &Version| {
        let _ = started.lock().send(name.to_owned());
        release.wait();
    })
}

#[test]
fn reloads_of_independent_plugins_overlap() {
    let book = Arc::new(Parts::default());
    let registry = Arc::new(Registry::new(Unchecked));
    registry
        .register_all(
            vec![
                part("x", "1.0.0", &book, &[]),
                part("y", "1.0.0", &book, &[]),
            ],
            &(),
        )
        .expect("registered");
    // Both inits block on one barrier of two: they can only both pass if
    // both reloads are in prepare at the same time. A global reload lock
    // would hold one outside, and the barrier (and this test) would hang
    // until the watchdog below fails it.
    let (started, inits) = mpsc::channel();
    let both = Arc::new(Barrier::new(2));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = ["x", "y"]
        .into_iter()
        .map(|name| {
            let faults = PartFaults {
                on_init: Some(gate_hook(started.clone(), Arc::clone(&both))),
                ..PartFaults::default()
            };
            let package = faulty(name, "1.1.0", &book, &[], faults);
            let (registry, spans) = (Arc::clone(&registry), Arc::clone(&spans));
            thread::spawn(move || {
                let begin = Instant::now();
                let report = registry
                    .reload(vec![package], &(), ReloadOptions::quiesced(QUIESCE))
                    .expect("reloaded");
                spans.lock().push((begin, Instant::now()));
                report.changes.len()
            })
        })
        .collect();
    let watchdog = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let left = watchdog.saturating_duration_since(Instant::now());
        match inits.recv_timeout(left) {
            Ok(name) => seen.push(name),
            Err(_) => panic!("independent reloads did not run in parallel: only {seen:?} started"),
        }
    }
    for t in threads {
        assert_eq!(t.join().expect("reload thread"), 1);
    }
    let spans = spans.lock();
    let latest_start = spans.iter().map(|s| s.0).max().expect("two");
    let earliest_end = spans.iter().map(|s| s.1).min().expect("two");
    assert!(
        latest_start < earliest_end,
        "the two reloads overlap in time"
    );
    assert_eq!(
        versions(&registry),
        [("x", "1.1.0"), ("y", "1.1.0")].map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
}

#[test]
fn reloads_of_overlapping_sets_are_serialized() {
    let book = Arc::new(Parts::default());
    let registry = Arc::new(Registry::new(Unchecked));
    registry
        .register_all(chain(1, &book), &())
        .expect("registered");
    // Reload 1 changes b (so it holds the turns of a, b and c) and blocks
    // in b's init until released. Reload 2 changes c alone. It must not
    // reach c's init while reload 1 is in progress.
    let (started, inits) = mpsc::channel();
    let release_first = Arc::new(Barrier::new(2));
    let first = faulty(
        "b",
        "1.1.0",
        &book,
        &[("a", "^1")],
        PartFaults {
            on_init: Some(gate_hook(started.clone(), Arc::clone(&release_first))),
            ..PartFaults::default()
        },
    );
    let second_started = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&second_started);
    let second = faulty(
        "c",
        "1.1.0",
        &book,
        &[("b", "^1")],
        PartFaults {
            on_init: Some(Arc::new(move |_: &str, _: &Version| {
                flag.store(true, Ordering::SeqCst)
            })),
            ..PartFaults::default()
        },
    );
    let r1 = {
        let registry = Arc::clone(&registry);
        thread::spawn(move || {
            registry
                .reload(vec![first], &(), ReloadOptions::immediate())
                .map(|r| r.changes.len())
                .map_err(|r| r.to_string())
        })
    };
    assert_eq!(
        inits.recv_timeout(Duration::from_secs(30)).as_deref(),
        Ok("b")
    );
    let r2 = {
        let registry = Arc::clone(&registry);
        thread::spawn(move || {
            registry
                .reload(vec![second], &(), ReloadOptions::immediate())
                .map(|r| r.changes.len())
                .map_err(|r| r.to_string())
        })
    };
    // While reload 1 sits in b's init, lookups and calls go on...
    for _ in 0..100 {
        assert_eq!(call_c(&registry).expect("served"), [1, 1, 1]);
    }
    assert_eq!(versions(&registry).len(), 3);
    // ...and reload 2 waits for its turn, not in c's init.
    thread::sleep(Duration::from_millis(100));
    assert!(
        !second_started.load(Ordering::SeqCst),
        "overlapping reloads ran concurrently"
    );
    release_first.wait();
    assert_eq!(r1.join().expect("thread").expect("reload 1"), 1);
    assert_eq!(r2.join().expect("thread").expect("reload 2"), 1);
    assert!(second_started.load(Ordering::SeqCst));
    assert_eq!(
        versions(&registry),
        [("a", "1.0.0"), ("b", "1.1.0"), ("c", "1.1.0")].map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
}

#[test]
fn lookups_never_see_a_half_registered_plugin() {
    let book = Arc::new(Parts::default());
    let registry = Arc::new(Registry::new(Unchecked));
    let (started, inits) = mpsc::channel();
    let release = Arc::new(Barrier::new(2));
    let package = faulty(
        "slow",
        "1.0.0",
        &book,
        &[],
        PartFaults {
            on_init: Some(gate_hook(started, Arc::clone(&release))),
            ..PartFaults::default()
        },
    );
    let t = {
        let registry = Arc::clone(&registry);
        thread::spawn(move || {
            registry
                .register(package, &())
                .map_err(|r| r.error.to_string())
        })
    };
    assert_eq!(
        inits.recv_timeout(Duration::from_secs(30)).as_deref(),
        Ok("slow")
    );
    assert!(!registry.contains("slow"));
    assert!(matches!(
        registry.enter("slow"),
        Err(EnterError::NotRegistered { .. })
    ));
    assert!(registry.list().is_empty());
    release.wait();
    t.join().expect("thread").expect("registered");
    assert_eq!(registry.enter("slow").expect("registered now").run(), 1);
}

#[test]
fn registration_refuses_cycles_missing_and_unmet_requirements() {
    let (book, registry) = chain_registry();
    let cases: Vec<(Vec<Package<Part>>, &str)> = vec![
        (
            vec![part("d", "1.0.0", &book, &[("nope", "*")])],
            "`d` requires `nope` *, but it is not registered",
        ),
        (
            vec![part("d", "1.0.0", &book, &[("a", "^2")])],
            "`d` requires `a` ^2, but its version is outside the accepted range",
        ),
        (
            vec![
                part("x", "1.0.0", &book, &[("y", "*")]),
                part("y", "1.0.0", &book, &[("x", "*")]),
            ],
            "dependency cycle: x -> y -> x",
        ),
        (
            vec![part("a", "1.0.0", &book, &[])],
            "a plugin `a` is registered already",
        ),
        (
            vec![
                part("d", "1.0.0", &book, &[]),
                part("d", "1.0.1", &book, &[]),
            ],
            "two packages for plugin `d`",
        ),
    ];
    for (packages, message) in cases {
        let n = packages.len();
        let r = rejected(registry.register_all(packages, &()));
        assert_eq!(r.error.to_string(), message);
        assert_eq!(r.packages.len(), n, "handed back");
    }
    // A failed init in a batch: the one already initialized is shut down,
    // and nothing is published.
    let r = rejected(registry.register_all(
        vec![
            part("d", "1.0.0", &book, &[("a", "^1")]),
            faulty(
                "e",
                "1.0.0",
                &book,
                &[("d", "^1")],
                PartFaults {
                    fail_init: true,
                    ..PartFaults::default()
                },
            ),
        ],
        &(),
    ));
    assert!(matches!(r.error, RegistryError::Init(_)), "{}", r.error);
    assert_eq!(r.packages.len(), 2);
    assert_eq!(book.shutdowns.lock().get("d@1.0.0"), Some(&1));
    assert_eq!(versions(&registry).len(), 3);
    assert_eq!(registry.stats().refused, 6);
}

#[test]
fn unregister_names_the_dependents_and_drains() {
    let (_, registry) = chain_registry();
    let err = registry.unregister("a").expect_err("b requires a");
    assert_eq!(err.to_string(), "`a` is required by b");
    let c = registry.handle("c").expect("registered");
    let in_flight = c.enter().expect("served");
    let draining = registry
        .unregister("c")
        .expect("no dependents")
        .expect("was serving");
    assert!(matches!(c.enter(), Err(EnterError::Unregistered { .. })));
    assert!(!draining.is_drained(), "the call in flight holds it");
    drop(in_flight);
    let removed = draining.wait().expect("shut down");
    assert_eq!(removed.report().generation, 1);
    registry.unregister("b").expect("now unrequired");
    registry.unregister("a").expect("now unrequired");
    assert!(registry.list().is_empty());
    assert!(matches!(
        registry.unregister("a"),
        Err(RegistryError::NotRegistered { .. })
    ));
}

#[test]
fn a_breaking_reload_without_next_dependents_is_refused_and_exports_are_kept() {
    let (book, registry) = chain_registry();
    let r = rejected(registry.reload(
        vec![part("a", "2.0.0", &book, &[])],
        &(),
        ReloadOptions::immediate(),
    ));
    assert_eq!(
        r.error.to_string(),
        "`b` must follow `a` 2.0.0 (its version is outside the accepted range), but no next version of it is available"
    );
    // A version of a that drops the export b uses is refused the same way.
    let no_run = Manifest::new("a", "1.1.0")
        .expect("valid")
        .export("other")
        .expect("valid");
    let content = no_run.encode();
    let package = Package::new(Part::new("a", "1.1.0", &book), no_run, content);
    let r = rejected(registry.reload(vec![package], &(), ReloadOptions::immediate()));
    assert!(
        r.error.to_string().contains("it does not export `run`"),
        "{}",
        r.error
    );
    // Name must match.
    let r = rejected(registry.reload_plugin(
        "a",
        part("b", "1.0.1", &book, &[("a", "^1")]),
        &(),
        ReloadOptions::immediate(),
    ));
    assert_eq!(
        r.error.to_string(),
        "expected a version of `a`, got one of `b`"
    );
    // Version changes are reported, including a downgrade and a rebuild.
    let reload_a = |package| {
        let report = registry
            .reload(vec![package], &(), ReloadOptions::immediate())
            .expect("compatible");
        report.changes.into_iter().next().expect("a changed")
    };
    assert_eq!(
        reload_a(part("a", "1.2.0", &book, &[])).kind,
        VersionChange::Upgrade
    );
    assert_eq!(
        reload_a(part("a", "1.1.0", &book, &[])).kind,
        VersionChange::Downgrade
    );
    let rebuilt = Manifest::new("a", "1.1.0")
        .and_then(|m| m.export("run"))
        .and_then(|m| m.export("extra"))
        .expect("valid");
    let content = rebuilt.encode();
    let change = reload_a(Package::new(
        Part::new("a", "1.1.0", &book),
        rebuilt,
        content,
    ));
    assert_eq!(change.kind, VersionChange::Rebuild);
    assert_eq!(change.exports_added, ["extra"]);
    let change = reload_a(part("a", "1.1.0", &book, &[]));
    assert_eq!(change.exports_removed, ["extra"]);
    assert_eq!(versions(&registry)[0], ("a".to_owned(), "1.1.0".to_owned()));
}

#[test]
fn every_load_goes_through_the_verifier() {
    let book = Arc::new(Parts::default());
    let v1 = part("a", "1.0.0", &book, &[]);
    let pins = Arc::new(HashPin::new().with("a", *v1.digest()));
    let verifier = {
        let pins = Arc::clone(&pins);
        move |artifact: &reload_core::verify::Artifact<'_>| {
            reload_core::verify::Verifier::verify(&*pins, artifact)
        }
    };
    let registry = Registry::new(verifier);
    let unpinned = rejected(registry.register(part("b", "1.0.0", &book, &[]), &()));
    assert!(matches!(
        unpinned.error,
        RegistryError::Verify(VerifyError::Unpinned { .. })
    ));
    registry.register(v1, &()).expect("pinned");
    // A tampered build: same manifest, other content.
    let m = Manifest::new("a", "1.1.0")
        .and_then(|m| m.export("run"))
        .expect("valid");
    let tampered = Package::new(Part::new("a", "1.1.0", &book), m.clone(), b"evil".to_vec());
    let r = rejected(registry.reload(vec![tampered], &(), ReloadOptions::immediate()));
    assert!(
        matches!(&r.error, RegistryError::Verify(VerifyError::DigestMismatch { found, .. }) if *found == Digest::of(b"evil")),
        "{}",
        r.error
    );
    assert_eq!(r.packages.len(), 1, "handed back");
    assert_eq!(
        registry
            .enter("a")
            .expect("old serves")
            .semver()
            .to_string(),
        "1.0.0"
    );
    // Pin the new build, and it goes through.
    let good = Package::new(Part::new("a", "1.1.0", &book), m, b"good".to_vec());
    pins.pin("a", Digest::of(b"good"));
    registry
        .reload(vec![good], &(), ReloadOptions::immediate())
        .expect("pinned");
    assert_eq!(registry.stats().verify_failures, 2);
}

#[test]
fn a_panicking_call_is_contained() {
    let (book, registry) = chain_registry();
    let err = registry
        .call("c", |_| -> u64 { panic!("boom") })
        .expect_err("panicked");
    assert!(
        matches!(&err, EnterError::Panicked(f) if f.plugin == "c"),
        "{err}"
    );
    assert_eq!(call_c(&registry).expect("served"), [1, 1, 1]);
    let stats = registry.stats();
    assert!(
        stats.per_plugin.values().all(|s| s.in_flight == 0),
        "no lease leaked"
    );
    registry
        .reload(chain(2, &book), &(), ReloadOptions::quiesced(QUIESCE))
        .expect("nothing wedged");
}

#[test]
fn handles_and_calls_are_send() {
    fn send<T: Send>(_: &T) {}
    let (_, registry) = chain_registry();
    let handle = registry.handle("c").expect("registered");
    let call = handle.enter().expect("served");
    send(&handle);
    send(&call);
    assert_eq!(call.leased().count(), 3);
    assert_eq!(
        format!("{call:?}"),
        "[c 1.0.0 (generation 1), b 1.0.0 (generation 1), a 1.0.0 (generation 1)]"
    );
}

/// Two reloads of one plugin queued on its turn, 500 times: the manifest
/// the registry publishes (what `list` names and what planning reads) is
/// always the version that serves. The turn used to be given back at the
/// end of a commit, before the registry published its manifest: the
/// waiting reload could commit and publish in between, and the first then
/// published its older manifest over it (about one race in thirteen).
#[test]
fn the_published_manifest_is_the_serving_version_when_reloads_queue() {
    use reload_core::testing::PartFaults;
    let book = Arc::new(Parts::default());
    let registry = Registry::new(Unchecked).with_turn_timeout(Duration::MAX);
    registry
        .register(part("a", "1.0.0", &book, &[]), &())
        .expect("registers");
    for round in 0..500u64 {
        let (first, second) = (
            format!("{}.0.0", 2 * round + 1),
            format!("{}.0.0", 2 * round + 2),
        );
        let (faults, gate) = PartFaults::held();
        let slow = faulty("a", &first, &book, &[], faults);
        thread::scope(|s| {
            let one = s.spawn(|| {
                registry
                    .reload(vec![slow], &(), ReloadOptions::immediate())
                    .map(|_| ())
                    .map_err(|r| r.error.to_string())
            });
            gate.entered();
            let two = s.spawn(|| {
                registry
                    .reload(
                        vec![part("a", &second, &book, &[])],
                        &(),
                        ReloadOptions::immediate(),
                    )
                    .map(|_| ())
                    .map_err(|r| r.error.to_string())
            });
            // The second reload is then (almost always) waiting on the turn:
            // the window the race needs.
            thread::sleep(Duration::from_millis(2));
            gate.release();
            assert_eq!(one.join().expect("first"), Ok(()));
            assert_eq!(two.join().expect("second"), Ok(()));
        });
        let serving = registry
            .call("a", |c| c.plugin().semver().to_string())
            .expect("serving");
        assert_eq!(serving, second, "round {round}");
        assert_eq!(
            registry.list()[0].version.to_string(),
            serving,
            "round {round}"
        );
    }
}
