//! Deliberate panics (from probes and the harness) are contained and
//! reported by the slot; keep them off stderr so real failures stand out.

use std::sync::Once;

#[allow(dead_code)] // not every test file provokes panics
pub fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !harness::is_expected_panic(info) {
                default(info);
            }
        }));
    });
}

/// Replays every committed input of fuzz target `target`
/// (`fuzz/regressions/<target>/`, skipping its README) through `check`,
/// panicking with the file's name on the first failure; returns how many
/// were replayed.
#[allow(dead_code)] // each test file replays a different target
pub fn replay_regressions(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable directory").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable file");
        if let Err(e) = check(&bytes) {
            panic!("{}: {e}", path.display());
        }
        replayed += 1;
    }
    replayed
}
