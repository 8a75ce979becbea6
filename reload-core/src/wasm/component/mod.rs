//! Plugins as WebAssembly **components** (the `component` feature):
//! typed WIT interfaces instead of the core modules' byte ABI, under the
//! same slot, drain, registry and reload transaction, with the same
//! deadlines, fuel and memory caps ([`Limits`]).
//!
//! # Two kinds of world
//!
//! - **The library's own**, `reload:plugin` (`wit/plugin.wit` in this
//!   crate, [`PluginWorld`]): `call`, bytes in and bytes out, and the
//!   optional interfaces `lifecycle` (`init`, `shutdown`), `state`
//!   (`describe`, `save`, `migrate`, `restore`: typed records, the state
//!   a `list<u8>` in the plugin's own encoding) and `resources`
//!   (`persist`, `check-compat`, `open`, `checkpoint`, `resume`,
//!   `close`). A guest author picks the world (`plugin`,
//!   `lifecycle-plugin`, `stateful-plugin`, `resource-plugin`) and
//!   generates its side with `wit-bindgen`.
//! - **A host's own** ([`World`]): the host writes its plugin kind as a
//!   WIT world (its exports with typed arguments and results, the host
//!   functions it offers), runs `wasmtime::component::bindgen!` on it
//!   (this crate re-exports it: `reload_core::wasm::wasmtime`), and calls
//!   through the generated types with [`ComponentPlugin::call_with`]. Its
//!   components may export `reload:plugin`'s lifecycle, state and
//!   resources interfaces too, and then carry their state the same way.
//!
//! # Checked before anything runs
//!
//! [`ComponentRuntime::package`] reads the manifest from the component's
//! top-level `reload-manifest` custom section, compiles it, and then, from
//! its type alone:
//!
//! 1. picks the first of the world's [`Binding`]s whose interfaces the
//!    component exports at semver-compatible versions
//!    ([`InterfaceName::satisfies`]); none is [`WasmError::Incompatible`].
//!    A host keeps several interface versions side by side this way, each
//!    binding with its own linker, as Zed keeps one per extension API;
//! 2. checks `reload:plugin`'s interfaces it exports are of a version this
//!    library calls ([`WasmError::Incompatible`]);
//! 3. checks every `export` of the manifest (what dependents may `use`) is
//!    a function of the component ([`WasmError::MissingExport`]): a
//!    dependent's needs are checked against the new version before it is
//!    instantiated, as the registry does for every plugin kind;
//! 4. type-checks its imports against the binding's linker
//!    ([`WasmError::Imports`]) and the library's interfaces against their
//!    bindings ([`WasmError::Signature`]).
//!
//! # Instances, and what a failure does to one
//!
//! As for core modules, a **stateful** version (one exporting `state` or
//! `resources`) has one instance whose calls take turns; a stateless one
//! keeps a pool. What is new is what a failure inside the engine (a trap,
//! the deadline, the fuel, a reply that does not lift, the host closure's
//! panic) does: wasmtime will not enter a component instance again after
//! some of these (wasmtime issue 10088), and an instance stopped half way
//! through an update must not serve anyway. So:
//!
//! - the call fails with its typed error ([`WasmError::Trap`],
//!   [`WasmError::Interrupted`], [`WasmError::OutOfFuel`]);
//! - a **stateless** version discards the instance and serves on, the next
//!   call making a fresh one;
//! - a **stateful** version's instance is **lost**, and its state with it:
//!   every later call and hook fails with [`WasmError::Poisoned`] naming
//!   the first failure, until a reload replaces the version. That reload
//!   cannot save the lost state, so it fails (nothing is dropped silently)
//!   unless the host first says the state may go
//!   ([`ComponentPlugin::forget_lost_state`]); then the new version starts
//!   from no state. A guest's own error (`result::err`) is a reply, not a
//!   failure: the instance serves on.
//!
//! Keeping the state through a trap would need a snapshot before every
//! call; a host that wants that saves through its own world.

mod instance;
mod library;
mod plugin;
mod world;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

use instance::Compiled;
use library::{Exports, SurfaceIndices};
pub use library::{GuestInterface, PluginWorld, PACKAGE_VERSION};
pub use plugin::ComponentPlugin;
use plugin::Primary;
pub use world::{Binding, Host, InterfaceName, World};

use super::{Limits, Runtime, WasmError};
use crate::hooks::panic_message;
use crate::manifest::Manifest;
use crate::registry::Package;

/// The engine (shared with a core-module [`Runtime`]), the world's
/// bindings with one linker each, and the limits calls run under. Cheap
/// to clone.
pub struct ComponentRuntime<W: World> {
    inner: Arc<RuntimeInner<W>>,
}

impl<W: World> Clone for ComponentRuntime<W> {
    fn clone(&self) -> Self {
        ComponentRuntime {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct RuntimeInner<W: World> {
    runtime: Runtime,
    world: Arc<W>,
    bindings: Vec<Binding>,
    linkers: Vec<Linker<Host<W::Data>>>,
}

impl<W: World> std::fmt::Debug for ComponentRuntime<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentRuntime")
            .field("limits", self.inner.runtime.limits())
            .field("bindings", &self.inner.bindings)
            .finish_non_exhaustive()
    }
}

impl<W: World> ComponentRuntime<W> {
    /// A runtime of its own (engine and epoch ticker) for `world`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::new`], and [`WasmError::Imports`] if the world's
    /// `link` fails or panics.
    pub fn new(limits: Limits, world: W) -> Result<Self, WasmError> {
        Self::on(&Runtime::new(limits)?, world)
    }

    /// A runtime for `world` on `runtime`'s engine, ticker and limits
    /// (core modules and components of several worlds side by side).
    ///
    /// # Errors
    ///
    /// [`WasmError::Imports`] if the world's `link` fails or panics, or
    /// it declares no binding.
    pub fn on(runtime: &Runtime, world: W) -> Result<Self, WasmError> {
        let engine = &runtime.inner.engine;
        let bindings = contained(|| world.bindings())?;
        if bindings.is_empty() {
            return Err(WasmError::Imports(
                "the world declares no binding".to_owned(),
            ));
        }
        let mut linkers = Vec::with_capacity(bindings.len());
        for index in 0..bindings.len() {
            let mut linker = Linker::new(engine);
            contained(|| world.link(index, &mut linker))?
                .map_err(|e| WasmError::Imports(format!("{e:#}")))?;
            linkers.push(linker);
        }
        Ok(ComponentRuntime {
            inner: Arc::new(RuntimeInner {
                runtime: runtime.clone(),
                world: Arc::new(world),
                bindings,
                linkers,
            }),
        })
    }

    /// The core runtime underneath (its limits, its ticker's health).
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Reads the manifest from `bytes` (before compiling anything),
    /// compiles the component once, makes every check of the
    /// [module docs](self) from its type, and makes a package whose
    /// content is `bytes`. Nothing of the component runs until `link`.
    ///
    /// # Errors
    ///
    /// [`WasmError::Section`], [`WasmError::Manifest`],
    /// [`WasmError::Compile`], [`WasmError::Incompatible`],
    /// [`WasmError::MissingExport`], [`WasmError::Imports`],
    /// [`WasmError::Signature`].
    pub fn package(
        &self,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Result<Package<ComponentPlugin<W>>, WasmError> {
        let runtime = self.clone();
        super::packaged(bytes.into(), move |m, b| runtime.plugin(m, b))
    }

    fn plugin(&self, manifest: &Manifest, bytes: &[u8]) -> Result<ComponentPlugin<W>, WasmError> {
        let inner = &self.inner;
        let engine = &inner.runtime.inner.engine;
        if !super::is_component(bytes) {
            return Err(WasmError::Compile(
                "a core module, not a component (use `wasm::Runtime`)".to_owned(),
            ));
        }
        let component =
            Component::new(engine, bytes).map_err(|e| WasmError::Compile(format!("{e:#}")))?;
        let (interfaces, functions) = exported(&component, engine);
        let binding = inner
            .bindings
            .iter()
            .position(|b| {
                b.requires
                    .iter()
                    .all(|want| interfaces.iter().any(|have| have.satisfies(want)))
            })
            .ok_or_else(|| WasmError::Incompatible {
                wanted: inner
                    .bindings
                    .iter()
                    .map(|b| {
                        let names: Vec<String> =
                            b.requires.iter().map(ToString::to_string).collect();
                        format!("{} ({})", b.label, names.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join(" or "),
                found: list(interfaces.iter().map(ToString::to_string)),
            })?;
        let surface = Exports::of(&interfaces)?;
        for name in manifest.exports() {
            if !functions.iter().any(|f| f == name) {
                return Err(WasmError::MissingExport { name: name.clone() });
            }
        }
        let pre = inner.linkers[binding]
            .instantiate_pre(&component)
            .map_err(|e| WasmError::Imports(format!("{e:#}")))?;
        let surface = SurfaceIndices::new(surface, &pre)?;
        let stateful = surface.stateful();
        Ok(ComponentPlugin {
            name: manifest.name().to_owned(),
            version: manifest.version().to_string(),
            compiled: Arc::new(Compiled {
                engine: engine.clone(),
                pre,
                world: Arc::clone(&inner.world),
                binding,
                label: inner.bindings[binding].label,
                surface,
                limits: inner.runtime.limits().clone(),
            }),
            runtime: inner.runtime.clone(),
            stateful,
            exports: functions,
            config: Vec::new(),
            primary: Mutex::new(Primary::Unlinked),
            spares: Mutex::new(Vec::new()),
            state_forgotten: AtomicBool::new(false),
            schema: 0,
            resources: Vec::new(),
        })
    }
}

impl ComponentRuntime<PluginWorld> {
    /// A runtime for `reload:plugin`'s own world.
    ///
    /// # Errors
    ///
    /// As [`ComponentRuntime::new`].
    pub fn plugins(limits: Limits) -> Result<Self, WasmError> {
        Self::new(limits, PluginWorld)
    }
}

impl ComponentPlugin<PluginWorld> {
    /// One call of `reload:plugin/guest.call`.
    ///
    /// # Errors
    ///
    /// [`WasmError::Failed`] with the guest's own error message (the
    /// instance serves on), or a failure of [`call_with`](Self::call_with).
    pub fn call(&self, input: &[u8]) -> Result<Vec<u8>, WasmError> {
        self.call_with(|guest, store| guest.call_call(store, input))?
            .map_err(|message| WasmError::Failed {
                entry: "call",
                message,
            })
    }
}

/// The component's exported interfaces (those with interface names) and
/// functions (top-level, and inside exported instances), by name.
fn exported(component: &Component, engine: &wasmtime::Engine) -> (Vec<InterfaceName>, Vec<String>) {
    let mut interfaces = Vec::new();
    let mut functions = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item {
            ComponentItem::ComponentFunc(_) => functions.push(name.to_owned()),
            ComponentItem::ComponentInstance(instance) => {
                if let Some(parsed) = InterfaceName::parse(name) {
                    interfaces.push(parsed);
                }
                for (f, item) in instance.exports(engine) {
                    if matches!(item, ComponentItem::ComponentFunc(_)) {
                        functions.push(f.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    functions.sort();
    functions.dedup();
    (interfaces, functions)
}

fn list(names: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = names.collect();
    if names.is_empty() {
        "no interface".to_owned()
    } else {
        names.join(", ")
    }
}

/// Runs the world's own code, a panic becoming [`WasmError::Imports`].
fn contained<R>(f: impl FnOnce() -> R) -> Result<R, WasmError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        WasmError::Imports(format!(
            "the host's world panicked: {}",
            panic_message(&*payload)
        ))
    })
}
