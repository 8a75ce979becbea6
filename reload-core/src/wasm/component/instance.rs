//! One instance of a component version: its store, the host's bindings
//! and the library's optional interfaces, and every entry into it under a
//! budget. Any failure inside the engine (a trap, the deadline, the fuel,
//! a reply that does not lift, a host closure's panic) is reported typed
//! and marks the instance as lost ([`Entered::lost`]): wasmtime does not
//! enter a component instance again after some of these, and one that
//! stopped half way through an update must not serve anyway.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use wasmtime::component::InstancePre;
use wasmtime::{AsContextMut as _, Engine, Store, StoreContextMut, StoreLimitsBuilder};

use super::library::{Surface, SurfaceIndices};
use super::world::{Host, World};
use crate::hooks::panic_message;
use crate::wasm::guest::{arm, classify, on_epoch, Budget};
use crate::wasm::{Limits, WasmError};

/// What every instance of a version is made from, checked once at
/// packaging.
pub(super) struct Compiled<W: World> {
    pub engine: Engine,
    pub pre: InstancePre<Host<W::Data>>,
    pub world: Arc<W>,
    /// Which of the world's bindings the component is bound through.
    pub binding: usize,
    /// Its label.
    pub label: &'static str,
    pub surface: SurfaceIndices,
    pub limits: Limits,
}

/// A live instance.
pub(super) struct Live<W: World> {
    store: Store<Host<W::Data>>,
    bindings: W::Bindings,
    surface: Surface,
}

/// The outcome of one entry: the value, or a typed error and whether the
/// instance was lost with it.
pub(super) struct Entered<R> {
    pub result: Result<R, WasmError>,
    /// The instance must not be entered again.
    pub lost: bool,
}

/// Runs host code (the world's `data` and `bind`, a call's closure),
/// turning a panic into a typed error of `entry`.
fn contained<R>(entry: &'static str, f: impl FnOnce() -> R) -> Result<R, WasmError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| WasmError::Trap {
        entry,
        message: format!("the host's code panicked: {}", panic_message(&*payload)),
    })
}

impl<W: World> Live<W> {
    /// Instantiates `compiled`, spending from `budget`, which stays armed.
    pub(super) fn new(compiled: &Compiled<W>, budget: &Budget) -> Result<Self, WasmError> {
        let data = contained("instantiate", || compiled.world.data())?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(compiled.limits.memory)
            .build();
        let mut store = Store::new(&compiled.engine, Host::new(limits, data));
        store.limiter(|h| &mut h.limits);
        store.epoch_deadline_callback(on_epoch);
        arm(&mut store, budget, "instantiate")?;
        let instance = compiled
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify("instantiate", budget.deadline, &e))?;
        let bindings = contained("bind", || {
            compiled
                .world
                .bind(compiled.binding, store.as_context_mut(), &instance)
        })?
        .map_err(|e| WasmError::Signature {
            name: "the host's world",
            reason: format!("{e:#}"),
        })?;
        let surface = compiled
            .surface
            .load(store.as_context_mut(), &instance)
            .map_err(|e| WasmError::Signature {
                name: "reload:plugin",
                reason: format!("{e:#}"),
            })?;
        Ok(Live {
            store,
            bindings,
            surface,
        })
    }

    /// Arms a fresh `budget` for the next entry.
    pub(super) fn arm(&mut self, budget: &Budget, entry: &'static str) -> Result<(), WasmError> {
        arm(&mut self.store, budget, entry)
    }

    /// One entry through the host's bindings, under the armed `budget`.
    pub(super) fn call<R>(
        &mut self,
        entry: &'static str,
        budget: &Budget,
        f: impl FnOnce(&W::Bindings, StoreContextMut<'_, Host<W::Data>>) -> wasmtime::Result<R>,
    ) -> Entered<R> {
        let Live {
            store, bindings, ..
        } = self;
        Self::enter(entry, budget, || f(bindings, store.as_context_mut()))
    }

    /// One entry through the library's own interfaces, under the armed
    /// `budget`.
    pub(super) fn surface<R>(
        &mut self,
        entry: &'static str,
        budget: &Budget,
        f: impl FnOnce(&Surface, StoreContextMut<'_, Host<W::Data>>) -> wasmtime::Result<R>,
    ) -> Entered<R> {
        let Live { store, surface, .. } = self;
        Self::enter(entry, budget, || f(surface, store.as_context_mut()))
    }

    pub(super) fn has_surface(&self, which: fn(&Surface) -> bool) -> bool {
        which(&self.surface)
    }

    fn enter<R>(
        entry: &'static str,
        budget: &Budget,
        f: impl FnOnce() -> wasmtime::Result<R>,
    ) -> Entered<R> {
        match contained(entry, f) {
            Ok(Ok(value)) => Entered {
                result: Ok(value),
                lost: false,
            },
            Ok(Err(e)) => Entered {
                result: Err(classify(entry, budget.deadline, &e)),
                lost: true,
            },
            Err(panicked) => Entered {
                result: Err(panicked),
                lost: true,
            },
        }
    }
}
