//! [`ReloadLayer`] and the service it makes, [`Reloaded`].
//!
//! Admission is `poll_ready`'s: it leases the current version (waiting,
//! without a thread, at a quiesced reload's gate: backpressure, never an
//! error) once the inner service is ready, and `call` hands that lease to
//! the request. As with tower's `ConcurrencyLimit` and its permits, the
//! lease is held from the `Ready` to the `call`: a service made ready and
//! never called holds a version until it is dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::LeasedBody;
use crate::error::ReloadError;
use crate::leased::Leased;
use crate::source::Source;

/// Errors of a [`Reloaded`] service: the layer's [`ReloadError`] or the
/// inner service's own, boxed (tower's convention).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`Layer`] whose services admit each request on one plugin version of
/// `source` (a `Arc<Slot<P>>` or a registry `Handle<P>`).
#[derive(Clone, Debug)]
pub struct ReloadLayer<S> {
    source: S,
}

impl<S: Source> ReloadLayer<S> {
    /// Versions from `source`.
    pub fn new(source: S) -> Self {
        ReloadLayer { source }
    }
}

impl<S: Source, T> Layer<T> for ReloadLayer<S> {
    type Service = Reloaded<S, T>;

    fn layer(&self, inner: T) -> Reloaded<S, T> {
        Reloaded::new(self.source.clone(), inner)
    }
}

/// A service that admits each request on one version of a plugin: the
/// request carries it as a [`Leased`] extension, and the response body
/// ([`LeasedBody`]) keeps it until it has been sent or dropped.
pub struct Reloaded<S: Source, T> {
    source: S,
    inner: T,
    entering: Option<S::Enter>,
    admitted: Option<Leased<S::Plugin>>,
}

impl<S: Source, T> Reloaded<S, T> {
    /// `inner`, admitting requests on versions from `source`.
    pub fn new(source: S, inner: T) -> Self {
        Reloaded {
            source,
            inner,
            entering: None,
            admitted: None,
        }
    }
}

impl<S: Source, T: Clone> Clone for Reloaded<S, T> {
    /// A clone admits its own requests: it shares no admission in
    /// progress, and no lease.
    fn clone(&self) -> Self {
        Reloaded::new(self.source.clone(), self.inner.clone())
    }
}

impl<S: Source, T: std::fmt::Debug> std::fmt::Debug for Reloaded<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloaded")
            .field("plugin", &self.source.name())
            .field("inner", &self.inner)
            .field("admitted", &self.admitted)
            .finish()
    }
}

impl<S, T, ReqBody, ResBody> Service<Request<ReqBody>> for Reloaded<S, T>
where
    S: Source,
    T: Service<Request<ReqBody>, Response = Response<ResBody>>,
    T::Error: Into<BoxError>,
{
    type Response = Response<LeasedBody<ResBody, S::Plugin>>;
    type Error = BoxError;
    type Future = ResponseFuture<T::Future, S::Plugin>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service first: a request waiting for it holds no
        // version, so no drain waits on the inner service's backpressure.
        ready!(self.inner.poll_ready(cx)).map_err(Into::into)?;
        if self.admitted.is_none() {
            let source = &self.source;
            let entering = self.entering.get_or_insert_with(|| source.enter());
            let entered = ready!(Pin::new(entering).poll(cx));
            self.entering = None;
            self.admitted = Some(entered?);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let Some(leased) = self.admitted.take() else {
            return ResponseFuture {
                state: State::Refused {
                    error: Some(ReloadError::NotReady),
                },
            };
        };
        request.extensions_mut().insert(leased.clone());
        ResponseFuture {
            state: State::Called {
                inner: self.inner.call(request),
                leased: Some(leased),
            },
        }
    }
}

pin_project! {
    /// The response of a [`Reloaded`] service: the inner service's, its
    /// body wrapped in a [`LeasedBody`].
    pub struct ResponseFuture<F, P: 'static> {
        #[pin]
        state: State<F, P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, P: 'static> {
        Called { #[pin] inner: F, leased: Option<Leased<P>> },
        Refused { error: Option<ReloadError> },
    }
}

impl<F, P: 'static, B, E> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<LeasedBody<B, P>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { inner, leased } => {
                let response = ready!(inner.poll(cx)).map_err(Into::into)?;
                match leased.take() {
                    Some(leased) => Poll::Ready(Ok(response.map(|b| LeasedBody::new(b, leased)))),
                    // Polled again after it completed: tower's contract
                    // says it will not be.
                    None => Poll::Ready(Err(ReloadError::NotReady.into())),
                }
            }
            StateProj::Refused { error } => {
                Poll::Ready(Err(error.take().unwrap_or(ReloadError::NotReady).into()))
            }
        }
    }
}
