//! The service without a network: a registry handle as the source (a
//! plugin and its requirement leased together), `poll_ready` pending at a
//! closed gate and ready after, `call` without `poll_ready`, and a body
//! that gives its version back at its end, before it is dropped.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use reload_core::registry::{Handle, Package, Registry};
use reload_core::testing::{Part, Parts};
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;
use reload_tower::{Leased, ReloadError, ReloadLayer};
use tower::{service_fn, Layer, Service, ServiceExt};

fn part(name: &str, version: &str, book: &Arc<Parts>, requires: &[(&str, &str)]) -> Package<Part> {
    Part::new(name, version, book).package(requires).unwrap()
}

/// `a`, and `b` requiring `a ^1`, at 1.0.0.
fn registry() -> (Arc<Parts>, Arc<Registry<Part>>) {
    let book = Arc::new(Parts::default());
    let registry = Registry::new(Unchecked);
    registry
        .register_all(
            vec![
                part("a", "1.0.0", &book, &[]),
                part("b", "1.0.0", &book, &[("a", "^1")]),
            ],
            &(),
        )
        .unwrap();
    (book, Arc::new(registry))
}

/// Answers with the versions of `b` and of the `a` it was leased with.
async fn versions(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = match request.extensions().get::<Leased<Part>>() {
        Some(b) => format!(
            "b {} (run {})",
            b.manifest()
                .map(|m| m.version().to_string())
                .unwrap_or_default(),
            b.run()
        ),
        None => "no lease".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

fn in_flight(registry: &Registry<Part>, name: &str) -> usize {
    registry.handle(name).unwrap().stats().in_flight
}

#[tokio::test]
async fn a_registry_handle_serves_requests_on_the_version_current_at_admission() {
    let (book, registry) = registry();
    let handle: Handle<Part> = registry.handle("b").unwrap();
    let service = ReloadLayer::new(handle).layer(service_fn(versions));
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    // The body holds b and a until it is consumed.
    assert_eq!(in_flight(&registry, "b"), 1);
    assert_eq!(in_flight(&registry, "a"), 1);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "b 1.0.0 (run 1)");
    assert_eq!(in_flight(&registry, "b"), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
    registry
        .reload(
            vec![part("b", "1.1.0", &book, &[("a", "^1")])],
            &(),
            ReloadOptions::immediate(),
        )
        .map_err(|r| r.error)
        .unwrap();
    let response = service.oneshot(Request::new(())).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    // Part carries its count across versions: the second call overall.
    assert_eq!(body, "b 1.1.0 (run 2)");
    assert_eq!(book.used_after_shutdown.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_ready_is_pending_at_a_closed_gate_and_ready_on_the_new_version_after() {
    let (book, registry) = registry();
    let handle = registry.handle("a").unwrap();
    let mut service = ReloadLayer::new(registry.handle("b").unwrap()).layer(service_fn(versions));
    // A call holds a; a quiesced reload of a waits for it, gate closed.
    let held = handle.enter_owned().unwrap();
    let reload = {
        let (registry, next) = (Arc::clone(&registry), part("a", "1.1.0", &book, &[]));
        std::thread::spawn(move || {
            registry
                .reload(
                    vec![next],
                    &(),
                    ReloadOptions::quiesced(Duration::from_secs(60)),
                )
                .map(drop)
                .map_err(|r| r.error.to_string())
        })
    };
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match service.poll_ready(&mut cx) {
            Poll::Pending => break,
            // Admitted before the gate closed: give that admission back.
            Poll::Ready(ready) => {
                ready.unwrap();
                service =
                    ReloadLayer::new(registry.handle("b").unwrap()).layer(service_fn(versions));
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    // Pending, it holds nothing: only `held` is in flight on a.
    assert_eq!(in_flight(&registry, "a"), 1);
    assert_eq!(in_flight(&registry, "b"), 0);
    drop(held);
    reload.join().unwrap().unwrap();
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    let response = service.call(Request::new(())).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "b 1.0.0 (run 1)");
    assert_eq!(book.used_after_shutdown.load(SeqCst), 0);
    assert_eq!(in_flight(&registry, "a"), 0);
}

#[tokio::test]
async fn a_call_without_poll_ready_is_refused_not_run_on_no_version() {
    let (_, registry) = registry();
    let mut service = ReloadLayer::new(registry.handle("b").unwrap()).layer(service_fn(versions));
    let error = service.call(Request::new(())).await.unwrap_err();
    assert!(matches!(
        error.downcast_ref::<ReloadError>(),
        Some(ReloadError::NotReady)
    ));
}

#[tokio::test]
async fn a_body_gives_its_version_back_at_its_end_before_it_is_dropped() {
    let (_, registry) = registry();
    let service = ReloadLayer::new(registry.handle("b").unwrap()).layer(service_fn(versions));
    let response = service.oneshot(Request::new(())).await.unwrap();
    let mut body = response.into_body();
    assert!(body.leased().is_some());
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
    assert!(body.leased().is_none());
    assert_eq!(in_flight(&registry, "b"), 0, "released at the end");
}

#[tokio::test]
async fn an_unregistered_plugin_is_a_typed_service_error() {
    let (_, registry) = registry();
    let handle = registry.handle("b").unwrap();
    drop(registry.unregister("b").unwrap());
    let error = ReloadLayer::new(handle)
        .layer(service_fn(versions))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert!(matches!(
        error.downcast_ref::<ReloadError>(),
        Some(ReloadError::Enter(_))
    ));
}
