//! Where a service's plugin versions come from: a [`Slot`] (one plugin)
//! or a registry [`Handle`] (a named plugin with its requirements).
//!
//! Both admit a request without blocking a thread: at the gate of a
//! quiesced (or group) commit the request's task waits on the gate's list
//! and is woken when it opens, then proceeds on whichever version is
//! current; that wait is the layer's backpressure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use reload_core::registry::{EnterCallFuture, Handle};
use reload_core::EnterOwnedFuture;
use reload_core::{Hooks, Slot, Stateful};

use crate::error::ReloadError;
use crate::leased::Leased;

/// A source of plugin versions for [`ReloadLayer`](crate::ReloadLayer).
pub trait Source: Clone + Send + Sync + 'static {
    /// The plugin.
    type Plugin: Send + Sync + 'static;
    /// The admission of one request.
    type Enter: Future<Output = Result<Leased<Self::Plugin>, ReloadError>> + Send + Unpin + 'static;

    /// Admits a request on the current version (waiting at a closed gate).
    fn enter(&self) -> Self::Enter;

    /// The plugin's name, for errors.
    fn name(&self) -> &str;
}

impl<P: Hooks> Source for Arc<Slot<P>> {
    type Plugin = P;
    type Enter = SlotEnter<P>;

    fn enter(&self) -> SlotEnter<P> {
        SlotEnter {
            inner: self.enter_owned_async(),
            name: Arc::from(Slot::name(self)),
        }
    }

    fn name(&self) -> &str {
        Slot::name(self)
    }
}

impl<P: Stateful> Source for Handle<P> {
    type Plugin = P;
    type Enter = CallEnter<P>;

    fn enter(&self) -> CallEnter<P> {
        CallEnter {
            inner: self.enter_owned_async(),
        }
    }

    fn name(&self) -> &str {
        Handle::name(self)
    }
}

/// A slot's admission ([`Source::enter`]).
#[derive(Debug)]
pub struct SlotEnter<P: Hooks> {
    inner: EnterOwnedFuture<P>,
    name: Arc<str>,
}

impl<P: Hooks> Future for SlotEnter<P> {
    type Output = Result<Leased<P>, ReloadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx).map(|entered| {
            entered.map(Leased::new).map_err(|_| ReloadError::Closed {
                plugin: self.name.to_string(),
            })
        })
    }
}

/// A registry handle's admission ([`Source::enter`]).
#[derive(Debug)]
pub struct CallEnter<P: Stateful> {
    inner: EnterCallFuture<P>,
}

impl<P: Stateful> Future for CallEnter<P> {
    type Output = Result<Leased<P>, ReloadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|entered| entered.map(Leased::new).map_err(ReloadError::Enter))
    }
}
