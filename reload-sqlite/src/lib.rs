//! Hot-reloadable plugins for any `rusqlite` connection.
//!
//! A database that calls plugins from SQL (scalar functions, aggregates,
//! a storage backend behind a virtual table) declares which plugin of a
//! [`Registry`](reload_core::registry::Registry) serves which SQL object,
//! and attaches that declaration ([`Hot`]) to each connection it opens.
//! From then on, reloading a plugin in the registry (by hand, by an
//! `AutoReload` watching its file, or from SQL with `reload_deploy`)
//! changes what the SQL objects compute, under live statements, with the
//! library's guarantees: no call dropped, none run on a version that was
//! shut down, nothing lost when a reload is refused.
//!
//! ```
//! use std::sync::Arc;
//!
//! use reload_core::manifest::Manifest;
//! use reload_core::registry::{Package, Registry};
//! use reload_core::verify::Unchecked;
//! use reload_core::{Hooks, ReloadOptions, Stateful};
//! use reload_sqlite::{wire, Hot, SqlPlugin};
//! use rusqlite::types::ValueRef;
//! use rusqlite::Connection;
//!
//! // A plugin: `score(x) = k * x`. Native libraries and WebAssembly
//! // modules already implement `SqlPlugin`.
//! struct Score(i64);
//! impl Hooks for Score { type Context = (); }
//! impl Stateful for Score {}
//! impl SqlPlugin for Score {
//!     type Error = wire::WireError;
//!     fn call_sql<R>(&self, input: &[u8], reply: impl FnOnce(&[u8]) -> R) -> Result<R, Self::Error> {
//!         let x = match wire::decode_all(input)?[..] { [ValueRef::Integer(x)] => x, _ => 0 };
//!         Ok(reply(&wire::encode_one(ValueRef::Integer(self.0 * x))?))
//!     }
//! }
//! let version = |v: &str, k| -> Result<Package<Score>, Box<dyn std::error::Error>> {
//!     Ok(Package::new(Score(k), Manifest::new("score", v)?, v.as_bytes().to_vec()))
//! };
//!
//! let registry = Arc::new(Registry::new(Unchecked));
//! registry.register(version("1.0.0", 2)?, &()).map_err(|r| r.error)?;
//!
//! // The host's own connection, and the hot function on it.
//! let conn = Connection::open_in_memory()?;
//! Hot::new(Arc::clone(&registry)).scalar("score", 1, "score").attach(&conn)?;
//! let score = |conn: &Connection| conn.query_row("SELECT score(21)", [], |r| r.get::<_, i64>(0));
//! assert_eq!(score(&conn)?, 42);
//!
//! // A reload, under whatever statements are running.
//! registry.reload(vec![version("2.0.0", 3)?], &(), ReloadOptions::immediate()).map_err(|r| r.error)?;
//! assert_eq!(score(&conn)?, 63);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # One version per statement
//!
//! The host does not wrap its statements. A statement leases each plugin
//! at its first call into it and gives the lease back when SQLite resets
//! or finalizes the statement, whatever API ran it (prepared, cached,
//! `query_row`, iterated partially and dropped): the leases live in
//! SQLite's per-statement auxiliary data ([`scope`] explains the
//! mechanism and what counts as a statement). So a reload that commits
//! mid-statement never mixes versions within its result, and the old
//! version drains when the last statement that started on it ends.
//!
//! # The objects
//!
//! | declared with | SQL | the plugin's protocol |
//! |---|---|---|
//! | [`Hot::scalar`], [`Hot::scalar_with`] | `f(args)` | arguments in, one value out ([`wire`], or the host's [`Codec`]) |
//! | [`Hot::aggregate`], `Hot::window` | `agg(args)`, `agg(args) OVER (..)` | an accumulator the host keeps ([`aggregate`]) |
//! | [`Hot::table`] | `SELECT .. FROM name` | rows in batches, one version per scan ([`table`]) |
//! | [`Hot::admin`] | `reload_plugins`, `reload_deploy`, `reload_revert` | ([`admin`]) |
//!
//! Besides the SQL objects, two kinds run beside the statements: a
//! periodic [`job::Job`] (a tick's SQL from the plugin), and the consumers
//! of a [`Feed`] (change-data sinks, indexes kept beside a table), which
//! get the database's committed changes in order and exactly once across
//! reloads, delivered by a [`Pump`] or by the host ([`feed`]).
//!
//! Every call into code the crate did not write (the plugin, the host's
//! codec and deployer) is contained: a failure or a panic is a SQL error
//! naming the plugin, its version and the cause ([`HotError`],
//! [`DeployError`]); the statement's leases go back with it and the
//! connection stays usable.
//!
//! # Features
//!
//! - `dylib` (default): [`SqlPlugin`] for native libraries
//!   ([`reload_core::dylib::DylibPlugin`]) and [`DylibDeployer`].
//! - `wasm`: [`SqlPlugin`] for WebAssembly modules
//!   (`reload_core::wasm::WasmPlugin`).
//! - `component`: [`SqlPlugin`] for WebAssembly components of
//!   `reload:plugin`'s world
//!   (`reload_core::wasm::component::ComponentPlugin<PluginWorld>`). A
//!   component of a host's own typed world is called from a scalar
//!   function the host registers itself, entering the registry per call
//!   (`wasm-demo/tests/sqlite.rs` shows one beside a native library).
//! - `window` (default): `Hot::window` (SQLite 3.25 or later).
//! - `bundled`: SQLite compiled in (rusqlite's `bundled`); without it, the
//!   system's.
//! - `loadable_extension`: built into a SQLite extension (rusqlite's
//!   `loadable_extension`; the workspace's `sqlite-ext/` is one).

/// The crate's README, whose example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod admin;
pub mod aggregate;
pub mod column;
mod error;
pub mod feed;
mod hot;
pub mod job;
mod plugin;
pub mod pump;
mod raw;
mod scalar;
pub mod scope;
mod shared;
pub mod table;
mod ticker;
pub mod wire;

pub use admin::Deployer;
#[cfg(feature = "dylib")]
pub use admin::DylibDeployer;
pub use error::{DeployError, HotError};
pub use feed::{Feed, FeedError};
pub use hot::{AttachError, Hot};
pub use plugin::SqlPlugin;
pub use pump::{Pump, Pumping};
pub use wire::{Codec, Wire, WireError};
