//! Any bytes are a sequence of host operations (`harness::decode`); run it
//! against the real slot and the reference model. A violation, a panic that
//! escapes the slot, a hang or an unbounded allocation is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // libfuzzer-sys aborts on every panic, before `catch_unwind` runs.
        // The probes panic on purpose and the slot contains those panics:
        // let them unwind, and abort on anything else.
        let abort_on_panic = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !harness::is_expected_panic(info) {
                abort_on_panic(info);
            }
        }));
    },
    |data: &[u8]| {
        let ops = harness::decode(data);
        if let Err(violation) = harness::run(&ops) {
            panic!("{violation}\nops: {ops:#?}");
        }
    }
);
