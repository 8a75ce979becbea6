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
use reload_core::{Hooks, Slot, Stateful, TryEnterError};

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
        // The open gate, as nearly always: the lease now, without the
        // future's `Arc` (released through the slot's collector when the
        // future goes, which would cost more than the lease itself).
        let state = match self.try_enter_owned() {
            Ok(lease) => EnterState::Entered(Some(Ok(Leased::new(lease)))),
            Err(TryEnterError::Closed) => EnterState::Entered(Some(Err(ReloadError::Closed {
                plugin: Slot::name(self).to_owned(),
            }))),
            Err(TryEnterError::Quiescing) => EnterState::Waiting {
                inner: self.enter_owned_async(),
                name: Arc::from(Slot::name(self)),
            },
        };
        SlotEnter { state }
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
    state: EnterState<P>,
}

#[derive(Debug)]
enum EnterState<P: Hooks> {
    /// Entered (or refused) at once; taken by the first poll.
    Entered(Option<Result<Leased<P>, ReloadError>>),
    /// Waiting at a closed gate.
    Waiting {
        inner: EnterOwnedFuture<P>,
        name: Arc<str>,
    },
}

impl<P: Hooks> Future for SlotEnter<P> {
    type Output = Result<Leased<P>, ReloadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            EnterState::Entered(entered) => Poll::Ready(entered.take().unwrap_or(Err(
                // Polled after it completed (a future's contract says not).
                ReloadError::NotReady,
            ))),
            EnterState::Waiting { inner, name } => Pin::new(inner).poll(cx).map(|entered| {
                entered.map(Leased::new).map_err(|_| ReloadError::Closed {
                    plugin: name.to_string(),
                })
            }),
        }
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
