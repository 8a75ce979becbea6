//! Two plugins in a `reload-core` registry (`src/registry/`): `B` requires
//! `A`, version `k` of `B` accepting only version `k` of `A` (a major
//! version bump, so every reload moves both).
//!
//! Roles: workers make calls on `B` the way a registry `Call` does
//! (`src/registry/call.rs`): lease `B` with `try_enter`; lease `A`; if `A`'s
//! gate is closed, give `B` back and wait for the gate; if the pair does not
//! match the declared range, give both back and start over; use both;
//! release both. The reloader commits each new pair as one group
//! (`Prepared::commit_together`): close the gates of `A` then `B`, drain
//! both (quiesced mode; a drain may time out and roll back), cut over `A`
//! then `B`, each cut-over opening its gate. A version is finalized once it
//! is draining and its last lease is back.
//!
//! Leases and gates are single atomic steps here; that they are atomic in
//! the real code is what the `protocol` and `quiesce` models and the loom
//! tests check.
//!
//! Properties: **no call on the dependent sees a finalized dependency
//! version**, and **every call runs on versions its manifest accepts**.
//! Two broken designs must be refuted ([`Design`]): a dependent that reaches
//! its dependency through the registry without holding a lease on it (a
//! raw pointer), and reloads that move one plugin at a time with calls that
//! do not check the range.

use lifecycle::Phase;
use stateright::{Model, Property};

/// Which design is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Design {
    /// `reload-core`'s.
    Correct,
    /// The call leases `B` and reads `A`'s current version without a
    /// lease (a pointer or a name lookup at use time).
    UnleasedDependency,
    /// Each plugin reloads on its own, no gates; calls take `A` as found.
    OneAtATime,
}

/// How the group commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Gates close, both drain, then both cut over.
    Quiesced,
    /// Gates close, both cut over; the old versions drain afterwards.
    Immediate,
}

/// The system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySys {
    /// Calling threads.
    pub workers: u8,
    /// Calls each makes.
    pub calls_per_worker: u8,
    /// Group reloads attempted.
    pub reloads: u8,
    /// Group commit mode.
    pub mode: Mode,
    /// A quiesced drain may time out (the group rolls back).
    pub failures: bool,
    /// The design checked.
    pub design: Design,
}

impl RegistrySys {
    /// The configuration `cargo test` checks by default.
    pub fn small() -> Self {
        RegistrySys {
            workers: 2,
            calls_per_worker: 1,
            reloads: 2,
            mode: Mode::Quiesced,
            failures: true,
            design: Design::Correct,
        }
    }
}

/// One version of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ver {
    /// Lifecycle phase.
    pub phase: Phase,
    /// Leases out on it.
    pub leases: u8,
}

/// One plugin's slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Plug {
    /// Its versions; version `k` is major `k`.
    pub vers: Vec<Ver>,
    /// The current version.
    pub current: u8,
    /// Its gate is closed.
    pub gated: bool,
}

/// A worker's program counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WPc {
    /// Between calls.
    Idle,
    /// Holds a lease on `B`'s version.
    HoldsB(u8),
    /// Uses `B`'s version and `A`'s (leased, or only seen).
    Using(u8, u8),
    /// Gave everything back; waits for `B`'s gate.
    AtGateB,
    /// Gave everything back; waits for `A`'s gate.
    AtGateA,
    /// All calls made.
    Done,
}

/// A worker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Worker {
    /// Where it is.
    pub pc: WPc,
    /// Calls left.
    pub calls_left: u8,
}

/// The reloader's program counter; `n` is the new version's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RPc {
    /// Next: close `A`'s gate (or, one at a time, cut over `A`).
    Start(u8),
    /// Next: close `B`'s gate.
    GateB(u8),
    /// Next: wait for `A`'s old version to drain.
    DrainA(u8),
    /// Next: wait for `B`'s old version to drain.
    DrainB(u8),
    /// Next: cut over `A` (opens its gate).
    CutA(u8),
    /// Next: cut over `B` (opens its gate).
    CutB(u8),
    /// All reloads attempted.
    Done,
}

/// The state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RState {
    /// The dependency.
    pub a: Plug,
    /// The dependent.
    pub b: Plug,
    /// The callers.
    pub workers: Vec<Worker>,
    /// The reloader.
    pub reloader: RPc,
    /// Group commits made.
    pub committed: u8,
    /// Group commits rolled back.
    pub rolled_back: u8,
    /// A call gave back a mixed set and started over.
    pub retried: bool,
    /// A call waited at a gate.
    pub waited: bool,
}

/// An action, prefixed with its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RAction {
    /// Lease `B`'s current version (or find its gate closed).
    WorkerLeaseB(u8),
    /// Lease `A`'s current version and check the pair.
    WorkerLeaseA(u8),
    /// Release what the call holds; the call is complete.
    WorkerRelease(u8),
    /// The gate it waits at opened.
    WorkerWoken(u8),
    /// Close `A`'s gate.
    ReloaderGateA,
    /// Close `B`'s gate.
    ReloaderGateB,
    /// `A`'s old version has drained.
    ReloaderDrainedA,
    /// `B`'s old version has drained.
    ReloaderDrainedB,
    /// A drain timed out: reopen both gates on the old versions.
    ReloaderRollBack,
    /// Cut over `A`.
    ReloaderCutA,
    /// Cut over `B`.
    ReloaderCutB,
    /// Finalize a drained version (`true`: of `A`).
    ReaperFinalize(bool, u8),
}

/// No worker uses a version of `A` that is being or has been finalized.
pub const NO_FINALIZED_DEPENDENCY: &str =
    "no call on the dependent sees a finalized dependency version";
/// No worker uses a pair outside the declared range.
pub const CALLS_MATCH_DECLARED_RANGES: &str = "every call runs on versions its manifest accepts";
/// Non-vacuity: a call waited at a gate.
pub const CALL_WAITS_AT_A_GATE: &str = "a call waits at a gate";
/// Non-vacuity: a call gave back a mixed set (immediate mode only).
pub const CALL_RETRIES_A_MIXED_SET: &str = "a call retries a mixed set";
/// Non-vacuity: both group reloads commit.
pub const ALL_RELOADS_COMMIT: &str = "every group reload commits";
/// Non-vacuity: a group rolls back.
pub const A_GROUP_ROLLS_BACK: &str = "a group reload rolls back";
/// Liveness, as a state property: the system never gets stuck.
pub const NEVER_STUCK: &str = "calls and reloads always finish";

fn plug(reloads: u8) -> Plug {
    let mut vers = vec![
        Ver {
            phase: Phase::Initialized,
            leases: 0,
        };
        usize::from(reloads) + 1
    ];
    vers[0].phase = Phase::Active;
    Plug {
        vers,
        current: 0,
        gated: false,
    }
}

impl Plug {
    fn ver(&mut self, v: u8) -> &mut Ver {
        &mut self.vers[usize::from(v)]
    }

    fn cut_to(&mut self, n: u8) {
        let old = self.current;
        self.ver(old).phase = Phase::Draining;
        self.ver(n).phase = Phase::Active;
        self.current = n;
        self.gated = false;
    }
}

impl RegistrySys {
    fn uses_gates(&self) -> bool {
        self.design != Design::OneAtATime
    }
}

impl Model for RegistrySys {
    type State = RState;
    type Action = RAction;

    fn init_states(&self) -> Vec<RState> {
        vec![RState {
            a: plug(self.reloads),
            b: plug(self.reloads),
            workers: vec![
                Worker {
                    pc: if self.calls_per_worker == 0 {
                        WPc::Done
                    } else {
                        WPc::Idle
                    },
                    calls_left: self.calls_per_worker,
                };
                usize::from(self.workers)
            ],
            reloader: if self.reloads == 0 {
                RPc::Done
            } else {
                RPc::Start(1)
            },
            committed: 0,
            rolled_back: 0,
            retried: false,
            waited: false,
        }]
    }

    fn actions(&self, s: &RState, actions: &mut Vec<RAction>) {
        for (i, w) in s.workers.iter().enumerate() {
            let i = i as u8;
            match w.pc {
                WPc::Idle => actions.push(RAction::WorkerLeaseB(i)),
                WPc::HoldsB(_) => actions.push(RAction::WorkerLeaseA(i)),
                WPc::Using(..) => actions.push(RAction::WorkerRelease(i)),
                WPc::AtGateA if !s.a.gated => actions.push(RAction::WorkerWoken(i)),
                WPc::AtGateB if !s.b.gated => actions.push(RAction::WorkerWoken(i)),
                WPc::AtGateA | WPc::AtGateB | WPc::Done => {}
            }
        }
        let quiesced = self.mode == Mode::Quiesced;
        match s.reloader {
            RPc::Start(_) if self.uses_gates() => actions.push(RAction::ReloaderGateA),
            RPc::Start(_) | RPc::CutA(_) => actions.push(RAction::ReloaderCutA),
            RPc::GateB(_) => actions.push(RAction::ReloaderGateB),
            RPc::DrainA(_) => {
                if s.a.vers[usize::from(s.a.current)].leases == 0 {
                    actions.push(RAction::ReloaderDrainedA);
                }
                if self.failures {
                    actions.push(RAction::ReloaderRollBack);
                }
            }
            RPc::DrainB(_) => {
                if s.b.vers[usize::from(s.b.current)].leases == 0 {
                    actions.push(RAction::ReloaderDrainedB);
                }
                if self.failures {
                    actions.push(RAction::ReloaderRollBack);
                }
            }
            RPc::CutB(_) => actions.push(RAction::ReloaderCutB),
            RPc::Done => {}
        }
        debug_assert!(quiesced || !matches!(s.reloader, RPc::DrainA(_) | RPc::DrainB(_)));
        for (is_a, p) in [(true, &s.a), (false, &s.b)] {
            for (v, ver) in p.vers.iter().enumerate() {
                if ver.phase == Phase::Draining && ver.leases == 0 {
                    actions.push(RAction::ReaperFinalize(is_a, v as u8));
                }
            }
        }
    }

    fn next_state(&self, last: &RState, action: RAction) -> Option<RState> {
        let mut s = last.clone();
        match action {
            RAction::WorkerLeaseB(i) => {
                if s.b.gated {
                    s.workers[usize::from(i)].pc = WPc::AtGateB;
                    s.waited = true;
                } else {
                    let v = s.b.current;
                    s.b.ver(v).leases += 1;
                    s.workers[usize::from(i)].pc = WPc::HoldsB(v);
                }
            }
            RAction::WorkerLeaseA(i) => {
                let WPc::HoldsB(vb) = s.workers[usize::from(i)].pc else {
                    return None;
                };
                let va = s.a.current;
                match self.design {
                    Design::Correct if s.a.gated => {
                        s.b.ver(vb).leases -= 1;
                        s.workers[usize::from(i)].pc = WPc::AtGateA;
                        s.waited = true;
                    }
                    Design::Correct if va != vb => {
                        s.b.ver(vb).leases -= 1;
                        s.workers[usize::from(i)].pc = WPc::Idle;
                        s.retried = true;
                    }
                    Design::Correct | Design::OneAtATime => {
                        s.a.ver(va).leases += 1;
                        s.workers[usize::from(i)].pc = WPc::Using(vb, va);
                    }
                    // Sees A's current version, holds nothing on it.
                    Design::UnleasedDependency => {
                        s.workers[usize::from(i)].pc = WPc::Using(vb, va);
                    }
                }
            }
            RAction::WorkerRelease(i) => {
                let WPc::Using(vb, va) = s.workers[usize::from(i)].pc else {
                    return None;
                };
                s.b.ver(vb).leases -= 1;
                if self.design != Design::UnleasedDependency {
                    s.a.ver(va).leases -= 1;
                }
                let w = &mut s.workers[usize::from(i)];
                w.calls_left -= 1;
                w.pc = if w.calls_left == 0 {
                    WPc::Done
                } else {
                    WPc::Idle
                };
            }
            RAction::WorkerWoken(i) => s.workers[usize::from(i)].pc = WPc::Idle,
            RAction::ReloaderGateA => {
                let RPc::Start(n) = s.reloader else {
                    return None;
                };
                s.a.gated = true;
                s.reloader = RPc::GateB(n);
            }
            RAction::ReloaderGateB => {
                let RPc::GateB(n) = s.reloader else {
                    return None;
                };
                s.b.gated = true;
                s.reloader = match self.mode {
                    Mode::Quiesced => RPc::DrainA(n),
                    Mode::Immediate => RPc::CutA(n),
                };
            }
            RAction::ReloaderDrainedA => {
                let RPc::DrainA(n) = s.reloader else {
                    return None;
                };
                s.reloader = RPc::DrainB(n);
            }
            RAction::ReloaderDrainedB => {
                let RPc::DrainB(n) = s.reloader else {
                    return None;
                };
                s.reloader = RPc::CutA(n);
            }
            RAction::ReloaderRollBack => {
                s.a.gated = false;
                s.b.gated = false;
                s.rolled_back += 1;
                s.reloader = self.after(s.reloader);
            }
            RAction::ReloaderCutA => {
                let (RPc::Start(n) | RPc::CutA(n)) = s.reloader else {
                    return None;
                };
                s.a.cut_to(n);
                s.reloader = RPc::CutB(n);
            }
            RAction::ReloaderCutB => {
                let RPc::CutB(n) = s.reloader else {
                    return None;
                };
                s.b.cut_to(n);
                s.committed += 1;
                s.reloader = self.after(s.reloader);
            }
            RAction::ReaperFinalize(is_a, v) => {
                let p = if is_a { &mut s.a } else { &mut s.b };
                p.ver(v).phase = Phase::Removed;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::<Self>::always(NO_FINALIZED_DEPENDENCY, |_, s| {
                s.workers.iter().all(|w| match w.pc {
                    WPc::Using(vb, va) => {
                        s.a.vers[usize::from(va)].phase != Phase::Removed
                            && s.b.vers[usize::from(vb)].phase != Phase::Removed
                    }
                    _ => true,
                })
            }),
            Property::<Self>::always(CALLS_MATCH_DECLARED_RANGES, |_, s| {
                s.workers
                    .iter()
                    .all(|w| !matches!(w.pc, WPc::Using(vb, va) if vb != va))
            }),
            Property::<Self>::always(NEVER_STUCK, |m, s| {
                let mut next = Vec::new();
                m.actions(s, &mut next);
                let finished =
                    s.reloader == RPc::Done && s.workers.iter().all(|w| w.pc == WPc::Done);
                !next.is_empty() || finished
            }),
            Property::<Self>::sometimes(ALL_RELOADS_COMMIT, |m, s| s.committed == m.reloads),
        ];
        if self.uses_gates() {
            properties.push(Property::<Self>::sometimes(CALL_WAITS_AT_A_GATE, |_, s| {
                s.waited
            }));
        }
        // Quiesced, both old versions drain before either cuts over, so no
        // call can hold an old `B` when `A` is new: only immediate group
        // commits produce (and must reject) mixed sets.
        if self.design == Design::Correct && self.mode == Mode::Immediate {
            properties.push(Property::<Self>::sometimes(
                CALL_RETRIES_A_MIXED_SET,
                |_, s| s.retried,
            ));
        }
        if self.failures {
            properties.push(Property::<Self>::sometimes(A_GROUP_ROLLS_BACK, |_, s| {
                s.rolled_back > 0
            }));
        }
        properties
    }
}

impl RegistrySys {
    /// The reloader's next round after `pc`'s (committed or rolled back).
    fn after(&self, pc: RPc) -> RPc {
        let n = match pc {
            RPc::Start(n)
            | RPc::GateB(n)
            | RPc::DrainA(n)
            | RPc::DrainB(n)
            | RPc::CutA(n)
            | RPc::CutB(n) => n,
            RPc::Done => return RPc::Done,
        };
        if n >= self.reloads {
            RPc::Done
        } else {
            RPc::Start(n + 1)
        }
    }
}
