//! Deliberate panics (from probes and the harness) are contained and
//! reported by the slot; keep them off stderr so real failures stand out.

use std::sync::Once;

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
