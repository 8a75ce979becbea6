//! Shared by the `loom_*.rs` tests: a plugin whose state loom watches, and
//! the model builder with the bounds CI uses.
#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use reload_core::{Hooks, Initialized, Plugin, Slot};

/// A plugin that loom checks from the inside.
///
/// `call` reads `state` through loom's `UnsafeCell`, and `shutdown` writes
/// it. Unless every call happens-before the shutdown, loom reports a
/// causality violation: that is S1 checked under the memory model, not
/// only by a flag. The flag is checked too, for a readable failure.
pub struct Witness {
    pub id: u64,
    state: UnsafeCell<u64>,
    shut: AtomicBool,
    pub tally: Arc<Tally>,
}

// SAFETY: `state` is read only by calls under a lease and written only by
// `shutdown` after the drain; that ordering is what the tests check, and
// loom's cell reports any access that violates it.
unsafe impl Sync for Witness {}

/// Counts, per test execution, of what happened to the witnesses.
#[derive(Default)]
pub struct Tally {
    pub shutdowns: AtomicUsize,
    pub drops: AtomicUsize,
    pub calls: AtomicUsize,
}

impl Tally {
    pub fn new() -> Arc<Tally> {
        Arc::new(Tally::default())
    }
    pub fn shutdowns(&self) -> usize {
        self.shutdowns.load(Ordering::SeqCst)
    }
    pub fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }
}

impl Witness {
    pub fn call(&self) -> u64 {
        assert!(
            !self.shut.load(Ordering::SeqCst),
            "S1 violated: version {} called after its shutdown began",
            self.id
        );
        self.tally.calls.fetch_add(1, Ordering::SeqCst);
        // SAFETY: loom tracks this access; a read concurrent with the
        // shutdown's write fails the test.
        let state = self.state.with(|p| unsafe { *p });
        assert_eq!(state, self.id, "read a shut-down version's state");
        self.id
    }
}

impl Hooks for Witness {
    type Context = ();
    fn name(&self) -> &str {
        "witness"
    }
    fn shutdown(&mut self) -> Result<(), reload_core::BoxError> {
        self.shut.store(true, Ordering::SeqCst);
        // SAFETY: loom tracks this access (see `call`).
        self.state.with_mut(|p| unsafe { *p = u64::MAX });
        self.tally.shutdowns.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// No state and no resources: a witness reloads with `prepare` too.
impl reload_core::Stateful for Witness {}

impl Drop for Witness {
    fn drop(&mut self) {
        self.tally.drops.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn witness(id: u64, tally: &Arc<Tally>) -> Witness {
    Witness {
        id,
        state: UnsafeCell::new(id),
        shut: AtomicBool::new(false),
        tally: Arc::clone(tally),
    }
}

pub fn ready(id: u64, tally: &Arc<Tally>) -> Plugin<Witness, Initialized> {
    match Plugin::new(witness(id, tally)).ready(&()) {
        Ok(ready) => ready,
        Err(e) => panic!("a witness always prepares: {e}"),
    }
}

pub fn slot(id: u64, tally: &Arc<Tally>) -> Arc<Slot<Witness>> {
    Arc::new(Slot::new(ready(id, tally)))
}

/// A thread that makes one call through `slot` (racing whatever the test
/// does next) and returns the version that served it.
pub fn spawn_caller(
    slot: &Arc<Slot<Witness>>,
) -> loom::thread::JoinHandle<Result<u64, reload_core::SlotClosed>> {
    let slot = Arc::clone(slot);
    loom::thread::spawn(move || slot.enter().map(|lease| lease.call()))
}

/// Runs `f` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`
/// (CI sets 2) or 2 by default, and a generous branch limit.
pub fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    builder(None).check(f);
}

/// The builder both entry points use: the bound from the environment (2
/// if unset), at most `cap`, and a generous branch limit.
fn builder(cap: Option<usize>) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    let bound = builder.preemption_bound.unwrap_or(2);
    builder.preemption_bound = Some(cap.map_or(bound, |cap| bound.min(cap)));
    builder.max_branches = builder.max_branches.max(100_000);
    builder
}

/// [`model`] at a preemption bound of exactly `bound`, above CI's, for a
/// test whose race needs more preemptions than CI's bound and whose path is
/// short enough to afford them; each caller says why next to the call.
pub fn model_at<F: Fn() + Sync + Send + 'static>(bound: usize, f: F) {
    let mut builder = builder(None);
    builder.preemption_bound = Some(bound);
    builder.check(f);
}

/// [`model`] at a preemption bound of at most `bound`, for a test whose
/// code path is long (the registry's) and whose race needs fewer
/// preemptions than CI's bound; each caller says why next to the call.
pub fn model_bounded<F: Fn() + Sync + Send + 'static>(bound: usize, f: F) {
    builder(Some(bound)).check(f);
}

/// Which of two outcomes a test's loom executions reached, counted outside
/// loom's model (plain std atomics, kept across executions), so a test that
/// asserts on both branches fails if one was never explored rather than
/// passing vacuously.
pub struct Explored([std::sync::atomic::AtomicUsize; 2]);

impl Explored {
    pub const fn new() -> Self {
        Explored([
            std::sync::atomic::AtomicUsize::new(0),
            std::sync::atomic::AtomicUsize::new(0),
        ])
    }

    /// Records that an execution reached the first outcome (`true`) or the
    /// second.
    pub fn saw(&self, first: bool) {
        self.0[usize::from(!first)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// After `model`: both outcomes were reached.
    pub fn assert_both(&self, names: [&str; 2]) {
        let [a, b] = [0, 1].map(|i| self.0[i].load(std::sync::atomic::Ordering::Relaxed));
        assert!(
            a > 0 && b > 0,
            "both outcomes explored: {a} executions {}, {b} {}",
            names[0],
            names[1]
        );
    }
}

/// Lets a lease move to a loom thread (loom 0.7 has no scoped threads).
///
/// # Safety
///
/// The slot the lease borrows must outlive the returned lease: join the
/// thread that receives it before the slot is dropped.
pub unsafe fn detach(
    lease: reload_core::Lease<'_, Witness>,
) -> reload_core::Lease<'static, Witness> {
    // SAFETY: only the lifetime changes; the caller keeps the slot alive.
    unsafe {
        std::mem::transmute::<reload_core::Lease<'_, Witness>, reload_core::Lease<'static, Witness>>(
            lease,
        )
    }
}

/// A stateful plugin that loom checks from the inside: each call adds one
/// to `count` through loom's `UnsafeCell`, `save` reads it and `restore`
/// writes it. A call not ordered before the save (an update the quiesce
/// could lose) or after the restore is a data race loom reports.
pub struct Tallied {
    pub id: u64,
    count: UnsafeCell<u64>,
    shut: AtomicBool,
    pub tally: Arc<Tally>,
}

// SAFETY: `count` is written by calls under a lease and by `restore`, read
// by `save`; the quiesce must order them, and loom's cell reports any
// access that it does not.
unsafe impl Sync for Tallied {}

impl Tallied {
    pub fn new(id: u64, tally: &Arc<Tally>) -> Plugin<Tallied> {
        Plugin::new(Tallied {
            id,
            count: UnsafeCell::new(0),
            shut: AtomicBool::new(false),
            tally: Arc::clone(tally),
        })
    }

    /// One update; returns which version took it.
    pub fn inc(&self) -> u64 {
        assert!(
            !self.shut.load(Ordering::SeqCst),
            "S1 violated: version {} called after its shutdown began",
            self.id
        );
        // SAFETY: loom tracks this access; two unordered calls, or a call
        // unordered with save/restore, fail the test.
        self.count.with_mut(|p| unsafe { *p += 1 });
        self.tally.calls.fetch_add(1, Ordering::SeqCst);
        self.id
    }

    pub fn count(&self) -> u64 {
        // SAFETY: loom tracks this access.
        self.count.with(|p| unsafe { *p })
    }
}

impl Hooks for Tallied {
    type Context = ();
    fn name(&self) -> &str {
        "tallied"
    }
    fn shutdown(&mut self) -> Result<(), reload_core::BoxError> {
        self.shut.store(true, Ordering::SeqCst);
        self.tally.shutdowns.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl reload_core::Stateful for Tallied {
    fn schema(&self) -> u32 {
        1
    }
    fn save(&self) -> Result<Option<Vec<u8>>, reload_core::BoxError> {
        Ok(Some(self.count().to_le_bytes().to_vec()))
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), reload_core::BoxError> {
        let bytes: [u8; 8] = state.try_into()?;
        // SAFETY: loom tracks this access.
        self.count
            .with_mut(|p| unsafe { *p = u64::from_le_bytes(bytes) });
        Ok(())
    }
}

impl Drop for Tallied {
    fn drop(&mut self) {
        self.tally.drops.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn tallied_slot(tally: &Arc<Tally>) -> Arc<Slot<Tallied>> {
    match Tallied::new(1, tally).ready(&()) {
        Ok(ready) => Arc::new(Slot::new(ready)),
        Err(e) => panic!("a tallied plugin always prepares: {e}"),
    }
}
