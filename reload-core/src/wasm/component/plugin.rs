//! [`ComponentPlugin`]: one version of a component plugin, its instances
//! (one for a stateful version, a pool for a stateless one), and the
//! lifecycle and `Stateful` hooks over the `reload:plugin` interfaces.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::StoreContextMut;

use super::instance::{Compiled, Entered, Live};
use super::library::{ResourceDecl, Snapshot, Surface};
use super::world::{Host, World};
use crate::wasm::guest::Budget;
use crate::wasm::{Runtime, WasmError};
use crate::{BoxError, Hooks, Resource, Stateful};

/// One version of a component plugin of world `W` (see the
/// [module docs](super)).
pub struct ComponentPlugin<W: World> {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) compiled: Arc<Compiled<W>>,
    pub(super) runtime: Runtime,
    /// One instance, its calls taking turns: the component exports
    /// `reload:plugin/state` or `reload:plugin/resources`.
    pub(super) stateful: bool,
    pub(super) exports: Vec<String>,
    /// The configuration `init` got, for the pool's later instances.
    pub(super) config: Vec<u8>,
    /// The instance of a stateful version; the first of a stateless one.
    pub(super) primary: Mutex<Primary<W>>,
    /// Boxed, so taking and giving back an instance moves a pointer, not
    /// the instance (its bindings are some hundreds of bytes).
    pub(super) spares: Mutex<Vec<Box<Live<W>>>>,
    /// The host accepted that a lost instance's state is gone.
    pub(super) state_forgotten: AtomicBool,
    pub(super) schema: u32,
    pub(super) resources: Vec<Resource>,
}

/// The primary instance, or why it is gone.
pub(super) enum Primary<W: World> {
    /// Before `link`.
    Unlinked,
    /// Boxed: an instance is some hundreds of bytes, the other two a word.
    Live(Box<Live<W>>),
    /// Lost to the failure named (a stateful version: its state with it).
    Lost(String),
}

impl<W: World> fmt::Debug for ComponentPlugin<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("binding", &self.binding())
            .field("stateful", &self.stateful)
            .finish_non_exhaustive()
    }
}

impl<W: World> ComponentPlugin<W> {
    /// The label of the world's binding this component was bound through
    /// (which interface version it serves).
    pub fn binding(&self) -> &'static str {
        self.compiled.label
    }

    /// Its exported functions (top-level, and inside its exported
    /// interfaces), by name.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Whether its calls share one instance (it exports `reload:plugin`'s
    /// state or resources) rather than a pool.
    pub fn is_stateful(&self) -> bool {
        self.stateful
    }

    /// Why the instance of this stateful version was lost, if it was: every
    /// call then fails with [`WasmError::Poisoned`] until a reload replaces
    /// the version.
    pub fn lost(&self) -> Option<String> {
        match &*self.primary.lock() {
            Primary::Lost(cause) => Some(cause.clone()),
            _ => None,
        }
    }

    /// Accepts that the state of a lost instance is gone: the next reload
    /// then carries no state from this version (its `save` says `None`)
    /// instead of failing with [`WasmError::Poisoned`]. Without this, a
    /// reload never silently drops state.
    pub fn forget_lost_state(&self) {
        self.state_forgotten.store(true, Ordering::Release);
    }

    /// One call through the world's bindings: `f` gets them and the store
    /// to call with (`bindings.call_eval(store, ..)`), under the
    /// runtime's deadline and fuel.
    ///
    /// # Errors
    ///
    /// A [`WasmError`] for this call: a trap, its deadline, its fuel, a
    /// reply that does not lift, `f`'s panic. A stateless version serves
    /// other calls on (the instance is discarded); a stateful one's
    /// instance is lost ([`WasmError::Poisoned`] from then on).
    pub fn call_with<R>(
        &self,
        f: impl FnOnce(&W::Bindings, StoreContextMut<'_, Host<W::Data>>) -> wasmtime::Result<R>,
    ) -> Result<R, WasmError> {
        self.runtime.ticking()?;
        let limits = &self.compiled.limits;
        if self.stateful {
            let mut primary = self.primary.lock();
            let live = live(&mut primary)?;
            // A queued call's budget starts when it has the instance.
            let budget = Budget::start(limits);
            live.arm(&budget, "call")?;
            let entered = live.call("call", &budget, f);
            return settle(&mut primary, entered);
        }
        // One budget from here: making the instance spends from it too.
        let budget = Budget::start(limits);
        let spare = self.spares.lock().pop();
        let mut live = match spare {
            Some(mut l) => {
                l.arm(&budget, "call")?;
                l
            }
            None => self.fresh(&budget)?,
        };
        let Entered { result, lost } = live.call("call", &budget, f);
        if !lost {
            let mut spares = self.spares.lock();
            if spares.len() < limits.pool {
                spares.push(live);
            }
        }
        result
    }

    /// A new instance for the pool, initialized like the first, spending
    /// from `budget` and left armed with what is left of it.
    fn fresh(&self, budget: &Budget) -> Result<Box<Live<W>>, WasmError> {
        if matches!(*self.primary.lock(), Primary::Unlinked) {
            return Err(WasmError::NotLinked);
        }
        let mut live = Box::new(Live::new(&self.compiled, budget)?);
        if live.has_surface(|s| s.lifecycle.is_some()) {
            let config = &self.config;
            let Entered { result, .. } =
                live.surface("init", budget, |s, store| init_with(s, store, config));
            result??;
        }
        Ok(live)
    }

    /// An entry through the library's interfaces on the primary instance,
    /// under a budget of its own; `None` if the component does not export
    /// the interface `has` looks for.
    fn entry<R>(
        &self,
        entry: &'static str,
        has: fn(&Surface) -> bool,
        f: impl FnOnce(&Surface, StoreContextMut<'_, Host<W::Data>>) -> wasmtime::Result<R>,
    ) -> Result<Option<R>, WasmError> {
        self.runtime.ticking()?;
        let mut primary = self.primary.lock();
        let live = live(&mut primary)?;
        if !live.has_surface(has) {
            return Ok(None);
        }
        let budget = Budget::start(&self.compiled.limits);
        live.arm(&budget, entry)?;
        let entered = live.surface(entry, &budget, f);
        settle(&mut primary, entered).map(Some)
    }
}

/// The primary instance if it is live.
fn live<W: World>(primary: &mut Primary<W>) -> Result<&mut Live<W>, WasmError> {
    match primary {
        Primary::Live(l) => Ok(l),
        Primary::Unlinked => Err(WasmError::NotLinked),
        Primary::Lost(cause) => Err(WasmError::Poisoned {
            cause: cause.clone(),
        }),
    }
}

/// The result of an entry on the primary instance; the instance is
/// dropped, and the failure remembered, if it was lost.
fn settle<W: World, R>(primary: &mut Primary<W>, entered: Entered<R>) -> Result<R, WasmError> {
    if entered.lost {
        let cause = entered
            .result
            .as_ref()
            .err()
            .map_or_else(|| "an engine failure".to_owned(), ToString::to_string);
        *primary = Primary::Lost(cause);
    }
    entered.result
}

fn init_with<D>(
    s: &Surface,
    store: StoreContextMut<'_, Host<D>>,
    config: &[u8],
) -> wasmtime::Result<Result<(), WasmError>> {
    match &s.lifecycle {
        Some(l) => Ok(l
            .call_init(store, config)?
            .map_err(|message| failed("init", message))),
        None => Ok(Ok(())),
    }
}

fn failed(entry: &'static str, message: String) -> WasmError {
    WasmError::Failed { entry, message }
}

fn lifecycle(s: &Surface) -> bool {
    s.lifecycle.is_some()
}
fn state(s: &Surface) -> bool {
    s.state.is_some()
}
fn resources(s: &Surface) -> bool {
    s.resources.is_some()
}

impl<W: World> ComponentPlugin<W> {
    /// Calls `f` on the state interface (present: `has` checked it).
    fn with_state<R>(
        &self,
        entry: &'static str,
        f: impl FnOnce(
            &super::library::StateInterface,
            StoreContextMut<'_, Host<W::Data>>,
        ) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<Option<R>, WasmError> {
        match self.entry(entry, state, |s, store| match &s.state {
            Some(i) => f(i, store),
            None => Err(wasmtime::Error::msg("no state interface")),
        })? {
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(message)) => Err(failed(entry, message)),
            None => Ok(None),
        }
    }

    /// Calls `f` on the resources interface, or fails naming `resource`.
    fn with_resources<R>(
        &self,
        entry: &'static str,
        resource: &str,
        f: impl FnOnce(
            &super::library::ResourcesInterface,
            StoreContextMut<'_, Host<W::Data>>,
        ) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, BoxError> {
        match self.entry(entry, resources, |s, store| match &s.resources {
            Some(i) => f(i, store),
            None => Err(wasmtime::Error::msg("no resources interface")),
        })? {
            Some(Ok(v)) => Ok(v),
            Some(Err(message)) => Err(failed(entry, message).into()),
            None => Err(format!(
                "`reload:plugin/resources` is not exported (resource `{resource}`)"
            )
            .into()),
        }
    }
}

impl<W: World> Hooks for ComponentPlugin<W> {
    /// The configuration bytes `reload:plugin/lifecycle.init` receives.
    type Context = [u8];

    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn link(&mut self) -> Result<(), BoxError> {
        self.runtime.ticking()?;
        let budget = Budget::start(&self.compiled.limits);
        let live = Live::new(&self.compiled, &budget)?;
        *self.primary.get_mut() = Primary::Live(Box::new(live));
        if let Some(description) = self.entry("describe", state, |s, store| match &s.state {
            Some(i) => i.call_describe(store),
            None => Err(wasmtime::Error::msg("no state interface")),
        })? {
            self.schema = description.schema;
            self.resources = description
                .resources
                .into_iter()
                .map(|r| Resource {
                    name: r.name,
                    kind: r.kind.into(),
                    schema: r.schema,
                })
                .collect();
        }
        Ok(())
    }

    fn init(&mut self, config: &[u8]) -> Result<(), BoxError> {
        self.config = config.to_vec();
        if let Some(result) =
            self.entry("init", lifecycle, |s, store| init_with(s, store, config))?
        {
            result?;
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.spares.get_mut().clear();
        if matches!(*self.primary.get_mut(), Primary::Lost(_)) {
            // Nothing to shut down: the instance is gone.
            return Ok(());
        }
        let reply = self.entry("shutdown", lifecycle, |s, store| match &s.lifecycle {
            Some(l) => l.call_shutdown(store),
            None => Ok(Ok(())),
        })?;
        if let Some(Err(message)) = reply {
            return Err(failed("shutdown", message).into());
        }
        Ok(())
    }
}

impl<W: World> Stateful for ComponentPlugin<W> {
    fn schema(&self) -> u32 {
        self.schema
    }

    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        if let Primary::Lost(cause) = &*self.primary.lock() {
            if self.state_forgotten.load(Ordering::Acquire) {
                return Ok(None);
            }
            return Err(WasmError::Poisoned {
                cause: cause.clone(),
            }
            .into());
        }
        Ok(self
            .with_state("save", |i, store| i.call_save(store))?
            .flatten())
    }

    fn migrate(&self, from: u32, state: Vec<u8>) -> Result<(u32, Vec<u8>), BoxError> {
        let old = Snapshot {
            schema: from,
            bytes: state,
        };
        match self.with_state("migrate", |i, store| i.call_migrate(store, &old))? {
            Some(new) => Ok((new.schema, new.bytes)),
            None => Err(format!("no migration from schema {from} to {}", self.schema).into()),
        }
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.with_state("restore", |i, store| i.call_restore(store, state))?;
        Ok(())
    }

    fn resources(&self) -> Vec<Resource> {
        self.resources.clone()
    }

    fn persist(&self, resource: &str) -> Result<Vec<u8>, BoxError> {
        self.with_resources("persist", resource, |i, store| {
            i.call_persist(store, resource)
        })
    }

    fn checkpoint(&self, resource: &str) -> Result<u64, BoxError> {
        self.with_resources("checkpoint", resource, |i, store| {
            i.call_checkpoint(store, resource)
        })
    }

    fn check_compat(&self, old: &Resource, persisted: &[u8]) -> Result<(), BoxError> {
        let decl = ResourceDecl::from(old);
        self.with_resources("check-compat", &old.name, |i, store| {
            i.call_check_compat(store, &decl, persisted)
        })
    }

    fn open(&mut self, resource: &str, persisted: &[u8]) -> Result<(), BoxError> {
        self.with_resources("open", resource, |i, store| {
            i.call_open(store, resource, persisted)
        })
    }

    fn resume(&mut self, resource: &str, position: u64) -> Result<(), BoxError> {
        self.with_resources("resume", resource, |i, store| {
            i.call_resume(store, resource, position)
        })
    }

    fn close(&mut self, resource: &str) {
        let _ = self.with_resources("close", resource, |i, store| {
            i.call_close(store, resource).map(Ok)
        });
    }
}
