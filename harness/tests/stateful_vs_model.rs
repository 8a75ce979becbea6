//! proptest: random stateful reload sequences (every mode, every injected
//! failure, snapshots and corrupt envelopes) against the reference, shrunk
//! to a minimal sequence on failure.

use proptest::prelude::*;

mod support;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn stateful_reloads_match_the_reference(
        chunks in proptest::collection::vec(
            any::<[u8; harness::stateful::SOP_BYTES]>(),
            0..harness::MAX_OPS,
        )
    ) {
        support::quiet_expected_panics();
        let ops: Vec<_> = chunks.iter().map(harness::stateful::decode_op).collect();
        if let Err(violation) = harness::stateful::run(&ops) {
            prop_assert!(false, "{violation}\nops: {ops:?}");
        }
    }

    #[test]
    fn the_envelope_decoder_holds_its_contract(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(harness::stateful::check_envelope(&bytes), Ok(()));
    }
}

#[test]
fn every_fault_in_both_modes() {
    use harness::stateful::{run, SFault, SOp};
    support::quiet_expected_panics();
    let mut ops = vec![SOp::Inc { times: 5 }, SOp::Put { numeric: false }];
    for quiesced in [true, false] {
        for fault in [
            SFault::Restore,
            SFault::RestorePanics,
            SFault::Open,
            SFault::Resume,
            SFault::IndexSchema,
            SFault::None,
        ] {
            ops.push(SOp::Reload {
                quiesced,
                schema3: false,
                fault,
            });
            ops.push(SOp::Inc { times: 1 });
        }
    }
    ops.extend([
        SOp::Reload {
            quiesced: true,
            schema3: true,
            fault: SFault::Migration,
        },
        SOp::Reload {
            quiesced: true,
            schema3: true,
            fault: SFault::None,
        },
        SOp::RestoreFrom { corrupt: true },
        SOp::RestoreFrom { corrupt: false },
        SOp::PrepareThenInc { commit: false },
        SOp::PrepareThenInc { commit: true },
    ]);
    let report = run(&ops).expect("matches the reference");
    assert_eq!(report.committed, 5);
    assert_eq!(report.failed, 12);
    assert_eq!(report.increments, 5 + 12 + 2);
}

#[test]
fn envelope_fuzz_regressions_replay_clean() {
    let replayed = support::replay_regressions("envelope", harness::stateful::check_envelope);
    assert!(replayed >= 3, "seed inputs missing");
}
