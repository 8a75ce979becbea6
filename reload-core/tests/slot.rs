//! The slot's behaviour, one claim per test. Concurrency is exercised with
//! real threads here; `stress.rs` does it at volume and the loom tests in
//! every interleaving.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use reload_core::testing::{Faults, Ledger, Probe, Record};
use reload_core::{
    CallError, Cause, DrainError, Hook, Hooks, Initialized, Phase, Plugin, ReloadFault, Slot,
    SlotClosed, VersionInfo,
};

fn ready(id: u64, ledger: &Arc<Ledger>) -> Plugin<Probe, Initialized> {
    Probe::ready(id, ledger)
}

fn once() -> Record {
    Record::finalized_once(0)
}

#[test]
fn replace_cuts_over_and_hands_back_the_old_version() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    assert_eq!(slot.generation(), Some(1));
    assert_eq!(slot.enter().expect("open").call(), 1);

    let old = slot.replace(ready(2, &ledger)).expect("replace");
    assert_eq!(old.generation(), 1);
    assert_eq!(old.phase(), Phase::Draining);
    assert_eq!(slot.generation(), Some(2));
    assert_eq!(slot.enter().expect("open").call(), 2);

    let removed = old.wait().expect("shutdown ok");
    assert_eq!(removed.phase(), Phase::Removed);
    assert!(removed.report().shutdown_ok);
    let probe = removed.into_inner();
    assert!(probe.is_shut_down());
    assert_eq!(probe.calls(), 1);
}

#[test]
fn a_lease_taken_before_the_cutover_keeps_its_version_until_dropped() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    let old = slot.replace(ready(2, &ledger)).expect("replace");

    // The lease still runs on version 1, which is draining, not removed.
    assert_eq!(lease.generation(), 1);
    assert_eq!(lease.phase(), Phase::Draining);
    assert_eq!(lease.call(), 1);
    assert_eq!(old.in_flight(), 1);
    assert!(!old.is_drained());

    // A bounded wait gives the version back while the lease is out...
    let old = match old.wait_timeout(Duration::from_millis(20)) {
        Err(DrainError::TimedOut(old)) => old,
        other => panic!("expected a timeout, got {other:?}"),
    };
    assert_eq!(ledger.records().get(&1).map(|r| r.shutdowns), None);

    // ...and once the lease is dropped (on another thread) it drains.
    thread::scope(|s| {
        s.spawn(move || drop(lease));
    });
    assert!(old.is_drained());
    assert_eq!(old.in_flight(), 0);
    let removed = old.wait_timeout(Duration::from_secs(60)).expect("drained");
    assert_eq!(removed.report().generation, 1);
    drop(removed);
    assert_eq!(ledger.calls_after_shutdown(), 0);
    assert_eq!(ledger.records()[&1], Record { calls: 1, ..once() });
}

#[test]
fn the_last_release_wakes_a_parked_drain() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    let old = slot.replace(ready(2, &ledger)).expect("replace");
    thread::scope(|s| {
        // Parks with no deadline: it returns only if the release wakes it.
        let waiter = s.spawn(move || {
            old.wait()
                .map(|r| r.report().generation)
                .map_err(|e| e.to_string())
        });
        thread::sleep(Duration::from_millis(10));
        drop(lease);
        assert_eq!(waiter.join().expect("no panic").expect("ok"), 1);
    });
    assert_eq!(ledger.records()[&1].shutdowns, 1);
}

#[test]
fn several_versions_drain_at_once_in_any_order() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let on_1 = slot.enter().expect("open");
    let draining_1 = slot.replace(ready(2, &ledger)).expect("replace");
    let on_2 = slot.enter().expect("open");
    let draining_2 = slot.replace(ready(3, &ledger)).expect("replace");

    let info = |generation, phase, in_flight| VersionInfo {
        generation,
        phase,
        in_flight,
        orphaned: false,
    };
    assert_eq!(
        slot.versions(),
        [
            info(1, Phase::Draining, 1),
            info(2, Phase::Draining, 1),
            info(3, Phase::Active, 0)
        ]
    );
    assert_eq!(slot.stats().draining_now, 2);

    // The newer drain finishes first.
    drop(on_2);
    assert_eq!(draining_2.wait().expect("ok").report().generation, 2);
    assert!(!draining_1.is_drained());
    drop(on_1);
    assert_eq!(draining_1.wait().expect("ok").report().generation, 1);
    assert_eq!(slot.versions(), [info(3, Phase::Active, 0)]);
    let stats = slot.stats();
    assert_eq!(
        (stats.reloads, stats.drains_completed, stats.draining_now),
        (2, 2, 0)
    );
    assert_eq!(stats.drain_time.count, 2);
}

#[test]
fn close_refuses_new_calls_and_drains_the_rest() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    let last = slot.close().expect("was open");
    assert!(slot.is_closed());
    assert_eq!(slot.generation(), None);
    assert_eq!(slot.enter().err(), Some(SlotClosed));
    assert!(matches!(
        slot.call(|p| p.call()),
        Err(CallError::Closed(SlotClosed))
    ));
    assert!(
        slot.close().is_none(),
        "closing twice yields nothing the second time"
    );

    // A replace on a closed slot hands the new version back, untouched.
    let refused = slot.replace(ready(2, &ledger)).expect_err("closed");
    assert!(matches!(refused.fault(), ReloadFault::Closed));
    assert_eq!(
        refused.to_string(),
        "reload of `probe` failed, old version serving: the plugin slot is closed"
    );
    let Ok(back) = refused.into_returned().into_initialized() else {
        panic!("handed back as it was given, Initialized");
    };
    assert_eq!(back.get().id(), 2);
    assert!(!back.get().is_shut_down());

    assert_eq!(lease.call(), 1);
    drop(lease);
    assert_eq!(last.wait().expect("ok").report().generation, 1);
    assert_eq!(slot.stats().failed_reloads, 1);
}

struct Named(&'static str);
impl Hooks for Named {
    type Context = ();
    fn name(&self) -> &str {
        self.0
    }
}

#[test]
fn a_version_of_another_plugin_is_refused_and_handed_back() {
    let prepare = |n| {
        Plugin::new(Named(n))
            .ready(&())
            .map_err(|e| e.to_string())
            .expect("prepares")
    };
    let slot = Slot::new(prepare("codec-lz4"));
    let err = slot.replace(prepare("codec-zstd")).expect_err("wrong name");
    assert_eq!(
        err.to_string(),
        "reload of `codec-lz4` failed, old version serving: \
         cannot reload plugin `codec-lz4` with a version of `codec-zstd`"
    );
    assert_eq!(err.into_plugin().0, "codec-zstd");
    assert_eq!(slot.generation(), Some(1));
    assert_eq!(slot.enter().expect("open").0, "codec-lz4");
}

#[test]
fn a_panicking_call_is_contained_and_the_slot_keeps_serving() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(7, &ledger));
    let err = slot
        .call(|_| -> u64 { panic!("udf divided by zero") })
        .expect_err("panicked");
    let CallError::Panicked(failure) = err else {
        panic!("expected a panic report")
    };
    assert_eq!(failure.hook, Hook::Call);
    assert_eq!(failure.generation, Some(1));
    assert!(matches!(&failure.cause, Cause::Panic(m) if m == "udf divided by zero"));
    assert_eq!(
        failure.to_string(),
        "call of probe version 7 (generation 1) panicked: udf divided by zero"
    );
    assert_eq!(slot.versions()[0].in_flight, 0, "the lease was released");
    assert_eq!(slot.call(|p| p.call()).expect("still serving"), 7);
    assert_eq!(slot.stats().call_panics, 1);

    // A raw lease is released during unwinding too, so a drain completes.
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let _lease = slot.enter().expect("open");
        panic!("caller code panicked while holding a lease");
    }));
    assert!(unwound.is_err());
    let old = slot.replace(ready(8, &ledger)).expect("replace");
    assert!(old.is_drained());
    drop(old.wait().expect("ok"));
}

#[test]
fn a_failed_reload_leaves_the_old_version_serving_and_returns_the_new_one() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    for (id, faults, hook) in [
        (
            2,
            Faults {
                fail_link: true,
                ..Faults::default()
            },
            Hook::Link,
        ),
        (
            3,
            Faults {
                fail_init: true,
                ..Faults::default()
            },
            Hook::Init,
        ),
        (
            4,
            Faults {
                panic_init: true,
                ..Faults::default()
            },
            Hook::Init,
        ),
    ] {
        let err = slot
            .reload(Plugin::new(Probe::with_faults(id, &ledger, faults)), &())
            .expect_err("the hook fails");
        assert_eq!(err.hook_failure().map(|f| f.hook), Some(hook));
        let expected_phase = match hook {
            Hook::Link => "Loaded",
            _ => "Linked",
        };
        assert_eq!(
            format!("{:?}", err.plugin()),
            format!("{expected_phase}(..)")
        );
        assert_eq!(err.into_plugin().id(), id, "the new version comes back");
        assert_eq!(slot.enter().expect("open").call(), 1, "old keeps serving");
    }
    assert_eq!(slot.stats().failed_reloads, 3);
    // The next reload goes through: nothing was left wedged.
    let old = slot
        .reload(Plugin::new(Probe::new(5, &ledger)), &())
        .expect("reload");
    assert_eq!(slot.enter().expect("open").call(), 5);
    drop(old.wait().expect("ok"));
    assert_eq!(slot.stats().reloads, 1);
}

#[test]
fn a_panicking_shutdown_still_removes_the_version_exactly_once() {
    let ledger = Ledger::new();
    let faults = Faults {
        panic_shutdown: true,
        ..Faults::default()
    };
    let first = Plugin::new(Probe::with_faults(1, &ledger, faults))
        .ready(&())
        .expect("prepares");
    let slot = Slot::new(first);
    let err = slot
        .replace(ready(2, &ledger))
        .expect("replace")
        .wait()
        .expect_err("shutdown panicked");
    assert_eq!(err.failure().hook, Hook::Shutdown);
    assert!(err.failure().is_panic());
    assert_eq!(err.failure().generation, Some(1));
    let removed = err.into_inner();
    assert!(!removed.report().shutdown_ok);
    drop(removed);
    assert_eq!(ledger.records()[&1], once());
    assert_eq!(slot.stats().shutdown_failures, 1);
    assert_eq!(slot.enter().expect("open").call(), 2);
}

#[test]
fn a_dropped_draining_handle_is_finalized_by_the_slot_once_drained() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    drop(slot.replace(ready(2, &ledger)).expect("replace"));
    assert_eq!(
        slot.versions()[0],
        VersionInfo {
            generation: 1,
            phase: Phase::Draining,
            in_flight: 1,
            orphaned: true
        }
    );
    assert_eq!(slot.reap(), 0, "still draining");
    assert_eq!(lease.call(), 1);
    drop(lease);
    assert_eq!(slot.reap(), 1);
    assert_eq!(ledger.records()[&1], Record { calls: 1, ..once() });
    assert_eq!(slot.versions().len(), 1);
}

#[test]
fn a_drained_handle_dropped_is_finalized_at_once() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    drop(slot.replace(ready(2, &ledger)).expect("replace"));
    assert_eq!(ledger.records()[&1], once());
}

#[test]
fn dropping_the_slot_finalizes_every_version_exactly_once() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    drop(slot.replace(ready(2, &ledger)).expect("replace")); // orphaned, busy
    let kept = slot.replace(ready(3, &ledger)).expect("replace"); // held by us
    drop(lease);
    drop(slot);
    // The orphan (1) and the current version (3) were finalized by the drop;
    // the handle we kept (2) is still ours to finish.
    let records = ledger.records();
    assert_eq!(records[&1], Record { calls: 0, ..once() });
    assert_eq!(records[&3], once());
    assert!(!records.contains_key(&2));
    drop(kept.wait().expect("ok"));
    assert_eq!(ledger.records()[&2], once());
}

#[test]
fn a_forgotten_lease_does_not_block_dropping_the_slot() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    std::mem::forget(slot.enter().expect("open"));
    // Returns at once. The version's lease was never given back, so it is
    // never shut down (a forgotten lease cannot be told from a live owned
    // one): it is leaked, with the slot's bookkeeping, never finalized
    // under a lease.
    drop(slot);
    assert!(!ledger.records().contains_key(&1));
}

struct ThreadWaker(thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: the drain future must work on any executor.
fn block_on<F: Future>(future: F) -> (F::Output, usize) {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return (out, polls);
        }
        thread::park();
    }
}

#[test]
fn the_drain_is_a_future_woken_by_the_last_release() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    let old = slot.replace(ready(2, &ledger)).expect("replace");
    thread::scope(|s| {
        s.spawn(move || {
            thread::sleep(Duration::from_millis(10));
            drop(lease);
        });
        let (removed, polls) = block_on(old.into_future_checked());
        assert_eq!(removed.expect("ok").report().generation, 1);
        assert!(polls >= 1);
    });
    // And `.await`-style on an already-drained version resolves at once.
    let (removed, polls) = block_on(std::future::IntoFuture::into_future(
        slot.replace(ready(3, &ledger)).expect("replace"),
    ));
    assert_eq!(removed.expect("ok").report().generation, 2);
    assert_eq!(polls, 1);
}

trait IntoFutureChecked: Sized {
    fn into_future_checked(self) -> reload_core::Drain<Probe>;
}
impl IntoFutureChecked for Plugin<Probe, reload_core::Draining> {
    fn into_future_checked(self) -> reload_core::Drain<Probe> {
        self.drained()
    }
}

#[test]
fn leases_and_draining_handles_cross_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<reload_core::Lease<'static, Probe>>();
    sync::<reload_core::Lease<'static, Probe>>();
    send::<Plugin<Probe, reload_core::Draining>>();
    send::<reload_core::Drain<Probe>>();
    send::<Slot<Probe>>();
    sync::<Slot<Probe>>();
}

#[test]
fn wait_drained_parks_until_drained_without_finalizing() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let lease = slot.enter().expect("open");
    let old = slot.replace(ready(2, &ledger)).expect("replace");
    // A deadline that has passed: not drained, nothing finalized.
    assert!(!old.wait_drained(Some(std::time::Instant::now())));
    thread::scope(|s| {
        s.spawn(move || {
            thread::sleep(Duration::from_millis(10));
            drop(lease);
        });
        assert!(old.wait_drained(None));
    });
    // Drained, still Draining and still ours: shutdown has not run.
    assert_eq!(old.phase(), Phase::Draining);
    assert!(ledger.records().get(&1).is_none_or(|r| r.shutdowns == 0));
    let removed = old
        .try_finalize()
        .expect("drained, so it finalizes at once");
    assert_eq!(removed.report().generation, 1);
    assert_eq!(ledger.records()[&1].shutdowns, 1);
}

/// What a draining handle and its futures tell about themselves: the count
/// of leases out (two, then one, then none), the time since the cut-over,
/// and their `Debug` forms naming the generation and the count.
#[test]
fn a_draining_handle_reports_its_leases_age_and_itself() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let (a, b) = (slot.enter().expect("open"), slot.enter().expect("open"));
    let old = slot.replace(ready(2, &ledger)).expect("replace");
    assert_eq!(old.in_flight(), 2);
    let since = std::time::Instant::now();
    // The clock is monotonic: once it has moved past `since`, so has the
    // handle's age, which began before it.
    while since.elapsed() == Duration::ZERO {
        thread::yield_now();
    }
    let mine = since.elapsed();
    assert!(old.elapsed() >= mine && mine > Duration::ZERO);
    let shown = format!("{old:?}");
    assert!(
        shown.contains("generation: 1")
            && shown.contains("in_flight: 2")
            && shown.contains("Draining"),
        "{shown}"
    );
    drop(a);
    assert_eq!(old.in_flight(), 1);
    let until = old.until_drained();
    assert!(format!("{until:?}").contains("generation: 1"), "{until:?}");
    drop(until);
    drop(b);
    assert_eq!(old.in_flight(), 0);
    let drain = old.drained();
    assert!(format!("{drain:?}").contains("generation: 1"), "{drain:?}");
    let (removed, _) = block_on(drain);
    assert_eq!(removed.expect("shutdown is fine").report().generation, 1);
}
