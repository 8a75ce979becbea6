//! Long-form documentation, in the arc-swap style: essays inside rustdoc.
//!
//! The text lives in the workspace's `docs/` folder as Markdown (so it reads
//! on a repository page too) and is included here, so `cargo doc` renders it
//! next to the API it explains and its Rust examples run as doctests.

#[doc = include_str!("../../docs/contract.md")]
pub mod contract {}

#[doc = include_str!("../../docs/drain.md")]
pub mod drain {}

#[doc = include_str!("../../docs/stateful.md")]
pub mod stateful {}

#[doc = include_str!("../../docs/dylib.md")]
pub mod dylib {}

#[doc = include_str!("../../docs/database-plugins.md")]
pub mod database_plugins {}

#[doc = include_str!("../../docs/wasm.md")]
pub mod wasm {}

#[cfg(feature = "registry")]
#[doc = include_str!("../../docs/registry.md")]
pub mod registry {}

#[doc = include_str!("../../docs/verification.md")]
pub mod verification {}

#[doc = include_str!("../../docs/performance.md")]
pub mod performance {}

#[doc = include_str!("../../docs/lifecycle.md")]
pub mod lifecycle {}

/// The workspace README; its example runs as a doctest, so it stays true.
#[doc = include_str!("../../README.md")]
pub mod readme {}
