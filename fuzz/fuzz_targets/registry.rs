//! Registry operation sequences from arbitrary bytes, checked step by step
//! against the reference (`harness::registry::run`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ops = harness::registry::decode(data);
    if let Err(e) = harness::registry::run(&ops) {
        panic!("{e}\nops: {ops:#?}");
    }
});
