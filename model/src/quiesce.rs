//! The quiesced reload of `reload-core` (`src/reload.rs`, `src/drain.rs`),
//! one atomic step per action, with the two-phase resource handoff.
//!
//! Roles: workers (callers that update the plugin's state: `enter`, call,
//! release, waiting at the gate when it is closed) and one reloader (close
//! the gate Q1-Q2, drain Q3, save and persist on the old version Q4, restore
//! and open on the new one Q5, cut over Q6 or roll back). The step labels are
//! those of `docs/drain.md`.
//!
//! The properties are the issue's: **no update lost** (the current version's
//! state always equals the number of updates made), **old resources intact
//! after any failure** (the current version's resources are always open),
//! and no call on a version whose state is not restored yet. Two broken
//! designs seen in public implementations ([`Design`]) must be refuted:
//! snapshotting the state while the old version keeps serving, and
//! releasing the old resource before the new one has opened.

use lifecycle::Phase;
use stateright::{Model, Property};

use crate::protocol::{V, W};

/// Which design the reloader follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Design {
    /// `reload-core`'s: gate, drain, then save; old resources released only
    /// by the old version's shutdown.
    Correct,
    /// Save the state at prepare, while the old version keeps taking
    /// updates (then cut over as usual).
    SnapshotWhileServing,
    /// Persist the old resource and release it at once, before the new
    /// version has opened it.
    ReleaseBeforeOpen,
}

/// The system: callers, calls, reloads, which failures may happen, and the
/// design.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuiesceSys {
    /// Calling threads.
    pub workers: u8,
    /// Updates each worker makes.
    pub calls_per_worker: u8,
    /// Quiesced reloads the reloader attempts.
    pub reloads: u8,
    /// The drain may time out, `restore` may fail and `open` may fail
    /// (nondeterministically, at each reload).
    pub failures: bool,
    /// The design checked.
    pub design: Design,
}

impl QuiesceSys {
    /// The configuration `cargo test` checks by default.
    pub fn small() -> Self {
        QuiesceSys {
            workers: 2,
            calls_per_worker: 1,
            reloads: 1,
            failures: true,
            design: Design::Correct,
        }
    }
}

/// Whether a version's resource is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Res {
    /// Not opened (a new version before Q5).
    None,
    /// Open and serving.
    Open,
    /// Closed: by the version's shutdown, by `close` after a failed
    /// reload, or (broken design) released early.
    Closed,
}

/// One version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QVersion {
    /// Lifecycle phase.
    pub phase: Phase,
    /// Its gate flag (Q1), read by releases with the phase (pair B).
    pub gated: bool,
    /// In-flight counts, one shard per worker.
    pub inflight: Vec<u8>,
    /// Its state: a counter the calls update.
    pub count: u8,
    /// The first version, or restored from its predecessor (Q5).
    pub ready: bool,
    /// Its resources: an index (persist / open) and a stream
    /// (checkpoint / resume).
    pub res: [Res; 2],
    /// The reloader is registered as the waiter of its drain.
    pub waiter: bool,
}

/// Where a release is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rel {
    /// R2: decrement.
    Decrement,
    /// R4: load the phase and the gate flag.
    CheckWatch,
    /// R5: sum, one shard per step.
    Sum {
        /// Next shard.
        shard: u8,
        /// Sum so far.
        acc: u8,
    },
    /// R6: wake the waiter.
    Wake,
}

/// A worker's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WPc {
    /// Between calls.
    Idle,
    /// E3: loaded an untagged `current`.
    Loaded(V),
    /// E5: incremented its shard.
    Incremented(V),
    /// Holds a lease; the update has not run.
    Holding(V),
    /// The update ran; the lease is still held.
    Called(V),
    /// Releasing (`true`: then finish the call; `false`: an undo, retry).
    Releasing(V, Rel, bool),
    /// Saw the gate tag: parked at the gate.
    AtGate,
    /// All calls made.
    Done,
}

/// A worker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QWorker {
    /// Where it is.
    pub pc: WPc,
    /// Calls left.
    pub calls_left: u8,
}

/// The reloader's program counter. `n` is the new version, `o` the old.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RPc {
    /// Between reloads.
    Idle,
    /// Prepared version `n` (linked, initialized).
    Prepared(V),
    /// Q1 done: `gate_closed` and the old version's `gated` are set.
    GateFlagged(V),
    /// Q3: summing the old version's shards.
    Sum {
        /// The new version.
        n: V,
        /// Next shard.
        shard: u8,
        /// Sum so far.
        acc: u8,
        /// This sum follows a registration (so a nonzero result parks).
        registered: bool,
        /// The deadline passed: a nonzero result rolls back.
        expired: bool,
    },
    /// Q3: register as the drain's waiter, then sum again.
    Register(V),
    /// Q3: parked until woken (or the deadline passes).
    Parked(V),
    /// Q4: save the old version's state.
    Save(V),
    /// Q4: persist the old version's index.
    Persist(V),
    /// Q4: checkpoint the old version's stream.
    Checkpoint(V),
    /// Q5: restore into the new version.
    Restore(V),
    /// Q5: open the index in the new version.
    Open(V),
    /// Q5: resume the stream in the new version.
    Resume(V),
    /// Q6: cut over.
    CutOver(V),
    /// After the cut-over: open the gate (wake the waiting callers).
    OpenGate(V),
    /// Finalize the old version once drained (its shutdown closes its resource).
    Finalize(V),
    /// Roll back: close what the new version opened, untag, clear `gated`.
    RollBack(V),
    /// After the roll back: open the gate.
    Reopen,
    /// All reloads attempted.
    Done,
}

/// The state of the system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QState {
    /// The current version.
    pub current: V,
    /// The tag on `current` (Q2): its gate is closed.
    pub tagged: bool,
    /// The slot's "gate closed" flag callers at the gate wait on.
    pub gate_closed: bool,
    /// Every version.
    pub versions: Vec<QVersion>,
    /// The callers.
    pub workers: Vec<QWorker>,
    /// The reloader.
    pub reloader: RPc,
    /// Reloads still to attempt.
    pub reloads_left: u8,
    /// The reloader's unpark token.
    pub token: bool,
    /// Updates made (acknowledged to callers).
    pub applied: u8,
    /// The saved state, between Q4 and Q5.
    pub snapshot: Option<u8>,
    /// An update ran on a version whose state was not restored yet.
    pub call_on_unready: bool,
    /// An update ran on a version whose shutdown ran.
    pub call_after_shutdown: bool,
    /// Reloads that rolled back.
    pub rolled_back: u8,
    /// A rolled-back reload's drain had timed out.
    pub timed_out: bool,
    /// The reloader was woken by a release.
    pub woken: bool,
}

/// One step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// E3 (and the gate check).
    WorkerLoad(W),
    /// Wake at the opened gate and retry.
    WorkerPassGate(W),
    /// E5.
    WorkerIncrement(W),
    /// E7: re-load `current`, tag included.
    WorkerRecheck(W),
    /// The update.
    WorkerCall(W),
    /// Drop the lease.
    WorkerRelease(W),
    /// R2.
    WorkerDecrement(W),
    /// R4.
    WorkerCheckWatch(W),
    /// R5.
    WorkerSum(W),
    /// R6.
    WorkerWake(W),
    /// Prepare a new version.
    ReloaderPrepare,
    /// Q1.
    ReloaderFlagGate,
    /// Q2.
    ReloaderTag,
    /// Q3: one shard of the sum.
    ReloaderSum,
    /// Q3: register.
    ReloaderRegister,
    /// Q3: woken.
    ReloaderWake,
    /// Q3: the deadline passes.
    ReloaderTimeout,
    /// Q4.
    ReloaderSave,
    /// Q4.
    ReloaderPersist,
    /// Q4.
    ReloaderCheckpoint,
    /// Q5.
    ReloaderRestore,
    /// Q5, failing.
    ReloaderRestoreFails,
    /// Q5.
    ReloaderOpen,
    /// Q5, failing.
    ReloaderOpenFails,
    /// Q5.
    ReloaderResume,
    /// Q5, failing.
    ReloaderResumeFails,
    /// Q6.
    ReloaderCutOver,
    /// Open the gate after Q6.
    ReloaderOpenGate,
    /// Shutdown of the drained old version.
    ReloaderFinalize,
    /// Roll back.
    ReloaderRollBack,
    /// Open the gate after a roll back.
    ReloaderReopen,
}

fn version(phase: Phase, workers: u8, res: [Res; 2], ready: bool) -> QVersion {
    QVersion {
        phase,
        gated: false,
        inflight: vec![0; usize::from(workers)],
        count: 0,
        ready,
        res,
        waiter: false,
    }
}

impl Model for QuiesceSys {
    type State = QState;
    type Action = Action;

    fn init_states(&self) -> Vec<QState> {
        vec![QState {
            current: 0,
            tagged: false,
            gate_closed: false,
            versions: vec![version(Phase::Active, self.workers, [Res::Open; 2], true)],
            workers: (0..self.workers)
                .map(|_| QWorker {
                    pc: if self.calls_per_worker > 0 {
                        WPc::Idle
                    } else {
                        WPc::Done
                    },
                    calls_left: self.calls_per_worker,
                })
                .collect(),
            reloader: if self.reloads > 0 {
                RPc::Idle
            } else {
                RPc::Done
            },
            reloads_left: self.reloads,
            token: false,
            applied: 0,
            snapshot: None,
            call_on_unready: false,
            call_after_shutdown: false,
            rolled_back: 0,
            timed_out: false,
            woken: false,
        }]
    }

    fn actions(&self, s: &QState, actions: &mut Vec<Action>) {
        for (i, w) in s.workers.iter().enumerate() {
            let i = i as W;
            actions.push(match w.pc {
                WPc::Idle => Action::WorkerLoad(i),
                WPc::AtGate if !s.gate_closed => Action::WorkerPassGate(i),
                WPc::AtGate | WPc::Done => continue,
                WPc::Loaded(_) => Action::WorkerIncrement(i),
                WPc::Incremented(_) => Action::WorkerRecheck(i),
                WPc::Holding(_) => Action::WorkerCall(i),
                WPc::Called(_) => Action::WorkerRelease(i),
                WPc::Releasing(_, Rel::Decrement, _) => Action::WorkerDecrement(i),
                WPc::Releasing(_, Rel::CheckWatch, _) => Action::WorkerCheckWatch(i),
                WPc::Releasing(_, Rel::Sum { .. }, _) => Action::WorkerSum(i),
                WPc::Releasing(_, Rel::Wake, _) => Action::WorkerWake(i),
            });
        }
        match s.reloader {
            RPc::Idle => actions.push(Action::ReloaderPrepare),
            RPc::Prepared(_) => actions.push(Action::ReloaderFlagGate),
            RPc::GateFlagged(_) => actions.push(Action::ReloaderTag),
            RPc::Sum { .. } => actions.push(Action::ReloaderSum),
            RPc::Register(_) => actions.push(Action::ReloaderRegister),
            RPc::Parked(_) => {
                if s.token {
                    actions.push(Action::ReloaderWake);
                }
                if self.failures {
                    actions.push(Action::ReloaderTimeout);
                }
            }
            RPc::Save(_) => actions.push(Action::ReloaderSave),
            RPc::Persist(_) => actions.push(Action::ReloaderPersist),
            RPc::Checkpoint(_) => actions.push(Action::ReloaderCheckpoint),
            RPc::Restore(_) => {
                actions.push(Action::ReloaderRestore);
                if self.failures {
                    actions.push(Action::ReloaderRestoreFails);
                }
            }
            RPc::Open(_) => {
                actions.push(Action::ReloaderOpen);
                if self.failures {
                    actions.push(Action::ReloaderOpenFails);
                }
            }
            RPc::Resume(_) => {
                actions.push(Action::ReloaderResume);
                if self.failures {
                    actions.push(Action::ReloaderResumeFails);
                }
            }
            RPc::CutOver(_) => actions.push(Action::ReloaderCutOver),
            RPc::OpenGate(_) => actions.push(Action::ReloaderOpenGate),
            RPc::Finalize(o) => {
                if s.versions[usize::from(o)].inflight.iter().all(|n| *n == 0) {
                    actions.push(Action::ReloaderFinalize);
                }
            }
            RPc::RollBack(_) => actions.push(Action::ReloaderRollBack),
            RPc::Reopen => actions.push(Action::ReloaderReopen),
            RPc::Done => {}
        }
    }

    fn next_state(&self, last: &QState, action: Action) -> Option<QState> {
        let mut s = last.clone();
        let cur = usize::from(s.current);
        match action {
            Action::WorkerLoad(w) => {
                let wk = &mut s.workers[usize::from(w)];
                wk.pc = if s.tagged {
                    WPc::AtGate
                } else {
                    WPc::Loaded(s.current)
                };
            }
            Action::WorkerPassGate(w) => s.workers[usize::from(w)].pc = WPc::Idle,
            Action::WorkerIncrement(w) => {
                let WPc::Loaded(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                s.versions[usize::from(v)].inflight[usize::from(w)] += 1;
                s.workers[usize::from(w)].pc = WPc::Incremented(v);
            }
            Action::WorkerRecheck(w) => {
                let WPc::Incremented(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                s.workers[usize::from(w)].pc = if s.current == v && !s.tagged {
                    WPc::Holding(v)
                } else {
                    WPc::Releasing(v, Rel::Decrement, false)
                };
            }
            Action::WorkerCall(w) => {
                let WPc::Holding(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                let ver = &mut s.versions[usize::from(v)];
                ver.count += 1;
                s.call_on_unready |= !ver.ready;
                s.call_after_shutdown |= ver.phase == Phase::Removed;
                s.applied += 1;
                s.workers[usize::from(w)].pc = WPc::Called(v);
            }
            Action::WorkerRelease(w) => {
                let WPc::Called(v) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                s.workers[usize::from(w)].pc = WPc::Releasing(v, Rel::Decrement, true);
            }
            Action::WorkerDecrement(w) => {
                let WPc::Releasing(v, Rel::Decrement, fin) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                s.versions[usize::from(v)].inflight[usize::from(w)] -= 1;
                s.workers[usize::from(w)].pc = WPc::Releasing(v, Rel::CheckWatch, fin);
            }
            Action::WorkerCheckWatch(w) => {
                let WPc::Releasing(v, Rel::CheckWatch, fin) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                let ver = &s.versions[usize::from(v)];
                if ver.phase != Phase::Active || ver.gated {
                    s.workers[usize::from(w)].pc =
                        WPc::Releasing(v, Rel::Sum { shard: 0, acc: 0 }, fin);
                } else {
                    finish(&mut s, w, fin);
                }
            }
            Action::WorkerSum(w) => {
                let WPc::Releasing(v, Rel::Sum { shard, acc }, fin) = s.workers[usize::from(w)].pc
                else {
                    return None;
                };
                let acc = acc + s.versions[usize::from(v)].inflight[usize::from(shard)];
                if shard + 1 < self.workers {
                    s.workers[usize::from(w)].pc = WPc::Releasing(
                        v,
                        Rel::Sum {
                            shard: shard + 1,
                            acc,
                        },
                        fin,
                    );
                } else if acc == 0 {
                    s.workers[usize::from(w)].pc = WPc::Releasing(v, Rel::Wake, fin);
                } else {
                    finish(&mut s, w, fin);
                }
            }
            Action::WorkerWake(w) => {
                let WPc::Releasing(v, Rel::Wake, fin) = s.workers[usize::from(w)].pc else {
                    return None;
                };
                let ver = &mut s.versions[usize::from(v)];
                if ver.waiter {
                    ver.waiter = false;
                    s.token = true;
                }
                finish(&mut s, w, fin);
            }
            Action::ReloaderPrepare => {
                let n = s.versions.len() as V;
                s.versions.push(version(
                    Phase::Initialized,
                    self.workers,
                    [Res::None; 2],
                    false,
                ));
                if self.design == Design::SnapshotWhileServing {
                    s.snapshot = Some(s.versions[cur].count);
                }
                s.reloader = RPc::Prepared(n);
            }
            Action::ReloaderFlagGate => {
                let RPc::Prepared(n) = s.reloader else {
                    return None;
                };
                s.gate_closed = true;
                s.versions[cur].gated = true;
                s.reloader = RPc::GateFlagged(n);
            }
            Action::ReloaderTag => {
                let RPc::GateFlagged(n) = s.reloader else {
                    return None;
                };
                s.tagged = true;
                s.reloader = sum_from(n, false, false);
            }
            Action::ReloaderSum => {
                let RPc::Sum {
                    n,
                    shard,
                    acc,
                    registered,
                    expired,
                } = s.reloader
                else {
                    return None;
                };
                let acc = acc + s.versions[cur].inflight[usize::from(shard)];
                s.reloader = if shard + 1 < self.workers {
                    RPc::Sum {
                        n,
                        shard: shard + 1,
                        acc,
                        registered,
                        expired,
                    }
                } else if acc == 0 {
                    s.versions[cur].waiter = false;
                    RPc::Save(n)
                } else if expired {
                    s.versions[cur].waiter = false;
                    s.timed_out = true;
                    RPc::RollBack(n)
                } else if registered {
                    RPc::Parked(n)
                } else {
                    RPc::Register(n)
                };
            }
            Action::ReloaderRegister => {
                let RPc::Register(n) = s.reloader else {
                    return None;
                };
                s.versions[cur].waiter = true;
                s.reloader = sum_from(n, true, false);
            }
            Action::ReloaderWake => {
                let RPc::Parked(n) = s.reloader else {
                    return None;
                };
                s.token = false;
                s.woken = true;
                s.reloader = RPc::Register(n);
            }
            Action::ReloaderTimeout => {
                let RPc::Parked(n) = s.reloader else {
                    return None;
                };
                // Expired: register and look once more, then give up.
                s.versions[cur].waiter = true;
                s.reloader = sum_from(n, true, true);
            }
            Action::ReloaderSave => {
                let RPc::Save(n) = s.reloader else {
                    return None;
                };
                if self.design != Design::SnapshotWhileServing {
                    s.snapshot = Some(s.versions[cur].count);
                }
                s.reloader = RPc::Persist(n);
            }
            Action::ReloaderPersist => {
                let RPc::Persist(n) = s.reloader else {
                    return None;
                };
                if self.design == Design::ReleaseBeforeOpen {
                    s.versions[cur].res[0] = Res::Closed;
                }
                s.reloader = RPc::Checkpoint(n);
            }
            Action::ReloaderCheckpoint => {
                let RPc::Checkpoint(n) = s.reloader else {
                    return None;
                };
                s.reloader = RPc::Restore(n);
            }
            Action::ReloaderRestore => {
                let RPc::Restore(n) = s.reloader else {
                    return None;
                };
                let new = &mut s.versions[usize::from(n)];
                new.count = s.snapshot.unwrap_or(0);
                new.ready = true;
                s.reloader = RPc::Open(n);
            }
            Action::ReloaderRestoreFails
            | Action::ReloaderOpenFails
            | Action::ReloaderResumeFails => {
                let (RPc::Restore(n) | RPc::Open(n) | RPc::Resume(n)) = s.reloader else {
                    return None;
                };
                s.reloader = RPc::RollBack(n);
            }
            Action::ReloaderOpen => {
                let RPc::Open(n) = s.reloader else {
                    return None;
                };
                s.versions[usize::from(n)].res[0] = Res::Open;
                s.reloader = RPc::Resume(n);
            }
            Action::ReloaderResume => {
                let RPc::Resume(n) = s.reloader else {
                    return None;
                };
                s.versions[usize::from(n)].res[1] = Res::Open;
                s.reloader = RPc::CutOver(n);
            }
            Action::ReloaderCutOver => {
                let RPc::CutOver(n) = s.reloader else {
                    return None;
                };
                // One swap: the new pointer is untagged.
                s.versions[cur].phase = Phase::Draining;
                s.versions[usize::from(n)].phase = Phase::Active;
                s.current = n;
                s.tagged = false;
                s.snapshot = None;
                s.reloader = RPc::OpenGate(cur as V);
            }
            Action::ReloaderOpenGate => {
                let RPc::OpenGate(o) = s.reloader else {
                    return None;
                };
                s.gate_closed = false;
                s.reloader = RPc::Finalize(o);
            }
            Action::ReloaderFinalize => {
                let RPc::Finalize(o) = s.reloader else {
                    return None;
                };
                let old = &mut s.versions[usize::from(o)];
                old.phase = Phase::Removed;
                old.res = [Res::Closed; 2];
                s.reloader = next_reload(&mut s.reloads_left);
            }
            Action::ReloaderRollBack => {
                let RPc::RollBack(n) = s.reloader else {
                    return None;
                };
                for res in &mut s.versions[usize::from(n)].res {
                    if *res == Res::Open {
                        *res = Res::Closed;
                    }
                }
                s.tagged = false;
                s.versions[cur].gated = false;
                s.snapshot = None;
                s.rolled_back += 1;
                s.reloader = RPc::Reopen;
            }
            Action::ReloaderReopen => {
                s.gate_closed = false;
                s.reloader = next_reload(&mut s.reloads_left);
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::<Self>::always(NO_UPDATE_LOST, |_, s| {
                s.versions[usize::from(s.current)].count == s.applied
            }),
            Property::<Self>::always(OLD_RESOURCES_INTACT, |_, s| {
                s.versions[usize::from(s.current)].res == [Res::Open; 2]
            }),
            Property::<Self>::always(NO_CALL_ON_HALF_MIGRATED_STATE, |_, s| !s.call_on_unready),
            Property::<Self>::always(NO_CALL_INTO_FINALIZED, |_, s| !s.call_after_shutdown),
            Property::<Self>::always(GATE_REOPENS_AND_ALL_IS_DONE, |m, s| {
                let mut next = Vec::new();
                m.actions(s, &mut next);
                !next.is_empty() || finished(m, s)
            }),
            Property::<Self>::sometimes(CALL_WAITS_AT_THE_GATE, |_, s| {
                s.workers.iter().any(|w| w.pc == WPc::AtGate)
            }),
            Property::<Self>::sometimes(QUIESCE_PARKS_AND_IS_WOKEN, |_, s| s.woken),
        ];
        if self.failures {
            properties.push(Property::<Self>::sometimes(
                ROLLED_BACK_AFTER_A_TIMEOUT,
                |_, s| s.timed_out && s.rolled_back > 0,
            ));
            properties.push(Property::<Self>::sometimes(
                ROLLED_BACK_AFTER_AN_OPEN,
                |_, s| {
                    s.rolled_back > 0 && s.versions.iter().skip(1).any(|v| v.res[0] == Res::Closed)
                },
            ));
        }
        properties
    }
}

fn sum_from(n: V, registered: bool, expired: bool) -> RPc {
    RPc::Sum {
        n,
        shard: 0,
        acc: 0,
        registered,
        expired,
    }
}

fn next_reload(left: &mut u8) -> RPc {
    *left -= 1;
    if *left == 0 {
        RPc::Done
    } else {
        RPc::Idle
    }
}

/// Ends a release: the call is complete, or the undo retries.
fn finish(s: &mut QState, w: W, call_done: bool) {
    let wk = &mut s.workers[usize::from(w)];
    if call_done {
        wk.calls_left -= 1;
        wk.pc = if wk.calls_left == 0 {
            WPc::Done
        } else {
            WPc::Idle
        };
    } else {
        wk.pc = WPc::Idle;
    }
}

/// At the end: the gate is open, every call made, every replaced version
/// removed, nothing in flight.
fn finished(m: &QuiesceSys, s: &QState) -> bool {
    !s.gate_closed
        && !s.tagged
        && s.reloader == RPc::Done
        && s.applied == m.workers * m.calls_per_worker
        && s.workers.iter().all(|w| w.pc == WPc::Done)
        && s.versions.iter().enumerate().all(|(i, v)| {
            v.inflight.iter().all(|n| *n == 0)
                && (i == usize::from(s.current)
                    || matches!(v.phase, Phase::Removed | Phase::Initialized))
        })
}

/// Always: the current version's state counts every update made.
pub const NO_UPDATE_LOST: &str = "no update lost";
/// Always: the current version's resources are open, whatever failed.
pub const OLD_RESOURCES_INTACT: &str = "old resources intact after any failure";
/// Always: no update runs on a version before its state was restored.
pub const NO_CALL_ON_HALF_MIGRATED_STATE: &str = "no call sees a half-migrated state";
/// Always: no update runs on a version whose shutdown ran.
pub const NO_CALL_INTO_FINALIZED: &str = "no call into a finalized version";
/// In every terminal state: gate open, all calls made, old versions removed.
pub const GATE_REOPENS_AND_ALL_IS_DONE: &str = "the gate reopens and every call completes";
/// Non-vacuity: a caller waits at the gate.
pub const CALL_WAITS_AT_THE_GATE: &str = "a call waits at the gate";
/// Non-vacuity: the quiesce parks and a release wakes it.
pub const QUIESCE_PARKS_AND_IS_WOKEN: &str = "a parked quiesce is woken by a release";
/// Non-vacuity: a drain times out and the reload rolls back.
pub const ROLLED_BACK_AFTER_A_TIMEOUT: &str = "a drain timeout rolls back";
/// Non-vacuity: a reload rolls back after the new version opened its resource.
pub const ROLLED_BACK_AFTER_AN_OPEN: &str = "a roll back closes what the new version opened";
