//! Every duration and instant a host hands the core, at both ends: zero
//! (or an instant already past) means "do not wait", and the largest
//! (`Duration::MAX`, an instant a century away) means "wait as long as it
//! takes"; none overflows, none panics, none is silently another value.
//! Checked on drain waits, quiesced commits, turns (the slot's and the
//! registry's) and gated enters.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reload_core::registry::{Registry, RegistryError};
use reload_core::testing::{Book, Counter, Part, PartFaults, Parts};
use reload_core::verify::Unchecked;
use reload_core::{Plugin, ReloadFault, ReloadOptions, Slot, TryEnterError};

/// An instant a century away: far, yet one the clock can represent.
fn century() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

fn slot(book: &Arc<Book>) -> Slot<Counter> {
    Slot::new(
        Plugin::new(Counter::new("v1", 1, book))
            .ready(&())
            .expect("ready"),
    )
}

fn next(label: &str, book: &Arc<Book>) -> Plugin<Counter> {
    Plugin::new(Counter::next(label, 1, book))
}

/// A quiesced commit with no drain deadline: its generation.
fn commit_without_deadline(slot: &Slot<Counter>, next: Plugin<Counter>) -> Result<u64, String> {
    slot.prepare(next, &(), ReloadOptions::quiesced(Duration::MAX))
        .expect("prepares")
        .commit()
        .map(|c| c.generation)
        .map_err(|e| e.to_string())
}

/// Waits (bounded) until `cond` holds: for a thread to reach its wait.
fn until(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn drain_waits_at_zero_and_at_the_largest() {
    let book = Book::new();
    let slot = slot(&book);
    let held = slot.enter_owned().expect("serving");
    let old = slot
        .replace(next("v2", &book).ready(&()).expect("ready"))
        .expect("replaced");
    // Zero, and an instant already past: a look, not a wait.
    let old = match old.wait_timeout(Duration::ZERO) {
        Err(reload_core::DrainError::TimedOut(old)) => old,
        other => panic!("{other:?}"),
    };
    let old = match old.wait_deadline(Instant::now() - Duration::from_millis(1)) {
        Err(reload_core::DrainError::TimedOut(old)) => old,
        other => panic!("{other:?}"),
    };
    assert!(!old.wait_drained(Some(Instant::now())));
    // The largest: waits until the lease is given back on another thread.
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        drop(held);
    });
    let removed = old.wait_timeout(Duration::MAX).expect("drained");
    assert_eq!(removed.report().generation, 1);
    releaser.join().expect("releaser");
    // And a century: the same.
    let held = slot.enter_owned().expect("serving");
    let old = slot
        .replace(next("v3", &book).ready(&()).expect("ready"))
        .expect("replaced");
    let releaser = thread::spawn(move || drop(held));
    old.wait_deadline(century()).expect("drained");
    releaser.join().expect("releaser");
}

#[test]
fn quiesce_timeouts_at_zero_and_at_the_largest() {
    let book = Book::new();
    let slot = slot(&book);
    let held = slot.enter_owned().expect("serving");
    // Zero: the drain is not waited for; the commit rolls back, the old
    // version serves on.
    let refused = slot
        .prepare(
            next("v2", &book),
            &(),
            ReloadOptions::quiesced(Duration::ZERO),
        )
        .expect("prepares")
        .commit()
        .expect_err("the drain cannot complete in no time");
    assert!(
        matches!(refused.fault(), ReloadFault::DrainTimeout { .. }),
        "{}",
        refused.fault()
    );
    assert_eq!(slot.enter().expect("serving").label(), "v1");
    // The largest: the commit waits for the lease, however long.
    thread::scope(|s| {
        let committing = s.spawn(|| commit_without_deadline(&slot, next("v3", &book)));
        until("the commit closes the gate", || {
            matches!(slot.try_enter(), Err(TryEnterError::Quiescing))
        });
        drop(held);
        assert_eq!(committing.join().expect("commit"), Ok(2));
    });
    assert_eq!(slot.enter().expect("serving").label(), "v3");
}

#[test]
fn gated_enters_at_an_instant_past_and_a_century_away() {
    let book = Book::new();
    let slot = slot(&book);
    let held = slot.enter_owned().expect("serving");
    thread::scope(|s| {
        let committing = s.spawn(|| commit_without_deadline(&slot, next("v2", &book)));
        until("the commit closes the gate", || {
            matches!(slot.try_enter(), Err(TryEnterError::Quiescing))
        });
        // Past: no wait at the closed gate.
        assert!(matches!(
            slot.enter_deadline(Instant::now() - Duration::from_millis(1)),
            Err(TryEnterError::Quiescing)
        ));
        assert!(matches!(
            slot.enter_owned_deadline(Instant::now()),
            Err(TryEnterError::Quiescing)
        ));
        // A century: waits at the gate, and enters the new version.
        let entering = s.spawn(|| {
            slot.enter_deadline(century())
                .map(|l| l.label().to_owned())
                .map_err(|e| e.to_string())
        });
        thread::sleep(Duration::from_millis(20));
        drop(held);
        assert_eq!(committing.join().expect("commit"), Ok(2));
        assert_eq!(entering.join().expect("enter"), Ok("v2".to_owned()));
    });
}

#[test]
fn turn_waits_at_zero_and_at_the_largest() {
    let book = Book::new();
    let slot = slot(&book);
    let first = slot
        .prepare(next("v2", &book), &(), ReloadOptions::immediate())
        .expect("holds the turn");
    let busy = slot
        .prepare(
            next("v3", &book),
            &(),
            ReloadOptions::immediate().wait_for_turn(Duration::ZERO),
        )
        .expect_err("no wait");
    assert!(matches!(busy.fault(), ReloadFault::InProgress));
    thread::scope(|s| {
        let waiting = s.spawn(|| {
            slot.prepare(
                next("v3", &book),
                &(),
                ReloadOptions::immediate().wait_for_turn(Duration::MAX),
            )
            .and_then(|p| p.commit())
            .map(|c| c.generation)
            .map_err(|e| e.to_string())
        });
        thread::sleep(Duration::from_millis(20));
        assert!(!waiting.is_finished(), "waits for the turn");
        first.commit().expect("commits");
        assert_eq!(waiting.join().expect("waiter"), Ok(3));
    });
}

fn parts(turn: Duration) -> (Arc<Parts>, Arc<Registry<Part>>) {
    let book = Arc::new(Parts::default());
    let registry = Registry::new(Unchecked).with_turn_timeout(turn);
    registry
        .register(
            Part::new("a", "1.0.0", &book)
                .package(&[])
                .expect("manifest"),
            &(),
        )
        .expect("registers");
    (book, Arc::new(registry))
}

#[test]
fn registry_turn_timeouts_at_zero_and_at_the_largest() {
    for (turn, waits) in [(Duration::ZERO, false), (Duration::MAX, true)] {
        let (book, registry) = parts(turn);
        // The first reload holds a's turn inside its new version's `init`
        // until the test lets it go.
        let (faults, gate) = PartFaults::held();
        let slow = Part::new("a", "1.1.0", &book)
            .with_faults(faults)
            .package(&[])
            .expect("manifest");
        thread::scope(|s| {
            let first = s.spawn(|| {
                registry
                    .reload(vec![slow], &(), ReloadOptions::immediate())
                    .map(|_| ())
                    .map_err(|r| r.error.to_string())
            });
            gate.entered();
            let second = s.spawn(|| {
                registry
                    .reload(
                        vec![Part::new("a", "1.2.0", &book)
                            .package(&[])
                            .expect("manifest")],
                        &(),
                        ReloadOptions::immediate(),
                    )
                    .map(|_| ())
                    .map_err(|r| Box::new(r.error))
            });
            if waits {
                thread::sleep(Duration::from_millis(20));
                assert!(!second.is_finished(), "waits for the turn");
                gate.release();
                assert_eq!(first.join().expect("first"), Ok(()));
                assert!(second.join().expect("second").is_ok());
                assert_eq!(registry.list()[0].version.to_string(), "1.2.0");
            } else {
                match second.join().expect("second").map_err(|e| *e) {
                    Err(RegistryError::Busy { name, waited }) => {
                        assert_eq!((name.as_str(), waited), ("a", Duration::ZERO));
                    }
                    other => panic!("{other:?}"),
                }
                gate.release();
                assert_eq!(first.join().expect("first"), Ok(()));
                assert_eq!(registry.list()[0].version.to_string(), "1.1.0");
            }
        });
    }
}
