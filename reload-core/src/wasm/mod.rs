//! Plugins as WebAssembly modules (the `wasm` feature, on `wasmtime`): a
//! second plugin kind beside native libraries, with the same slot, drain,
//! registry and reload transaction, and three things a native library
//! cannot give:
//!
//! - **a sandbox**: a module sees only its own linear memory (it imports
//!   nothing), and every pointer and length it hands back is checked
//!   against that memory before a byte is read ([`WasmError::OutOfBounds`]);
//! - **bounded calls**: each call runs under a deadline on the clock
//!   (checked at the engine's epoch ticks, every [`TICK`]), and optionally
//!   a fuel budget, inside a store whose memory is capped. The deadline and
//!   the fuel are the call's whole budget: a call that must first make its
//!   pooled instance and run its `reload_init` spends both from the same
//!   budget. A call that runs past its deadline is interrupted
//!   ([`WasmError::Interrupted`]) no sooner than the deadline and at most
//!   one tick plus scheduling after it; the version serves other calls on,
//!   and a reload's drain is bounded even if a plugin loops forever (on a
//!   stateful guest, whose calls take turns, a queued call's deadline
//!   starts when it gets the instance: `n` calls in flight, `n` deadlines).
//!   A deadline the clock cannot represent from now (`Duration::MAX`) is
//!   no deadline: only fuel then bounds a call;
//! - **clean unloading**: a version's code and memory go when the version
//!   is dropped after its drain; nothing stays mapped.
//!
//! # The guest ABI
//!
//! A module exports `memory` and:
//!
//! | export | type | what |
//! |---|---|---|
//! | `reload_alloc` | `(len: i32) -> i32` | a buffer of `len` bytes for the host's input |
//! | `reload_call` | `(ptr: i32, len: i32) -> i64` | one call |
//! | `reload_init` | `(ptr, len) -> i64` | optional: initialize with the host's configuration bytes |
//! | `reload_shutdown` | `() -> i64` | optional: after the last call |
//! | `reload_describe` | `() -> i64` | optional: state schema and resources ([`wire::encode_description`]) |
//! | `reload_save` | `() -> i64` | optional: [`wire::encode_saved`] |
//! | `reload_migrate`, `reload_restore`, `reload_persist`, `reload_check_compat`, `reload_open`, `reload_checkpoint`, `reload_resume`, `reload_close` | `(ptr, len) -> i64` | optional: the rest of `Stateful`, with the native ABI's encodings |
//!
//! Every `i64` reply packs a pointer and a length, `ptr << 32 | len`, into
//! the guest's memory: the first byte is the status (0 ok, 1 failed, the
//! rest being the message) and the rest the payload. The manifest travels
//! in a custom section named `reload-manifest` ([`manifest_section`]), read
//! and verified before the module is compiled; each `export` it lists must
//! be a function the module exports, checked from the compiled module's
//! exports before anything is instantiated.
//!
//! # Many threads at once
//!
//! A wasmtime `Store` is not `Sync`, so a version keeps instances:
//!
//! - a **stateful** module (one that exports `reload_save` or
//!   `reload_restore`, or declares resources) has one instance, and its
//!   calls take turns on it: its state is one state;
//! - a **stateless** module keeps a pool: a call takes a spare instance (or
//!   makes one, initialized with the same configuration), and gives it back
//!   after; at most [`Limits::pool`] spares are kept. An instance whose call
//!   trapped is discarded, so a trap cannot leave a half-updated instance
//!   serving.
//!
//! `docs/wasm.md` has the design, the measurements and how to build a guest
//! from Rust, C or other languages.

#[cfg(feature = "component")]
pub mod component;
mod guest;
mod section;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reload_abi::wire;
use wasmtime::{Config, Engine, ExternType, Module, ValType};

use guest::{Budget, Guest};
pub use section::{
    append_custom_section, custom_section, is_component, manifest_section, SectionError,
    MANIFEST_SECTION,
};
/// The wasmtime this feature is built on, for hosts that name its types
/// (and `bindgen!`'s `wasmtime_crate`), so they use the same version.
pub use wasmtime;

use crate::background::{self, ThreadExit, ThreadHealth};
use crate::manifest::{Manifest, ManifestError};
use crate::registry::Package;
use crate::{BoxError, Hooks, Resource, Stateful};

/// How often the ticker advances the engine's epoch: how often a running
/// call's deadline is looked at, so how late past it an interrupt can come.
pub const TICK: Duration = Duration::from_millis(2);

/// The bounds of every call into a version, and its pool. Every value of
/// every field is accepted and means what it says; the edges:
///
/// | field | at its least | at its most |
/// |---|---|---|
/// | `deadline` | `ZERO`: a call is interrupted at its first look at the clock, one tick in (a call that returns before never is) | a span the clock cannot represent from now (`Duration::MAX`): no deadline |
/// | `fuel` | `Some(0)`: every call (and `link`) runs out at its first metered instruction | `Some(u64::MAX)`: as much as wasmtime meters |
/// | `memory` | below a module's declared minimum: the module is refused at [`Runtime::package`] ([`WasmError::MemoryLimit`]) | `usize::MAX`: wasmtime's own limits |
/// | `pool` | `0`: no spare kept, every call on a stateless guest makes its instance | `usize::MAX`: every instance given back is kept |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A call running longer is interrupted: never sooner, and within one
    /// [`TICK`] (plus scheduling) after. Everything the call runs counts
    /// against it, including making and initializing the pooled instance
    /// it runs on.
    pub deadline: Duration,
    /// Fuel per call, spent like the deadline (`None`: unmetered). Metering
    /// costs compiled code a counter on every basic block, for every module
    /// of the runtime.
    pub fuel: Option<u64>,
    /// The most linear memory an instance may grow to, in bytes.
    pub memory: usize,
    /// Spare instances a stateless version keeps.
    pub pool: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(1),
            fuel: None,
            memory: 64 << 20,
            pool: thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Why a module was refused, or a call into it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// The bytes are not a module with a manifest section.
    #[error("{0}")]
    Section(#[from] SectionError),
    /// The manifest section does not decode.
    #[error("bad manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// wasmtime could not compile the module (or start the engine).
    #[error("the module does not compile: {0}")]
    Compile(String),
    /// An export the ABI, the manifest or the host needs is missing.
    #[error("the module does not export `{name}`")]
    MissingExport {
        /// Its name.
        name: String,
    },
    /// An export has the wrong type.
    #[error("`{name}` has the wrong type: {reason}")]
    Signature {
        /// Its name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The guest trapped (out-of-bounds access, `unreachable`, ...).
    #[error("`{entry}` trapped: {message}")]
    Trap {
        /// The entry point.
        entry: &'static str,
        /// wasmtime's description.
        message: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("`{entry}` was interrupted at its deadline ({deadline:?})")]
    Interrupted {
        /// The entry point.
        entry: &'static str,
        /// The deadline.
        deadline: Duration,
    },
    /// The call used up its fuel.
    #[error("`{entry}` ran out of fuel")]
    OutOfFuel {
        /// The entry point.
        entry: &'static str,
    },
    /// A pointer and length the guest handed back do not lie inside its
    /// memory.
    #[error(
        "`{entry}` pointed outside its memory: {len} bytes at {ptr}, memory is {memory} bytes"
    )]
    OutOfBounds {
        /// The entry point.
        entry: &'static str,
        /// The pointer.
        ptr: u64,
        /// The length.
        len: u64,
        /// The memory's size.
        memory: u64,
    },
    /// A reply that is not a status and a payload.
    #[error("`{entry}` returned a bad reply: {reason}")]
    BadReply {
        /// The entry point.
        entry: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The guest reported a failure.
    #[error("`{entry}` failed: {message}")]
    Failed {
        /// The entry point.
        entry: &'static str,
        /// Its message.
        message: String,
    },
    /// A structured reply does not decode.
    #[error("`{entry}` returned bytes that do not decode: {source}")]
    Garbage {
        /// The entry point.
        entry: &'static str,
        /// The decoder's error.
        source: wire::WireError,
    },
    /// Called before `link` (a bug in the host).
    #[error("the module is not instantiated")]
    NotLinked,
    /// The module declares more memory than [`Limits::memory`] allows: no
    /// instance of it could be made.
    #[error("the module needs {needs} bytes of memory; the limit is {limit}")]
    MemoryLimit {
        /// Its declared minimum, in bytes.
        needs: u64,
        /// [`Limits::memory`].
        limit: usize,
    },
    /// The runtime's epoch ticker has ended, so no deadline could be kept:
    /// the call is refused rather than run unbounded.
    #[error("calls are refused: {0}")]
    TickerStopped(ThreadExit),
    /// A component exports no version of an interface the host binds (or
    /// the library's own `reload:plugin` interfaces at a version this
    /// library cannot call) that is semver-compatible with what is
    /// wanted. Checked before anything is instantiated.
    #[error("no compatible interface: wants {wanted}; the component exports {found}")]
    Incompatible {
        /// What the host (or the library) can bind, by alternative.
        wanted: String,
        /// The interfaces the component exports.
        found: String,
    },
    /// A component's imports are not what the host offers (a missing host
    /// function, or one of another type). Checked before instantiation.
    #[error("the component's imports do not match the host's: {0}")]
    Imports(String),
    /// A stateful component's instance failed inside the engine (a trap,
    /// its deadline, its fuel, a reply that does not lift), so wasmtime
    /// will not enter it again and its state went with it: every later
    /// call of that version fails with this, naming the first failure,
    /// until a reload replaces it (see `wasm::component`'s docs).
    #[error("the instance was lost to an earlier failure ({cause}); reload to serve again")]
    Poisoned {
        /// The failure that lost it.
        cause: String,
    },
}

/// The engine every version of a runtime compiles on, with its epoch
/// ticker and the limits calls run under. Cheap to clone; the ticker stops
/// when the last clone (and the last version made by it) goes.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    limits: Limits,
    /// Exports every version must have, for the host's own calls.
    required: Vec<String>,
    stop: Arc<AtomicBool>,
    ticker: Mutex<Option<thread::JoinHandle<()>>>,
    ticker_health: ThreadHealth,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.lock().take() {
            let _ = t.join();
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.inner.limits)
            .field("required", &self.inner.required)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// An engine with epoch interruption (and fuel metering if
    /// `limits.fuel` is set), and its ticker.
    ///
    /// # Errors
    ///
    /// [`WasmError::Compile`] if wasmtime cannot start on this machine.
    pub fn new(limits: Limits) -> Result<Self, WasmError> {
        Self::with_required(limits, &[])
    }

    /// Like [`Runtime::new`], refusing any version that does not export
    /// each of `required` (the functions the host itself calls), checked
    /// from the module's exports before instantiation.
    ///
    /// # Errors
    ///
    /// As [`Runtime::new`].
    pub fn with_required(limits: Limits, required: &[&str]) -> Result<Self, WasmError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(limits.fuel.is_some());
        let engine = Engine::new(&config).map_err(|e| WasmError::Compile(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker, ticker_health) = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            background::spawn("reload-core-wasm-epoch", move || {
                tick(&engine, &stop);
                Ok(())
            })
            .map_err(|e| WasmError::Compile(format!("the epoch ticker: {e}")))?
        };
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                limits,
                required: required.iter().map(|s| (*s).to_owned()).collect(),
                stop,
                ticker: Mutex::new(Some(ticker)),
                ticker_health,
            }),
        })
    }

    /// The epoch ticker's health: while it runs, deadlines hold; if it
    /// ever ended on its own, every call is refused with
    /// [`WasmError::TickerStopped`] naming why.
    pub fn ticker(&self) -> &ThreadHealth {
        &self.inner.ticker_health
    }

    /// The limits calls run under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// `Ok` while the ticker runs: without it no deadline would hold. One
    /// atomic load per call; the exit is read only once it ended.
    fn ticking(&self) -> Result<(), WasmError> {
        let health = &self.inner.ticker_health;
        if health.is_running() {
            return Ok(());
        }
        Err(WasmError::TickerStopped(health.exit().unwrap_or_else(
            || ThreadExit::Stopped {
                thread: health.name(),
                reason: "the runtime is shutting down".to_owned(),
            },
        )))
    }

    /// Reads the manifest from `bytes` (before compiling anything),
    /// compiles the module once, checks its exports, and makes a package
    /// whose content is `bytes` (what the registry's verifier checks).
    /// Nothing of the module runs until `link`.
    ///
    /// # Errors
    ///
    /// [`WasmError::Section`], [`WasmError::Manifest`],
    /// [`WasmError::Compile`], [`WasmError::MissingExport`],
    /// [`WasmError::Signature`].
    pub fn package(&self, bytes: impl Into<Arc<[u8]>>) -> Result<Package<WasmPlugin>, WasmError> {
        let runtime = self.clone();
        packaged(bytes.into(), move |m, b| runtime.plugin(m, b))
    }

    fn plugin(&self, manifest: &Manifest, bytes: &[u8]) -> Result<WasmPlugin, WasmError> {
        let module = Module::new(&self.inner.engine, bytes)
            .map_err(|e| WasmError::Compile(format!("{e:#}")))?;
        check_exports(&module, manifest, &self.inner.required)?;
        check_memory(&module, self.inner.limits.memory)?;
        let stateful = ["reload_save", "reload_restore", "reload_describe"]
            .iter()
            .any(|n| module.get_export(n).is_some());
        Ok(WasmPlugin {
            name: manifest.name().to_owned(),
            version: manifest.version().to_string(),
            exports: module.exports().map(|e| e.name().to_owned()).collect(),
            module,
            runtime: self.clone(),
            stateful,
            config: Vec::new(),
            primary: Mutex::new(None),
            spares: Mutex::new(Vec::new()),
            schema: 0,
            resources: Vec::new(),
        })
    }
}

/// A package of `bytes` for either form: the manifest read from its
/// section before anything is compiled, the plugin made by `make`, and
/// `make` kept as the recipe a revert makes it again with.
fn packaged<P: Hooks>(
    bytes: Arc<[u8]>,
    make: impl Fn(&Manifest, &[u8]) -> Result<P, WasmError> + Send + Sync + 'static,
) -> Result<Package<P>, WasmError> {
    let manifest = Manifest::decode(manifest_section(&bytes)?)?;
    let plugin = make(&manifest, &bytes)?;
    Ok(Package::new(plugin, manifest, bytes)
        .respawn(move |m: &Manifest, b: &[u8]| make(m, b).map_err(BoxError::from)))
}

/// The ticker's loop: the epoch follows the clock, one tick per [`TICK`]
/// since the start. Sleeping to the next tick's instant (not for a
/// `TICK`) keeps oversleeps from adding up, and a late wake catches up on
/// the ticks it missed, so the epoch never falls behind the clock by more
/// than one late wake.
fn tick(engine: &Engine, stop: &AtomicBool) {
    let mut next = Instant::now() + TICK;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        while next <= now {
            engine.increment_epoch();
            next += TICK;
        }
    }
}

fn func_type(module: &Module, name: &str) -> Option<wasmtime::FuncType> {
    match module.get_export(name)? {
        ExternType::Func(f) => Some(f),
        _ => None,
    }
}

fn is(types: impl ExactSizeIterator<Item = ValType>, want: &[&str]) -> bool {
    let got: Vec<&str> = types
        .map(|t| match t {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            _ => "other",
        })
        .collect();
    got == want
}

/// The module's exports against the ABI, the manifest and the host.
fn check_exports(
    module: &Module,
    manifest: &Manifest,
    required: &[String],
) -> Result<(), WasmError> {
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(WasmError::MissingExport {
            name: "memory".to_owned(),
        });
    }
    let abi: [(&'static str, &[&str], bool); 3] = [
        (guest::ALLOC, &["i32"], true),
        (guest::CALL, &["i32", "i32"], true),
        ("reload_shutdown", &[], false),
    ];
    for (name, params, needed) in abi {
        match func_type(module, name) {
            None if needed => {
                return Err(WasmError::MissingExport {
                    name: name.to_owned(),
                })
            }
            None => {}
            Some(ty) => {
                let results: &[&str] = if name == guest::ALLOC {
                    &["i32"]
                } else {
                    &["i64"]
                };
                if !is(ty.params(), params) || !is(ty.results(), results) {
                    return Err(WasmError::Signature {
                        name,
                        reason: format!(
                            "expected ({}) -> {}",
                            params.join(", "),
                            results.join(", ")
                        ),
                    });
                }
            }
        }
    }
    for &name in WITH_INPUT
        .iter()
        .chain(["reload_describe", "reload_save"].iter())
    {
        if let Some(ty) = func_type(module, name) {
            let params: &[&str] = if WITH_INPUT.contains(&name) {
                &["i32", "i32"]
            } else {
                &[]
            };
            if !is(ty.params(), params) || !is(ty.results(), &["i64"]) {
                return Err(WasmError::Signature {
                    name,
                    reason: format!("expected ({}) -> i64", params.join(", ")),
                });
            }
        }
    }
    // What dependents may call (the manifest's exports) and what the host
    // calls must be functions of this module.
    for name in manifest.exports().iter().chain(required) {
        if func_type(module, name).is_none() {
            return Err(WasmError::MissingExport { name: name.clone() });
        }
    }
    Ok(())
}

/// The memory the module declares against the cap: a minimum over it
/// could never be instantiated, so it is refused here, typed, rather than
/// at every call.
fn check_memory(module: &Module, limit: usize) -> Result<(), WasmError> {
    for export in module.exports() {
        if let ExternType::Memory(memory) = export.ty() {
            let needs = memory.minimum().saturating_mul(memory.page_size());
            if u64::try_from(limit).is_ok_and(|limit| needs > limit) {
                return Err(WasmError::MemoryLimit { needs, limit });
            }
        }
    }
    Ok(())
}

/// The optional entry points that take an input.
const WITH_INPUT: [&str; 9] = [
    "reload_init",
    "reload_migrate",
    "reload_restore",
    "reload_persist",
    "reload_check_compat",
    "reload_open",
    "reload_checkpoint",
    "reload_resume",
    "reload_close",
];

/// One version of a WebAssembly plugin (see the [module docs](self)).
pub struct WasmPlugin {
    name: String,
    version: String,
    exports: Vec<String>,
    module: Module,
    runtime: Runtime,
    stateful: bool,
    /// The configuration `init` got, for the pool's later instances.
    config: Vec<u8>,
    /// The instance of a stateful version; the first of a stateless one.
    primary: Mutex<Option<Guest>>,
    spares: Mutex<Vec<Guest>>,
    schema: u32,
    resources: Vec<Resource>,
}

impl fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("stateful", &self.stateful)
            .finish_non_exhaustive()
    }
}

impl WasmPlugin {
    /// The module's exports, by name.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Whether its calls share one instance (a stateful module) rather than
    /// a pool.
    pub fn is_stateful(&self) -> bool {
        self.stateful
    }

    /// One call, its reply lent to `f`.
    ///
    /// # Errors
    ///
    /// A [`WasmError`] for this call (trap, interrupt, fuel, bounds, the
    /// guest's failure); the version serves other calls on.
    pub fn call_with<R>(&self, input: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, WasmError> {
        self.runtime.ticking()?;
        let limits = &self.runtime.inner.limits;
        if self.stateful {
            let mut primary = self.primary.lock();
            let guest = primary.as_mut().ok_or(WasmError::NotLinked)?;
            // A queued call's budget starts when it has the instance.
            let budget = Budget::start(limits);
            guest.arm(&budget, "call")?;
            return guest.call(input, &budget, f);
        }
        // One budget from here: a call that must make its instance spends
        // the instantiation and `reload_init` from it too.
        let budget = Budget::start(limits);
        let spare = self.spares.lock().pop();
        let mut guest = match spare {
            Some(mut g) => {
                g.arm(&budget, "call")?;
                g
            }
            None => self.fresh(&budget)?,
        };
        let result = guest.call(input, &budget, f);
        // A trapped instance may be half way through an update: not reused.
        let trapped = matches!(
            result,
            Err(WasmError::Trap { .. }
                | WasmError::Interrupted { .. }
                | WasmError::OutOfFuel { .. })
        );
        if !trapped {
            let mut spares = self.spares.lock();
            if spares.len() < limits.pool {
                spares.push(guest);
            }
        }
        result
    }

    /// One call, its reply copied out.
    ///
    /// # Errors
    ///
    /// As [`WasmPlugin::call_with`].
    pub fn call(&self, input: &[u8]) -> Result<Vec<u8>, WasmError> {
        self.call_with(input, <[u8]>::to_vec)
    }

    /// A new instance for the pool, initialized like the first, spending
    /// from `budget` and left armed with what is left of it.
    fn fresh(&self, budget: &Budget) -> Result<Guest, WasmError> {
        if self.primary.lock().is_none() {
            return Err(WasmError::NotLinked);
        }
        let inner = &self.runtime.inner;
        let mut guest = Guest::new(&inner.engine, &self.module, &inner.limits, budget)?;
        if guest.has("reload_init") {
            guest.invoke("reload_init", Some(&self.config), budget)?;
        }
        Ok(guest)
    }

    /// An optional entry point on the primary instance, under a budget of
    /// its own; `None` if the module does not export it.
    fn entry(
        &self,
        name: &'static str,
        input: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, WasmError> {
        self.runtime.ticking()?;
        let mut primary = self.primary.lock();
        let guest = primary.as_mut().ok_or(WasmError::NotLinked)?;
        if !guest.has(name) {
            return Ok(None);
        }
        let budget = Budget::start(&self.runtime.inner.limits);
        guest.arm(&budget, name)?;
        guest.invoke(name, input, &budget).map(Some)
    }
}

fn garbage(entry: &'static str) -> impl FnOnce(wire::WireError) -> WasmError {
    move |source| WasmError::Garbage { entry, source }
}

impl Hooks for WasmPlugin {
    /// The configuration bytes the guest's `reload_init` receives.
    type Context = [u8];

    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn link(&mut self) -> Result<(), BoxError> {
        self.runtime.ticking()?;
        let inner = &self.runtime.inner;
        let budget = Budget::start(&inner.limits);
        let guest = Guest::new(&inner.engine, &self.module, &inner.limits, &budget)?;
        *self.primary.get_mut() = Some(guest);
        if let Some(reply) = self.entry("reload_describe", None)? {
            let (schema, resources) =
                wire::decode_description(&reply).map_err(garbage("describe"))?;
            self.schema = schema;
            self.resources = resources.into_iter().map(Resource::from).collect();
            self.stateful |= !self.resources.is_empty();
        }
        Ok(())
    }

    fn init(&mut self, config: &[u8]) -> Result<(), BoxError> {
        self.config = config.to_vec();
        self.entry("reload_init", Some(config))?;
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.spares.get_mut().clear();
        self.entry("reload_shutdown", None)?;
        Ok(())
    }
}

impl Stateful for WasmPlugin {
    fn schema(&self) -> u32 {
        self.schema
    }

    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        match self.entry("reload_save", None)? {
            Some(reply) => Ok(wire::decode_saved(&reply)
                .map_err(garbage("save"))?
                .map(<[u8]>::to_vec)),
            None => Ok(None),
        }
    }

    fn migrate(&self, from: u32, state: Vec<u8>) -> Result<(u32, Vec<u8>), BoxError> {
        let request = wire::encode_at_schema(from, &state);
        match self.entry("reload_migrate", Some(&request))? {
            Some(reply) => {
                let (to, state) = wire::decode_at_schema(&reply).map_err(garbage("migrate"))?;
                Ok((to, state.to_vec()))
            }
            None => Err(format!("no migration from schema {from} to {}", self.schema).into()),
        }
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.entry("reload_restore", Some(state))?;
        Ok(())
    }

    fn resources(&self) -> Vec<Resource> {
        self.resources.clone()
    }

    fn persist(&self, resource: &str) -> Result<Vec<u8>, BoxError> {
        self.entry("reload_persist", Some(&wire::encode_name(resource)))?
            .ok_or_else(|| {
                format!("`reload_persist` is not exported (resource `{resource}`)").into()
            })
    }

    fn checkpoint(&self, resource: &str) -> Result<u64, BoxError> {
        let reply = self
            .entry("reload_checkpoint", Some(&wire::encode_name(resource)))?
            .ok_or_else(|| {
                format!("`reload_checkpoint` is not exported (resource `{resource}`)")
            })?;
        Ok(wire::decode_position(&reply).map_err(garbage("checkpoint"))?)
    }

    fn check_compat(&self, old: &Resource, persisted: &[u8]) -> Result<(), BoxError> {
        let request = wire::encode_compat(&old.into(), persisted);
        match self.entry("reload_check_compat", Some(&request))? {
            Some(_) => Ok(()),
            None => {
                let mine = self.resources.iter().find(|r| r.name == old.name);
                match mine {
                    Some(m) if m.schema == old.schema => Ok(()),
                    _ => Err(format!(
                        "`{}` is not a resource of schema {} here",
                        old.name, old.schema
                    )
                    .into()),
                }
            }
        }
    }

    fn open(&mut self, resource: &str, persisted: &[u8]) -> Result<(), BoxError> {
        self.entry(
            "reload_open",
            Some(&wire::encode_named(resource, persisted)),
        )?
        .ok_or_else(|| format!("`reload_open` is not exported (resource `{resource}`)"))?;
        Ok(())
    }

    fn resume(&mut self, resource: &str, position: u64) -> Result<(), BoxError> {
        self.entry(
            "reload_resume",
            Some(&wire::encode_named_position(resource, position)),
        )?
        .ok_or_else(|| format!("`reload_resume` is not exported (resource `{resource}`)"))?;
        Ok(())
    }

    fn close(&mut self, resource: &str) {
        let _ = self.entry("reload_close", Some(&wire::encode_name(resource)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without its ticker no deadline holds: every call and hook is then
    /// refused, naming how the ticker ended.
    #[test]
    fn a_runtime_whose_ticker_ended_refuses_calls() {
        let runtime = Runtime::new(Limits::default()).expect("engine");
        assert!(runtime.ticking().is_ok());
        let exit = ThreadExit::Panicked {
            thread: "reload-core-wasm-epoch",
            message: "boom".to_owned(),
        };
        runtime.inner.ticker_health.ended(Some(exit.clone()));
        match runtime.ticking() {
            Err(WasmError::TickerStopped(seen)) => assert_eq!(seen, exit),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            runtime.ticking().map_err(|e| e.to_string()),
            Err(
                "calls are refused: library thread `reload-core-wasm-epoch` panicked: boom"
                    .to_owned()
            )
        );
    }
}
