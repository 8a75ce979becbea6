//! Long-form documentation, in the arc-swap style: essays inside rustdoc.
//!
//! The text lives in the workspace's `docs/` folder as Markdown (so it reads
//! on a repository page too) and is included here, so `cargo doc` renders it
//! next to the API it explains and its Rust examples run as doctests. A
//! packaged crate (no workspace around it) shows a pointer to the
//! repository's `docs/` instead (`build.rs`).

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/contract.md"))]
#[cfg_attr(not(workspace_docs), doc = "See `docs/contract.md` in the repository.")]
pub mod contract {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/drain.md"))]
#[cfg_attr(not(workspace_docs), doc = "See `docs/drain.md` in the repository.")]
pub mod drain {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/stateful.md"))]
#[cfg_attr(not(workspace_docs), doc = "See `docs/stateful.md` in the repository.")]
pub mod stateful {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/dylib.md"))]
#[cfg_attr(not(workspace_docs), doc = "See `docs/dylib.md` in the repository.")]
pub mod dylib {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/database-plugins.md"))]
#[cfg_attr(
    not(workspace_docs),
    doc = "See `docs/database-plugins.md` in the repository."
)]
pub mod database_plugins {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/wasm.md"))]
#[cfg_attr(not(workspace_docs), doc = "See `docs/wasm.md` in the repository.")]
pub mod wasm {}

#[cfg(feature = "registry")]
#[cfg_attr(workspace_docs, doc = include_str!("../../docs/registry.md"))]
#[cfg_attr(not(workspace_docs), doc = "See `docs/registry.md` in the repository.")]
pub mod registry {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/verification.md"))]
#[cfg_attr(
    not(workspace_docs),
    doc = "See `docs/verification.md` in the repository."
)]
pub mod verification {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/performance.md"))]
#[cfg_attr(
    not(workspace_docs),
    doc = "See `docs/performance.md` in the repository."
)]
pub mod performance {}

#[cfg_attr(workspace_docs, doc = include_str!("../../docs/lifecycle.md"))]
#[cfg_attr(
    not(workspace_docs),
    doc = "See `docs/lifecycle.md` in the repository."
)]
pub mod lifecycle {}

/// The workspace README; its example runs as a doctest, so it stays true.
#[cfg_attr(workspace_docs, doc = include_str!("../../README.md"))]
#[cfg_attr(not(workspace_docs), doc = "See `README.md` in the repository.")]
pub mod readme {}
