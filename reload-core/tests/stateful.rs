//! Stateful reloads: prepare / commit / abort, quiesced and immediate
//! cut-over, state migration and the two-phase resource handoff, under
//! concurrent callers and under every injected failure.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use reload_core::testing::{Book, Counter, CounterFaults, ResourceState};
use reload_core::{
    BoxError, Committed, EnvelopeError, Event, Hook, Listener, Mode, Plugin, Proposal, ReloadError,
    ReloadFault, ReloadOptions, SavedState, Slot, Stateful, TryEnterError,
};

const LONG: Duration = Duration::from_secs(30);

fn slot_with(book: &Arc<Book>, schema: u32) -> Slot<Counter> {
    let first = Plugin::new(Counter::new("v1", schema, book))
        .ready(&())
        .expect("a counter prepares");
    Slot::new(first)
}

fn next(label: &str, schema: u32, book: &Arc<Book>) -> Plugin<Counter> {
    Plugin::new(Counter::next(label, schema, book))
}

fn faulty(label: &str, book: &Arc<Book>, faults: CounterFaults) -> Plugin<Counter> {
    Plugin::new(Counter::next(label, 1, book).with_faults(faults))
}

/// Prepares and commits a quiesced reload to `next`.
fn quiesced<P: Stateful<Context = ()>>(
    slot: &Slot<P>,
    next: Plugin<P>,
) -> Result<Committed<P>, ReloadError<P>> {
    slot.prepare(next, &(), ReloadOptions::quiesced(LONG))
        .and_then(|p| p.commit())
}

/// Increments `n` times and adds two index records; returns the count.
fn load_up(slot: &Slot<Counter>, n: u64) -> u64 {
    for _ in 0..n {
        slot.call(Counter::inc).expect("serving");
    }
    let lease = slot.enter().expect("serving");
    lease.put("alpha", "first");
    lease.put("beta", "second");
    lease.count()
}

/// The old version serves on, with its state and resources as they were.
fn assert_old_intact(slot: &Slot<Counter>, book: &Book, count: u64) {
    let lease = slot.enter().expect("still serving");
    assert_eq!(lease.label(), "v1");
    assert_eq!(lease.generation(), 1);
    assert_eq!(lease.count(), count, "state intact");
    assert_eq!(lease.position(), count, "stream intact");
    assert_eq!(lease.records().len(), 2, "index intact");
    assert_eq!(book.resource("v1", "idx"), Some(ResourceState::Open));
    assert_eq!(book.resource("v1", "cdc"), Some(ResourceState::Open));
    drop(lease);
    assert_eq!(slot.stats().draining_now, 0);
}

/// After any failure the next reload starts and carries everything (S6).
fn assert_next_reload_works(slot: &Slot<Counter>, book: &Arc<Book>, count: u64) {
    let prepared = slot
        .prepare(next("v9", 1, book), &(), ReloadOptions::quiesced(LONG))
        .expect("the next reload can start");
    let committed = prepared.commit().expect("and commit");
    committed.old.wait().expect("v1 finalizes");
    let lease = slot.enter().expect("serving");
    assert_eq!((lease.label(), lease.count()), ("v9", count));
    assert_eq!(lease.records().len(), 2);
    assert_eq!(book.resource("v1", "idx"), Some(ResourceState::Closed));
    assert_eq!(book.resource("v9", "idx"), Some(ResourceState::Open));
}

#[test]
fn a_thousand_quiesced_reloads_under_increments_lose_and_double_nothing() {
    const RELOADS: u64 = 1000;
    const WORKERS: usize = 2;
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let made: Vec<u64> = thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                s.spawn(|| {
                    let mut made = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if slot.call(Counter::inc).is_ok() {
                            made += 1;
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    made
                })
            })
            .collect();
        // Stops the workers however this closure ends: a failed reload
        // (a panic below) must fail the test with its message, not leave
        // the scope waiting for workers that never stop.
        struct StopOnExit<'a>(&'a AtomicBool);
        impl Drop for StopOnExit<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop_on_exit = StopOnExit(&stop);
        for i in 0..RELOADS {
            // Increments are continuous *between* reloads too: on a loaded
            // machine the workers might otherwise not run until the end.
            let seen = progress.load(Ordering::Relaxed);
            while progress.load(Ordering::Relaxed) == seen {
                thread::yield_now();
            }
            // The first reload migrates the state 1 -> 2 -> 3; schemas only
            // move forward, so every later version is schema 3 too.
            let schema = 3;
            let label = format!("g{}", i + 2);
            let committed =
                quiesced(&slot, next(&label, schema, &book)).expect("every reload commits");
            // Drained before the cut-in, gate closed meanwhile. (Not
            // `committed.old.is_drained()`: a caller that loaded the old
            // version before the gate closed may still count itself on it
            // for an instant after the cut-over, see the new pointer and
            // undo. No lease is granted by that, but the sum is briefly
            // one; the exact final count below is what proves no call ran
            // on the old version after its state was saved.)
            assert!(committed.quiesce.is_some(), "quiesced: gated for the drain");
            committed.old.wait().expect("old version finalizes");
        }
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let total: u64 = made.iter().sum();
    eprintln!("{RELOADS} quiesced reloads under {total} increments ({made:?} per worker)");
    let lease = slot.enter().expect("serving");
    assert_eq!(lease.count(), total, "every increment, exactly once");
    assert_eq!(
        lease.position(),
        total,
        "the stream resumed where it stopped"
    );
    assert_eq!(lease.label(), format!("g{}", RELOADS + 1));
    drop(lease);
    assert!(total >= RELOADS, "increments between every two reloads");
    assert_eq!(book.saves(), RELOADS);
    assert_eq!(book.restores(), RELOADS, "restored exactly once per reload");
    let stats = slot.stats();
    assert_eq!(stats.reloads, RELOADS);
    assert_eq!(stats.failed_reloads, 0);
    assert_eq!(stats.quiesce_time.count, RELOADS);
    assert_eq!(stats.drains_completed, RELOADS);
    assert_eq!(book.resource("g2", "cdc"), Some(ResourceState::Closed));
    assert_eq!(
        book.resource(&format!("g{}", RELOADS + 1), "cdc"),
        Some(ResourceState::Open)
    );
}

#[test]
fn migration_runs_the_chain_one_step_at_a_time() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 41);
    let committed = quiesced(&slot, next("v3", 3, &book)).expect("1 -> 2 -> 3");
    assert_eq!(committed.transfer.state, Some((1, 3)));
    assert_eq!(committed.transfer.migration_steps, 2);
    assert_eq!(committed.transfer.resources.len(), 2);
    let lease = slot.enter().expect("serving");
    assert_eq!((lease.count(), lease.migrations()), (count, 2));
    assert_eq!(
        lease.records(),
        vec![
            ("alpha".to_owned(), "first".to_owned()),
            ("beta".to_owned(), "second".to_owned()),
        ]
    );
}

#[test]
fn immediate_mode_carries_the_snapshot_taken_at_prepare() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 10);
    let prepared = slot
        .prepare(next("v2", 1, &book), &(), ReloadOptions::immediate())
        .expect("prepares");
    // The old version still serves, and this update is after the snapshot:
    // immediate mode does not carry it (that is what quiesced mode is for).
    assert_eq!(slot.call(Counter::inc).expect("old serves"), count + 1);
    assert_eq!(slot.enter().expect("serving").label(), "v1");
    let committed = prepared.commit().expect("cuts over");
    assert_eq!(slot.enter().expect("serving").count(), count);
    let removed = committed.old.wait().expect("finalizes");
    assert_eq!(removed.get().count(), count + 1);
}

#[test]
fn a_failed_restore_leaves_the_old_version_serving_with_everything() {
    for faults in [
        CounterFaults {
            fail_restore: true,
            ..CounterFaults::default()
        },
        CounterFaults {
            panic_restore: true,
            ..CounterFaults::default()
        },
    ] {
        let book = Book::new();
        let slot = slot_with(&book, 1);
        let count = load_up(&slot, 25);
        let err = quiesced(&slot, faulty("v2", &book, faults)).expect_err("restore fails");
        let failure = err.fault().hook_failure().expect("a hook failed");
        assert_eq!(failure.hook, Hook::Restore);
        // Nothing lost: the error carries the state and every handoff.
        let saved = SavedState::decode(err.salvage().state.as_deref().expect("state saved"))
            .expect("a valid envelope");
        assert_eq!(saved, SavedState::new(1, count.to_string().into_bytes()));
        assert_eq!(err.salvage().checkpoints, vec![("cdc".to_owned(), count)]);
        assert_eq!(err.salvage().persisted.len(), 1);
        assert_eq!(err.into_plugin().label(), "v2");
        assert_old_intact(&slot, &book, count);
        assert_eq!(slot.stats().rolled_back, 1);
        assert_next_reload_works(&slot, &book, count);
    }
}

#[test]
fn a_failed_open_closes_nothing_of_the_old_version() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 7);
    let err = quiesced(
        &slot,
        faulty(
            "v2",
            &book,
            CounterFaults {
                fail_open: true,
                ..CounterFaults::default()
            },
        ),
    )
    .expect_err("open fails");
    assert_eq!(err.fault().hook_failure().map(|f| f.hook), Some(Hook::Open));
    let persisted = &err.salvage().persisted;
    assert_eq!(persisted[0].0, "idx");
    assert_eq!(persisted[0].1, b"alpha=first\nbeta=second\n");
    assert_eq!(book.resource("v2", "idx"), None, "never opened");
    assert_old_intact(&slot, &book, count);
    assert_next_reload_works(&slot, &book, count);
}

#[test]
fn a_failed_resume_closes_what_the_new_version_had_opened() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 9);
    let err = quiesced(
        &slot,
        faulty(
            "v2",
            &book,
            CounterFaults {
                fail_resume: true,
                ..CounterFaults::default()
            },
        ),
    )
    .expect_err("resume fails");
    assert_eq!(
        err.fault().hook_failure().map(|f| f.hook),
        Some(Hook::Resume)
    );
    assert_eq!(err.salvage().checkpoints, vec![("cdc".to_owned(), count)]);
    // Two-phase: the index the new version had opened was closed again.
    assert_eq!(book.resource("v2", "idx"), Some(ResourceState::Closed));
    assert_old_intact(&slot, &book, count);
    assert_next_reload_works(&slot, &book, count);
}

#[test]
fn failures_in_immediate_mode_leave_the_old_version_too() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 3);
    for faults in [
        CounterFaults {
            fail_save: true,
            ..CounterFaults::default()
        },
        CounterFaults {
            fail_open: true,
            ..CounterFaults::default()
        },
        CounterFaults {
            fail_resume: true,
            ..CounterFaults::default()
        },
    ] {
        // `fail_save` and `fail_persist` are faults of the *old* version;
        // here the new one carries them, so only new-side faults bite.
        let err = slot.prepare(
            faulty("v2", &book, faults.clone()),
            &(),
            ReloadOptions::immediate(),
        );
        match err {
            Ok(prepared) => {
                assert!(faults.fail_save, "only the old side's fault passes");
                drop(prepared);
            }
            Err(e) => assert!(e.fault().hook_failure().is_some()),
        }
        assert_old_intact(&slot, &book, count);
    }
    assert_eq!(slot.stats().aborted, 1);
    assert_next_reload_works(&slot, &book, count);
}

#[test]
fn an_old_version_that_cannot_save_or_persist_is_left_serving() {
    for faults in [
        CounterFaults {
            fail_save: true,
            ..CounterFaults::default()
        },
        CounterFaults {
            fail_persist: true,
            ..CounterFaults::default()
        },
    ] {
        let book = Book::new();
        let first = Plugin::new(Counter::new("v1", 1, &book).with_faults(faults.clone()))
            .ready(&())
            .expect("prepares");
        let slot = Slot::new(first);
        let count = load_up(&slot, 5);
        let err = quiesced(&slot, next("v2", 1, &book)).expect_err("old side fails");
        let hook = err.fault().hook_failure().map(|f| f.hook);
        assert!(matches!(hook, Some(Hook::Save | Hook::Persist)), "{hook:?}");
        assert_old_intact(&slot, &book, count);
    }
}

struct Veto;
impl Listener for Veto {
    fn name(&self) -> &str {
        "change-freeze"
    }
    fn on_prepare(&self, proposal: &Proposal<'_>) -> Result<(), BoxError> {
        Err(format!("no reloads of {} during the freeze", proposal.plugin).into())
    }
}

#[test]
fn a_veto_leaves_the_old_version_and_reports_who() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 4);
    let id = slot.listen(Veto);
    let err = slot
        .prepare(next("v2", 1, &book), &(), ReloadOptions::quiesced(LONG))
        .expect_err("vetoed");
    match err.fault() {
        ReloadFault::Vetoed { listener, cause } => {
            assert_eq!(listener, "change-freeze");
            assert!(cause.to_string().contains("freeze"));
        }
        other => panic!("expected a veto, got {other}"),
    }
    assert_eq!(book.saves(), 0, "a vetoed reload touches nothing");
    assert_old_intact(&slot, &book, count);
    assert_eq!(slot.stats().vetoed, 1);
    assert!(slot.unlisten(id));
    assert_next_reload_works(&slot, &book, count);
}

#[test]
fn a_drain_timeout_rolls_back_and_the_waiting_calls_proceed_on_the_old_version() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 6);
    let held = slot.enter().expect("serving");
    let waiter_done = AtomicBool::new(false);
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            // Wait until the gate is closed, then call: this call waits.
            while !matches!(slot.try_enter(), Err(TryEnterError::Quiescing)) {
                thread::yield_now();
            }
            let lease = slot.enter().expect("proceeds after the roll back");
            waiter_done.store(true, Ordering::SeqCst);
            (lease.label().to_owned(), lease.generation())
        });
        let err = slot
            .prepare(
                next("v2", 1, &book),
                &(),
                ReloadOptions::quiesced(Duration::from_millis(200)),
            )
            .and_then(|p| p.commit())
            .expect_err("a lease is held");
        match err.fault() {
            ReloadFault::DrainTimeout {
                generation,
                in_flight,
                waited,
            } => {
                assert_eq!((*generation, *in_flight), (1, 1));
                assert!(*waited >= Duration::from_millis(200));
            }
            other => panic!("expected a drain timeout, got {other}"),
        }
        assert_eq!(book.saves(), 0, "nothing saved: the drain never finished");
        assert_eq!(waiter.join().expect("waiter"), ("v1".to_owned(), 1));
    });
    assert!(waiter_done.load(Ordering::SeqCst));
    assert_eq!(held.count(), count, "the held lease still works");
    drop(held);
    assert_old_intact(&slot, &book, count);
    assert_next_reload_works(&slot, &book, count);
}

#[test]
fn calls_at_the_gate_proceed_on_the_new_version() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    load_up(&slot, 2);
    let held = slot.enter().expect("serving");
    thread::scope(|s| {
        let reloader = s.spawn(|| {
            quiesced(&slot, next("v2", 1, &book))
                .map(|c| c.generation)
                .map_err(|e| e.to_string())
        });
        while !matches!(slot.try_enter(), Err(TryEnterError::Quiescing)) {
            thread::yield_now();
        }
        let caller = s.spawn(|| slot.call(|c| (c.label().to_owned(), c.inc())));
        // The caller is parked at the gate until the held lease goes.
        thread::sleep(Duration::from_millis(20));
        assert!(!caller.is_finished(), "a call passed a closed gate");
        let in_flight = held.count();
        drop(held);
        assert_eq!(reloader.join().expect("reloader"), Ok(2));
        let (label, count) = caller.join().expect("caller").expect("served");
        assert_eq!((label.as_str(), count), ("v2", in_flight + 1));
    });
}

#[test]
fn async_callers_wait_at_the_gate_without_blocking() {
    use std::future::Future;
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let held = slot.enter().expect("serving");
    let woken = Arc::new(AtomicU64::new(0));
    struct Count(Arc<AtomicU64>);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    thread::scope(|s| {
        let reloader = s.spawn(|| {
            quiesced(&slot, next("v2", 1, &book))
                .map(|c| c.generation)
                .is_ok()
        });
        while !matches!(slot.try_enter(), Err(TryEnterError::Quiescing)) {
            thread::yield_now();
        }
        let waker = Waker::from(Arc::new(Count(Arc::clone(&woken))));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(slot.enter_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "gated");
        drop(held);
        assert!(reloader.join().expect("reloader"));
        assert!(
            woken.load(Ordering::SeqCst) >= 1,
            "the gate's opening woke the task"
        );
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(lease)) => assert_eq!(lease.label(), "v2"),
            other => panic!("expected a lease on v2, got {:?}", other.map(|r| r.is_ok())),
        }
    });
}

#[test]
fn typed_index_schemas_are_checked_on_the_real_persisted_records() {
    let book = Book::new();
    // Empty index: schema 2 reads it (an empty value proves nothing).
    let slot = slot_with(&book, 1);
    let v2 = Plugin::new(Counter::next("v2", 1, &book).with_index_schema(2));
    let committed = quiesced(&slot, v2).expect("an empty index is compatible");
    committed.old.wait().expect("finalizes");

    // Real records that schema 2 cannot read: a hard error, nothing lost.
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 3);
    let v2 = Plugin::new(Counter::next("v2", 1, &book).with_index_schema(2));
    let err = quiesced(&slot, v2).expect_err("non-numeric records");
    let failure = err.fault().hook_failure().expect("check_compat failed");
    assert_eq!(failure.hook, Hook::CheckCompat);
    assert!(failure.to_string().contains("numeric"), "{failure}");
    assert_eq!(book.resource("v2", "idx"), None, "refused before open");
    assert_old_intact(&slot, &book, count);
}

#[test]
fn bad_state_bytes_get_typed_errors_and_lose_nothing() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 12);
    let good = slot.snapshot().expect("saves").expect("has state");
    let mut corrupt = good.clone();
    *corrupt.last_mut().expect("payload") ^= 0x40;
    let newer = SavedState::new(7, vec![1, 2, 3]).encode();
    type Expect = fn(&ReloadFault) -> bool;
    let cases: [(Vec<u8>, Expect); 4] = [
        (corrupt, |f| {
            matches!(f, ReloadFault::Envelope(EnvelopeError::Checksum { .. }))
        }),
        (good[..10].to_vec(), |f| {
            matches!(f, ReloadFault::Envelope(EnvelopeError::Truncated { .. }))
        }),
        (b"not an envelope at all".to_vec(), |f| {
            matches!(f, ReloadFault::Envelope(EnvelopeError::BadMagic { .. }))
        }),
        (newer, |f| {
            matches!(
                f,
                ReloadFault::Envelope(EnvelopeError::UnknownSchema { found: 7, known: 1 })
            )
        }),
    ];
    for (bytes, expected) in cases {
        let err = slot
            .prepare(
                next("v2", 1, &book),
                &(),
                ReloadOptions::quiesced(LONG).restore_from(bytes.clone()),
            )
            .and_then(|p| p.commit())
            .expect_err("bad bytes");
        assert!(expected(err.fault()), "unexpected: {}", err.fault());
        assert_eq!(
            err.salvage().state.as_deref(),
            Some(&bytes[..]),
            "handed back"
        );
        assert_old_intact(&slot, &book, count);
    }
    // A migration step that overshoots is refused too.
    let overshoot = Plugin::new(Counter::next("v3", 3, &book).with_faults(CounterFaults {
        migrate_to: Some(9),
        ..CounterFaults::default()
    }));
    let err = quiesced(&slot, overshoot).expect_err("overshoots");
    assert!(matches!(
        err.fault(),
        ReloadFault::Migration {
            from: 1,
            to: 9,
            target: 3
        }
    ));
    assert_old_intact(&slot, &book, count);
    // And the good snapshot restores.
    let committed = slot
        .prepare(
            next("v2", 1, &book),
            &(),
            ReloadOptions::quiesced(LONG).restore_from(good),
        )
        .and_then(|p| p.commit())
        .expect("a good envelope restores");
    assert_eq!(committed.transfer.state, Some((1, 1)));
    assert_eq!(slot.enter().expect("serving").count(), count);
}

#[test]
fn one_reload_at_a_time_with_a_typed_error_or_a_wait() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let first = slot
        .prepare(next("v2", 1, &book), &(), ReloadOptions::immediate())
        .expect("prepares");
    let second = slot
        .prepare(next("v3", 1, &book), &(), ReloadOptions::immediate())
        .expect_err("busy");
    assert!(matches!(second.fault(), ReloadFault::InProgress));
    let refused = slot
        .replace(
            Plugin::new(Counter::next("v4", 1, &book))
                .ready(&())
                .expect("prepares"),
        )
        .expect_err("replace respects the turn");
    assert!(matches!(
        refused.fault(),
        reload_core::ReloadFault::InProgress
    ));
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            slot.prepare(
                next("v3", 1, &book),
                &(),
                ReloadOptions::immediate().wait_for_turn(LONG),
            )
            .map(|p| p.from_generation())
            .map_err(|e| e.to_string())
        });
        thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "waits for the turn");
        let committed = first.commit().expect("commits");
        assert_eq!(committed.generation, 2);
        // The waiting prepare ran after the commit, from generation 2; its
        // `Prepared` was dropped in the thread, which aborted it.
        assert_eq!(waiter.join().expect("waiter"), Ok(2));
    });
    assert_eq!(slot.enter().expect("serving").label(), "v2");
    assert_eq!(slot.stats().aborted, 1);
}

#[test]
fn abort_and_drop_leave_the_old_version_exactly_as_it_was() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 8);
    let prepared = slot
        .prepare(next("v2", 1, &book), &(), ReloadOptions::immediate())
        .expect("prepares");
    assert_eq!(book.resource("v2", "idx"), Some(ResourceState::Open));
    let v2 = prepared.abort();
    assert_eq!(v2.get().label(), "v2");
    assert_eq!(book.resource("v2", "idx"), Some(ResourceState::Closed));
    assert_eq!(book.resource("v2", "cdc"), Some(ResourceState::Closed));
    drop(
        slot.prepare(next("v3", 1, &book), &(), ReloadOptions::immediate())
            .expect("prepares"),
    );
    assert_eq!(book.resource("v3", "idx"), Some(ResourceState::Closed));
    assert_old_intact(&slot, &book, count);
    assert_eq!(slot.stats().aborted, 2);
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);
impl Listener for Recorder {
    fn on_event(&self, event: &Event<'_>) {
        let line = match event {
            Event::Prepared { mode, .. } => format!("prepared {mode}"),
            Event::Committed {
                from_generation,
                to_generation,
                ..
            } => format!("committed {from_generation}->{to_generation}"),
            Event::Failed {
                rolled_back, error, ..
            } => format!("failed rolled_back={rolled_back}: {error}"),
            Event::Drained { generation, .. } => format!("drained {generation}"),
            Event::Removed {
                generation,
                shutdown_ok,
                ..
            } => format!("removed {generation} ok={shutdown_ok}"),
            Event::Aborted { to_version, .. } => format!("aborted {to_version}"),
            Event::Vetoed { listener, .. } => format!("vetoed by {listener}"),
            Event::ListenerPanicked { listener, .. } => format!("listener panicked: {listener}"),
            _ => "other".to_owned(),
        };
        self.0.lock().expect("recorder").push(line);
    }
}

struct Panicky;
impl Listener for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn on_event(&self, event: &Event<'_>) {
        if matches!(event, Event::Committed { .. }) {
            panic!("listener bug");
        }
    }
}

#[test]
fn listeners_see_every_step_and_a_panicking_one_is_contained() {
    let prior = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let recorder = Recorder::default();
    slot.listen(recorder.clone());
    slot.listen(Panicky);
    let committed =
        quiesced(&slot, next("v2", 1, &book)).expect("commits despite the panicking listener");
    committed.old.wait().expect("finalizes");
    let err = quiesced(
        &slot,
        faulty(
            "v3",
            &book,
            CounterFaults {
                fail_restore: true,
                ..CounterFaults::default()
            },
        ),
    )
    .expect_err("restore fails");
    drop(err);
    drop(slot.prepare(next("v4", 1, &book), &(), ReloadOptions::immediate()));
    std::panic::set_hook(prior);
    let log = recorder.0.lock().expect("recorder").clone();
    insta::assert_debug_snapshot!(log);
    let stats = slot.stats();
    assert_eq!(stats.listener_panics, 1, "one contained panic");
    assert_eq!((stats.reloads, stats.rolled_back, stats.aborted), (1, 1, 1));
}

#[test]
fn snapshot_of_a_stateless_plugin_is_none() {
    struct Plain;
    impl reload_core::Hooks for Plain {
        type Context = ();
    }
    impl Stateful for Plain {}
    let slot = Slot::new(Plugin::new(Plain).ready(&()).expect("prepares"));
    assert_eq!(slot.snapshot().expect("open"), None);
    // A plugin with no state still gets the transaction.
    let committed = quiesced(&slot, Plugin::new(Plain)).expect("commits");
    assert_eq!(committed.transfer, reload_core::Transfer::default());
    assert_eq!(committed.generation, 2);
    let _ = Mode::Immediate;
}

/// A plugin that declares whatever resources it is given (and holds none):
/// for the checks made on declarations alone.
struct Declares(Vec<reload_core::Resource>);

impl reload_core::Hooks for Declares {
    type Context = ();
    fn name(&self) -> &str {
        "declares"
    }
}

impl Stateful for Declares {
    fn resources(&self) -> Vec<reload_core::Resource> {
        self.0.clone()
    }
}

/// Resources whose declarations cannot match are refused at `prepare`, in
/// either mode: before any gate closes, while the old version serves on
/// untouched. (The transfer checks again; this is the early refusal.)
#[test]
fn mismatched_declarations_are_refused_at_prepare() {
    use reload_core::Resource;
    let slot = Slot::new(
        Plugin::new(Declares(vec![Resource::index("idx", 1)]))
            .ready(&())
            .expect("prepares"),
    );
    let mismatches = [
        (
            vec![Resource::stream("idx", 1)],
            "a index in the old version but a stream in the new",
        ),
        (vec![], "the new one does not declare it"),
    ];
    for (declared, why) in mismatches {
        for options in [ReloadOptions::immediate(), ReloadOptions::quiesced(LONG)] {
            let refused = slot
                .prepare(Plugin::new(Declares(declared.clone())), &(), options)
                .expect_err("refused at prepare");
            assert!(
                matches!(refused.fault(), ReloadFault::Resource { resource, reason }
                    if resource == "idx" && reason.contains(why)),
                "{}",
                refused.fault()
            );
        }
    }
    assert_eq!(slot.generation(), Some(1));
    assert!(slot.try_enter().is_ok(), "no gate was closed");
}

/// A reload of a closed slot is refused before the new version's `link`:
/// it comes back `Loaded`, untouched, and nothing of it ran.
#[test]
fn a_reload_of_a_closed_slot_is_refused_before_link() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    slot.close().expect("was open").wait().expect("shuts down");
    for options in [ReloadOptions::immediate(), ReloadOptions::quiesced(LONG)] {
        let refused = slot
            .prepare(next("v2", 1, &book), &(), options)
            .expect_err("closed");
        assert!(matches!(refused.fault(), ReloadFault::Closed));
        assert!(
            matches!(refused.plugin(), reload_core::Returned::Loaded(_)),
            "handed back as it was given"
        );
    }
    assert_eq!(book.resource("v2", "idx"), None, "v2 never opened anything");
}

/// On `Failed` (the gate has reopened and the old version serves again),
/// records the new version's resources as they are at that moment.
struct AtFailure {
    book: Arc<Book>,
    label: &'static str,
    seen: Arc<Mutex<Vec<Option<ResourceState>>>>,
}

impl Listener for AtFailure {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Failed { rolled_back, .. } = event {
            assert!(rolled_back, "a quiesced failure after the gate closed");
            let mut seen = self.seen.lock().expect("seen");
            seen.push(self.book.resource(self.label, "idx"));
            seen.push(self.book.resource(self.label, "cdc"));
        }
    }
}

/// Two-phase, in order: by the time a failed quiesced reload reopens the
/// gate and the old version serves again, the new version has already
/// closed what it had opened (not later, while it is handed back).
#[test]
fn the_new_version_holds_nothing_once_the_old_one_serves_again() {
    let book = Book::new();
    let slot = slot_with(&book, 1);
    let count = load_up(&slot, 3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    slot.listen(AtFailure {
        book: Arc::clone(&book),
        label: "v2",
        seen: Arc::clone(&seen),
    });
    let faults = CounterFaults {
        fail_resume: true,
        ..CounterFaults::default()
    };
    quiesced(&slot, faulty("v2", &book, faults)).expect_err("resume fails");
    // The index was opened, then closed before the gate reopened; the
    // stream's resume failed, so it was never open.
    assert_eq!(
        *seen.lock().expect("seen"),
        [Some(ResourceState::Closed), None]
    );
    assert_old_intact(&slot, &book, count);
}

/// A group commit whose second member fails at commit: the first member,
/// which had carried its state and opened its resources, has closed them by
/// the time its failure is reported (its gate reopened); the members after
/// the failed one never carried anything; every failure says it rolled
/// back.
#[test]
fn a_failed_group_commit_stops_at_the_failure_and_closes_before_reopening() {
    let books: Vec<Arc<Book>> = (0..3).map(|_| Book::new()).collect();
    let slots: Vec<Slot<Counter>> = books.iter().map(|b| slot_with(b, 1)).collect();
    for slot in &slots {
        load_up(slot, 2);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    slots[0].listen(AtFailure {
        book: Arc::clone(&books[0]),
        label: "g2",
        seen: Arc::clone(&seen),
    });
    let before: Vec<(u64, u64)> = books.iter().map(|b| (b.saves(), b.restores())).collect();
    let fails = CounterFaults {
        fail_restore: true,
        ..CounterFaults::default()
    };
    let prepared: Vec<_> = slots
        .iter()
        .zip(&books)
        .enumerate()
        .map(|(i, (slot, book))| {
            let plugin = if i == 1 {
                faulty("g2", book, fails.clone())
            } else {
                next("g2", 1, book)
            };
            slot.prepare(plugin, &(), ReloadOptions::quiesced(LONG))
                .expect("prepares")
        })
        .collect();
    let failed = reload_core::Prepared::commit_together(prepared).expect_err("b's restore fails");
    assert_eq!(failed.failed, 1);
    assert!(failed.rolled_back, "gates had closed and reopened");
    assert!(matches!(
        failed.members[2].fault(),
        ReloadFault::GroupAborted { .. }
    ));
    // a carried (saved and restored) and b tried; c never carried.
    let after: Vec<(u64, u64)> = books.iter().map(|b| (b.saves(), b.restores())).collect();
    assert_eq!(
        after[2], before[2],
        "nothing carried after the failed member"
    );
    assert_eq!(after[0].0, before[0].0 + 1);
    assert_eq!(
        *seen.lock().expect("seen"),
        [Some(ResourceState::Closed), Some(ResourceState::Closed)],
        "a's new version had opened both and closed them before its gate reopened"
    );
    for slot in &slots {
        assert_eq!(slot.generation(), Some(1));
        assert_eq!(slot.enter().expect("serving").count(), 2);
    }
}

/// The hooks one transfer of a counter calls, each exactly once: the old
/// version saves, persists its index and checkpoints its stream; the new
/// one restores, checks the persisted index, opens it and resumes.
fn one_transfer() -> std::collections::BTreeMap<&'static str, u64> {
    [
        ("check_compat", 1),
        ("checkpoint", 1),
        ("open", 1),
        ("persist", 1),
        ("restore", 1),
        ("resume", 1),
        ("save", 1),
    ]
    .into_iter()
    .collect()
}

/// Group commits, in both modes and a single immediate commit: each
/// member's state transfer and resource handoff run exactly once per
/// reload (a commit that carried an immediate member again, or dropped
/// what it carried, would be seen here), and every member's count and
/// index arrive.
#[test]
fn every_commit_carries_each_member_exactly_once() {
    for mode in ["group-immediate", "group-quiesced", "single-immediate"] {
        let size = if mode.starts_with("group") { 3 } else { 1 };
        let books: Vec<Arc<Book>> = (0..size).map(|_| Book::new()).collect();
        let slots: Vec<Slot<Counter>> = books.iter().map(|b| slot_with(b, 1)).collect();
        let counts: Vec<u64> = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| load_up(slot, 3 + i as u64))
            .collect();
        for book in &books {
            assert!(book.hook_calls().is_empty(), "{mode}: nothing carried yet");
        }
        let options = if mode == "group-quiesced" {
            ReloadOptions::quiesced(LONG)
        } else {
            ReloadOptions::immediate()
        };
        let prepared: Vec<_> = slots
            .iter()
            .zip(&books)
            .map(|(slot, book)| {
                slot.prepare(next("v2", 1, book), &(), options.clone())
                    .expect("prepares")
            })
            .collect();
        let committed = if mode == "single-immediate" {
            prepared
                .into_iter()
                .map(|p| p.commit().expect("commits"))
                .collect::<Vec<_>>()
        } else {
            reload_core::Prepared::commit_together(prepared).expect("commits together")
        };
        for (i, c) in committed.into_iter().enumerate() {
            assert_eq!(c.generation, 2, "{mode}");
            assert_eq!(
                c.transfer.state,
                Some((1, 1)),
                "{mode}: the state's schemas"
            );
            assert_eq!(
                c.transfer.resources.len(),
                2,
                "{mode}: idx and cdc handed over"
            );
            c.old.wait().expect("finalizes");
            assert_eq!(books[i].hook_calls(), one_transfer(), "{mode}: member {i}");
            assert_eq!((books[i].saves(), books[i].restores()), (1, 1));
            let lease = slots[i].enter().expect("serving");
            assert_eq!(lease.label(), "v2");
            assert_eq!(lease.count(), counts[i], "{mode}: member {i}'s count");
            assert_eq!(lease.position(), counts[i], "{mode}: member {i}'s stream");
            assert_eq!(lease.records().len(), 2, "{mode}: member {i}'s index");
            assert_eq!(books[i].resource("v2", "idx"), Some(ResourceState::Open));
            assert_eq!(books[i].resource("v1", "idx"), Some(ResourceState::Closed));
        }
    }
}
