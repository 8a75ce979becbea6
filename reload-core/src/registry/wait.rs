//! [`EnterCallFuture`]: an owned registry call entered without blocking a
//! thread, for async hosts (a server's request task).
//!
//! It takes the same steps as [`Handle::enter_owned`](super::Handle::enter_owned)
//! (`OwnedCall::try_owned`: try every lease, and at a closed gate give back
//! everything held) and differs only in how it waits at that gate: instead
//! of parking the thread it awaits the gate's opening as
//! [`Slot::enter_owned_async`](crate::Slot::enter_owned_async) does (the
//! task's waker on the gate's wait list), drops the lease that gives it,
//! and tries again. So it never waits while holding a lease, the rule that
//! keeps calls deadlock free next to a group commit (`call.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::call::Blocked;
use super::{Counters, EnterError, Member, Node, OwnedCall};
use crate::lease::EnterOwnedFuture;
use crate::Stateful;

/// The future of [`Handle::enter_owned_async`](super::Handle::enter_owned_async):
/// resolves to an [`OwnedCall`], waiting at a closed gate without blocking
/// a thread. `Send + 'static`; dropped while waiting, it takes its waker
/// off the gate's list and holds nothing.
#[must_use = "futures do nothing unless polled"]
pub struct EnterCallFuture<P: Stateful> {
    node: Arc<Node<P>>,
    counters: Arc<Counters>,
    /// The closed gate waited on, as an enter whose lease is dropped.
    gate: Option<EnterOwnedFuture<Member<P>>>,
}

impl<P: Stateful> EnterCallFuture<P> {
    pub(crate) fn new(node: Arc<Node<P>>, counters: Arc<Counters>) -> Self {
        EnterCallFuture {
            node,
            counters,
            gate: None,
        }
    }
}

impl<P: Stateful> Future for EnterCallFuture<P> {
    type Output = Result<OwnedCall<P>, EnterError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if let Some(gate) = this.gate.as_mut() {
                match Pin::new(gate).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    // Open (the lease it gave goes back at once), or closed
                    // for good: either way, try again, which says which.
                    Poll::Ready(_) => this.gate = None,
                }
            }
            match OwnedCall::try_owned(&this.node, &this.counters) {
                Ok(call) => {
                    #[cfg(feature = "metrics")]
                    this.node.calls.increment(1);
                    return Poll::Ready(Ok(call));
                }
                Err(Blocked::Wait(node)) => {
                    this.counters.gate_waits.fetch_add(1, Relaxed);
                    this.gate = Some(node.slot.enter_owned_async());
                }
                Err(Blocked::Fail(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<P: Stateful> fmt::Debug for EnterCallFuture<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterCallFuture")
            .field("plugin", &self.node.slot.name())
            .field("waiting", &self.gate.is_some())
            .finish()
    }
}
