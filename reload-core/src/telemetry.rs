//! `tracing` output, with the `tracing` feature: one span per reload
//! (`reload`, with the plugin, the generation it starts from, the version
//! it installs and the mode) and one event per [`Event`], all with target
//! `reload_core`. Levels follow the ecosystem's habit: `info` for what an
//! operator wants in a normal log (commits, removals), `warn` for what went
//! wrong but was contained (vetoes, failures, roll backs, panicking
//! listeners), `debug` for the steps in between.

use crate::events::Event;

/// The span a reload's prepare and commit run in.
pub(crate) fn reload_span(
    plugin: &str,
    from_generation: u64,
    to_version: &str,
    mode: crate::Mode,
) -> tracing::Span {
    tracing::info_span!(
        target: "reload_core",
        "reload",
        plugin,
        from_generation,
        to_version,
        mode = %mode,
    )
}

/// Emits `event` in the current span.
pub(crate) fn event(event: &Event<'_>) {
    match event {
        Event::Prepared {
            plugin,
            from_generation,
            to_version,
            mode,
        } => tracing::debug!(
            target: "reload_core",
            plugin,
            from_generation,
            to_version,
            mode = %mode,
            "prepared"
        ),
        Event::Vetoed {
            plugin,
            listener,
            reason,
        } => tracing::warn!(target: "reload_core", plugin, listener, reason, "vetoed"),
        Event::Aborted {
            plugin,
            generation,
            to_version,
        } => tracing::info!(target: "reload_core", plugin, generation, to_version, "aborted"),
        Event::Failed {
            plugin,
            generation,
            rolled_back,
            error,
        } => tracing::warn!(
            target: "reload_core",
            plugin,
            generation = ?generation,
            rolled_back,
            error = %error,
            "reload failed; old version serving"
        ),
        Event::Committed {
            plugin,
            from_generation,
            to_generation,
            mode,
            quiesce,
        } => tracing::info!(
            target: "reload_core",
            plugin,
            from_generation,
            to_generation,
            mode = %mode,
            quiesce_us = quiesce.map(|d| d.as_micros() as u64),
            "committed"
        ),
        Event::Drained {
            plugin,
            generation,
            after,
        } => tracing::debug!(
            target: "reload_core",
            plugin,
            generation,
            after_us = after.as_micros() as u64,
            "drained"
        ),
        Event::Removed {
            plugin,
            generation,
            shutdown_ok,
        } => tracing::info!(target: "reload_core", plugin, generation, shutdown_ok, "removed"),
        Event::ListenerPanicked {
            plugin,
            listener,
            message,
        } => tracing::warn!(
            target: "reload_core",
            plugin,
            listener,
            message,
            "listener panicked (contained)"
        ),
        Event::DropPanicked {
            plugin,
            generation,
            message,
        } => tracing::warn!(
            target: "reload_core",
            plugin,
            generation,
            message,
            "plugin value panicked in drop (contained)"
        ),
    }
}
