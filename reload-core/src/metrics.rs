//! Figures through the [`metrics`](https://docs.rs/metrics) facade, with
//! the `metrics` feature: the host installs whatever recorder it exports
//! with (Prometheus, StatsD, an in-memory one for its report), and these
//! appear in it. Every figure about a plugin is labelled `plugin`.
//!
//! | name | kind | when |
//! |---|---|---|
//! | `reload_core_calls_total` | counter | a registry call starts ([`Handle::enter`](crate::registry::Handle::enter), [`Registry::enter`](crate::registry::Registry::enter), `call`) |
//! | `reload_core_reloads_total` | counter | a version is cut in |
//! | `reload_core_reload_failures_total` | counter | a reload failed (label `rolled_back`: `true` if a quiesced commit rolled back) |
//! | `reload_core_vetoes_total` | counter | a listener vetoed a reload |
//! | `reload_core_aborts_total` | counter | a prepared reload was aborted |
//! | `reload_core_refusals_total` | counter | the registry refused a registration, reload or revert (label `reason`) |
//! | `reload_core_drain_seconds` | histogram | a version cut over from drained (from the cut-over) |
//! | `reload_core_quiesce_seconds` | histogram | a quiesced commit held new calls at the gate |
//! | `reload_core_versions_draining` | gauge | versions cut over from and not yet drained |
//! | `reload_core_shutdown_failures_total` | counter | a `shutdown` failed or panicked |
//! | `reload_core_panics_total` | counter | a listener or a plugin's `Drop` panicked (label `in`) |
//! | `reload_core_thread_exits_total` | counter | a library thread (a watch, an auto-reloader, the WebAssembly epoch ticker) ended without being asked to (labels `thread`, `how`: `panicked` or `stopped`; not labelled `plugin`) |
//!
//! Everything but the call counter is recorded on the cold path, where the
//! event is told to listeners (`events.rs` turns events into figures, as it
//! does into `tracing` events). The call counter costs one increment per
//! registry call (the recorder's: an atomic add for the common ones; a
//! no-op with no recorder installed); plain [`Slot`](crate::Slot) leases
//! are not counted, so the slot's call path stays as measured in
//! `docs/performance.md`. The registry keeps its name map in a slot of its
//! own (a version per registration); that slot is not reported.

/// A version was cut over from (a reload or the slot's close): one more
/// draining until its `Drained`.
pub(crate) fn draining(plugin: &str) {
    if plugin == crate::events::INTERNAL {
        return;
    }
    metrics::gauge!("reload_core_versions_draining", "plugin" => plugin.to_owned()).increment(1.0);
}

/// The call counter of `plugin`, registered once per registry node.
#[cfg(feature = "registry")]
pub(crate) fn calls(plugin: &str) -> metrics::Counter {
    metrics::counter!("reload_core_calls_total", "plugin" => plugin.to_owned())
}

/// The registry refused an operation.
#[cfg(feature = "registry")]
pub(crate) fn refused(plugin: Option<&str>, reason: &'static str) {
    metrics::counter!(
        "reload_core_refusals_total",
        "plugin" => plugin.unwrap_or("").to_owned(),
        "reason" => reason
    )
    .increment(1);
}
