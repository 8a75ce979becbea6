//! The WebAssembly readers on arbitrary bytes.
//!
//! - The manifest section reader (`reload_core::wasm::manifest_section`):
//!   it runs before anything is compiled, on binaries that may be hostile,
//!   so it must never panic, and what it returns must lie inside the
//!   input. (What the host reads back from a core module's memory is
//!   bounds-checked pointer by pointer and decoded by `reload_abi::wire`,
//!   which the `abi` target covers.)
//! - With the `component` feature, component loading: the bytes as they
//!   are, and the seed component (`fuzz/seeds/echo.component.wasm`, the
//!   `echo` guest of `wasm-guests` with a manifest) with the bytes applied
//!   as mutations, each packaged (`ComponentRuntime::package`) and, when
//!   that succeeds, linked and called once under a small deadline and
//!   fuel. Every outcome must be a value or a typed error: a panic in the
//!   host is the failure.
//!
//! Replayed on stable by `cargo test -p wasm-demo --test wasm` (the
//! reader) and `--test component` (loading).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(section) = reload_core::wasm::manifest_section(data) {
        let start = section.as_ptr() as usize;
        let base = data.as_ptr() as usize;
        assert!(start >= base && start + section.len() <= base + data.len());
    }
    #[cfg(feature = "component")]
    component::load(data);
});

#[cfg(feature = "component")]
mod component {
    use std::sync::OnceLock;
    use std::time::Duration;

    use reload_core::wasm::component::{ComponentRuntime, PluginWorld};
    use reload_core::wasm::Limits;
    use reload_core::Plugin;

    const SEED: &[u8] = include_bytes!("../seeds/echo.component.wasm");

    fn runtime() -> &'static ComponentRuntime<PluginWorld> {
        static RUNTIME: OnceLock<ComponentRuntime<PluginWorld>> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            ComponentRuntime::plugins(Limits {
                deadline: Duration::from_millis(50),
                fuel: Some(1_000_000),
                memory: 8 << 20,
                pool: 1,
            })
            .expect("the engine starts")
        })
    }

    /// The seed with `data` applied: each 3 bytes are an offset (2 bytes)
    /// into the seed and a byte to XOR there.
    fn mutated(data: &[u8]) -> Vec<u8> {
        let mut out = SEED.to_vec();
        for m in data.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([m[0], m[1]])) % out.len();
            out[at] ^= m[2];
        }
        out
    }

    pub fn load(data: &[u8]) {
        for bytes in [data.to_vec(), mutated(data)] {
            let Ok(package) = runtime().package(bytes) else {
                continue;
            };
            if let Ok(plugin) = Plugin::new(package.into_plugin()).ready(&b""[..]) {
                let _ = plugin.get().call(b"input");
            }
        }
    }
}
