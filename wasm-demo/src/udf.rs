//! A host's own plugin kind as a WIT world, `my:udf` (`guests/wit/`): a
//! scalar SQL function over 64-bit integers with a host function to log,
//! shipped at interface versions 1.0.0 and 1.1.0 (which adds `eval-with`,
//! taking a record). [`UdfWorld`] binds guests of either, each through its
//! own `bindgen!` types and linker, under one `ComponentRuntime`: what a
//! host keeping several plugin API versions alive writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reload_core::wasm::component::{Binding, ComponentPlugin, Host, World};
use reload_core::wasm::wasmtime;
use reload_core::wasm::wasmtime::component::{Instance, Linker};
use reload_core::wasm::wasmtime::StoreContextMut;
use reload_core::wasm::WasmError;

/// The bindings of `my:udf@1.0.0`.
#[allow(missing_docs)]
pub mod v1_0 {
    reload_core::wasm::wasmtime::component::bindgen!({
        path: "../guests/wit/udf-1.0.0",
        world: "udf",
        wasmtime_crate: reload_core::wasm::wasmtime,
    });
}

/// The bindings of `my:udf@1.1.0`.
#[allow(missing_docs)]
pub mod v1_1 {
    reload_core::wasm::wasmtime::component::bindgen!({
        path: "../guests/wit/udf-1.1.0",
        world: "udf",
        wasmtime_crate: reload_core::wasm::wasmtime,
    });
}

/// What the host functions see: how many values guests logged.
#[derive(Clone, Debug, Default)]
pub struct Logged(pub Arc<AtomicU64>, pub Option<i64>);

impl Logged {
    /// Values logged so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Logged {
    /// A log that panics on `value` (the host's own bug, for the tests).
    pub fn panicking_on(value: i64) -> Self {
        Logged(Arc::default(), Some(value))
    }

    fn log(&mut self, value: i64) {
        assert_ne!(Some(value), self.1, "the host's log panics");
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl v1_0::my::udf::host::Host for Logged {
    fn log(&mut self, value: i64) {
        Logged::log(self, value);
    }
}

impl v1_1::my::udf::host::Host for Logged {
    fn log(&mut self, value: i64) {
        Logged::log(self, value);
    }
}

/// The bindings of whichever version a guest was built against.
pub enum Udf {
    /// `my:udf@1.0.x`.
    V1_0(v1_0::Udf),
    /// `my:udf@1.1.x` (and later 1.x).
    V1_1(v1_1::Udf),
}

/// The `my:udf` world, both versions.
#[derive(Debug, Default)]
pub struct UdfWorld {
    /// Shared by every instance's host functions.
    pub logged: Logged,
    /// For the containment test: the world's own `bind` panics.
    pub panic_in_bind: bool,
}

impl World for UdfWorld {
    type Bindings = Udf;
    type Data = Logged;

    fn bindings(&self) -> Vec<Binding> {
        vec![
            Binding::new("1.1", &["my:udf/scalar@1.1.0"]),
            Binding::new("1.0", &["my:udf/scalar@1.0.0"]),
        ]
    }

    fn data(&self) -> Logged {
        self.logged.clone()
    }

    fn link(&self, binding: usize, linker: &mut Linker<Host<Logged>>) -> wasmtime::Result<()> {
        type Data = wasmtime::component::HasSelf<Logged>;
        match binding {
            0 => v1_1::my::udf::host::add_to_linker::<_, Data>(linker, Host::data),
            _ => v1_0::my::udf::host::add_to_linker::<_, Data>(linker, Host::data),
        }
    }

    fn bind(
        &self,
        binding: usize,
        store: StoreContextMut<'_, Host<Logged>>,
        instance: &Instance,
    ) -> wasmtime::Result<Udf> {
        assert!(!self.panic_in_bind, "the host's bind panics");
        Ok(match binding {
            0 => Udf::V1_1(v1_1::Udf::new(store, instance)?),
            _ => Udf::V1_0(v1_0::Udf::new(store, instance)?),
        })
    }
}

/// `eval(x)` on whichever version.
///
/// # Errors
///
/// The call's [`WasmError`].
pub fn eval(plugin: &ComponentPlugin<UdfWorld>, x: i64) -> Result<i64, WasmError> {
    plugin.call_with(|udf, store| match udf {
        Udf::V1_0(u) => u.my_udf_scalar().call_eval(store, x),
        Udf::V1_1(u) => u.my_udf_scalar().call_eval(store, x),
    })
}

/// `eval-with({x, scale})` where the guest has it (1.1), else `eval(x)`
/// times `scale`, computed by the host.
///
/// # Errors
///
/// The call's [`WasmError`].
pub fn eval_with(plugin: &ComponentPlugin<UdfWorld>, x: i64, scale: i64) -> Result<i64, WasmError> {
    plugin.call_with(|udf, mut store| match udf {
        Udf::V1_1(u) => u
            .my_udf_scalar()
            .call_eval_with(store, v1_1::exports::my::udf::scalar::Args { x, scale }),
        Udf::V1_0(u) => Ok(u
            .my_udf_scalar()
            .call_eval(&mut store, x)?
            .wrapping_mul(scale)),
    })
}
