//! Random sequences of stateful reloads of a [`Counter`] slot, checked after
//! every step against a reference model: the count, the stream position,
//! the index, the serving version and the open resources must be exactly
//! what the operations so far imply, whatever failed.
//!
//! Single-threaded on purpose: the concurrency of the quiesce is the model's
//! and loom's job (`model/src/quiesce.rs`, `tests/loom_quiesce.rs`); this
//! checks the transaction's bookkeeping on every path, including every
//! injected failure, at a rate a fuzzer can use.
//!
//! ```
//! use harness::stateful::{run, SFault, SOp};
//!
//! let report = run(&[
//!     SOp::Inc { times: 3 },
//!     SOp::Reload { quiesced: true, schema3: true, fault: SFault::Open },
//!     SOp::Reload { quiesced: true, schema3: true, fault: SFault::None },
//! ])
//! .expect("matches the reference");
//! assert_eq!((report.committed, report.failed), (1, 1));
//! ```

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use reload_core::testing::{Book, Counter, CounterFaults, ResourceState};
use reload_core::{EnvelopeError, Plugin, ReloadFault, ReloadOptions, SavedState, Slot};

/// What a new version gets wrong.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SFault {
    /// Nothing.
    None,
    /// `restore` fails.
    Restore,
    /// `restore` panics.
    RestorePanics,
    /// `open` fails.
    Open,
    /// `resume` fails.
    Resume,
    /// Its index schema cannot read non-numeric records.
    IndexSchema,
    /// A migration step overshoots.
    Migration,
}

/// One host action.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SOp {
    /// Increment `times` (0-7) times.
    Inc {
        /// How many.
        times: u8,
    },
    /// Add an index record (numeric or not).
    Put {
        /// A numeric value (schema 2 can read it).
        numeric: bool,
    },
    /// Prepare and commit a reload.
    Reload {
        /// Quiesced (else immediate).
        quiesced: bool,
        /// The new version's state schema is 3 (else it keeps the current one).
        schema3: bool,
        /// Its fault.
        fault: SFault,
    },
    /// Prepare a reload, increment once while prepared, then abort (or
    /// commit, in immediate mode, which does not carry that increment).
    PrepareThenInc {
        /// Commit (else abort).
        commit: bool,
    },
    /// Snapshot the state, then reload from the snapshot, flipping one bit
    /// of it first if `corrupt`.
    RestoreFrom {
        /// Flip a bit of the snapshot.
        corrupt: bool,
    },
}

/// Bytes one operation is decoded from (see [`crate::decode_op`]).
pub const SOP_BYTES: usize = 4;

/// Decodes one operation from its own chunk.
pub fn decode_op(chunk: &[u8; SOP_BYTES]) -> SOp {
    SOp::arbitrary(&mut Unstructured::new(chunk)).unwrap_or(SOp::Inc { times: 0 })
}

/// Decodes up to [`crate::MAX_OPS`] operations from fuzzer bytes.
pub fn decode(bytes: &[u8]) -> Vec<SOp> {
    bytes
        .chunks(SOP_BYTES)
        .take(crate::MAX_OPS)
        .map(|c| {
            let mut chunk = [0; SOP_BYTES];
            chunk[..c.len()].copy_from_slice(c);
            decode_op(&chunk)
        })
        .collect()
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Reloads committed.
    pub committed: u64,
    /// Reloads that failed (the old version served on).
    pub failed: u64,
    /// Increments made.
    pub increments: u64,
}

/// The reference: what the serving version must hold.
#[derive(Clone, Debug)]
struct Expected {
    label: String,
    schema: u32,
    count: u64,
    position: u64,
    records: Vec<(String, String)>,
    generation: u64,
}

/// Runs `ops` against a fresh slot; `Err` names the first step at which the
/// slot and the reference disagree.
pub fn run(ops: &[SOp]) -> Result<Report, String> {
    let book = Book::new();
    let first = Plugin::new(Counter::new("v1", 1, &book))
        .ready(&())
        .map_err(|e| e.to_string())?;
    let slot = Slot::new(first);
    let mut want = Expected {
        label: "v1".to_owned(),
        schema: 1,
        count: 0,
        position: 0,
        records: Vec::new(),
        generation: 1,
    };
    let mut report = Report::default();
    for (step, op) in ops.iter().enumerate() {
        // Each step's new version gets a label of its own: v2, v3, ...
        let label = format!("v{}", step + 2);
        apply(&slot, &book, *op, &label, &mut want, &mut report)
            .map_err(|e| format!("step {step} ({op:?}): {e}"))?;
        check(&slot, &book, &want).map_err(|e| format!("after step {step} ({op:?}): {e}"))?;
    }
    Ok(report)
}

fn inc(slot: &Slot<Counter>, want: &mut Expected, report: &mut Report) -> Result<(), String> {
    slot.call(Counter::inc).map_err(|e| e.to_string())?;
    want.count += 1;
    want.position += 1;
    report.increments += 1;
    Ok(())
}

fn version(label: &str, schema: u32, book: &std::sync::Arc<Book>, fault: SFault) -> Counter {
    let c = Counter::next(label, schema, book);
    let faults = CounterFaults {
        fail_restore: fault == SFault::Restore,
        panic_restore: fault == SFault::RestorePanics,
        fail_open: fault == SFault::Open,
        fail_resume: fault == SFault::Resume,
        migrate_to: (fault == SFault::Migration).then_some(99),
        ..CounterFaults::default()
    };
    let c = c.with_faults(faults);
    if fault == SFault::IndexSchema {
        c.with_index_schema(2)
    } else {
        c
    }
}

fn options(quiesced: bool) -> ReloadOptions {
    if quiesced {
        ReloadOptions::quiesced(Duration::from_secs(60))
    } else {
        ReloadOptions::immediate()
    }
}

fn apply(
    slot: &Slot<Counter>,
    book: &std::sync::Arc<Book>,
    op: SOp,
    label: &str,
    want: &mut Expected,
    report: &mut Report,
) -> Result<(), String> {
    match op {
        SOp::Inc { times } => {
            for _ in 0..times % 8 {
                inc(slot, want, report)?;
            }
        }
        SOp::Put { numeric } => {
            let value = if numeric { "7" } else { "seven" };
            let key = format!("k{}", want.records.len());
            slot.enter().map_err(|e| e.to_string())?.put(&key, value);
            want.records.push((key, value.to_owned()));
        }
        SOp::Reload {
            quiesced,
            schema3,
            fault,
        } => {
            let schema = if schema3 { 3 } else { want.schema };
            let next = Plugin::new(version(label, schema, book, fault));
            let result = slot
                .prepare(next, &(), options(quiesced))
                .and_then(|p| p.commit());
            // Which faults must fail: every new-side fault, except a
            // migration fault when no migration runs, and an index schema
            // that only bites non-numeric records.
            let migrates = schema > want.schema;
            let must_fail = match fault {
                SFault::None => false,
                SFault::Migration => migrates,
                SFault::IndexSchema => want.records.iter().any(|(_, v)| v.parse::<i64>().is_err()),
                _ => true,
            };
            match (result, must_fail) {
                (Ok(committed), false) => {
                    committed.old.wait().map_err(|e| e.to_string())?;
                    want.label = label.to_owned();
                    want.schema = schema;
                    want.generation = committed.generation;
                    report.committed += 1;
                }
                (Err(e), true) => {
                    let salvage = e.salvage();
                    // Nothing lost: whatever was taken is in the error.
                    if fault != SFault::IndexSchema && fault != SFault::Migration {
                        let state = salvage.state.as_deref().ok_or("no state in salvage")?;
                        let saved = SavedState::decode(state).map_err(|e| e.to_string())?;
                        if saved.schema != want.schema {
                            return Err(format!("salvaged schema {}", saved.schema));
                        }
                    }
                    if salvage.checkpoints != [("cdc".to_owned(), want.position)] {
                        return Err(format!("salvaged checkpoints {:?}", salvage.checkpoints));
                    }
                    // The new version's resources are closed (or never opened).
                    for r in ["idx", "cdc"] {
                        if book.resource(label, r) == Some(ResourceState::Open) {
                            return Err(format!("failed version's {r} left open"));
                        }
                    }
                    report.failed += 1;
                }
                (Ok(_), true) => return Err(format!("{fault:?} should have failed")),
                (Err(e), false) => return Err(format!("unexpected failure: {e}")),
            }
        }
        SOp::PrepareThenInc { commit } => {
            let prepared = slot
                .prepare(
                    Plugin::new(Counter::next(label, want.schema, book)),
                    &(),
                    ReloadOptions::immediate(),
                )
                .map_err(|e| e.to_string())?;
            let snapshot = (want.count, want.position);
            inc(slot, want, report)?;
            if commit {
                let committed = prepared.commit().map_err(|e| e.to_string())?;
                let removed = committed.old.wait().map_err(|e| e.to_string())?;
                if removed.get().count() != want.count {
                    return Err("the old version lost its own update".to_owned());
                }
                // Immediate mode carries the snapshot taken at prepare.
                (want.count, want.position) = snapshot;
                want.label = label.to_owned();
                want.generation = committed.generation;
                report.committed += 1;
            } else {
                drop(prepared.abort());
                if book.resource(label, "idx") != Some(ResourceState::Closed) {
                    return Err("abort left the new index open".to_owned());
                }
            }
        }
        SOp::RestoreFrom { corrupt } => {
            let mut bytes = slot
                .snapshot()
                .map_err(|e| e.to_string())?
                .ok_or("a counter has state")?;
            if corrupt {
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
            }
            let result = slot
                .prepare(
                    Plugin::new(Counter::next(label, want.schema, book)),
                    &(),
                    ReloadOptions::quiesced(Duration::from_secs(60)).restore_from(bytes),
                )
                .and_then(|p| p.commit());
            match (result, corrupt) {
                (Ok(committed), false) => {
                    committed.old.wait().map_err(|e| e.to_string())?;
                    want.label = label.to_owned();
                    want.generation = committed.generation;
                    report.committed += 1;
                }
                (Err(e), true)
                    if matches!(
                        e.fault(),
                        ReloadFault::Envelope(EnvelopeError::Checksum { .. })
                    ) =>
                {
                    report.failed += 1;
                }
                (Err(e), _) => return Err(format!("unexpected: {e}")),
                (Ok(_), true) => return Err("a corrupt envelope was accepted".to_owned()),
            }
        }
    }
    Ok(())
}

fn check(slot: &Slot<Counter>, book: &Book, want: &Expected) -> Result<(), String> {
    let lease = slot.enter().map_err(|e| e.to_string())?;
    let got = (
        lease.label().to_owned(),
        lease.generation(),
        lease.count(),
        lease.position(),
        lease.records(),
    );
    let expected = (
        want.label.clone(),
        want.generation,
        want.count,
        want.position,
        want.records.clone(),
    );
    if got != expected {
        return Err(format!("slot has {got:?}, reference {expected:?}"));
    }
    for r in ["idx", "cdc"] {
        if book.resource(&want.label, r) != Some(ResourceState::Open) {
            return Err(format!("serving version's {r} is not open"));
        }
    }
    drop(lease);
    let stats = slot.stats();
    if stats.in_flight != 0 || stats.draining_now != 0 {
        return Err(format!("leftovers: {stats:?}"));
    }
    Ok(())
}

/// The envelope decoder's contract, on any bytes: it never panics; what it
/// accepts re-encodes to exactly the same bytes (one encoding per state);
/// and a reload restoring from those bytes either succeeds or fails with a
/// typed error, leaving the old version serving with its state.
pub fn check_envelope(bytes: &[u8]) -> Result<(), String> {
    let decoded = SavedState::decode(bytes);
    if let Ok(state) = &decoded {
        if state.encode() != bytes {
            return Err(format!("{state:?} does not re-encode to its input"));
        }
    }
    let book = Book::new();
    let first = Plugin::new(Counter::new("v1", 3, &book))
        .ready(&())
        .map_err(|e| e.to_string())?;
    let slot = Slot::new(first);
    slot.call(Counter::inc).map_err(|e| e.to_string())?;
    let result = slot
        .prepare(
            Plugin::new(Counter::next("v2", 3, &book)),
            &(),
            ReloadOptions::quiesced(Duration::from_secs(60)).restore_from(bytes.to_vec()),
        )
        .and_then(|p| p.commit());
    let serving = slot.enter().map_err(|e| e.to_string())?;
    match (result, decoded) {
        (Ok(_), Ok(_)) => {
            if serving.label() != "v2" {
                return Err("committed but v2 is not serving".to_owned());
            }
        }
        (Ok(_), Err(e)) => return Err(format!("restored from bytes the decoder rejects: {e}")),
        (Err(e), _) => {
            if (serving.label(), serving.count()) != ("v1", 1) {
                return Err(format!("after {e}, the old version lost its state"));
            }
            if e.salvage().state.as_deref() != Some(bytes) {
                return Err("the bytes were not handed back".to_owned());
            }
        }
    }
    Ok(())
}
