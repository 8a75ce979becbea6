//! Registry operation sequences against the reference (`harness::registry`),
//! the manifest decoder's contract on random bytes and text, and the
//! committed manifest fuzz regressions replayed on stable.

use harness::registry::{check_manifest, run, RFault, ROp};

mod support;
use proptest::prelude::*;

fn op() -> impl Strategy<Value = ROp> {
    let fault = prop_oneof![
        6 => Just(RFault::None),
        1 => Just(RFault::Init),
        1 => Just(RFault::Restore),
    ];
    let requires = proptest::option::of((0u8..4, 0u8..3));
    prop_oneof![
        3 => (0u8..4, 0u8..3, requires.clone(), fault.clone())
            .prop_map(|(name, major, requires, fault)| ROp::Register { name, major, requires, fault }),
        1 => (0u8..4).prop_map(|name| ROp::Unregister { name }),
        3 => (0u8..4, 0u8..3, requires, fault, any::<bool>()).prop_map(
            |(name, major, requires, fault, quiesced)| ROp::Reload { name, major, requires, fault, quiesced }
        ),
        3 => (0u8..4).prop_map(|name| ROp::Call { name }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn registry_matches_the_reference(ops in proptest::collection::vec(op(), 1..40)) {
        if let Err(e) = run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn the_manifest_decoder_holds_its_contract_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        prop_assert_eq!(check_manifest(&bytes), Ok(()));
    }

    #[test]
    fn the_manifest_decoder_holds_its_contract_on_near_manifests(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("name x".to_owned()),
                Just("version 1.2.3".to_owned()),
                "export [a-z]{1,3}",
                "requires [a-c] [\\^~>=<*0-9.,]{1,8}( uses [a-z,]{1,6})?",
                "[a-z]{1,8} [ -~]{0,12}",
            ],
            0..8,
        )
    ) {
        let text = format!("reload-manifest 1\n{}", lines.join("\n"));
        prop_assert_eq!(check_manifest(text.as_bytes()), Ok(()));
    }
}

/// Every fault, every refusal, in one pinned sequence.
#[test]
fn a_fixed_sequence_covers_each_outcome() {
    let ops = vec![
        ROp::Register {
            name: 0,
            major: 0,
            requires: None,
            fault: RFault::None,
        },
        ROp::Register {
            name: 1,
            major: 0,
            requires: Some((0, 0)),
            fault: RFault::None,
        },
        ROp::Register {
            name: 2,
            major: 0,
            requires: Some((1, 1)),
            fault: RFault::None,
        },
        ROp::Register {
            name: 2,
            major: 0,
            requires: Some((1, 0)),
            fault: RFault::Init,
        },
        ROp::Register {
            name: 2,
            major: 0,
            requires: Some((1, 0)),
            fault: RFault::None,
        },
        ROp::Register {
            name: 2,
            major: 0,
            requires: None,
            fault: RFault::None,
        },
        ROp::Unregister { name: 0 },
        ROp::Reload {
            name: 0,
            major: 1,
            requires: None,
            fault: RFault::None,
            quiesced: true,
        },
        ROp::Reload {
            name: 0,
            major: 0,
            requires: Some((2, 0)),
            fault: RFault::None,
            quiesced: false,
        },
        ROp::Reload {
            name: 1,
            major: 0,
            requires: Some((0, 0)),
            fault: RFault::Restore,
            quiesced: true,
        },
        ROp::Reload {
            name: 1,
            major: 0,
            requires: Some((0, 0)),
            fault: RFault::Init,
            quiesced: false,
        },
        ROp::Reload {
            name: 2,
            major: 2,
            requires: Some((1, 0)),
            fault: RFault::None,
            quiesced: true,
        },
        ROp::Reload {
            name: 3,
            major: 0,
            requires: None,
            fault: RFault::None,
            quiesced: true,
        },
        ROp::Call { name: 2 },
        ROp::Call { name: 3 },
        ROp::Unregister { name: 2 },
        ROp::Unregister { name: 1 },
        ROp::Unregister { name: 0 },
    ];
    let report = run(&ops).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.ok, report.refused, report.calls), (8, 10, 1));
}

#[test]
fn manifest_fuzz_regressions_replay_clean() {
    assert!(support::replay_regressions("manifest", check_manifest) >= 5);
}

/// The random sequences are not vacuous: across a fixed-seed batch, every
/// kind of operation succeeds and is refused somewhere, and calls are served.
#[test]
fn random_sequences_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = proptest::collection::vec(op(), 1..40);
    let (mut ok, mut refused, mut calls) = (0, 0, 0);
    for _ in 0..256 {
        let ops = strategy.new_tree(&mut runner).expect("a case").current();
        let report = run(&ops).unwrap_or_else(|e| panic!("{e}"));
        ok += report.ok;
        refused += report.refused;
        calls += report.calls;
    }
    // A fixed seed: pinned.
    assert_eq!((ok, refused, calls), (1600, 3577, 562));
}

#[test]
fn registry_fuzz_regressions_replay_clean() {
    let replayed = support::replay_regressions("registry", |bytes| {
        run(&harness::registry::decode(bytes)).map(drop)
    });
    assert!(replayed >= 3);
}
