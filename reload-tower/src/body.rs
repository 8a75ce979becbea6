//! [`LeasedBody`]: a response body that keeps the request's version
//! leased until its last frame is sent, or until it is dropped (a client
//! that disconnects mid-stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::leased::Leased;

pin_project! {
    /// A response body holding the version that produced it. The lease
    /// goes back when the body ends (its last frame polled) or is dropped,
    /// whichever comes first, so a streamed body, a server-sent-events
    /// stream or a slow download keeps its version to the end, and a
    /// version's drain waits for exactly those.
    pub struct LeasedBody<B, P: 'static> {
        #[pin]
        inner: B,
        leased: Option<Leased<P>>,
    }
}

impl<B, P: 'static> LeasedBody<B, P> {
    pub(crate) fn new(inner: B, leased: Leased<P>) -> Self {
        LeasedBody {
            inner,
            leased: Some(leased),
        }
    }

    /// The version this body is from; `None` once it has ended.
    pub fn leased(&self) -> Option<&Leased<P>> {
        self.leased.as_ref()
    }
}

impl<B: Body, P: 'static> Body for LeasedBody<B, P> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        // The end, or an error that ends it: nothing more comes from this
        // version, so it need not wait for the server to drop the body.
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            *this.leased = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: std::fmt::Debug, P: 'static> std::fmt::Debug for LeasedBody<B, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedBody")
            .field("inner", &self.inner)
            .field("leased", &self.leased)
            .finish()
    }
}
