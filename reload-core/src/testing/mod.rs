//! Instrumented plugins for tests, demos and harnesses.
//!
//! [`Probe`] records in its own state every call, every call that ran after
//! its `shutdown` began, and (in a shared [`Ledger`]) how often each version
//! was shut down and dropped. A correct slot keeps `after_shutdown` at zero
//! and every version's shutdown and drop counts at exactly one.
//!
//! [`Counter`] is a [`Stateful`](crate::Stateful) plugin: a counter (its
//! state, in one of three schemas), an index and a change stream (its
//! resources), with faults to inject at every step of a reload, and a shared
//! [`Book`] that records which version's resources are open.
//!
//! [`Part`] is a registry plugin that knows its name and version, with
//! faults at init and restore, recording uses after shutdown in [`Parts`].

mod counter;
#[cfg(feature = "registry")]
mod part;
pub use counter::{Book, Counter, CounterFaults, ResourceState};
#[cfg(feature = "registry")]
pub use part::{InitGate, InitHook, Part, PartFaults, Parts};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::{BoxError, Hooks};

/// How a [`Probe`] misbehaves, to exercise the failure paths.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// `link` returns an error.
    pub fail_link: bool,
    /// `init` returns an error.
    pub fail_init: bool,
    /// `init` panics.
    pub panic_init: bool,
    /// `shutdown` panics (it still counts as run).
    pub panic_shutdown: bool,
    /// Each call sleeps this long (a slow version, to keep drains busy).
    pub call_delay: Option<Duration>,
    /// Every n-th call panics (after it was counted).
    pub panic_every: Option<u64>,
    /// `name` panics (from its n-th use on; `Some(1)`: always), to check
    /// that the library never lets plugin code it asks for a name unwind
    /// through it.
    pub panic_name_from: Option<u64>,
    /// `version` panics.
    pub panic_version: bool,
    /// `Drop` panics (after it recorded the drop in the ledger).
    pub panic_drop: bool,
}

/// What happened to each version, shared by all the probes of a test.
#[derive(Debug, Default)]
pub struct Ledger {
    versions: Mutex<BTreeMap<u64, Record>>,
    after_shutdown: AtomicU64,
}

/// One version's record in a [`Ledger`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Times its `shutdown` hook ran.
    pub shutdowns: u64,
    /// Times the value was dropped.
    pub drops: u64,
    /// Calls it served (recorded when it is dropped).
    pub calls: u64,
}

impl Record {
    /// The record of a version finalized exactly once (shut down once,
    /// dropped once) that served `calls` calls.
    pub fn finalized_once(calls: u64) -> Record {
        Record {
            shutdowns: 1,
            drops: 1,
            calls,
        }
    }
}

impl Ledger {
    /// A new, shared ledger.
    pub fn new() -> Arc<Ledger> {
        Arc::default()
    }

    /// Every version's record, by probe id.
    pub fn records(&self) -> BTreeMap<u64, Record> {
        self.versions.lock().clone()
    }

    /// Calls, across all probes, that ran while or after `shutdown` ran.
    pub fn calls_after_shutdown(&self) -> u64 {
        self.after_shutdown.load(Ordering::SeqCst)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Record)) {
        f(self.versions.lock().entry(id).or_default());
    }
}

/// A plugin that checks, from inside, that it is never called once its
/// shutdown began.
#[derive(Debug)]
pub struct Probe {
    id: u64,
    label: String,
    faults: Faults,
    ledger: Arc<Ledger>,
    shut: AtomicBool,
    calls: AtomicU64,
    names: AtomicU64,
}

impl Probe {
    /// Probe number `id` (its version label), recording into `ledger`.
    pub fn new(id: u64, ledger: &Arc<Ledger>) -> Self {
        Probe::with_faults(id, ledger, Faults::default())
    }

    /// Probe `id`, linked and initialized: ready to serve or to replace
    /// the current version.
    ///
    /// # Panics
    ///
    /// Never for a probe without faults (its `link` and `init` succeed).
    pub fn ready(id: u64, ledger: &Arc<Ledger>) -> crate::Plugin<Probe, crate::Initialized> {
        match crate::Plugin::new(Probe::new(id, ledger)).ready(&()) {
            Ok(ready) => ready,
            Err(e) => panic!("a fault-free probe prepares: {e}"),
        }
    }

    /// A probe that misbehaves as `faults` says.
    pub fn with_faults(id: u64, ledger: &Arc<Ledger>, faults: Faults) -> Self {
        Probe {
            id,
            label: id.to_string(),
            faults,
            ledger: Arc::clone(ledger),
            shut: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            names: AtomicU64::new(0),
        }
    }

    /// The probe's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Serves one call: returns the probe's id. Records the call, and
    /// whether `shutdown` had begun when it started or finished.
    ///
    /// # Panics
    ///
    /// Every n-th call, if [`Faults::panic_every`] says so.
    pub fn call(&self) -> u64 {
        // SeqCst on the flag: a call that overlaps shutdown in any way is
        // caught at entry or at exit.
        let before = self.shut.load(Ordering::SeqCst);
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(delay) = self.faults.call_delay {
            std::thread::sleep(delay);
        }
        let after = self.shut.load(Ordering::SeqCst);
        if before || after {
            self.ledger.after_shutdown.fetch_add(1, Ordering::SeqCst);
        }
        if self
            .faults
            .panic_every
            .is_some_and(|every| n.is_multiple_of(every.max(1)))
        {
            panic!("probe {}: call {n} panicked", self.id);
        }
        self.id
    }

    /// Calls served so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Whether `shutdown` ran.
    pub fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }
}

impl Hooks for Probe {
    type Context = ();

    fn name(&self) -> &str {
        let n = self.names.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.panic_name_from.is_some_and(|from| n >= from) {
            panic!("probe {}: name panicked", self.id);
        }
        "probe"
    }

    fn version(&self) -> &str {
        if self.faults.panic_version {
            panic!("probe {}: version panicked", self.id);
        }
        &self.label
    }

    fn link(&mut self) -> Result<(), BoxError> {
        if self.faults.fail_link {
            return Err(format!("probe {}: link refused", self.id).into());
        }
        Ok(())
    }

    fn init(&mut self, _: &()) -> Result<(), BoxError> {
        if self.faults.panic_init {
            panic!("probe {}: init panicked", self.id);
        }
        if self.faults.fail_init {
            return Err(format!("probe {}: init refused", self.id).into());
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.shut.store(true, Ordering::SeqCst);
        self.ledger.update(self.id, |r| r.shutdowns += 1);
        if self.faults.panic_shutdown {
            panic!("probe {}: shutdown panicked", self.id);
        }
        Ok(())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let calls = self.calls();
        self.ledger.update(self.id, |r| {
            r.drops += 1;
            r.calls += calls;
        });
        if self.faults.panic_drop && !std::thread::panicking() {
            panic!("probe {}: drop panicked", self.id);
        }
    }
}

/// No state and no resources: a probe reloads through
/// [`Slot::prepare`](crate::Slot::prepare) too.
impl crate::Stateful for Probe {}
