//! Hot-reload plugins inside a running process, with a drain whose
//! correctness is checked, not hoped for.
//!
//! A host that runs plugins (UDFs, index kinds, change-data sinks, storage
//! backends) puts each behind a [`Slot`]. Calls go through the slot: each
//! takes a [`Lease`] on the current version, which keeps that version alive
//! and running until the lease is dropped. To swap in a new version the host
//! makes it ready through the typestate lifecycle and calls [`Slot::replace`]:
//! the cut-over is one atomic pointer swap, calls that start afterwards run
//! on the new version, and the old one comes back as a `Plugin<P, Draining>`
//! that the host waits on. Its `shutdown` hook runs exactly once, after the
//! last call on it returned.
//!
//! ```
//! use reload_core::{BoxError, Hooks, Plugin, Slot};
//!
//! struct Tax { rate_percent: u64 }
//!
//! impl Hooks for Tax {
//!     type Context = ();
//!     fn name(&self) -> &str { "tax" }
//! }
//!
//! impl Tax {
//!     fn apply(&self, cents: u64) -> u64 { cents + cents * self.rate_percent / 100 }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let v1 = Plugin::new(Tax { rate_percent: 20 }).link()?.init(&())?;
//! let slot = Slot::new(v1);
//!
//! // A call: a lease on whatever version is current.
//! assert_eq!(slot.enter()?.apply(100), 120);
//!
//! // A reload under traffic: the lease taken before the cut-over keeps
//! // running on version 1; new calls see version 2.
//! let in_flight = slot.enter()?;
//! let v2 = Plugin::new(Tax { rate_percent: 25 }).ready(&())?;
//! let old = slot.replace(v2)?;
//! assert_eq!(slot.enter()?.apply(100), 125);
//! assert_eq!(in_flight.apply(100), 120);
//! assert_eq!(old.in_flight(), 1);
//!
//! // Version 1 drains when the last lease on it is dropped; `shutdown` runs
//! // once, and the value comes back to the host.
//! drop(in_flight);
//! let removed = old.wait()?;
//! assert_eq!(removed.report().generation, 1);
//! assert_eq!(removed.into_inner().rate_percent, 20);
//! # Ok(())
//! # }
//! ```
//!
//! Beyond one slot:
//!
//! - [`Slot::enter_owned`] gives an [`OwnedLease`]: `Send + 'static`, for a
//!   call that moves into a spawned task or outlives the slot itself.
//! - [`Slot::prepare`] makes a reload a transaction for plugins with state
//!   and resources ([`Stateful`]; [`docs::stateful`]).
//! - `registry::Registry` (the `registry` feature, on by default) holds many
//!   named plugins with dependencies, manifests (`manifest`) and integrity
//!   checks (`verify`), and reloads a plugin together with the dependents
//!   that must follow (`docs::registry`). Without it, the crate is the slot,
//!   the lifecycle and stateful reloads, and builds none of `semver`,
//!   `sha2`, `smallvec` or `arc-swap`.
//! - The `test-util` feature adds `testing`, the instrumented plugins this
//!   crate's tests, demos and harnesses use.
//! - The `dylib` feature loads plugins built as `cdylib`s, from private
//!   copies, unloading each only after its drain, and watches their files
//!   (`reload_core::dylib`; `docs/dylib.md`).
//!
//! # What is guaranteed
//!
//! The contract is [`docs::contract`]; the argument for each
//! property, and where it is checked, is in [`docs::drain`]. In short:
//!
//! - **No call into a finalized version** (S1): `shutdown` starts only after
//!   every lease on the version was given back, and none is granted after.
//! - **Atomic cut-over** (S2): exactly one current version at every instant;
//!   a lease taken after `replace` returns is on the new version.
//! - **No dropped call** (S3): [`Slot::enter`] never blocks or fails because a
//!   reload is in progress; only a closed slot refuses.
//! - **Exactly once** (S4): each version's `shutdown` runs once and its memory
//!   is freed once.
//! - **Legal phases** (S5): phases move along the [`lifecycle`] table only,
//!   by compare-and-swap, and illegal transitions do not compile ([`state`]).
//! - **Never stuck, nothing lost** (S6, S7): a failing or panicking hook is
//!   contained; the slot keeps serving what it served, and every error hands
//!   back what it was given.
//! - **Drains complete, and can be bounded** (L1, L2): the last release wakes
//!   every waiter, threads and tasks alike (no polling); a wait with a
//!   deadline hands the version back and unregisters only itself.
//!
//! # How it works
//!
//! The current version sits behind a `crossbeam_epoch::Atomic`. Each
//! version counts its leases on cache-padded per-thread shards; a thread
//! counts on its own shard with a plain load and store (it is the only
//! writer), so `enter` and dropping a [`Lease`] execute no locked
//! instruction: load, count, fence, re-load; if a cut-over raced it, undo
//! and retry on the new version. The fence is a compiler fence where the
//! kernel offers `membarrier`: the reloader pays with a process-wide
//! barrier per drain check instead ([`fence_mode`]; elsewhere both sides
//! fence). `enter` does not pin either: version memory is reused by the
//! slot, never freed while the slot lives, so a stale pointer still points
//! at a version. The pairs that make this correct, and the wake-up that
//! makes the drain parked rather than polled, are in one file,
//! `src/drain.rs`, explained in [`docs::drain`].

// Clippy's unwrap lint is for code a user or plugin can influence; tests
// assert with `expect` instead, and doctests stay readable.
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(any(feature = "dylib", feature = "wasm"))]
mod background;
pub mod docs;
mod drain;
mod draining;
#[cfg(feature = "dylib")]
pub mod dylib;
pub mod envelope;
mod error;
mod events;
mod fences;
mod handback;
mod hooks;
mod lease;
mod loom;
#[cfg(feature = "registry")]
pub mod manifest;
#[cfg(feature = "metrics")]
pub mod metrics;
mod options;
mod plugin;
#[cfg(feature = "registry")]
pub mod registry;
mod reload;
mod shared;
mod slot;
pub mod state;
mod stateful;
mod stats;
#[cfg(feature = "tracing")]
mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;
mod transfer;
#[cfg(feature = "registry")]
pub mod verify;
mod waiters;
#[cfg(feature = "wasm")]
pub mod wasm;

#[cfg(any(feature = "dylib", feature = "wasm"))]
pub use background::{ThreadExit, ThreadHealth};
pub use draining::{Drain, UntilDrained};
pub use envelope::{EnvelopeError, SavedState};
pub use error::{CallError, ReloadFault, SlotClosed, SnapshotError, TryEnterError};
pub use events::{Event, Listener, ListenerId, Proposal};
pub use fences::{fence_mode, FenceMode};
pub use handback::{DrainError, FinalizeError, ReloadError, Returned};
pub use hooks::{BoxError, Cause, Hook, HookFailure, Hooks};
pub use lease::{EnterFuture, EnterOwnedFuture, Lease, OwnedLease};
pub use lifecycle::{self, Phase};
pub use options::{Mode, ReloadOptions};
pub use plugin::{InitError, LinkError, Plugin, ReadyError, StepError};
pub use reload::{Committed, GroupFailed, Prepared};
pub use slot::Slot;
pub use state::{Active, Draining, Initialized, Linked, Loaded, Removed};
pub use stateful::{Resource, ResourceKind, Stateful};
pub use stats::{DurationSummary, RemovalReport, SlotStats, VersionInfo};
pub use transfer::{Salvage, Transfer};
