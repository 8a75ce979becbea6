//! Hot-reloadable `tower` services: a server whose handlers, filters or
//! transforms are plugins swaps their versions under live traffic, and
//! every request runs on one version from the moment it is admitted until
//! its response body has been sent or dropped.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use reload_core::{Hooks, Plugin, Slot};
//! use axum::{routing::get, Router, error_handling::HandleErrorLayer};
//! use reload_tower::{Leased, ReloadLayer};
//! use tower::ServiceBuilder;
//!
//! struct Greeter { greeting: String }
//! impl Hooks for Greeter { type Context = (); }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let slot = Arc::new(Slot::new(
//!     Plugin::new(Greeter { greeting: "hello".into() }).ready(&()).ok().ok_or("init failed")?,
//! ));
//! let app: Router = Router::new()
//!     .route("/", get(|request: axum::extract::Request| async move {
//!         // The version that admitted this request.
//!         let greeter = request.extensions().get::<Leased<Greeter>>().cloned();
//!         greeter.map_or_else(String::new, |g| g.greeting.clone())
//!     }))
//!     .layer(
//!         ServiceBuilder::new()
//!             // A closed slot is a service error: say what the client sees.
//!             .layer(HandleErrorLayer::new(|e: reload_tower::BoxError| async move {
//!                 (http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
//!             }))
//!             .layer(ReloadLayer::new(Arc::clone(&slot))),
//!     );
//! # Ok(()) }
//! ```
//!
//! # What a request holds, and for how long
//!
//! [`Reloaded::poll_ready`](tower_service::Service::poll_ready) admits
//! the next request: it takes an owned lease on the version current then
//! ([`Leased`]), and `call` hands it to the request as an extension. The
//! response body is wrapped in a [`LeasedBody`] holding the same lease, so
//! the version stays leased
//!
//! - while the handler runs (it reads the plugin from the extension, or,
//!   with the `axum` feature, takes `Leased<P>` as an extractor);
//! - while the body streams: chunked bodies, server-sent events, a slow
//!   download (a handler that produces chunks from the plugin keeps a
//!   clone of the lease in its stream, so every chunk comes from one
//!   version);
//! - until the body's last frame, or until the body is dropped: a client
//!   that disconnects mid-stream gives its version back when the server
//!   drops the body.
//!
//! A reload that commits meanwhile sends new requests to the new version;
//! the old one drains when its last request's body is done, and is never
//! called after its `shutdown`.
//!
//! # Backpressure, not errors
//!
//! At the gate of a quiesced reload (or a registry's group commit),
//! `poll_ready` is `Pending`: the request's task waits on the gate's list,
//! holding no thread and no lease, and proceeds when the gate opens, on
//! whichever version is current then (the new one, or the old one if the
//! reload rolled back). The wait is bounded by the reload's own timeout.
//! A closed slot, or a plugin unregistered from its registry, is a service
//! error ([`ReloadError`]): in axum, `HandleErrorLayer` turns it into the
//! response the server chooses.
//!
//! # Sources
//!
//! A [`Source`] is where versions come from: an `Arc<Slot<P>>` (one
//! plugin, any kind: in-process, native library, WebAssembly module) or a
//! registry `Handle<P>` (a named plugin and the versions of what it
//! requires, leased together).
//!
//! # Features
//!
//! - `axum`: `Leased<P>` is an axum extractor.

mod body;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod leased;
mod service;
mod source;

pub use body::LeasedBody;
pub use error::ReloadError;
#[cfg(feature = "axum")]
pub use extract::MissingLease;
pub use leased::Leased;
pub use service::{BoxError, ReloadLayer, Reloaded, ResponseFuture};
pub use source::{CallEnter, SlotEnter, Source};
