//! The layer's cost per request: the same minimal axum handler plain,
//! behind a layer that does nothing in the same composition (`noop`:
//! `HandleErrorLayer` over a `MapErrLayer`, what axum's layering costs by
//! itself), and behind `ReloadLayer` (an `Arc<Slot<P>>` source), called in process
//! (the router's `oneshot` and the body collected: the layer's overhead,
//! undiluted), and over loopback with hyper's client on one keep-alive
//! connection (what a minimal request costs a real server, the
//! denominator of the ratio in `docs/performance.md`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use reload_core::{Hooks, Plugin, Slot};
use reload_tower::{BoxError, Leased, ReloadLayer};
use tower::util::MapErrLayer;
use tower::{ServiceBuilder, ServiceExt};

struct Answer(&'static str);

impl Hooks for Answer {
    type Context = ();
}

fn plain() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// The same composition with a layer that does nothing.
fn noop() -> Router {
    plain().layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: BoxError| async move {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }))
            .layer(MapErrLayer::new(|e: Infallible| -> BoxError { match e {} })),
    )
}

fn layered(slot: &Arc<Slot<Answer>>) -> Router {
    Router::new()
        .route("/", get(|a: Leased<Answer>| async move { a.0 }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }))
                .layer(ReloadLayer::new(Arc::clone(slot))),
        )
}

async fn once(router: &Router) {
    let response = router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap_or_default())
        .await
        .unwrap_or_else(|e| match e {});
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    assert_eq!(body.ok().as_deref(), Some(&b"ok"[..]));
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let slot = Arc::new(Slot::new(
        Plugin::new(Answer("ok"))
            .ready(&())
            .ok()
            .unwrap_or_else(|| panic!("ready")),
    ));
    let (plain, noop, layered) = (plain(), noop(), layered(&slot));

    let mut group = c.benchmark_group("request");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("in_process/plain", |b| {
        b.iter(|| runtime.block_on(once(&plain)))
    });
    group.bench_function("in_process/noop", |b| {
        b.iter(|| runtime.block_on(once(&noop)))
    });
    group.bench_function("in_process/layered", |b| {
        b.iter(|| runtime.block_on(once(&layered)))
    });
    for (name, router) in [
        ("loopback/plain", plain),
        ("loopback/noop", noop),
        ("loopback/layered", layered),
    ] {
        let mut sender = runtime.block_on(serve(router));
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = Request::get("http://localhost/")
                        .body(Empty::<Bytes>::new())
                        .unwrap_or_default();
                    let response = sender.send_request(request).await;
                    let body = match response {
                        Ok(r) => r.into_body().collect().await.map(|b| b.to_bytes()).ok(),
                        Err(_) => None,
                    };
                    assert_eq!(body.as_deref(), Some(&b"ok"[..]));
                })
            })
        });
    }
    group.finish();
}

/// Serves `router` on loopback; one keep-alive connection to it.
async fn serve(router: Router) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

criterion_group!(benches, layer);
criterion_main!(benches);
