//! The reload protocol of `reload-core`, one atomic step per action.
//!
//! Roles: workers (callers: `enter`, call, release), one reloader (prepare,
//! cut over, close) and one drainer per version cut over from (the thread
//! waiting on its `Plugin<P, Draining>`: sum, register, park, finalize,
//! retire). Each action is one atomic step of `reload-core/src/drain.rs`;
//! the step labels (E3, R5, D4, ...) are those of `docs/drain.md`, which puts
//! the code beside this model.
//!
//! The checker explores interleavings under sequential consistency, so the
//! `SeqCst` fences of the code are implicit here. Whether the orderings the
//! code uses deliver that consistency is loom's job (`reload-core/tests/
//! loom_*.rs`); whether the algorithm is right given it is this model's.
//!
//! With [`Fences::Asymmetric`] the callers' fences are compiler fences
//! (the call path of `reload-core` where `membarrier` exists): a worker's
//! writes to its counts go through a store buffer (x86-TSO: FIFO, its own
//! reads see them, `WorkerFlush` makes the oldest visible), and only the
//! drainer's heavy barrier (`membarrier`, before each first sum, where
//! `is_drained` issues it) or a locked instruction of the worker itself
//! (the wait list's lock) empties a buffer. Workers do not pin, and a
//! retired version's memory is not freed (version shells are type-stable:
//! `docs/drain.md`, "Memory"; their reuse is loom's `loom_shell_reuse`).
//! [`Fences::AsymmetricWithoutBarrier`] is the same with a barrier that
//! orders only the drainer itself: the checker refutes it.

use lifecycle::Phase;
use stateright::{Model, Property};

/// A version index: 0 is the first version installed, then one per reload.
pub type V = u8;
/// A worker index, which is also the index of the shard it counts on.
pub type W = u8;
/// A drainer index (its place in `ReloadState::drainers`, in order of
/// creation), which is also its bit in a version's waiter set.
pub type D = u8;

/// Which fences the two sides of the store-buffering pairs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fences {
    /// `fence(SeqCst)` on both sides: sequential consistency (implicit).
    Symmetric,
    /// Callers: a compiler fence (writes buffered). Drainer: a heavy
    /// barrier that empties every worker's buffer.
    Asymmetric,
    /// Broken: callers as in `Asymmetric`, but the drainer's barrier is an
    /// ordinary fence, which orders only its own thread.
    AsymmetricWithoutBarrier,
}

/// The system: how many callers, calls, reloads, and which failure paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadSys {
    /// Calling threads.
    pub workers: u8,
    /// Calls each worker makes.
    pub calls_per_worker: u8,
    /// Reloads the reloader performs (including one that fails, if any).
    pub reloads: u8,
    /// A bounded drain may time out (once per drain) and be waited again.
    pub drain_timeouts: bool,
    /// The first reload's `init` fails before the cut-over.
    pub init_failure: bool,
    /// After its reloads, the reloader closes the slot.
    pub close: bool,
    /// Each version cut over from has a second waiter: an observer (a
    /// thread in `wait_drained`, or a task in `until_drained`) that waits
    /// for the drain without finalizing. The owner finalizes only after it
    /// is done (it borrows the owner's handle).
    pub observers: bool,
    /// The broken wait list of #14: a registration replaces the waiter
    /// registered before it instead of joining it.
    pub single_waiter: bool,
    /// The fence pair (see the module docs).
    pub fences: Fences,
    /// Broken (asymmetric fences only): the releaser's sum in
    /// `wake_if_drained` runs with no full fence before it, so two
    /// releasers can each miss the other's buffered count-out.
    pub release_sum_unfenced: bool,
}

impl ReloadSys {
    /// The configuration `cargo test` checks by default.
    pub fn small() -> Self {
        ReloadSys {
            workers: 2,
            calls_per_worker: 1,
            reloads: 2,
            drain_timeouts: false,
            init_failure: false,
            close: false,
            observers: false,
            single_waiter: false,
            fences: Fences::Symmetric,
            release_sum_unfenced: false,
        }
    }

    /// Broken: asymmetric fences whose heavy barrier orders only the
    /// drainer (1 worker, 1 reload: the smallest refutation).
    pub fn without_heavy_barrier() -> Self {
        ReloadSys {
            fences: Fences::AsymmetricWithoutBarrier,
            workers: 1,
            reloads: 1,
            ..ReloadSys::small()
        }
    }

    /// Broken: asymmetric fences, and a release that finds its version
    /// draining sums with no full fence (2 workers, 1 reload).
    pub fn unfenced_release_sum() -> Self {
        ReloadSys {
            fences: Fences::Asymmetric,
            release_sum_unfenced: true,
            reloads: 1,
            ..ReloadSys::small()
        }
    }

    fn asymmetric(&self) -> bool {
        self.fences != Fences::Symmetric
    }
}

/// One version as the slot's memory holds it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// Its lifecycle phase.
    pub phase: Phase,
    /// In-flight counts, one shard per worker.
    pub inflight: Vec<u8>,
    /// The drainers registered as its waiters (D3), one bit per drainer.
    pub waiters: u8,
    /// Times its shutdown hook began.
    pub shutdowns: u8,
    /// `defer_destroy` was called (F4).
    pub retired: bool,
    /// Workers that were pinned when it was retired and have not unpinned since.
    pub retire_wait: Vec<bool>,
    /// The collector freed its memory.
    pub freed: bool,
    /// Retired to the slot's type-stable shells (asymmetric fences): its
    /// memory is never freed while the slot lives.
    pub kept: bool,
}

/// Where a release (or an `enter`'s undo) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Release {
    /// R2: decrement our shard.
    Decrement,
    /// R4: load the phase.
    CheckPhase,
    /// R5: read shard `shard` of the sum, `acc` so far.
    Sum {
        /// Next shard to read.
        shard: u8,
        /// Sum of the shards read so far.
        acc: u8,
    },
    /// R6: take the waiter under the lock and wake it.
    Wake,
}

/// What follows a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Then {
    /// R7: unpin; the call is complete.
    Finish,
    /// E9: the undo of an `enter` that raced a cut-over; retry on `current`
    /// as re-loaded at E7 (`None` if the slot closed).
    Retry(Option<V>),
}

/// A worker's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pc {
    /// Between calls.
    Idle,
    /// E2 done: pinned.
    Pinned,
    /// E3 done: loaded `current`.
    Loaded(V),
    /// E5 done: incremented its shard of `v`.
    Incremented(V),
    /// E8: holds a lease on `v`; the call has not run yet.
    Holding(V),
    /// The call ran; the lease is still held.
    Called(V),
    /// Releasing a lease on `v` (or undoing an increment).
    Releasing(V, Release, Then),
    /// No calls left (or the slot was closed).
    Done,
}

/// A worker: program counter, calls left, whether it is pinned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Worker {
    /// Where it is.
    pub pc: Pc,
    /// Calls still to make.
    pub calls_left: u8,
    /// Pinned in the epoch collector.
    pub pinned: bool,
    /// Its writes to its shard not yet visible to other threads, oldest
    /// first: the version and whether it is an increment (asymmetric
    /// fences only; always empty otherwise).
    pub buffer: Vec<(V, bool)>,
}

/// A drainer's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrainPc {
    /// The heavy barrier that `is_drained` issues before its sum
    /// (asymmetric fences only).
    Barrier,
    /// D1-D2: the first sum, reading shard `shard`.
    FirstSum {
        /// Next shard to read.
        shard: u8,
        /// Sum so far.
        acc: u8,
    },
    /// D3: register as the waiter.
    Register,
    /// D4: sum after registering.
    Sum {
        /// Next shard to read.
        shard: u8,
        /// Sum so far.
        acc: u8,
    },
    /// D6: parked until a token arrives (or the deadline passes).
    Parked,
    /// D4/D5: deregister, then report drained or timed out.
    Deregister {
        /// The sum was zero.
        drained: bool,
    },
    /// L2: the wait timed out and handed the version back.
    TimedOut,
    /// F1-F3: run shutdown, move to Removed.
    Finalize,
    /// F4: `defer_destroy`.
    Retire,
    /// Finished.
    Done,
}

/// A thread waiting on one draining version: its owner, or an observer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Drainer {
    /// The version it drains.
    pub v: V,
    /// An observer waits and ends there; the owner finalizes.
    pub observer: bool,
    /// Where it is.
    pub pc: DrainPc,
    /// An unpark token is pending for this thread.
    pub token: bool,
    /// Its last park ended at the deadline.
    pub expired: bool,
    /// Timeouts it may still take.
    pub timeouts_left: u8,
    /// It has timed out at least once and waited again.
    pub waited_again: bool,
}

/// The whole state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReloadState {
    /// The slot's current version; `None` once closed.
    pub current: Option<V>,
    /// Every version created, by index.
    pub versions: Vec<Version>,
    /// The callers.
    pub workers: Vec<Worker>,
    /// One per version cut over from (two with observers).
    pub drainers: Vec<Drainer>,
    /// Reloads attempted so far.
    pub reloads_done: u8,
    /// The reloader closed the slot.
    pub closed: bool,
    /// Witness: a call ran on a version whose shutdown had begun.
    pub call_after_shutdown: bool,
    /// Witness: a step touched a version's memory after it was freed.
    pub use_after_free: bool,
    /// Witness: `enter` returned Closed on an open slot.
    pub refused_while_open: bool,
    /// Witness: a phase change that is not an edge of the lifecycle table.
    pub illegal_phase: bool,
}

/// The atomic steps, named by role and step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// E2: pin.
    WorkerPin(W),
    /// E3-E4: load `current` (null: refused, the slot is closed).
    WorkerLoad(W),
    /// E5: increment this worker's shard of the loaded version.
    WorkerIncrement(W),
    /// E6-E8 (the fence is implicit): re-load `current`; equal: lease
    /// granted and unpin; changed: undo (E9).
    WorkerRecheck(W),
    /// The call runs on the leased version.
    WorkerCall(W),
    /// R1: pin to release.
    WorkerReleasePin(W),
    /// R2: decrement.
    WorkerDecrement(W),
    /// R3-R4 (the fence is implicit): load the phase.
    WorkerCheckPhase(W),
    /// R5: read one shard of the sum.
    WorkerSum(W),
    /// R6: take the waiter under the lock and unpark it.
    WorkerWake(W),
    /// `link` and `init` of the next version (C0; may fail before cut-over).
    ReloaderPrepare,
    /// C2-C3: swap `current` and move the old version to Draining.
    ReloaderSwap,
    /// `close`: swap in null.
    ReloaderClose,
    /// D1-D2 / D4: read one shard of the sum.
    DrainerSum(D),
    /// D3: register as the waiter under the lock.
    DrainerRegister(D),
    /// D6: the park returns because a release unparked us.
    DrainerWake(D),
    /// D6: the park returns at the deadline.
    DrainerTimeout(D),
    /// D4/D5: deregister under the lock.
    DrainerDeregister(D),
    /// L2: the caller waits again on the version handed back.
    DrainerWaitAgain(D),
    /// F1-F3: shutdown runs, the version becomes Removed.
    DrainerFinalize(D),
    /// F4: `defer_destroy` in the collector.
    DrainerRetire(D),
    /// A worker's oldest buffered write becomes visible.
    WorkerFlush(W),
    /// The heavy barrier before a first sum.
    DrainerBarrier(D),
}

impl ReloadState {
    fn set_phase(&mut self, v: V, to: Phase) {
        let version = &mut self.versions[usize::from(v)];
        // The lifecycle table decides; the model keeps no copy of it.
        if !version.phase.can_transition_to(to) {
            self.illegal_phase = true;
        }
        version.phase = to;
    }

    /// A worker step that reads or writes `v`'s memory.
    fn touch(&mut self, v: V) -> &mut Version {
        if self.versions[usize::from(v)].freed {
            self.use_after_free = true;
        }
        &mut self.versions[usize::from(v)]
    }

    fn unpin(&mut self, w: W) {
        self.workers[usize::from(w)].pinned = false;
        for version in &mut self.versions {
            if version.retired && !version.freed && !version.kept {
                version.retire_wait[usize::from(w)] = false;
                version.freed = version.retire_wait.iter().all(|pinned| !pinned);
            }
        }
    }

    fn drainer_mut(&mut self, d: D) -> &mut Drainer {
        &mut self.drainers[usize::from(d)]
    }

    fn new_version(&mut self, shards: usize) -> V {
        self.versions.push(Version {
            phase: Phase::Loaded,
            inflight: vec![0; shards],
            waiters: 0,
            shutdowns: 0,
            retired: false,
            retire_wait: vec![false; shards],
            freed: false,
            kept: false,
        });
        (self.versions.len() - 1) as V
    }

    /// The leases held, and the increments made, on `v`.
    pub fn in_flight(&self, v: V) -> u8 {
        self.versions[usize::from(v)].inflight.iter().sum()
    }
}

impl ReloadSys {
    /// Where a drainer's look (`is_drained`) starts: at the heavy barrier
    /// if there is one to issue, else at the sum.
    fn first_look(&self) -> DrainPc {
        if self.asymmetric() {
            DrainPc::Barrier
        } else {
            DrainPc::FirstSum { shard: 0, acc: 0 }
        }
    }

    /// A worker's write to its own shard of `v`: visible at once with
    /// symmetric fences, buffered with asymmetric ones.
    fn count(&self, state: &mut ReloadState, w: W, v: V, increment: bool) {
        if self.asymmetric() {
            state.workers[usize::from(w)].buffer.push((v, increment));
        } else {
            apply(state, w, v, increment);
        }
    }

    fn cut_over(&self, state: &mut ReloadState, next: Option<V>) {
        let Some(old) = state.current else { return };
        state.current = next;
        state.set_phase(old, Phase::Draining);
        for observer in [false, true] {
            if observer && !self.observers {
                continue;
            }
            state.drainers.push(Drainer {
                v: old,
                observer,
                pc: self.first_look(),
                token: false,
                expired: false,
                timeouts_left: u8::from(self.drain_timeouts && !observer),
                waited_again: false,
            });
        }
    }

    fn release_step(&self, state: &mut ReloadState, w: W, v: V, step: Release, then: Then) {
        let shards = self.workers;
        let next = match step {
            Release::Decrement => {
                self.count(state, w, v, false);
                Some(Release::CheckPhase)
            }
            Release::CheckPhase => {
                if state.touch(v).phase == Phase::Active {
                    None
                } else {
                    // `wake_if_drained` fences fully before it sums: two
                    // releasers are a store-buffering pair of their own.
                    if !self.release_sum_unfenced {
                        flush_all(state, w);
                    }
                    Some(Release::Sum { shard: 0, acc: 0 })
                }
            }
            Release::Sum { shard, acc } => {
                // Its own shard as this worker sees it: memory, plus its
                // buffered writes (store forwarding).
                let own: i16 = if shard == w {
                    state.workers[usize::from(w)]
                        .buffer
                        .iter()
                        .filter(|(bv, _)| *bv == v)
                        .map(|(_, inc)| if *inc { 1 } else { -1 })
                        .sum()
                } else {
                    0
                };
                let seen = i16::from(state.touch(v).inflight[usize::from(shard)]) + own;
                let acc = acc + u8::try_from(seen).unwrap_or(0);
                if shard + 1 < shards {
                    Some(Release::Sum {
                        shard: shard + 1,
                        acc,
                    })
                } else if acc == 0 {
                    Some(Release::Wake)
                } else {
                    None
                }
            }
            Release::Wake => {
                // The lock is a locked instruction: this worker's buffered
                // writes are visible before it takes the waiters.
                flush_all(state, w);
                // Every registered waiter, taken under the lock.
                let waiters = std::mem::take(&mut state.touch(v).waiters);
                for (d, drainer) in state.drainers.iter_mut().enumerate() {
                    if waiters & (1 << d) != 0 {
                        drainer.token = true;
                    }
                }
                None
            }
        };
        let worker = &mut state.workers[usize::from(w)];
        match (next, then) {
            (Some(step), _) => worker.pc = Pc::Releasing(v, step, then),
            (None, Then::Finish) => {
                worker.calls_left -= 1;
                worker.pc = if worker.calls_left == 0 {
                    Pc::Done
                } else {
                    Pc::Idle
                };
                state.unpin(w);
            }
            (None, Then::Retry(Some(now))) => worker.pc = Pc::Loaded(now),
            (None, Then::Retry(None)) => self.refuse(state, w),
        }
    }

    /// E4: `current` was null.
    fn refuse(&self, state: &mut ReloadState, w: W) {
        if !state.closed {
            state.refused_while_open = true;
        }
        state.workers[usize::from(w)].pc = Pc::Done;
        state.unpin(w);
    }

    fn sum_step(&self, state: &mut ReloadState, d: D, shard: u8, acc: u8, first: bool) {
        let v = state.drainers[usize::from(d)].v;
        let acc = acc + state.versions[usize::from(v)].inflight[usize::from(shard)];
        let shards = self.workers;
        let drainer = state.drainer_mut(d);
        drainer.pc = match (shard + 1 < shards, first) {
            (true, true) => DrainPc::FirstSum {
                shard: shard + 1,
                acc,
            },
            (true, false) => DrainPc::Sum {
                shard: shard + 1,
                acc,
            },
            (false, true) if acc == 0 => drained(drainer),
            (false, true) => DrainPc::Register,
            (false, false) if acc == 0 => DrainPc::Deregister { drained: true },
            (false, false) if drainer.expired => DrainPc::Deregister { drained: false },
            (false, false) => DrainPc::Parked,
        };
    }
}

impl Model for ReloadSys {
    type State = ReloadState;
    type Action = Action;

    fn init_states(&self) -> Vec<ReloadState> {
        let shards = usize::from(self.workers);
        let mut state = ReloadState {
            current: None,
            versions: Vec::new(),
            workers: (0..self.workers)
                .map(|_| Worker {
                    pc: if self.calls_per_worker == 0 {
                        Pc::Done
                    } else {
                        Pc::Idle
                    },
                    calls_left: self.calls_per_worker,
                    pinned: false,
                    buffer: Vec::new(),
                })
                .collect(),
            drainers: Vec::new(),
            reloads_done: 0,
            closed: false,
            call_after_shutdown: false,
            use_after_free: false,
            refused_while_open: false,
            illegal_phase: false,
        };
        let first = state.new_version(shards);
        for phase in [Phase::Linked, Phase::Initialized, Phase::Active] {
            state.set_phase(first, phase);
        }
        state.current = Some(first);
        vec![state]
    }

    fn actions(&self, state: &ReloadState, actions: &mut Vec<Action>) {
        for (w, worker) in state.workers.iter().enumerate() {
            let w = w as W;
            if !worker.buffer.is_empty() {
                actions.push(Action::WorkerFlush(w));
            }
            actions.push(match worker.pc {
                // The asymmetric call path does not pin.
                Pc::Idle if self.asymmetric() => Action::WorkerLoad(w),
                Pc::Idle => Action::WorkerPin(w),
                Pc::Pinned => Action::WorkerLoad(w),
                Pc::Loaded(_) => Action::WorkerIncrement(w),
                Pc::Incremented(_) => Action::WorkerRecheck(w),
                Pc::Holding(_) => Action::WorkerCall(w),
                Pc::Called(_) => Action::WorkerReleasePin(w),
                Pc::Releasing(_, Release::Decrement, _) => Action::WorkerDecrement(w),
                Pc::Releasing(_, Release::CheckPhase, _) => Action::WorkerCheckPhase(w),
                Pc::Releasing(_, Release::Sum { .. }, _) => Action::WorkerSum(w),
                Pc::Releasing(_, Release::Wake, _) => Action::WorkerWake(w),
                Pc::Done => continue,
            });
        }
        // The reloader is one thread: prepare, swap, prepare, swap, ...,
        // close. A prepared version (the last one created, still
        // Initialized) is swapped in before anything else.
        if state.versions.last().map(|v| v.phase) == Some(Phase::Initialized) {
            actions.push(Action::ReloaderSwap);
        } else if !state.closed {
            if state.reloads_done < self.reloads {
                actions.push(Action::ReloaderPrepare);
            } else if self.close {
                actions.push(Action::ReloaderClose);
            }
        }
        for (i, d) in state.drainers.iter().enumerate() {
            let i = i as D;
            match d.pc {
                DrainPc::Barrier => actions.push(Action::DrainerBarrier(i)),
                DrainPc::FirstSum { .. } | DrainPc::Sum { .. } => {
                    actions.push(Action::DrainerSum(i))
                }
                DrainPc::Register => actions.push(Action::DrainerRegister(i)),
                DrainPc::Parked => {
                    if d.token {
                        actions.push(Action::DrainerWake(i));
                    }
                    if d.timeouts_left > 0 {
                        actions.push(Action::DrainerTimeout(i));
                    }
                }
                DrainPc::Deregister { .. } => actions.push(Action::DrainerDeregister(i)),
                DrainPc::TimedOut => actions.push(Action::DrainerWaitAgain(i)),
                // The owner finalizes once its observers are done with the
                // handle they borrow.
                DrainPc::Finalize => {
                    if !state
                        .drainers
                        .iter()
                        .any(|o| o.observer && o.v == d.v && o.pc != DrainPc::Done)
                    {
                        actions.push(Action::DrainerFinalize(i));
                    }
                }
                DrainPc::Retire => actions.push(Action::DrainerRetire(i)),
                DrainPc::Done => {}
            }
        }
    }

    fn next_state(&self, last: &ReloadState, action: Action) -> Option<ReloadState> {
        let mut s = last.clone();
        match action {
            Action::WorkerPin(w) => {
                let worker = &mut s.workers[usize::from(w)];
                worker.pinned = true;
                worker.pc = Pc::Pinned;
            }
            Action::WorkerLoad(w) => match s.current {
                Some(v) => s.workers[usize::from(w)].pc = Pc::Loaded(v),
                None => self.refuse(&mut s, w),
            },
            Action::WorkerIncrement(w) => {
                let Pc::Loaded(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                self.count(&mut s, w, v, true);
                s.workers[usize::from(w)].pc = Pc::Incremented(v);
            }
            Action::WorkerRecheck(w) => {
                let Pc::Incremented(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                if s.current == Some(v) {
                    s.workers[usize::from(w)].pc = Pc::Holding(v);
                    s.unpin(w);
                } else {
                    let now = s.current;
                    s.workers[usize::from(w)].pc =
                        Pc::Releasing(v, Release::Decrement, Then::Retry(now));
                }
            }
            Action::WorkerCall(w) => {
                let Pc::Holding(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                if s.versions[usize::from(v)].shutdowns > 0 || s.versions[usize::from(v)].freed {
                    s.call_after_shutdown = true;
                }
                s.workers[usize::from(w)].pc = Pc::Called(v);
            }
            Action::WorkerReleasePin(w) => {
                let Pc::Called(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                let worker = &mut s.workers[usize::from(w)];
                // A borrowed lease's release pins only with symmetric
                // fences (the asymmetric path relies on type-stable shells).
                worker.pinned = !self.asymmetric();
                worker.pc = Pc::Releasing(v, Release::Decrement, Then::Finish);
            }
            Action::WorkerDecrement(w)
            | Action::WorkerCheckPhase(w)
            | Action::WorkerSum(w)
            | Action::WorkerWake(w) => {
                let Pc::Releasing(v, step, then) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                self.release_step(&mut s, w, v, step, then);
            }
            Action::ReloaderPrepare => {
                let v = s.new_version(usize::from(self.workers));
                s.set_phase(v, Phase::Linked);
                s.reloads_done += 1;
                if self.init_failure && s.reloads_done == 1 {
                    // init failed: the version stays Linked and is handed
                    // back; the slot is untouched.
                } else {
                    s.set_phase(v, Phase::Initialized);
                }
            }
            Action::ReloaderSwap => {
                let next = (s.versions.len() - 1) as V;
                s.set_phase(next, Phase::Active);
                self.cut_over(&mut s, Some(next));
            }
            Action::ReloaderClose => {
                self.cut_over(&mut s, None);
                s.closed = true;
            }
            Action::DrainerSum(d) => match s.drainer_mut(d).pc {
                DrainPc::FirstSum { shard, acc } => self.sum_step(&mut s, d, shard, acc, true),
                DrainPc::Sum { shard, acc } => self.sum_step(&mut s, d, shard, acc, false),
                _ => return None,
            },
            Action::DrainerRegister(d) => {
                let v = s.drainers[usize::from(d)].v;
                let waiters = &mut s.versions[usize::from(v)].waiters;
                if self.single_waiter {
                    // Broken: the last to register is the only waiter.
                    *waiters = 1 << d;
                } else {
                    *waiters |= 1 << d;
                }
                s.drainer_mut(d).pc = DrainPc::Sum { shard: 0, acc: 0 };
            }
            Action::DrainerWake(d) => {
                let d = s.drainer_mut(d);
                d.token = false;
                d.expired = false;
                d.pc = DrainPc::Register;
            }
            Action::DrainerTimeout(d) => {
                let d = s.drainer_mut(d);
                d.timeouts_left -= 1;
                d.expired = true;
                d.pc = DrainPc::Register;
            }
            Action::DrainerDeregister(d) => {
                let v = s.drainers[usize::from(d)].v;
                // Takes out its own entry only.
                s.versions[usize::from(v)].waiters &= !(1 << d);
                let d = s.drainer_mut(d);
                let DrainPc::Deregister { drained: done } = d.pc else {
                    return None;
                };
                d.pc = if done { drained(d) } else { DrainPc::TimedOut };
            }
            Action::DrainerWaitAgain(d) => {
                let d = s.drainer_mut(d);
                d.expired = false;
                d.waited_again = true;
                d.pc = self.first_look();
            }
            Action::DrainerFinalize(d) => {
                let v = s.drainers[usize::from(d)].v;
                s.versions[usize::from(v)].shutdowns += 1;
                s.set_phase(v, Phase::Removed);
                s.drainer_mut(d).pc = DrainPc::Retire;
            }
            Action::DrainerRetire(d) => {
                let v = s.drainers[usize::from(d)].v;
                let pinned: Vec<bool> = s.workers.iter().map(|w| w.pinned).collect();
                let asymmetric = self.asymmetric();
                let version = &mut s.versions[usize::from(v)];
                version.retired = true;
                // Asymmetric: the shell goes back to the slot, not to the
                // collector; it is freed only with the slot.
                version.kept = asymmetric;
                version.freed = !asymmetric && pinned.iter().all(|p| !p);
                version.retire_wait = pinned;
                s.drainer_mut(d).pc = DrainPc::Done;
            }
            Action::WorkerFlush(w) => {
                let worker = &mut s.workers[usize::from(w)];
                if worker.buffer.is_empty() {
                    return None;
                }
                let (v, increment) = worker.buffer.remove(0);
                apply(&mut s, w, v, increment);
            }
            Action::DrainerBarrier(d) => {
                if self.fences == Fences::Asymmetric {
                    // membarrier: every worker executes a full fence.
                    for w in 0..self.workers {
                        flush_all(&mut s, w);
                    }
                }
                s.drainer_mut(d).pc = DrainPc::FirstSum { shard: 0, acc: 0 };
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::<Self>::always(NO_CALL_INTO_FINALIZED, |_, s| !s.call_after_shutdown),
            Property::<Self>::always(NO_USE_AFTER_FREE, |_, s| !s.use_after_free),
            Property::<Self>::always(EXACTLY_ONE_CURRENT, |_, s| {
                let active = s
                    .versions
                    .iter()
                    .filter(|v| v.phase == Phase::Active)
                    .count();
                match s.current {
                    Some(v) => active == 1 && s.versions[usize::from(v)].phase == Phase::Active,
                    None => s.closed && active == 0,
                }
            }),
            Property::<Self>::always(LEGAL_PHASE_PATH, |_, s| !s.illegal_phase),
            Property::<Self>::always(SHUTDOWN_AT_MOST_ONCE, |_, s| {
                s.versions.iter().all(|v| v.shutdowns <= 1)
            }),
            Property::<Self>::always(NO_CALL_REFUSED_WHILE_RELOADING, |_, s| {
                !s.refused_while_open
            }),
            Property::<Self>::always(ALL_REMOVED_AT_THE_END, |m, s| {
                let mut next = Vec::new();
                m.actions(s, &mut next);
                !next.is_empty() || all_removed(s, m.asymmetric())
            }),
            Property::<Self>::sometimes(CALL_OVERLAPS_DRAIN, |_, s| {
                s.workers.iter().any(|w| {
                    matches!(w.pc, Pc::Holding(v) | Pc::Called(v)
                        if s.versions[usize::from(v)].phase == Phase::Draining)
                })
            }),
            Property::<Self>::sometimes(TWO_VERSIONS_DRAIN_AT_ONCE, |_, s| {
                s.versions
                    .iter()
                    .filter(|v| v.phase == Phase::Draining)
                    .count()
                    >= 2
            }),
            Property::<Self>::sometimes(DRAIN_PARKS_AND_IS_WOKEN, |_, s| {
                s.drainers
                    .iter()
                    .any(|d| d.pc == DrainPc::Parked && d.token)
            }),
        ];
        // Non-vacuity of the failure paths, where the configuration has them.
        if self.drain_timeouts {
            properties.push(Property::<Self>::sometimes(
                DRAIN_TIMES_OUT_AND_IS_WAITED_AGAIN,
                |_, s| s.drainers.iter().any(|d| d.waited_again),
            ));
        }
        if self.init_failure {
            properties.push(Property::<Self>::sometimes(
                INIT_FAILURE_KEEPS_OLD_SERVING,
                |_, s| {
                    s.versions.iter().any(|v| v.phase == Phase::Linked)
                        && s.current
                            .is_some_and(|c| s.versions[usize::from(c)].phase == Phase::Active)
                        && s.workers.iter().any(|w| matches!(w.pc, Pc::Holding(_)))
                },
            ));
        }
        if self.observers {
            properties.push(Property::<Self>::sometimes(
                TWO_WAITERS_PARKED_ARE_WOKEN,
                |_, s| {
                    s.drainers.iter().enumerate().any(|(i, a)| {
                        s.drainers.iter().skip(i + 1).any(|b| {
                            a.v == b.v && [a, b].iter().all(|d| d.pc == DrainPc::Parked && d.token)
                        })
                    })
                },
            ));
        }
        if self.asymmetric() {
            properties.push(Property::<Self>::sometimes(
                BARRIER_MEETS_A_BUFFERED_COUNT,
                |_, s| {
                    s.drainers.iter().any(|d| {
                        d.pc == DrainPc::Barrier
                            && s.workers
                                .iter()
                                .any(|w| w.buffer.iter().any(|(v, _)| *v == d.v))
                    })
                },
            ));
        }
        if self.close {
            properties.push(Property::<Self>::sometimes(CLOSED_SLOT_REFUSES, |_, s| {
                s.closed
                    && s.workers
                        .iter()
                        .any(|w| w.pc == Pc::Done && w.calls_left > 0)
            }));
        }
        properties
    }
}

/// Makes a worker's write to its shard of `v` visible.
fn apply(state: &mut ReloadState, w: W, v: V, increment: bool) {
    let count = &mut state.touch(v).inflight[usize::from(w)];
    *count = if increment {
        count.saturating_add(1)
    } else {
        count.saturating_sub(1)
    };
}

/// Empties a worker's store buffer, oldest first (a full fence in it).
fn flush_all(state: &mut ReloadState, w: W) {
    for (v, increment) in std::mem::take(&mut state.workers[usize::from(w)].buffer) {
        apply(state, w, v, increment);
    }
}

/// Where a drainer goes once it has seen the drain complete: the owner
/// finalizes, an observer is done.
fn drained(d: &Drainer) -> DrainPc {
    if d.observer {
        DrainPc::Done
    } else {
        DrainPc::Finalize
    }
}

/// At the end: every version cut over from is Removed, its memory freed
/// (or, with type-stable shells, `shells`, given back to the slot), and no
/// lease or increment is outstanding anywhere.
fn all_removed(s: &ReloadState, shells: bool) -> bool {
    s.versions.iter().enumerate().all(|(i, v)| {
        let installed_and_replaced = Some(i as V) != s.current
            && matches!(v.phase, Phase::Active | Phase::Draining | Phase::Removed);
        let drained = v.inflight.iter().all(|n| *n == 0);
        let reclaimed = if shells { v.kept } else { v.freed };
        drained && (!installed_and_replaced || (v.phase == Phase::Removed && reclaimed))
    }) && s.workers.iter().all(|w| w.pc == Pc::Done && !w.pinned)
        // Every waiter, owner or observer, was woken and finished.
        && s.drainers.iter().all(|d| d.pc == DrainPc::Done)
}

/// Always: no call runs on a version whose shutdown began (S1).
pub const NO_CALL_INTO_FINALIZED: &str = "no call into a finalized version";
/// Always: no step touches a version's memory after the collector freed it (S4).
pub const NO_USE_AFTER_FREE: &str = "no use after free";
/// Always: exactly one current version, and it is the only Active one (S2).
pub const EXACTLY_ONE_CURRENT: &str = "exactly one current version";
/// Always: every phase change is an edge of the lifecycle table (S5).
pub const LEGAL_PHASE_PATH: &str = "legal phase path";
/// Always: each version's shutdown runs at most once (S4).
pub const SHUTDOWN_AT_MOST_ONCE: &str = "shutdown at most once";
/// Always: `enter` is refused only by a closed slot (S3).
pub const NO_CALL_REFUSED_WHILE_RELOADING: &str = "no call refused while reloading";
/// At every terminal state: all old versions removed and freed, no lease
/// outstanding (S4, L1, bounded).
pub const ALL_REMOVED_AT_THE_END: &str = "all old versions removed and no lease outstanding";
/// Sometimes (non-vacuity): a call holds a lease on a draining version.
pub const CALL_OVERLAPS_DRAIN: &str = "a call overlaps a drain";
/// Sometimes (non-vacuity): two versions drain at once.
pub const TWO_VERSIONS_DRAIN_AT_ONCE: &str = "two versions drain at once";
/// Sometimes (non-vacuity): a drain times out and is waited again (L2).
pub const DRAIN_TIMES_OUT_AND_IS_WAITED_AGAIN: &str = "a drain times out and is waited again";
/// Sometimes (non-vacuity): a failed `init` left the old version serving a call (S6).
pub const INIT_FAILURE_KEEPS_OLD_SERVING: &str = "a failed init leaves the old version serving";
/// Sometimes (non-vacuity): a call was refused because the slot was closed.
pub const CLOSED_SLOT_REFUSES: &str = "a closed slot refuses a call";
/// Sometimes (non-vacuity): a parked drain is woken by a release (L1).
pub const DRAIN_PARKS_AND_IS_WOKEN: &str = "a parked drain is woken by a release";
/// With asymmetric fences: sometimes a drain's heavy barrier is due while a
/// worker's count on that version is still in its store buffer (the case
/// the barrier exists for).
pub const BARRIER_MEETS_A_BUFFERED_COUNT: &str =
    "a drain's barrier meets a count still in a store buffer";
/// With observers: sometimes both waiters of one version are parked and a
/// release has woken both.
pub const TWO_WAITERS_PARKED_ARE_WOKEN: &str = "two waiters parked on one drain are both woken";
