//! Replays every committed fuzz regression (`fuzz/regressions/ops/`) as an
//! ordinary test on stable: each input must decode and run clean.

mod support;

#[test]
fn fuzz_regressions_replay_clean() {
    support::quiet_expected_panics();
    let replayed = support::replay_regressions("ops", |bytes| {
        let ops = harness::decode(bytes);
        harness::run(&ops)
            .map(drop)
            .map_err(|v| format!("{v}\nops: {ops:#?}"))
    });
    assert!(replayed > 0, "no regression inputs");
}

/// The `abi` target's regressions (`fuzz/regressions/abi/`): the host's
/// decoders of library replies never panic, and what they accept
/// re-encodes exactly.
#[test]
fn abi_fuzz_regressions_replay() {
    let replayed = support::replay_regressions("abi", harness::abi::check);
    assert!(replayed >= 18, "only {replayed} inputs");
}
