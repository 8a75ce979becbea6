//! [`Part`]: a registry plugin for tests and demos. It knows its name and
//! version, carries a count across reloads (its state), can fail at init,
//! at restore or in a call, can hold its `init` on a host-supplied hook,
//! and records in a shared [`Parts`] book every shutdown and every use of a
//! version that was already shut down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::manifest::{Manifest, ManifestError, Version};
use crate::registry::Package;
use crate::{BoxError, Hooks, Stateful};

/// Shared record of every [`Part`] version's life.
#[derive(Debug, Default)]
pub struct Parts {
    /// `plugin@version` -> shutdowns run.
    pub shutdowns: Mutex<BTreeMap<String, u64>>,
    /// Uses of a version after its shutdown began (must stay 0).
    pub used_after_shutdown: AtomicU64,
    /// Inits run.
    pub inits: AtomicU64,
}

/// Called at the start of a [`Part`]'s `init` (to block it, or to record
/// when it ran).
pub type InitHook = Arc<dyn Fn(&str, &Version) + Send + Sync>;

/// Holds a [`Part`]'s `init` until the test lets it go: for a test that
/// needs a reload to be inside `init` (holding its turns) at a known
/// moment. [`PartFaults::held`] makes the faults and the gate together.
#[derive(Clone)]
pub struct InitGate {
    entered: Arc<std::sync::Barrier>,
    go: Arc<std::sync::Barrier>,
}

impl InitGate {
    /// Returns once the held `init` has started (it then waits for
    /// [`release`](Self::release)).
    pub fn entered(&self) {
        self.entered.wait();
    }

    /// Lets the held `init` go on.
    pub fn release(&self) {
        self.go.wait();
    }
}

impl PartFaults {
    /// Faults that hold `init` at an [`InitGate`], and the gate. Each gate
    /// holds one `init` once.
    pub fn held() -> (PartFaults, InitGate) {
        let gate = InitGate {
            entered: Arc::new(std::sync::Barrier::new(2)),
            go: Arc::new(std::sync::Barrier::new(2)),
        };
        let held = gate.clone();
        let faults = PartFaults {
            on_init: Some(Arc::new(move |_: &str, _: &Version| {
                held.entered.wait();
                held.go.wait();
            })),
            ..PartFaults::default()
        };
        (faults, gate)
    }
}

/// How a [`Part`] version misbehaves.
#[derive(Clone, Default)]
pub struct PartFaults {
    /// `init` returns an error.
    pub fail_init: bool,
    /// `init` panics.
    pub panic_init: bool,
    /// `restore` returns an error (a failure at commit, in quiesced mode).
    pub fail_restore: bool,
    /// Runs first thing in `init`.
    pub on_init: Option<InitHook>,
}

impl std::fmt::Debug for PartFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartFaults")
            .field("fail_init", &self.fail_init)
            .field("panic_init", &self.panic_init)
            .field("fail_restore", &self.fail_restore)
            .field("on_init", &self.on_init.is_some())
            .finish()
    }
}

/// A registry plugin version: a count carried across reloads, faults to
/// inject, and a shared [`Parts`] book of its life.
#[derive(Debug)]
pub struct Part {
    name: String,
    version: Version,
    count: AtomicU64,
    alive: AtomicBool,
    faults: PartFaults,
    book: Arc<Parts>,
}

impl Part {
    /// Version `version` of plugin `name`.
    ///
    /// # Panics
    ///
    /// If `version` is not semver (test input).
    pub fn new(name: &str, version: &str, book: &Arc<Parts>) -> Self {
        Part {
            name: name.to_owned(),
            version: version.parse().expect("a semver version"),
            count: AtomicU64::new(0),
            alive: AtomicBool::new(false),
            faults: PartFaults::default(),
            book: Arc::clone(book),
        }
    }

    /// With faults.
    #[must_use]
    pub fn with_faults(mut self, faults: PartFaults) -> Self {
        self.faults = faults;
        self
    }

    /// A package of this part: a manifest exporting `run`, requiring each
    /// `(plugin, range)` and using its `run`; the content is the manifest's
    /// bytes.
    ///
    /// # Errors
    ///
    /// A bad range.
    pub fn package(self, requires: &[(&str, &str)]) -> Result<Package<Part>, ManifestError> {
        let manifest = requires.iter().try_fold(
            Manifest::new(&self.name, &self.version.to_string())?.export("run")?,
            |m, (dep, range)| m.requires(dep, range, &["run"]),
        )?;
        let content = manifest.encode();
        Ok(Package::new(self, manifest, content))
    }

    /// The version.
    pub fn semver(&self) -> &Version {
        &self.version
    }

    /// A call: counts one, and records a use after shutdown if there is one.
    pub fn run(&self) -> u64 {
        if !self.alive.load(Ordering::Acquire) {
            self.book
                .used_after_shutdown
                .fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether this version is initialized and not shut down.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Its count (carried across quiesced reloads).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Hooks for Part {
    type Context = ();

    fn name(&self) -> &str {
        &self.name
    }

    fn init(&mut self, (): &()) -> Result<(), BoxError> {
        if let Some(hook) = &self.faults.on_init {
            hook(&self.name, &self.version);
        }
        self.book.inits.fetch_add(1, Ordering::Relaxed);
        if self.faults.panic_init {
            panic!("{}@{} panics in init", self.name, self.version);
        }
        if self.faults.fail_init {
            return Err(format!("{}@{} fails init", self.name, self.version).into());
        }
        self.alive.store(true, Ordering::Release);
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.alive.store(false, Ordering::Release);
        *self
            .book
            .shutdowns
            .lock()
            .entry(format!("{}@{}", self.name, self.version))
            .or_default() += 1;
        Ok(())
    }
}

impl Stateful for Part {
    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(self.count().to_le_bytes().to_vec()))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        if self.faults.fail_restore {
            return Err(format!("{}@{} fails restore", self.name, self.version).into());
        }
        let bytes: [u8; 8] = state.try_into().map_err(|_| "count is 8 bytes")?;
        self.count
            .store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        Ok(())
    }
}
