//! [`EnterFuture`]: [`Slot::enter`] for async callers, which wait at a
//! quiesced reload's gate without blocking their thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::drain::acquire;
use crate::loom::Ordering;
use crate::{Hooks, Lease, Slot, SlotClosed};

/// The future of [`Slot::enter_async`]: resolves to a lease on the current
/// version (or [`SlotClosed`]). At a closed gate it registers the task's
/// waker, which the gate's opening wakes.
#[must_use = "futures do nothing unless polled"]
pub struct EnterFuture<'a, P: Hooks> {
    pub(crate) slot: &'a Slot<P>,
}

impl<'a, P: Hooks> Future for EnterFuture<'a, P> {
    type Output = Result<Lease<'a, P>, SlotClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = self.slot;
        loop {
            if let Some(hold) = acquire(&slot.shared.current) {
                return Poll::Ready(Ok(slot.lease(hold)));
            }
            if slot.shared.is_closed() {
                return Poll::Ready(Err(SlotClosed));
            }
            // Gated. Register, then look (see `waiters`).
            slot.shared.gate.register_waker(cx.waker());
            // Acquire: as in `Slot::enter`'s wait.
            if slot.shared.gate_closed.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
    }
}

impl<P: Hooks> fmt::Debug for EnterFuture<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterFuture")
            .field("plugin", &self.slot.name())
            .finish()
    }
}
