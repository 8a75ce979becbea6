//! The plugin-library reader (`reload_core::dylib::manifest_section`) on
//! arbitrary bytes: it runs before anything is mapped, on files that may be
//! half written or hostile, so it must never panic, and what it returns
//! must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(section) = reload_core::dylib::manifest_section(data) {
        let start = section.as_ptr() as usize;
        let base = data.as_ptr() as usize;
        assert!(start >= base && start + section.len() <= base + data.len());
    }
});
