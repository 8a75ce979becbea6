//! The manifest decoder on arbitrary bytes, and registering what it
//! accepts: no panic, canonical round trip, typed refusals, the registry's
//! fixture serving throughout (`harness::registry::check_manifest`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::registry::check_manifest(data) {
        panic!("{e}");
    }
});
