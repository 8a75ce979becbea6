//! Volume: worker threads call through a slot while the main thread
//! replaces the plugin hundreds of times, draining each old version in one
//! of four ways. Some leases are handed to a relay thread and released
//! there. At the end every count is exact:
//!
//! - calls made == calls the workers saw served == calls the probes counted,
//!   per version;
//! - no call ran on a version after its shutdown began;
//! - every version was shut down exactly once and dropped exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use reload_core::testing::{Faults, Ledger, Probe, Record};
use reload_core::{DrainError, Plugin, Slot};

const WORKERS: u64 = 3;
const CALLS_PER_WORKER: u64 = 120_000;
const REPLACES: u64 = 400;
/// Every RELAY_EVERY-th call's lease is released on the relay thread.
const RELAY_EVERY: u64 = 97;

#[test]
fn calls_during_hundreds_of_replaces_are_all_served_exactly_once() {
    let total_calls = WORKERS * CALLS_PER_WORKER;
    let ledger = Ledger::new();
    let probe = |id: u64| {
        // Every tenth version is slow, so drains overlap live calls.
        let faults = Faults {
            call_delay: (id % 10 == 5).then_some(Duration::from_micros(20)),
            ..Faults::default()
        };
        Plugin::new(Probe::with_faults(id, &ledger, faults))
            .ready(&())
            .expect("fault-free probes prepare")
    };
    let slot = Slot::new(probe(0));
    let progress = AtomicU64::new(0);

    let seen: BTreeMap<u64, u64> = thread::scope(|s| {
        let (to_relay, relayed) = mpsc::channel::<reload_core::Lease<'_, Probe>>();
        let relay = s.spawn(move || {
            let mut seen = BTreeMap::new();
            for lease in relayed {
                *seen.entry(lease.call()).or_insert(0) += 1;
            }
            seen
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let to_relay = to_relay.clone();
                let (slot, progress) = (&slot, &progress);
                s.spawn(move || {
                    let mut seen = BTreeMap::new();
                    for i in 0..CALLS_PER_WORKER {
                        let lease = slot.enter().expect("the slot is never closed here");
                        if i % RELAY_EVERY == 0 {
                            to_relay
                                .send(lease)
                                .expect("the relay outlives the workers");
                        } else {
                            *seen.entry(lease.call()).or_insert(0u64) += 1;
                        }
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    seen
                })
            })
            .collect();
        drop(to_relay);

        // Spread the replaces over the run, draining each old version in
        // one of four ways (the fourth leaves it to the slot).
        for id in 1..=REPLACES {
            let due = total_calls * id / (REPLACES + 1);
            while progress.load(Ordering::Relaxed) < due {
                thread::yield_now();
            }
            let old = slot.replace(probe(id)).expect("replace never fails here");
            match id % 4 {
                0 => drop(old.wait().expect("shutdown ok")),
                1 => {
                    let mut old = old;
                    loop {
                        match old.wait_timeout(Duration::from_micros(50)) {
                            Ok(removed) => break drop(removed),
                            Err(DrainError::TimedOut(again)) => old = again,
                            Err(DrainError::Shutdown(e)) => panic!("{e}"),
                        }
                    }
                }
                2 => {
                    thread::scope(|s| {
                        s.spawn(move || drop(old.wait().expect("shutdown ok")));
                    });
                }
                _ => drop(old),
            }
        }

        let mut seen = relay.join().expect("relay thread");
        for worker in workers {
            for (id, n) in worker.join().expect("worker thread") {
                *seen.entry(id).or_insert(0) += n;
            }
        }
        seen
    });

    let stats = slot.stats();
    assert_eq!(stats.reloads, REPLACES);
    assert_eq!(stats.failed_reloads, 0);
    drop(slot);

    // Calls: every call made was served, once, by the version that says so.
    assert_eq!(seen.values().sum::<u64>(), total_calls);
    let records = ledger.records();
    assert_eq!(records.len() as u64, REPLACES + 1);
    for (id, record) in &records {
        let calls = seen.get(id).copied().unwrap_or(0);
        assert_eq!(
            *record,
            Record {
                shutdowns: 1,
                drops: 1,
                calls
            },
            "version {id}"
        );
    }
    assert_eq!(ledger.calls_after_shutdown(), 0);
    // The orphaned quarter was finalized by the slot, the rest by waits.
    assert_eq!(stats.drains_completed + stats.draining_now as u64, REPLACES);
}
