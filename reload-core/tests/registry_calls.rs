//! Registry calls, borrowed and owned: a call by name keeps the map
//! snapshot its plugin's slot lives in, so it outlives an unregistration;
//! many calls by name on one thread (past arc-swap's fast slots); borrowed
//! calls held across `.await` and dropped on another worker; owned calls
//! moved into spawned tasks; a panic in a contained call.
#![cfg(not(loom))]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reload_core::registry::{EnterError, Package, Registry};
use reload_core::testing::{Part, Parts};
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;

fn part(name: &str, version: &str, book: &Arc<Parts>, requires: &[(&str, &str)]) -> Package<Part> {
    Part::new(name, version, book)
        .package(requires)
        .expect("valid manifest")
}

/// A registry of `packages`, registered together.
fn registry_of(packages: Vec<Package<Part>>) -> Registry<Part> {
    let registry = Registry::new(Unchecked);
    registry.register_all(packages, &()).expect("registered");
    registry
}

/// a, and b requiring a ^1, at 1.0.0.
fn pair() -> (Arc<Parts>, Registry<Part>) {
    let book = Arc::new(Parts::default());
    let registry = registry_of(vec![
        part("a", "1.0.0", &book, &[]),
        part("b", "1.0.0", &book, &[("a", "^1")]),
    ]);
    (book, registry)
}

fn in_flight(registry: &Registry<Part>, name: &str) -> usize {
    registry.handle(name).expect("registered").stats().in_flight
}

#[test]
fn a_call_by_name_outlives_the_unregistration_of_its_plugin() {
    let (book, registry) = pair();
    let call = registry.enter("b").expect("served");
    assert!(!call.is_owned());
    assert_eq!(
        call.dependency("a").map(|a| a.manifest().name().to_owned()),
        Some("a".into())
    );
    let draining = registry
        .unregister("b")
        .expect("no dependents")
        .expect("was serving");
    // The name is gone from the map; the call still holds the version,
    // in a slot that only the call's snapshot of the map keeps.
    assert!(matches!(
        registry.enter("b"),
        Err(EnterError::NotRegistered { .. })
    ));
    assert!(!draining.is_drained(), "the call in flight holds it");
    assert_eq!(call.run(), 1);
    assert_eq!(call.dependency("a").map(|a| a.run()), Some(1));
    drop(call);
    let removed = draining.wait().expect("shut down");
    assert_eq!(removed.report().generation, 1);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
}

#[test]
fn many_calls_by_name_on_one_thread_hold_their_versions_until_dropped() {
    let (book, registry) = pair();
    // Thirty calls at once: past the eight fast slots a thread has in
    // arc-swap, so most of them keep their snapshot by reference count.
    let mut calls: Vec<_> = (0..30)
        .map(|_| registry.enter("b").expect("served"))
        .collect();
    assert_eq!(in_flight(&registry, "b"), 30);
    assert_eq!(in_flight(&registry, "a"), 30);
    // A compatible a 1.1.0: b stays on its version, and a 1.0.0 drains
    // only when the last call that leased it goes.
    let mut report = registry
        .reload(
            vec![part("a", "1.1.0", &book, &[])],
            &(),
            ReloadOptions::immediate(),
        )
        .expect("reloaded");
    let old = report.changes.pop().expect("one change").committed.old;
    assert!(report.changes.is_empty());
    let fresh = registry.enter("b").expect("served");
    assert_eq!(dep_version(&fresh), "1.1.0");
    drop(fresh);
    // Out of order: from the middle, then both ends.
    let mut dropped = 0;
    while !calls.is_empty() {
        let i = match dropped % 3 {
            0 => calls.len() / 2,
            1 => 0,
            _ => calls.len() - 1,
        };
        let call = calls.swap_remove(i);
        assert_eq!(dep_version(&call), "1.0.0");
        drop(call);
        dropped += 1;
        assert_eq!(in_flight(&registry, "b"), 30 - dropped);
        assert_eq!(in_flight(&registry, "a"), 30 - dropped);
        assert_eq!(old.is_drained(), dropped == 30);
    }
    assert_eq!(old.wait().expect("shut down").report().generation, 1);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
    assert_eq!(book.shutdowns.lock().get("a@1.0.0"), Some(&1));
}

fn dep_version(call: &reload_core::registry::Call<'_, Part>) -> String {
    call.dependency("a")
        .map(|a| a.manifest().version().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_calls_cross_await_points_and_owned_calls_move_into_tasks() {
    let (book, registry) = pair();
    let registry = Arc::new(registry);
    let handle = registry.handle("b").expect("registered");
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let registry = Arc::clone(&registry);
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            // Borrowed from the task's own registry and handle, held across
            // await points (the task may resume on the other worker).
            let by_name = registry.enter("b")?;
            tokio::task::yield_now().await;
            let by_handle = handle.enter()?;
            tokio::time::sleep(Duration::from_millis(i)).await;
            let owned = handle.enter_owned()?;
            assert!(owned.is_owned() && !by_handle.is_owned());
            Ok::<_, EnterError>((by_name.run() + by_handle.run(), owned))
        }));
    }
    let mut owned = Vec::new();
    for task in tasks {
        let (_, call) = task.await.expect("no panic").expect("served");
        owned.push(call);
    }
    // Only the owned calls are left, and they outlive the tasks.
    assert_eq!(in_flight(&registry, "b"), 8);
    let mover = tokio::spawn(async move {
        tokio::task::yield_now().await;
        drop(owned);
    });
    mover.await.expect("no panic");
    assert_eq!(in_flight(&registry, "b"), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
    assert_eq!(registry.enter("b").expect("served").count(), 16);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
}

#[test]
fn a_panic_in_a_call_by_name_is_contained_and_gives_the_leases_back() {
    let (_, registry) = pair();
    let err = registry
        .call("b", |call| -> u64 {
            panic!("udf failed on row {}", call.run())
        })
        .expect_err("contained");
    match err {
        EnterError::Panicked(failure) => {
            assert_eq!(failure.plugin, "b");
            assert_eq!(failure.generation, Some(1));
            assert!(
                failure.to_string().contains("udf failed on row 1"),
                "{failure}"
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(in_flight(&registry, "b"), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
    assert_eq!(registry.call("b", |c| c.run()).expect("still served"), 2);
}

#[test]
fn calls_by_name_race_registrations_that_replace_the_map() {
    let (book, registry) = pair();
    let cycles = 200;
    let calls = std::sync::atomic::AtomicU64::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let caller = s.spawn(|| {
            // Calls by name while the map is replaced under them: each
            // holds its snapshot, some two at once (two snapshots).
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let first = registry.enter("b").expect("b stays registered");
                let z = registry.enter("z").ok();
                if i.is_multiple_of(3) {
                    std::thread::yield_now();
                }
                assert_eq!(first.dependency("a").map(|a| a.is_alive()), Some(true));
                if let Some(z) = z {
                    assert!(z.is_alive(), "a call never runs on a shut-down version");
                    z.run();
                }
                first.run();
                calls.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        // Start once the caller runs, so the two overlap (or it failed:
        // its join below reports why).
        while calls.load(Ordering::Relaxed) == 0 && !caller.is_finished() {
            std::thread::yield_now();
        }
        for _ in 0..cycles {
            registry
                .register(part("z", "1.0.0", &book, &[("a", "^1")]), &())
                .expect("registered");
            if let Some(draining) = registry.unregister("z").expect("no dependents") {
                draining.wait().expect("shut down");
            }
        }
        stop.store(true, Ordering::Relaxed);
        caller.join().expect("no panic");
    });
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert_eq!(book.shutdowns.lock().get("z@1.0.0"), Some(&cycles));
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
    assert_eq!(in_flight(&registry, "b"), 0);
}

/// A call leases its requirements as borrowed leases, whose slots only the
/// versions requiring them keep alive. Here `a`'s node is kept by nothing
/// else: `b` moved to a version that does not require `a`, and `a` was
/// unregistered, while calls on `c` (requiring `b` 1.0.0, requiring `a`)
/// were held, borrowed and owned, on this thread and on others. They still
/// serve; `a` and `b` 1.0.0 shut down once each, when the last goes.
#[test]
fn a_requirement_outlives_its_unregistration_while_a_call_holds_it() {
    let book = Arc::new(Parts::default());
    let registry = registry_of(vec![
        part("a", "1.0.0", &book, &[]),
        part("b", "1.0.0", &book, &[("a", "^1")]),
        part("c", "1.0.0", &book, &[("b", "^1")]),
    ]);
    let handle = registry.handle("c").expect("registered");
    let borrowed: Vec<_> = (0..3).map(|_| handle.enter().expect("served")).collect();
    let owned: Vec<_> = (0..3)
        .map(|_| handle.enter_owned().expect("served"))
        .collect();
    for call in borrowed.iter().chain(&owned) {
        let held: Vec<_> = call
            .leased()
            .map(|d| format!("{}@{}", d.manifest().name(), d.manifest().version()))
            .collect();
        assert_eq!(held, ["c@1.0.0", "b@1.0.0", "a@1.0.0"]);
    }
    registry
        .reload(
            vec![part("b", "1.1.0", &book, &[])],
            &(),
            ReloadOptions::immediate(),
        )
        .expect("b 1.1.0 requires nothing");
    let a = registry
        .unregister("a")
        .expect("nothing current requires a")
        .expect("was serving");
    assert!(!a.is_drained(), "the calls hold a 1.0.0");
    let fresh = handle.enter().expect("served");
    assert_eq!(fresh.leased().count(), 2, "c and b 1.1.0");
    drop(fresh);
    // The owned calls go on other threads, the borrowed ones here.
    std::thread::scope(|s| {
        for call in owned {
            s.spawn(move || {
                assert!(call.dependency("a").is_some_and(|a| a.run() >= 1));
                drop(call);
            });
        }
    });
    assert!(!a.is_drained(), "the borrowed calls still hold a 1.0.0");
    for call in borrowed {
        assert!(call.dependency("a").is_some_and(|a| a.run() >= 1));
        drop(call);
    }
    assert_eq!(a.wait().expect("shut down").report().generation, 1);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
    let shutdowns = book.shutdowns.lock();
    assert_eq!(shutdowns.get("a@1.0.0"), Some(&1));
    assert_eq!(in_flight(&registry, "c"), 0);
    assert_eq!(in_flight(&registry, "b"), 0);
}

/// A `Snapshot` is the map as it was: a plugin registered after is not
/// found, one unregistered since is found but refuses new calls; reloads
/// are seen at once; its calls hold their versions like any call, and a
/// panic in one is contained.
#[test]
fn a_snapshot_serves_calls_by_name_from_the_map_it_was_taken_from() {
    let (book, registry) = pair();
    let snapshot = registry.snapshot();
    assert!(snapshot.contains("a") && snapshot.contains("b"));
    registry
        .register(part("late", "1.0.0", &book, &[]), &())
        .expect("registered");
    assert!(matches!(
        snapshot.enter("late"),
        Err(EnterError::NotRegistered { name }) if name == "late"
    ));
    assert!(!snapshot.contains("late"));
    assert!(registry.snapshot().contains("late"));
    // Reloads are seen at once: the call leases the current version.
    let held = snapshot.enter("b").expect("served");
    registry
        .reload(
            vec![part("a", "1.1.0", &book, &[])],
            &(),
            ReloadOptions::immediate(),
        )
        .expect("reloaded");
    assert_eq!(dep_version(&held), "1.0.0");
    assert_eq!(dep_version(&snapshot.enter("b").expect("served")), "1.1.0");
    // Unregistered since: still in the snapshot, but closed.
    let draining = registry
        .unregister("b")
        .expect("no dependents")
        .expect("was serving");
    assert!(snapshot.contains("b"));
    assert!(matches!(
        snapshot.enter("b"),
        Err(EnterError::Unregistered { name }) if name == "b"
    ));
    assert!(!draining.is_drained(), "the held call keeps b");
    assert!(held.run() >= 1);
    drop(held);
    assert_eq!(draining.wait().expect("shut down").report().generation, 1);
    // A panic in a call through the snapshot is contained.
    let outcome = snapshot.call("a", |_| -> u64 { panic!("host code") });
    assert!(matches!(outcome, Err(EnterError::Panicked(ref f)) if f.plugin == "a"));
    assert_eq!(snapshot.call("a", |a| a.run() >= 1).ok(), Some(true));
    drop(snapshot);
    assert_eq!(in_flight(&registry, "a"), 0);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
}

/// A snapshot may be held across `.await` and used from several tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_shared_by_tasks_across_await_points() {
    let (_book, registry) = pair();
    let registry = Arc::new(registry);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let registry = Arc::clone(&registry);
        tasks.push(tokio::spawn(async move {
            let snapshot = registry.snapshot();
            let mut runs = 0;
            for _ in 0..10 {
                let call = snapshot.enter("b").expect("served");
                tokio::task::yield_now().await;
                runs += u64::from(call.dependency("a").is_some());
            }
            runs
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), 10);
    }
    assert_eq!(in_flight(&registry, "b"), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
}

/// The index calls by name use finds a name by its length and its first
/// and last eight bytes, and compares longer names whole: names that
/// agree on those words and differ in the middle are told apart, and a
/// name is found only if registered, at every length a manifest allows.
#[test]
fn calls_by_name_find_exactly_the_registered_names() {
    let book = Arc::new(Parts::default());
    let mut names = Vec::new();
    for len in 1..=64 {
        names.push("a".repeat(len));
        if len >= 3 {
            // Same length, same first and last bytes, a different middle.
            let mut middle = "a".repeat(len).into_bytes();
            middle[len / 2] = b'b';
            names.push(String::from_utf8(middle).expect("ascii"));
        }
    }
    let registry = registry_of(names.iter().map(|n| part(n, "1.0.0", &book, &[])).collect());
    let snapshot = registry.snapshot();
    for name in &names {
        assert!(snapshot.contains(name), "{name}");
        let call = registry.enter(name).expect("found by name");
        assert_eq!(call.manifest().name(), name);
        let call = snapshot.enter(name).expect("found in the snapshot");
        assert_eq!(call.manifest().name(), name);
    }
    let mut absent = vec![
        String::new(),
        "a".repeat(65),
        "é".into(),
        "b".into(),
        "ab".into(),
    ];
    for len in 3..=64 {
        let mut middle = "a".repeat(len).into_bytes();
        middle[len / 2] = b'c';
        absent.push(String::from_utf8(middle).expect("ascii"));
        let mut near_end = "a".repeat(len).into_bytes();
        near_end[len - 2] = b'b';
        if len > 3 && !names.contains(&String::from_utf8_lossy(&near_end).into_owned()) {
            absent.push(String::from_utf8(near_end).expect("ascii"));
        }
    }
    for name in &absent {
        assert!(!snapshot.contains(name), "{name}");
        assert!(
            matches!(registry.enter(name), Err(EnterError::NotRegistered { .. })),
            "{name}"
        );
    }
    assert_eq!(names.len(), 64 + 62);
    assert_eq!(absent.len(), 5 + 62 + 60);
}

/// Polls a fresh `enter_owned_async` of `handle` until one is pending (the
/// gate has closed); calls entered before that are given back at once.
fn pending_enter(
    handle: &reload_core::registry::Handle<Part>,
) -> reload_core::registry::EnterCallFuture<Part> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        let mut enter = handle.enter_owned_async();
        match std::pin::Pin::new(&mut enter).poll(&mut cx) {
            std::task::Poll::Pending => return enter,
            std::task::Poll::Ready(call) => drop(call),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

use std::future::Future;

/// A quiesced reload of `name` to `version`, on a thread of its own.
fn reload_on_a_thread(
    registry: &Arc<Registry<Part>>,
    book: &Arc<Parts>,
    name: &str,
    version: &str,
    requires: &[(&str, &str)],
) -> std::thread::JoinHandle<()> {
    let package = part(name, version, book, requires);
    let registry = Arc::clone(registry);
    std::thread::spawn(move || {
        registry
            .reload(
                vec![package],
                &(),
                ReloadOptions::quiesced(Duration::from_secs(60)),
            )
            .map(drop)
            .map_err(|r| r.error)
            .expect("the reload commits");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_enter_waits_at_a_closed_gate_without_a_thread_and_enters_the_new_version() {
    let (book, registry) = pair();
    let registry = Arc::new(registry);
    let b = registry.handle("b").expect("registered");
    // A call in flight holds 1.0.0: the quiesced reload closes b's gate
    // and waits for it.
    let held = b.enter_owned().expect("served");
    let reload = reload_on_a_thread(&registry, &book, "b", "1.1.0", &[("a", "^1")]);
    let waiting = tokio::spawn(pending_enter(&b));
    // An async enter dropped while waiting leaves nothing behind.
    drop(pending_enter(&b));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "the gate is closed until the drain");
    drop(held);
    let call = waiting.await.expect("no panic").expect("entered");
    assert_eq!(call.manifest().version().to_string(), "1.1.0");
    assert!(call.is_owned());
    drop(call);
    reload.join().expect("no panic");
    assert_eq!(in_flight(&registry, "b"), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
    assert!(registry.stats().gate_waits >= 1);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_enter_at_a_requirements_closed_gate_holds_nothing_while_it_waits() {
    let (book, registry) = pair();
    let registry = Arc::new(registry);
    let b = registry.handle("b").expect("registered");
    // The call holds b and a; a quiesced reload of a waits for it.
    let held = b.enter_owned().expect("served");
    let reload = reload_on_a_thread(&registry, &book, "a", "1.1.0", &[]);
    let waiting = tokio::spawn(pending_enter(&b));
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Waiting on a's gate, it gave b back: only `held` is in flight on b.
    assert_eq!(in_flight(&registry, "b"), 1);
    drop(held);
    let call = waiting.await.expect("no panic").expect("entered");
    let a = call.dependency("a").expect("a required");
    assert_eq!(a.manifest().version().to_string(), "1.1.0");
    drop(call);
    reload.join().expect("no panic");
    assert_eq!(in_flight(&registry, "a"), 0);
    assert_eq!(book.used_after_shutdown.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_async_enter_of_an_unregistered_plugin_is_an_error() {
    let (_, registry) = pair();
    let b = registry.handle("b").expect("registered");
    let draining = registry.unregister("b").expect("no dependents");
    drop(draining);
    assert!(matches!(
        b.enter_owned_async().await,
        Err(EnterError::Unregistered { .. })
    ));
}
