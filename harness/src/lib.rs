//! Random sequences of everything a host can do to a [`Slot`], run against
//! the real `reload-core` and checked, after every step, against a reference
//! model built on the `lifecycle` table.
//!
//! The same harness runs under proptest (with shrinking, in `cargo test`),
//! under libFuzzer (`fuzz/`, on nightly), and as a replay of committed
//! regressions. Bytes become operations through [`decode`] (via the
//! `arbitrary` crate), so a fuzzer's input and a proptest case are the same
//! thing.
//!
//! ```
//! use harness::{run, Fault, Op};
//!
//! let report = run(&[
//!     Op::Enter { thread: 0 },
//!     Op::Replace { fault: Fault::None },
//!     Op::Call { lease: 0 },
//!     Op::WaitReleasing { handle: 0 },
//! ])
//! .expect("the slot matches the reference model");
//! assert_eq!(report.versions, 2);
//! ```

pub mod abi;
pub mod registry;
pub mod stateful;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use lifecycle::Phase;
use reload_core::testing::{Faults, Ledger, Probe};
use reload_core::{
    CallError, DrainError, Draining, Lease, Plugin, ReloadFault, Returned, Slot, SlotClosed,
    VersionInfo,
};

/// Calling threads in the pool that takes and releases leases.
pub const POOL: u8 = 2;
/// Operations decoded from one input, at most.
pub const MAX_OPS: usize = 64;

/// How a new version misbehaves.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// It does not.
    None,
    /// `link` fails.
    FailLink,
    /// `init` fails.
    FailInit,
    /// `init` panics.
    PanicInit,
    /// `shutdown` panics (later, when it is finalized).
    PanicShutdown,
}

/// One thing a host does.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Take a lease on pool thread `thread`.
    Enter {
        /// Which pool thread.
        thread: u8,
    },
    /// Call through a held lease (chosen modulo the leases held).
    Call {
        /// Which lease.
        lease: u8,
    },
    /// Give a held lease back, on pool thread `thread`.
    Release {
        /// Which lease.
        lease: u8,
        /// Which pool thread drops it.
        thread: u8,
    },
    /// Reload with a new version that misbehaves as `fault` says.
    Replace {
        /// Its fault.
        fault: Fault,
    },
    /// A call through `Slot::call` that panics.
    PanicCall,
    /// Wait on a draining handle with a deadline that has already passed.
    WaitDeadline {
        /// Which handle.
        handle: u8,
    },
    /// Wait, parked and unbounded, on a draining handle while pool threads
    /// release every lease on its version.
    WaitReleasing {
        /// Which handle.
        handle: u8,
    },
    /// Drop a draining handle unwaited (the slot adopts the version).
    DropHandle {
        /// Which handle.
        handle: u8,
    },
    /// Close the slot.
    Close,
    /// Finalize drained orphans.
    Reap,
}

/// Turns bytes into at most [`MAX_OPS`] operations. Any input decodes
/// (short or odd inputs give fewer operations).
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut u = Unstructured::new(bytes);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// Bytes one operation is decoded from by [`decode_op`].
pub const OP_BYTES: usize = 6;

/// Decodes one operation from its own chunk of bytes (missing bytes read as
/// zero). proptest generates a list of such chunks, so that shrinking
/// removes whole operations and simplifies each one on its own, which
/// shrinking one byte stream cannot do (removing a byte re-frames
/// everything after it).
pub fn decode_op(chunk: &[u8; OP_BYTES]) -> Op {
    let mut u = Unstructured::new(chunk);
    Op::arbitrary(&mut u).unwrap_or(Op::Reap)
}

/// Whether a panic is one the harness causes on purpose (a misbehaving
/// probe, a panicking call) and the slot contains. Test and fuzz panic hooks
/// stay quiet (or, under libFuzzer, let it unwind) for these, and only these.
pub fn is_expected_panic(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    msg.is_some_and(|m| m.starts_with("probe ") || m.starts_with("harness:"))
}

/// The real system disagreed with the reference model, or broke the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index of the operation after which it was seen (`ops.len()` for the
    /// final checks).
    pub step: usize,
    /// The operation, if any.
    pub op: Option<Op>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Some(op) => write!(f, "after step {} ({op:?}): {}", self.step, self.message),
            None => write!(f, "at the end: {}", self.message),
        }
    }
}

impl std::error::Error for Violation {}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Versions installed (first included).
    pub versions: u64,
    /// Reloads refused by a failing hook.
    pub failed_reloads: u64,
    /// Calls served.
    pub calls: u64,
}

/// Runs `ops` against a fresh slot and the reference model, checking after
/// every step and at the end (where every lease is released and every
/// version finalized: each installed version must then have been shut down
/// exactly once and dropped exactly once).
///
/// # Errors
///
/// The first [`Violation`] seen.
pub fn run(ops: &[Op]) -> Result<Report, Violation> {
    let ledger = Ledger::new();
    let first = Plugin::new(Probe::new(0, &ledger))
        .ready(&())
        .map_err(|e| Violation {
            step: 0,
            op: None,
            message: format!("the first probe failed to prepare: {e}"),
        })?;
    let slot = Slot::new(first);
    let result = thread::scope(|s| {
        let (pool, threads) = spawn_pool(s, &slot);
        let mut h = Host::new(pool, &slot, &ledger);
        let outcome = (|| {
            for (step, op) in ops.iter().enumerate() {
                let at = |message| Violation {
                    step,
                    op: Some(*op),
                    message,
                };
                h.step(*op).map_err(at)?;
                h.check().map_err(at)?;
            }
            Ok(())
        })();
        let finished = outcome.and_then(|()| {
            h.finish().map_err(|message| Violation {
                step: ops.len(),
                op: None,
                message,
            })
        });
        drop(h);
        // Join, not just wait: `scope` returns once the closures return,
        // while the threads may still be running their thread-local
        // destructors (LeakSanitizer under the fuzzer sees those as leaks).
        for t in threads {
            let _ = t.join();
        }
        finished
    });
    let report = result?;
    drop(slot);
    final_ledger_check(&ledger, &report).map_err(|message| Violation {
        step: ops.len(),
        op: None,
        message,
    })?;
    Ok(report)
}

fn faults_of(fault: Fault) -> Faults {
    let mut f = Faults::default();
    match fault {
        Fault::None => {}
        Fault::FailLink => f.fail_link = true,
        Fault::FailInit => f.fail_init = true,
        Fault::PanicInit => f.panic_init = true,
        Fault::PanicShutdown => f.panic_shutdown = true,
    }
    f
}

/// Every probe: installed ones shut down once and dropped once; refused
/// ones never shut down and dropped once; no call after a shutdown began.
fn final_ledger_check(ledger: &Ledger, report: &Report) -> Result<(), String> {
    if ledger.calls_after_shutdown() != 0 {
        return Err(format!(
            "{} calls ran after shutdown",
            ledger.calls_after_shutdown()
        ));
    }
    let records = ledger.records();
    let installed = records.values().filter(|r| r.shutdowns == 1).count() as u64;
    if installed != report.versions {
        return Err(format!(
            "{installed} versions shut down, {} installed",
            report.versions
        ));
    }
    for (id, r) in &records {
        if r.drops != 1 || r.shutdowns > 1 {
            return Err(format!(
                "probe {id}: shut down {} times, dropped {} times",
                r.shutdowns, r.drops
            ));
        }
    }
    let calls: u64 = records.values().map(|r| r.calls).sum();
    if calls != report.calls {
        return Err(format!(
            "probes counted {calls} calls, the host made {}",
            report.calls
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- the model

/// The reference model of one version.
#[derive(Debug, Clone)]
struct Model {
    phase: Phase,
    probe: u64,
    leases: usize,
    orphaned: bool,
    panics_on_shutdown: bool,
}

/// The reference model of the slot. Phases move only along the `lifecycle`
/// table; a move it does not allow is itself a violation (S5).
#[derive(Debug, Default)]
struct Reference {
    versions: BTreeMap<u64, Model>,
    current: Option<u64>,
    next_generation: u64,
    reloads: u64,
    failed_reloads: u64,
}

impl Reference {
    fn advance(&mut self, generation: u64, to: Phase) -> Result<(), String> {
        let v = self
            .versions
            .get_mut(&generation)
            .ok_or_else(|| format!("model has no generation {generation}"))?;
        if !v.phase.can_transition_to(to) {
            return Err(format!(
                "generation {generation}: {} -> {to} is not a lifecycle edge",
                v.phase
            ));
        }
        v.phase = to;
        Ok(())
    }

    fn install(&mut self, probe: u64, panics_on_shutdown: bool) -> Result<u64, String> {
        let generation = self.next_generation + 1;
        self.next_generation = generation;
        let mut v = Model {
            phase: Phase::Loaded,
            probe,
            leases: 0,
            orphaned: false,
            panics_on_shutdown,
        };
        for to in [Phase::Linked, Phase::Initialized, Phase::Active] {
            if !v.phase.can_transition_to(to) {
                return Err(format!("{} -> {to} is not a lifecycle edge", v.phase));
            }
            v.phase = to;
        }
        self.versions.insert(generation, v);
        if let Some(old) = self.current.replace(generation) {
            self.advance(old, Phase::Draining)?;
        }
        Ok(generation)
    }

    /// Orphans with no lease out are finalized; returns how many.
    fn reap(&mut self) -> Result<usize, String> {
        let ready: Vec<u64> = self
            .versions
            .iter()
            .filter(|(_, v)| v.orphaned && v.leases == 0 && v.phase == Phase::Draining)
            .map(|(g, _)| *g)
            .collect();
        for g in &ready {
            self.advance(*g, Phase::Removed)?;
        }
        Ok(ready.len())
    }

    fn expected_versions(&self) -> Vec<VersionInfo> {
        self.versions
            .iter()
            .filter(|(_, v)| matches!(v.phase, Phase::Active | Phase::Draining))
            .map(|(g, v)| VersionInfo {
                generation: *g,
                phase: v.phase,
                in_flight: v.leases,
                orphaned: v.orphaned,
            })
            .collect()
    }
}

// ----------------------------------------------------------------- the host

enum Cmd<'s> {
    Enter(Sender<Result<Lease<'s, Probe>, SlotClosed>>),
    Drop(Lease<'s, Probe>, Option<Duration>, Sender<()>),
}

struct Host<'s> {
    slot: &'s Slot<Probe>,
    ledger: &'s Arc<Ledger>,
    pool: Vec<Sender<Cmd<'s>>>,
    leases: Vec<(Lease<'s, Probe>, u64)>,
    handles: Vec<(Plugin<Probe, Draining>, u64)>,
    model: Reference,
    next_probe: u64,
    report: Report,
}

/// The pool threads: each takes and drops leases on command. Dropping the
/// senders ends them.
#[allow(clippy::type_complexity)]
fn spawn_pool<'scope, 's: 'scope>(
    s: &'scope Scope<'scope, '_>,
    slot: &'s Slot<Probe>,
) -> (
    Vec<Sender<Cmd<'s>>>,
    Vec<thread::ScopedJoinHandle<'scope, ()>>,
) {
    (0..POOL)
        .map(|_| {
            let (tx, rx): (Sender<Cmd<'s>>, Receiver<Cmd<'s>>) = channel();
            let handle = s.spawn(move || {
                for cmd in rx {
                    match cmd {
                        Cmd::Enter(reply) => {
                            let _ = reply.send(slot.enter());
                        }
                        Cmd::Drop(lease, delay, ack) => {
                            if let Some(d) = delay {
                                thread::sleep(d);
                            }
                            drop(lease);
                            let _ = ack.send(());
                        }
                    }
                }
            });
            (tx, handle)
        })
        .unzip()
}

impl<'s> Host<'s> {
    fn new(pool: Vec<Sender<Cmd<'s>>>, slot: &'s Slot<Probe>, ledger: &'s Arc<Ledger>) -> Self {
        let mut model = Reference::default();
        let _ = model.install(0, false);
        Host {
            slot,
            ledger,
            pool,
            leases: Vec::new(),
            handles: Vec::new(),
            model,
            next_probe: 1,
            report: Report {
                versions: 1,
                ..Report::default()
            },
        }
    }

    fn on_pool(&self, thread: u8, cmd: Cmd<'s>) -> Result<(), String> {
        self.pool[usize::from(thread % POOL)]
            .send(cmd)
            .map_err(|_| "pool thread gone".to_owned())
    }

    fn drop_lease(
        &mut self,
        index: usize,
        thread: u8,
        delay: Option<Duration>,
    ) -> Result<Receiver<()>, String> {
        let (lease, generation) = self.leases.swap_remove(index);
        if let Some(v) = self.model.versions.get_mut(&generation) {
            v.leases -= 1;
        }
        let (ack, done) = channel();
        self.on_pool(thread, Cmd::Drop(lease, delay, ack))?;
        Ok(done)
    }

    fn step(&mut self, op: Op) -> Result<(), String> {
        match op {
            Op::Enter { thread } => {
                let (reply, got) = channel();
                self.on_pool(thread, Cmd::Enter(reply))?;
                let got = got.recv().map_err(|_| "pool thread gone")?;
                match (got, self.model.current) {
                    (Ok(lease), Some(current)) => {
                        if lease.generation() != current {
                            return Err(format!(
                                "lease on generation {}, current is {current}",
                                lease.generation()
                            ));
                        }
                        if let Some(v) = self.model.versions.get_mut(&current) {
                            v.leases += 1;
                        }
                        self.leases.push((lease, current));
                    }
                    (Err(SlotClosed), None) => {}
                    (Ok(_), None) => return Err("a closed slot granted a lease".into()),
                    (Err(SlotClosed), Some(_)) => {
                        return Err("S3: an open slot refused a call".into())
                    }
                }
            }
            Op::Call { lease } => {
                if self.leases.is_empty() {
                    return Ok(());
                }
                let (lease, generation) = &self.leases[usize::from(lease) % self.leases.len()];
                let probe = self.model.versions[generation].probe;
                let served = lease.call();
                self.report.calls += 1;
                if served != probe {
                    return Err(format!(
                        "lease on generation {generation} reached probe {served}, not {probe}"
                    ));
                }
            }
            Op::Release { lease, thread } => {
                if self.leases.is_empty() {
                    return Ok(());
                }
                let index = usize::from(lease) % self.leases.len();
                let done = self.drop_lease(index, thread, None)?;
                done.recv().map_err(|_| "pool thread gone")?;
            }
            Op::Replace { fault } => self.replace(fault)?,
            Op::PanicCall => {
                let got = self.slot.call(|p| -> u64 {
                    p.call();
                    panic!("harness: the call panicked");
                });
                match (got, self.model.current) {
                    (Err(CallError::Panicked(f)), Some(current)) => {
                        self.report.calls += 1;
                        if f.generation != Some(current) {
                            return Err(format!(
                                "panic reported for {:?}, current {current}",
                                f.generation
                            ));
                        }
                    }
                    (Err(CallError::Closed(_)), None) => {}
                    (other, current) => {
                        return Err(format!("PanicCall gave {other:?} with current {current:?}"))
                    }
                }
            }
            Op::WaitDeadline { handle } => {
                if self.handles.is_empty() {
                    return Ok(());
                }
                let index = usize::from(handle) % self.handles.len();
                let (draining, generation) = self.handles.swap_remove(index);
                let drained = self.model.versions[&generation].leases == 0;
                match draining.wait_deadline(Instant::now()) {
                    Err(DrainError::TimedOut(back)) if !drained => {
                        self.handles.push((back, generation))
                    }
                    Err(DrainError::TimedOut(_)) => {
                        return Err("L2: a drained version timed out".into())
                    }
                    Ok(removed) if drained => {
                        self.removed(generation, removed.report().generation, true)?
                    }
                    Err(DrainError::Shutdown(e)) if drained => {
                        let g = e.into_inner().report().generation;
                        self.removed(generation, g, false)?;
                    }
                    _ => return Err("S1: a version with leases out finished draining".into()),
                }
            }
            Op::WaitReleasing { handle } => {
                if self.handles.is_empty() {
                    return Ok(());
                }
                let index = usize::from(handle) % self.handles.len();
                let (draining, generation) = self.handles.swap_remove(index);
                // Every lease on this version is released by a pool thread a
                // little later, while we are parked in `wait`.
                let mut acks = Vec::new();
                let mut i = 0;
                while i < self.leases.len() {
                    if self.leases[i].1 == generation {
                        let thread = (acks.len() % usize::from(POOL)) as u8;
                        acks.push(self.drop_lease(i, thread, Some(Duration::from_micros(200)))?);
                    } else {
                        i += 1;
                    }
                }
                let outcome = draining.wait();
                for ack in acks {
                    ack.recv().map_err(|_| "pool thread gone")?;
                }
                match outcome {
                    Ok(removed) => self.removed(generation, removed.report().generation, true)?,
                    Err(e) => {
                        let g = e.into_inner().report().generation;
                        self.removed(generation, g, false)?;
                    }
                }
            }
            Op::DropHandle { handle } => {
                if self.handles.is_empty() {
                    return Ok(());
                }
                let index = usize::from(handle) % self.handles.len();
                let (draining, generation) = self.handles.swap_remove(index);
                drop(draining);
                if let Some(v) = self.model.versions.get_mut(&generation) {
                    v.orphaned = true;
                }
                // Dropping a handle finalizes every drained orphan at once.
                self.model.reap()?;
            }
            Op::Close => {
                let closed = self.slot.close();
                match (closed, self.model.current.take()) {
                    (Some(draining), Some(current)) => {
                        if draining.generation() != current {
                            return Err(format!(
                                "closed generation {}, current {current}",
                                draining.generation()
                            ));
                        }
                        self.model.advance(current, Phase::Draining)?;
                        self.handles.push((draining, current));
                    }
                    (None, None) => {}
                    (got, expected) => {
                        return Err(format!(
                            "close gave {:?}, model expected {expected:?}",
                            got.map(|d| d.generation())
                        ))
                    }
                }
                // Every close reaps drained orphans, also on a closed slot.
                self.model.reap()?;
            }
            Op::Reap => {
                let reaped = self.slot.reap();
                let expected = self.model.reap()?;
                if reaped != expected {
                    return Err(format!("reaped {reaped}, model expected {expected}"));
                }
            }
        }
        Ok(())
    }

    fn replace(&mut self, fault: Fault) -> Result<(), String> {
        let id = self.next_probe;
        self.next_probe += 1;
        let next = Plugin::new(Probe::with_faults(id, self.ledger, faults_of(fault)));
        match (self.slot.reload(next, &()), fault, self.model.current) {
            (Ok(draining), Fault::None | Fault::PanicShutdown, Some(old)) => {
                if draining.generation() != old {
                    return Err(format!(
                        "replace handed back {}, current was {old}",
                        draining.generation()
                    ));
                }
                let generation = self.model.install(id, fault == Fault::PanicShutdown)?;
                self.model.reloads += 1;
                self.report.versions += 1;
                self.handles.push((draining, old));
                if self.slot.generation() != Some(generation) {
                    return Err(format!(
                        "S2: generation {:?} after replace, expected {generation}",
                        self.slot.generation()
                    ));
                }
                // A cut-over runs no other version's shutdown: orphans wait
                // for a reap.
            }
            (Err(e), Fault::FailLink | Fault::FailInit | Fault::PanicInit, _)
                if e.hook_failure().is_some()
                    && matches!(
                        (fault, e.plugin()),
                        (Fault::FailLink, Returned::Loaded(_))
                            | (Fault::FailInit | Fault::PanicInit, Returned::Linked(_))
                    ) =>
            {
                // S6, S7: the new version comes back, in the phase it
                // reached; the old keeps serving.
                self.model.failed_reloads += 1;
                self.report.failed_reloads += 1;
                if e.into_plugin().id() != id {
                    return Err("a refused reload handed back another plugin".into());
                }
            }
            (Err(e), Fault::None | Fault::PanicShutdown, None)
                if matches!(e.fault(), ReloadFault::Closed) =>
            {
                self.model.failed_reloads += 1;
                self.report.failed_reloads += 1;
                match e.into_returned().into_initialized() {
                    Ok(plugin) if plugin.get().id() == id => {}
                    _ => return Err("a refused replace handed back another plugin".into()),
                }
            }
            (Ok(d), f, current) => {
                return Err(format!(
                    "reload with {f:?} succeeded (gave {}), current {current:?}",
                    d.generation()
                ))
            }
            (Err(e), f, current) => {
                return Err(format!(
                    "reload with {f:?} failed: {e}, current {current:?}"
                ))
            }
        }
        Ok(())
    }

    /// A handle's wait returned its version, Removed.
    fn removed(&mut self, generation: u64, reported: u64, clean: bool) -> Result<(), String> {
        if reported != generation {
            return Err(format!(
                "removed generation {reported}, expected {generation}"
            ));
        }
        let v = &self.model.versions[&generation];
        if clean == v.panics_on_shutdown {
            return Err(format!(
                "generation {generation}: shutdown ok = {clean}, but its probe panics = {}",
                v.panics_on_shutdown
            ));
        }
        self.model.advance(generation, Phase::Removed)
    }

    /// The real slot against the model, after a step.
    fn check(&self) -> Result<(), String> {
        if self.ledger.calls_after_shutdown() != 0 {
            return Err("S1: a call ran after its version's shutdown began".into());
        }
        if self.slot.generation() != self.model.current {
            return Err(format!(
                "generation {:?}, model {:?}",
                self.slot.generation(),
                self.model.current
            ));
        }
        let real = self.slot.versions();
        let expected = self.model.expected_versions();
        if real != expected {
            return Err(format!("versions {real:?}, model {expected:?}"));
        }
        let records = self.ledger.records();
        for (g, v) in &self.model.versions {
            let shutdowns = records.get(&v.probe).map_or(0, |r| r.shutdowns);
            let expected = u64::from(v.phase == Phase::Removed);
            if shutdowns != expected {
                return Err(format!(
                    "S4: generation {g} shut down {shutdowns} times, model {expected}"
                ));
            }
        }
        let stats = self.slot.stats();
        if (stats.reloads, stats.failed_reloads) != (self.model.reloads, self.model.failed_reloads)
        {
            return Err(format!(
                "stats: {} reloads / {} failed, model {} / {}",
                stats.reloads, stats.failed_reloads, self.model.reloads, self.model.failed_reloads
            ));
        }
        Ok(())
    }

    /// Releases every lease, waits every handle, checks the totals, and
    /// ends the pool threads.
    fn finish(&mut self) -> Result<Report, String> {
        while !self.leases.is_empty() {
            let done = self.drop_lease(0, 0, None)?;
            done.recv().map_err(|_| "pool thread gone")?;
        }
        for (draining, generation) in std::mem::take(&mut self.handles) {
            match draining.wait() {
                Ok(r) => self.removed(generation, r.report().generation, true)?,
                Err(e) => {
                    let g = e.into_inner().report().generation;
                    self.removed(generation, g, false)?;
                }
            }
        }
        self.slot.reap();
        self.model.reap()?;
        self.check()?;
        self.pool.clear();
        Ok(self.report.clone())
    }
}
