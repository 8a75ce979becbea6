//! `Leased<P>` as an axum extractor.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::leased::Leased;

/// The rejection of the `Leased<P>` extractor: the route is not behind a
/// [`ReloadLayer`](crate::ReloadLayer) of that plugin type (a server's
/// wiring error, so 500).
#[derive(Debug, Clone, Copy)]
pub struct MissingLease;

impl IntoResponse for MissingLease {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "this route is not behind a ReloadLayer of this plugin",
        )
            .into_response()
    }
}

impl<S: Send + Sync, P: Send + Sync + 'static> FromRequestParts<S> for Leased<P> {
    type Rejection = MissingLease;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, MissingLease> {
        parts
            .extensions
            .get::<Leased<P>>()
            .cloned()
            .ok_or(MissingLease)
    }
}
