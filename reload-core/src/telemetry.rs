//! `tracing` output, with the `tracing` feature: one span per reload
//! (`reload`, with the plugin, the generation it starts from, the version
//! it installs and the mode), target `reload_core`. The events inside it
//! are emitted where they are told to listeners (`events.rs`).

use crate::options::Mode;

/// The span a reload's prepare and commit run in.
pub(crate) fn reload_span(
    plugin: &str,
    from_generation: u64,
    to_version: &str,
    mode: Mode,
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
