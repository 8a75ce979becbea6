//! The server: three routes, each served by a plugin behind its own
//! `ReloadLayer` (a registry handle as the source), and `/metrics`.
//!
//! | route | plugin | what it does |
//! |---|---|---|
//! | `POST /transform` | `transform` | a request transform: the body, uppercased |
//! | `GET /page?n=` | `filter` | a response filter: the host's page, `secret-` words redacted |
//! | `GET /stream?n=` | `stream` | a streaming handler: `n` chunks, paced by the plugin |
//! | `GET /metrics` | | the `metrics` facade in Prometheus text |
//!
//! Every response carries `x-plugin-version`, the version that admitted
//! it; every body (and every chunk) starts with the version that computed
//! it, for the clients to compare.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use metrics_exporter_prometheus::PrometheusHandle;
use reload_core::dylib::DylibPlugin;
use reload_core::registry::Handle;
use reload_tower::{BoxError, Leased, ReloadLayer};
use tower::ServiceBuilder;

/// The header naming the version that admitted a request.
pub const VERSION_HEADER: &str = "x-plugin-version";

/// The page the filter redacts: `secret-<n>` among public words.
pub fn page(n: u64) -> String {
    format!(
        "public words and secret-{n} and more public words secret-{}",
        n + 1
    )
}

type Plugin = Leased<DylibPlugin>;

fn version_of(plugin: &Plugin) -> String {
    plugin
        .manifest()
        .map(|m| m.version().to_string())
        .unwrap_or_default()
}

fn answer(plugin: &Plugin, reply: Result<Vec<u8>, reload_core::dylib::DylibError>) -> Response {
    match reply {
        Ok(body) => ([(VERSION_HEADER, version_of(plugin))], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn transform(plugin: Plugin, body: Bytes) -> Response {
    let reply = plugin.call(&body);
    answer(&plugin, reply)
}

/// `n` of the query string (`?n=12`).
fn n_of(query: Option<&str>) -> Option<u32> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
}

async fn filter(plugin: Plugin, RawQuery(q): RawQuery) -> Response {
    let reply = plugin.call(page(u64::from(n_of(q.as_deref()).unwrap_or(0))).as_bytes());
    answer(&plugin, reply)
}

async fn stream(plugin: Plugin, RawQuery(q): RawQuery) -> Response {
    let pause = match plugin.call(b"P") {
        Ok(p) => p
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(2, u32::from_le_bytes),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let version = version_of(&plugin);
    let chunks = Chunks {
        plugin,
        next: 0,
        // At most 1000 chunks: a client cannot hold a version forever.
        n: n_of(q.as_deref()).unwrap_or(8).min(1000),
        pause: Duration::from_millis(u64::from(pause)),
        sleep: None,
    };
    ([(VERSION_HEADER, version)], Body::new(chunks)).into_response()
}

/// The streamed body: chunk `i` from the plugin after each pause. It holds
/// the request's version (a `Leased` clone) until it ends.
struct Chunks {
    plugin: Plugin,
    next: u32,
    n: u32,
    pause: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.next >= self.n {
            return Poll::Ready(None);
        }
        let pause = self.pause;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        let mut request = vec![b'C'];
        request.extend_from_slice(&self.next.to_le_bytes());
        self.next += 1;
        Poll::Ready(Some(
            self.plugin
                .call(&request)
                .map(|chunk| Frame::data(Bytes::from(chunk)))
                .map_err(|e| e.into()),
        ))
    }
}

/// The route's plugin layer: admission on `handle`'s current version, and
/// a closed or unregistered plugin answered 503.
fn served(route: MethodRouter, handle: &Handle<DylibPlugin>) -> MethodRouter {
    route.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: BoxError| async move {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }))
            .layer(ReloadLayer::new(handle.clone())),
    )
}

/// The plugins the routes call.
#[derive(Clone, Debug)]
pub struct Routes {
    /// `POST /transform`.
    pub transform: Handle<DylibPlugin>,
    /// `GET /page`.
    pub filter: Handle<DylibPlugin>,
    /// `GET /stream`.
    pub stream: Handle<DylibPlugin>,
}

/// The server's router.
pub fn router(routes: &Routes, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/transform", served(post(transform), &routes.transform))
        .route("/page", served(get(filter), &routes.filter))
        .route("/stream", served(get(stream), &routes.stream))
        .route("/metrics", get(move || async move { metrics.render() }))
}
