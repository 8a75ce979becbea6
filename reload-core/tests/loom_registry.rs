//! The registry's own call path (`registry/call.rs`) under loom: a call on
//! a plugin that requires another, racing a quiesced group reload of both.
//! The group closes the dependency's gate first; a call that has leased the
//! dependent and then meets the dependency's closed gate must give back
//! what it holds before it waits, or the commit (draining the dependent)
//! and the call (waiting for the dependency's gate) wait for each other:
//! with no deadline, a loom deadlock. The call must also see a matching
//! pair of versions, never a mix. The same for the async call
//! (`Handle::enter_owned_async`), which waits on the gate's task list.
#![cfg(loom)]

mod loom_support;

use std::sync::Arc;
use std::time::Duration;

use loom_support::{model_at, model_bounded};
use reload_core::registry::{Package, Registry};
use reload_core::testing::{Part, Parts};
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;

fn part(name: &str, version: &str, book: &Arc<Parts>, requires: &[(&str, &str)]) -> Package<Part> {
    Part::new(name, version, book)
        .package(requires)
        .unwrap_or_else(|e| panic!("valid manifest: {e}"))
}

/// A registry (no verifier) with `parts` registered.
fn registered(parts: Vec<Package<Part>>) -> Arc<Registry<Part>> {
    let registry = Arc::new(Registry::new(Unchecked));
    registry
        .register_all(parts, &())
        .unwrap_or_else(|e| panic!("registers: {e}"));
    registry
}

/// `a`, and `b` requiring `a` of its own major, at major `major`.
fn chain(major: u64, book: &Arc<Parts>) -> Vec<Package<Part>> {
    let version = format!("{major}.0.0");
    vec![
        part("a", &version, book, &[]),
        part("b", &version, book, &[("a", &format!("^{major}"))]),
    ]
}

/// Reloads `parts` together and finalizes every version they replaced.
fn reload_all(registry: &Registry<Part>, parts: Vec<Package<Part>>, options: ReloadOptions) {
    let report = registry
        .reload(parts, &(), options)
        .unwrap_or_else(|e| panic!("commits: {e}"));
    for change in report.changes {
        change.committed.old.wait().expect("finalizes");
    }
}

#[test]
fn a_registry_call_races_a_quiesced_group_reload() {
    // One preemption suffices for the hold-and-wait (the caller, preempted
    // between its two leases while the group closes the first gate); at two
    // this test runs for minutes, the registry's path being long.
    model_bounded(1, || {
        let book = Arc::new(Parts::default());
        let registry = registered(chain(1, &book));
        let caller = {
            let registry = Arc::clone(&registry);
            loom::thread::spawn(move || {
                registry
                    .call("b", |call| {
                        let a = call.dependency("a").expect("leased with b");
                        (
                            call.plugin().run(),
                            a.plugin().run(),
                            call.generation(),
                            a.generation(),
                        )
                    })
                    .unwrap_or_else(|e| panic!("served: {e}"))
            })
        };
        reload_all(
            &registry,
            chain(2, &book),
            ReloadOptions::quiesced(Duration::MAX),
        );
        let (_, _, gen_b, gen_a) = caller.join().expect("caller");
        // Both old (generation 1) or both new (2): never a mix.
        assert_eq!(gen_a, gen_b, "a call saw a mixed pair");
        assert_eq!(
            book.used_after_shutdown
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    });
}

/// The async call (`Handle::enter_owned_async`) races the same group
/// reload: at a closed gate it must give back what it holds before it
/// awaits the gate (else the commit and the call wait for each other),
/// and it must see a matching pair.
#[test]
fn an_async_registry_call_races_a_quiesced_group_reload() {
    model_bounded(1, || {
        let book = Arc::new(Parts::default());
        let registry = registered(chain(1, &book));
        let caller = {
            let handle = registry.handle("b").unwrap_or_else(|e| panic!("{e}"));
            loom::thread::spawn(move || {
                let call = loom::future::block_on(handle.enter_owned_async())
                    .unwrap_or_else(|e| panic!("served: {e}"));
                let a = call.dependency("a").expect("leased with b");
                (
                    call.plugin().run(),
                    a.plugin().run(),
                    call.generation(),
                    a.generation(),
                )
            })
        };
        reload_all(
            &registry,
            chain(2, &book),
            ReloadOptions::quiesced(Duration::MAX),
        );
        let (_, _, gen_b, gen_a) = caller.join().expect("caller");
        assert_eq!(gen_a, gen_b, "an async call saw a mixed pair");
        assert_eq!(
            book.used_after_shutdown
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    });
}

/// A diamond: `c` requires `a` and `b` (any version from 1), and `b`
/// requires `a` of its own major. An immediate group reload of `a` and `b`
/// to major 2 races a call on `c`: a call that leased `a` 1 before the
/// cut-overs and `b` 2 after them holds a set that `b`'s range rejects,
/// through `a` reached a second time. It must give the set back and retry,
/// never run `b` 2 on `a` 1.
#[test]
fn a_diamond_call_never_mixes_versions_across_an_immediate_group_reload() {
    // Three preemptions. One sufficed while `enter` pinned (the caller,
    // started by the yield below and preempted between its leases, resumed
    // after both cut-overs); since `enter` stopped pinning, the schedules
    // that reach the mixed set need more, and at one or two the mutation
    // suite's `call-diamond-unchecked` survived. At three it is killed, and
    // the test still takes seconds.
    model_at(3, || {
        let book = Arc::new(Parts::default());
        let registry = registered(vec![
            part("a", "1.0.0", &book, &[]),
            part("b", "1.0.0", &book, &[("a", "^1")]),
            part("c", "1.0.0", &book, &[("a", ">=1"), ("b", ">=1")]),
        ]);
        let caller = {
            let registry = Arc::clone(&registry);
            loom::thread::spawn(move || {
                registry
                    .call("c", |call| {
                        let major = |name: &str| {
                            let dep = call.dependency(name).expect("leased with c");
                            dep.plugin().run();
                            dep.manifest().version().major
                        };
                        (major("a"), major("b"))
                    })
                    .unwrap_or_else(|e| panic!("served: {e}"))
            })
        };
        // Lets the caller start first without spending the one preemption,
        // which then goes to stopping it between its leases.
        loom::thread::yield_now();
        reload_all(&registry, chain(2, &book), ReloadOptions::immediate());
        let (a, b) = caller.join().expect("caller");
        assert_eq!(a, b, "b {b}.x ran on a {a}.x, outside its range");
    });
}

/// A chain: `b` 1 requires `a` ^1. An immediate group reload to major 2 cuts
/// `a` over first, then `b`: a call that leased `b` 1 before the cut-overs
/// and reaches `a` after the first holds `b` 1 with `a` 2, outside `b` 1's
/// range. It must give the pair back and retry, never run `b` 1 on `a` 2.
#[test]
fn a_chain_call_never_leases_a_requirement_outside_its_range() {
    model_at(1, || {
        let book = Arc::new(Parts::default());
        let registry = registered(chain(1, &book));
        let caller = {
            let registry = Arc::clone(&registry);
            loom::thread::spawn(move || {
                let handle = registry
                    .handle("b")
                    .unwrap_or_else(|e| panic!("registered: {e}"));
                let call = handle.enter().unwrap_or_else(|e| panic!("served: {e}"));
                let a = call.dependency("a").expect("leased with b");
                a.plugin().run();
                (
                    call.manifest().version().major,
                    a.manifest().version().major,
                )
            })
        };
        loom::thread::yield_now();
        reload_all(&registry, chain(2, &book), ReloadOptions::immediate());
        let (b, a) = caller.join().expect("caller");
        assert_eq!(a, b, "b {b}.x ran on a {a}.x, outside its range");
    });
}
