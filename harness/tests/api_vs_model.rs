//! proptest: random host operation sequences against the reference model,
//! shrunk to a minimal sequence on failure. Failing cases are saved under
//! `harness/tests/api_vs_model.proptest-regressions` and replayed first on every run.

use proptest::prelude::*;

mod support;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        // Each case spawns a small thread pool; keep shrinking bounded.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_slot_matches_the_reference_model(
        chunks in proptest::collection::vec(any::<[u8; harness::OP_BYTES]>(), 0..harness::MAX_OPS)
    ) {
        support::quiet_expected_panics();
        let ops: Vec<harness::Op> = chunks.iter().map(harness::decode_op).collect();
        if let Err(violation) = harness::run(&ops) {
            prop_assert!(false, "{violation}\nops: {ops:?}");
        }
    }
}

/// Sequences proptest found, kept as regressions. Both were mismatches in
/// the reference model, not the library: `replace` on a closed slot, and
/// `close` on a closed slot, still finalize drained orphans.
const FOUND: &[&[harness::Op]] = {
    use harness::{Fault, Op};
    &[
        &[
            Op::Enter { thread: 0 },
            Op::Close,
            Op::DropHandle { handle: 0 },
            Op::Release {
                lease: 0,
                thread: 1,
            },
            Op::Replace { fault: Fault::None },
        ],
        &[
            Op::Enter { thread: 0 },
            Op::Close,
            Op::DropHandle { handle: 0 },
            Op::Release {
                lease: 0,
                thread: 1,
            },
            Op::Close,
        ],
    ]
};

/// Hand-written sequences for the paths random inputs reach rarely.
#[test]
fn every_operation_on_its_own_path() {
    use harness::{run, Fault, Op};
    support::quiet_expected_panics();
    let cases: &[&[Op]] = &[
        &[],
        &[
            Op::Enter { thread: 0 },
            Op::Replace { fault: Fault::None },
            Op::WaitDeadline { handle: 0 },
        ],
        &[
            Op::Enter { thread: 1 },
            Op::Replace {
                fault: Fault::PanicShutdown,
            },
            Op::DropHandle { handle: 0 },
            Op::Release {
                lease: 0,
                thread: 0,
            },
            Op::Reap,
        ],
        &[
            Op::Replace {
                fault: Fault::FailLink,
            },
            Op::Replace {
                fault: Fault::FailInit,
            },
            Op::Replace {
                fault: Fault::PanicInit,
            },
            Op::PanicCall,
            Op::Call { lease: 0 },
        ],
        &[
            Op::Enter { thread: 0 },
            Op::Enter { thread: 1 },
            Op::Replace { fault: Fault::None },
            Op::Enter { thread: 0 },
            Op::Replace { fault: Fault::None },
            Op::WaitReleasing { handle: 1 },
            Op::WaitReleasing { handle: 0 },
        ],
        &[
            Op::Enter { thread: 0 },
            Op::Close,
            Op::Enter { thread: 1 },
            Op::Replace { fault: Fault::None },
            Op::PanicCall,
            Op::Close,
            Op::WaitReleasing { handle: 0 },
        ],
    ];
    for ops in cases.iter().chain(FOUND) {
        let report = run(ops).unwrap_or_else(|v| panic!("{v}"));
        assert!(report.versions >= 1);
    }
}
