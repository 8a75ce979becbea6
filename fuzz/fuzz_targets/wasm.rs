//! The WebAssembly module reader (`reload_core::wasm::manifest_section`) on
//! arbitrary bytes: it runs before anything is compiled, on modules that
//! may be hostile, so it must never panic, and what it returns must lie
//! inside the input. (What the host reads back from guest memory is
//! bounds-checked pointer by pointer and decoded by `reload_abi::wire`,
//! which the `abi` target covers.) Replayed on stable by
//! `cargo test -p wasm-demo --test wasm`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(section) = reload_core::wasm::manifest_section(data) {
        let start = section.as_ptr() as usize;
        let base = data.as_ptr() as usize;
        assert!(start >= base && start + section.len() <= base + data.len());
    }
});
