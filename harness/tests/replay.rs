//! Replays every committed fuzz regression (`fuzz/regressions/<target>/`)
//! as an ordinary test on stable: each input must decode and run clean.

use std::path::Path;

mod support;

#[test]
fn fuzz_regressions_replay_clean() {
    support::quiet_expected_panics();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/ops");
    let mut replayed = 0;
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("readable directory").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable file");
        let ops = harness::decode(&bytes);
        if let Err(v) = harness::run(&ops) {
            panic!("{}: {v}\nops: {ops:#?}", path.display());
        }
        replayed += 1;
    }
    assert!(replayed > 0, "no regression inputs under {}", dir.display());
}
