//! What the crate needs of a plugin: one call, bytes in, a reply lent out.
//!
//! Native libraries and WebAssembly modules already have that shape
//! (`call_with`); an in-process plugin implements it in a few lines. The
//! bytes are what a [`Codec`](crate::Codec) (scalar functions) or the
//! crate's own protocols (aggregates, tables: [`crate::protocol`]) put in
//! and read out.

use std::fmt::Display;

use reload_core::Stateful;

/// A plugin SQL can call.
///
/// `call_sql` runs on the thread stepping the statement, with SQLite's
/// connection mutex held: it must not block on another statement of the
/// same connection. A panic in it is caught by the crate and becomes a SQL
/// error naming the plugin and its version.
pub trait SqlPlugin: Stateful + Send + Sync + 'static {
    /// Why a call failed.
    type Error: Display;

    /// Calls the plugin with `input` and lends its reply to `reply`.
    ///
    /// # Errors
    ///
    /// The plugin's own failure; `reply` does not run.
    fn call_sql<R>(&self, input: &[u8], reply: impl FnOnce(&[u8]) -> R) -> Result<R, Self::Error>;
}

#[cfg(feature = "dylib")]
impl SqlPlugin for reload_core::dylib::DylibPlugin {
    type Error = reload_core::dylib::DylibError;

    fn call_sql<R>(&self, input: &[u8], reply: impl FnOnce(&[u8]) -> R) -> Result<R, Self::Error> {
        self.call_with(input, reply)
    }
}

#[cfg(feature = "wasm")]
impl SqlPlugin for reload_core::wasm::WasmPlugin {
    type Error = reload_core::wasm::WasmError;

    fn call_sql<R>(&self, input: &[u8], reply: impl FnOnce(&[u8]) -> R) -> Result<R, Self::Error> {
        self.call_with(input, reply)
    }
}

#[cfg(feature = "component")]
impl SqlPlugin
    for reload_core::wasm::component::ComponentPlugin<reload_core::wasm::component::PluginWorld>
{
    type Error = reload_core::wasm::WasmError;

    fn call_sql<R>(&self, input: &[u8], reply: impl FnOnce(&[u8]) -> R) -> Result<R, Self::Error> {
        // The component model lifts the reply into the host's own buffer.
        self.call(input).map(|bytes| reply(&bytes))
    }
}
