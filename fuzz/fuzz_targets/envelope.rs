//! The state envelope decoder on arbitrary bytes, and a quiesced reload
//! restoring from them: no panic, canonical encoding, typed errors, and the
//! old version serving with its state after any rejection
//! (`harness::stateful::check_envelope`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::stateful::check_envelope(data) {
        panic!("{e}");
    }
});
