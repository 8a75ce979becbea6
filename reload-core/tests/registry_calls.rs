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

/// a, and b requiring a ^1, at 1.0.0.
fn pair() -> (Arc<Parts>, Registry<Part>) {
    let book = Arc::new(Parts::default());
    let registry = Registry::new(Unchecked);
    registry
        .register_all(
            vec![
                part("a", "1.0.0", &book, &[]),
                part("b", "1.0.0", &book, &[("a", "^1")]),
            ],
            &(),
        )
        .expect("registered");
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
