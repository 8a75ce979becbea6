//! Instructions per request, for callgrind: `N` requests in process
//! through the same minimal axum handler, `plain`, behind a layer that
//! does nothing in the same composition (`noop`: `HandleErrorLayer` over
//! a `MapErrLayer`), or behind `ReloadLayer` (`layered`), or the admission alone (`lease`: `Source::enter` on the
//! slot and the `Leased` dropped, what the layer adds for the version),
//! against `empty` (the loop and its `block_on`, nothing else).
//!
//! `python3 ci/callgrind.py --tower` runs each under callgrind, collecting
//! only inside the design's `measure_` function, and prints instructions and locked
//! instructions per request.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use reload_core::{Hooks, Plugin, Slot};
use reload_tower::{BoxError, Leased, ReloadLayer, Source};
use tower::util::MapErrLayer;
use tower::{ServiceBuilder, ServiceExt};

struct Answer(&'static str);

impl Hooks for Answer {
    type Context = ();
}

async fn once(router: &Router) -> usize {
    let Ok(request) = Request::get("/").body(Body::empty()) else {
        return 0;
    };
    let Ok(response) = router.clone().oneshot(request).await;
    response
        .into_body()
        .collect()
        .await
        .map_or(0, |b| b.to_bytes().len())
}

fn run<F: Future<Output = usize>>(
    runtime: &tokio::runtime::Runtime,
    n: u64,
    f: impl Fn() -> F,
) -> usize {
    let mut total = 0;
    for _ in 0..n {
        total += runtime.block_on(f());
    }
    total
}

/// `plain` and `layered` both: one function (the compiler would fold two
/// identical ones into one symbol anyway).
#[inline(never)]
fn measure_router(runtime: &tokio::runtime::Runtime, router: &Router, n: u64) -> usize {
    run(runtime, n, || once(router))
}

#[inline(never)]
fn measure_empty(runtime: &tokio::runtime::Runtime, n: u64) -> usize {
    run(runtime, n, || async { 1 })
}

#[inline(never)]
fn measure_lease(runtime: &tokio::runtime::Runtime, slot: &Arc<Slot<Answer>>, n: u64) -> usize {
    run(runtime, n, || async {
        let lease = Source::enter(slot).await;
        lease.map_or(0, |l| l.0.len())
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let design = args.next().unwrap_or_else(|| "layered".to_owned());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        std::process::exit(2);
    };
    let Some(plugin) = Plugin::new(Answer("ok")).ready(&()).ok() else {
        std::process::exit(2);
    };
    let slot = Arc::new(Slot::new(plugin));
    let plain = Router::new().route("/", get(|| async { "ok" }));
    // The same layering with a layer that does nothing: what axum's
    // composition (a boxed route, `HandleErrorLayer`) costs by itself.
    let noop = Router::new().route("/", get(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: BoxError| async move {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }))
            .layer(MapErrLayer::new(|e: Infallible| -> BoxError { match e {} })),
    );
    let layered = Router::new()
        .route("/", get(|a: Leased<Answer>| async move { a.0 }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }))
                .layer(ReloadLayer::new(Arc::clone(&slot))),
        );
    // Warm up outside the measured function.
    run(&runtime, 100, || once(&layered));
    run(&runtime, 100, || once(&plain));
    let total = match design.as_str() {
        "plain" => measure_router(&runtime, &plain, n),
        "noop" => measure_router(&runtime, &noop, n),
        "layered" => measure_router(&runtime, &layered, n),
        "lease" => measure_lease(&runtime, &slot, n),
        "empty" => measure_empty(&runtime, n),
        _ => {
            eprintln!("designs: plain, noop, layered, lease, empty");
            std::process::exit(2);
        }
    };
    println!("{}", black_box(total));
}
