//! A WebAssembly guest behind `reload-tower`'s layer: the same admission
//! as native libraries and in-process plugins; a request admitted before a
//! reload runs on the old guest, one after on the new, and the old one
//! drains when the first request's body is done.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::wasm::{Limits, Runtime, WasmPlugin};
use reload_core::ReloadOptions;
use reload_tower::{Leased, ReloadLayer};
use tower::{service_fn, Layer, ServiceExt};
use wasm_demo::guests;

/// Scores the request's number with the admitting guest; answers the
/// score and the guest's version.
async fn score(request: Request<i64>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = match request.extensions().get::<Leased<WasmPlugin>>() {
        Some(guest) => {
            let version = guest.manifest().map(|m| m.version().to_string());
            match guest.call(&request.body().to_le_bytes()) {
                Ok(reply) => {
                    let score = reply
                        .first_chunk::<8>()
                        .map_or(0, |b| i64::from_le_bytes(*b));
                    format!("{score} {}", version.unwrap_or_default())
                }
                Err(e) => format!("error: {e}"),
            }
        }
        None => "no guest".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

async fn text<B: BodyExt<Data = Bytes, Error = Infallible>>(response: Response<B>) -> String {
    let bytes = response.into_body().collect().await.map(|c| c.to_bytes());
    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
}

#[tokio::test]
async fn a_guest_behind_the_layer_serves_each_request_on_the_version_that_admitted_it() {
    let runtime = Runtime::new(Limits {
        deadline: Duration::from_secs(30),
        memory: 1 << 20,
        ..Limits::default()
    })
    .expect("engine");
    let registry = Arc::new(Registry::new(Unchecked));
    registry
        .register(
            runtime.package(guests::score("1.0.0")).expect("packages"),
            b"",
        )
        .map_err(|r| r.error)
        .expect("registered");
    let service =
        ReloadLayer::new(registry.handle("score").expect("registered")).layer(service_fn(score));

    // Admitted on 1.0.0; its body not read yet.
    let before = service
        .clone()
        .oneshot(Request::new(2))
        .await
        .expect("served");
    let report = registry
        .reload(
            vec![runtime.package(guests::score("2.0.0")).expect("packages")],
            b"",
            ReloadOptions::immediate(),
        )
        .map_err(|r| r.error)
        .expect("reloads");
    let after = service.oneshot(Request::new(3)).await.expect("served");
    assert_eq!(text(after).await, "100 2.0.0");
    let old = report
        .changes
        .into_iter()
        .next()
        .expect("one change")
        .committed
        .old;
    assert!(!old.is_drained(), "the first response's body holds 1.0.0");
    assert_eq!(text(before).await, "69 1.0.0");
    old.wait_timeout(Duration::from_secs(30))
        .expect("drains once the body is done");
}

/// A component of the host's own typed world (`my:udf@1.1.0`) as the
/// handler behind the layer, reloaded to a 1.0.0-interface guest between
/// two requests: each answers on the version (and interface) that
/// admitted it, and the old one drains when its body is done.
#[tokio::test]
async fn a_typed_component_handler_serves_each_request_on_the_version_that_admitted_it() {
    use reload_core::wasm::component::{ComponentPlugin, ComponentRuntime};
    use wasm_demo::udf::{self, UdfWorld};
    use wasm_guests::{wat, with_manifest};

    async fn handle(request: Request<i64>) -> Result<Response<Full<Bytes>>, Infallible> {
        let text = match request
            .extensions()
            .get::<Leased<ComponentPlugin<UdfWorld>>>()
        {
            Some(guest) => {
                let version = guest.manifest().map(|m| m.version().to_string());
                match udf::eval_with(guest, *request.body(), 10) {
                    Ok(v) => format!("{v} {} {}", version.unwrap_or_default(), guest.binding()),
                    Err(e) => format!("error: {e}"),
                }
            }
            None => "no guest".to_owned(),
        };
        Ok(Response::new(Full::new(Bytes::from(text))))
    }

    let runtime = ComponentRuntime::new(
        Limits {
            deadline: Duration::from_secs(30),
            ..Limits::default()
        },
        UdfWorld::default(),
    )
    .expect("engine");
    let manifest = |v: &str| format!("reload-manifest 1\nname handler\nversion {v}\n");
    let registry = Arc::new(Registry::new(Unchecked));
    registry
        .register(
            runtime
                .package(with_manifest(&wat::score_udf(), &manifest("1.0.0")))
                .expect("packages"),
            b"",
        )
        .map_err(|r| r.error)
        .expect("registered");
    let service =
        ReloadLayer::new(registry.handle("handler").expect("registered")).layer(service_fn(handle));
    let before = service
        .clone()
        .oneshot(Request::new(2))
        .await
        .expect("served");
    let report = registry
        .reload(
            vec![runtime
                .package(with_manifest(&wat::udf("1.0.0"), &manifest("2.0.0")))
                .expect("packages")],
            b"",
            ReloadOptions::immediate(),
        )
        .map_err(|r| r.error)
        .expect("reloads");
    let after = service.oneshot(Request::new(3)).await.expect("served");
    // 2.0.0 is a 1.0-interface guest: eval(3) = 6, scaled by the host.
    assert_eq!(text(after).await, "60 2.0.0 1.0");
    let old = report
        .changes
        .into_iter()
        .next()
        .expect("one change")
        .committed
        .old;
    assert!(!old.is_drained(), "the first response's body holds 1.0.0");
    // 1.0.0 served eval-with itself: (2 * 31 + 7) * 10.
    assert_eq!(text(before).await, "690 1.0.0 1.1");
    old.wait_timeout(Duration::from_secs(30))
        .expect("drains once the body is done");
}
