//! [`Leased`]: a request's lease on the plugin version serving it, shared
//! by the handler (a request extension) and the response body.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use reload_core::manifest::Manifest;
use reload_core::registry::OwnedCall;
use reload_core::{Hooks, OwnedLease, Stateful};

/// What the layer holds for a request: an owned lease on a slot's version
/// or an owned registry call.
pub(crate) trait Held<P>: Send + Sync + 'static {
    fn plugin(&self) -> &P;
    fn generation(&self) -> u64;
    fn manifest(&self) -> Option<&Manifest>;
}

impl<P: Hooks> Held<P> for OwnedLease<P> {
    fn plugin(&self) -> &P {
        self
    }
    fn generation(&self) -> u64 {
        OwnedLease::generation(self)
    }
    fn manifest(&self) -> Option<&Manifest> {
        None
    }
}

impl<P: Stateful> Held<P> for OwnedCall<P> {
    fn plugin(&self) -> &P {
        OwnedCall::plugin(self)
    }
    fn generation(&self) -> u64 {
        OwnedCall::generation(self)
    }
    fn manifest(&self) -> Option<&Manifest> {
        Some(OwnedCall::manifest(self))
    }
}

/// The plugin version a request was admitted on. Derefs to the plugin.
///
/// The layer puts one in the request's extensions (handlers read it from
/// there, or with the `axum` feature take it as an extractor) and keeps
/// another in the response body; the version cannot finish draining while
/// any clone lives. A handler that streams its response keeps a clone in
/// the stream, so every chunk comes from the version that admitted the
/// request. Cloning is an `Arc` clone.
pub struct Leased<P: 'static> {
    held: Arc<dyn Held<P>>,
}

impl<P: 'static> Clone for Leased<P> {
    fn clone(&self) -> Self {
        Leased {
            held: Arc::clone(&self.held),
        }
    }
}

impl<P: 'static> Leased<P> {
    pub(crate) fn new(held: impl Held<P>) -> Self {
        Leased {
            held: Arc::new(held),
        }
    }

    /// The version's generation (1 for the first, one more per reload).
    pub fn generation(&self) -> u64 {
        self.held.generation()
    }

    /// The version's manifest, for a plugin of a registry (`None` for a
    /// slot's plugin, which has none).
    pub fn manifest(&self) -> Option<&Manifest> {
        self.held.manifest()
    }
}

impl<P: 'static> Deref for Leased<P> {
    type Target = P;

    fn deref(&self) -> &P {
        self.held.plugin()
    }
}

impl<P: 'static> fmt::Debug for Leased<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Leased");
        d.field("generation", &self.held.generation());
        if let Some(m) = self.held.manifest() {
            d.field("plugin", &m.name())
                .field("version", &m.version().to_string());
        }
        d.finish()
    }
}
