//! The host's decoders of what a plugin library hands back through the C
//! ABI (`reload_abi::wire`: descriptions, saved state, migration steps,
//! positions, hand-off requests), on arbitrary bytes: none may panic, and
//! whatever one accepts must re-encode to the bytes it read. The checks
//! are `harness::abi::check`, replayed on stable by `cargo test -p harness
//! --test replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = harness::abi::check(data) {
        panic!("{e}");
    }
});
