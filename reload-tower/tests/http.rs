//! The layer behind a real HTTP stack (axum on hyper) on loopback, driven
//! by a real client (hyper's): admission before and after a reload, a
//! stream across reloads, a client that goes away, a quiesced reload's
//! backpressure, and many connections across many reloads.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{drained, next_chunk, Client, Server, LONG};
use http::StatusCode;
use reload_core::{ReloadOptions, TryEnterError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_admitted_before_a_reload_is_answered_by_the_old_version_and_one_after_by_the_new(
) {
    let server = Server::start().await;
    let mut before = Client::connect(server.addr).await;
    let waiting = tokio::spawn(async move { before.get("/wait").await });
    // Admitted on v1 once its lease shows in flight.
    let deadline = tokio::time::Instant::now() + LONG;
    while server.slot.stats().in_flight == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let old = server.reload("v2");
    let mut after = Client::connect(server.addr).await;
    assert_eq!(
        after.get("/v").await.unwrap(),
        (StatusCode::OK, "v2".to_owned())
    );
    assert!(!old.is_drained(), "v1 still serves the waiting request");
    server.release.notify_one();
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        (StatusCode::OK, "v1".to_owned())
    );
    drained(old).await;
    assert_eq!(server.calls_after_shutdown(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_keeps_its_version_across_three_reloads_and_its_drain_waits_for_it() {
    let server = Server::start().await;
    let (_client, mut body, tick) = server.open_stream().await;
    let mut old = Vec::new();
    let mut chunks = Vec::new();
    for v in 2..=4 {
        tick.send(()).unwrap();
        chunks.push(next_chunk(&mut body).await.unwrap());
        old.push(server.reload(&format!("v{v}")));
    }
    tick.send(()).unwrap();
    chunks.push(next_chunk(&mut body).await.unwrap());
    assert_eq!(
        chunks,
        vec!["v1\n"; 4],
        "every chunk from the admitting version"
    );
    // New requests meanwhile go to the newest version.
    let mut other = Client::connect(server.addr).await;
    assert_eq!(other.get("/v").await.unwrap().1, "v4");
    let v1 = old.remove(0);
    assert!(!v1.is_drained(), "the open stream holds v1");
    // v2 and v3 served nothing and drain at once.
    for v in old {
        drained(v).await;
    }
    drop(tick);
    server.streams.lock().unwrap().clear();
    assert_eq!(next_chunk(&mut body).await, None, "the stream ends");
    drained(v1).await;
    assert_eq!(server.calls_after_shutdown(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_stream_gives_its_version_back() {
    let server = Server::start().await;
    let (client, mut body, tick) = server.open_stream().await;
    tick.send(()).unwrap();
    assert_eq!(next_chunk(&mut body).await.unwrap(), "v1\n");
    let v1 = server.reload("v2");
    drop(body);
    client.disconnect();
    // The server notices when it next writes to the closed connection,
    // drops the body, and with it the lease: keep offering chunks until
    // the drain completes.
    let draining = tokio::spawn(async move { v1.drained().await.map(drop) });
    let deadline = tokio::time::Instant::now() + LONG;
    while !draining.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "v1 never drained");
        let _ = tick.send(());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    draining.await.unwrap().map_err(|e| e.to_string()).unwrap();
    assert_eq!(server.slot.stats().in_flight, 0);
    assert_eq!(server.calls_after_shutdown(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiesced_reload_queues_requests_and_lets_them_through_after_none_failing() {
    let server = Server::start().await;
    // An open stream holds v1, so the quiesced reload's gate stays closed
    // until the stream ends.
    let (_streaming, mut body, tick) = server.open_stream().await;
    let reload = {
        let (slot, next) = (Arc::clone(&server.slot), server.version("v2"));
        std::thread::spawn(move || {
            slot.prepare(next, &(), ReloadOptions::quiesced(LONG))
                .and_then(|p| p.commit())
                .map(|committed| committed.old)
                .map_err(|e| e.to_string())
        })
    };
    let deadline = tokio::time::Instant::now() + LONG;
    while !matches!(server.slot.try_enter(), Err(TryEnterError::Quiescing)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gate never closed"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut queued = Vec::new();
    for _ in 0..8 {
        let mut client = Client::connect(server.addr).await;
        queued.push(tokio::spawn(async move { client.get("/v").await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        queued.iter().all(|q| !q.is_finished()),
        "requests wait at the closed gate"
    );
    // The stream ends; v1 drains; the reload commits; the gate opens.
    drop(tick);
    server.streams.lock().unwrap().clear();
    assert_eq!(next_chunk(&mut body).await, None);
    let v1 = reload.join().unwrap().unwrap();
    for q in queued {
        assert_eq!(q.await.unwrap().unwrap(), (StatusCode::OK, "v2".to_owned()));
    }
    drained(v1).await;
    assert_eq!(server.calls_after_shutdown(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_connections_across_a_hundred_reloads_see_no_error() {
    let server = Server::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..64 {
        let mut client = Client::connect(server.addr).await;
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        clients.push(tokio::spawn(async move {
            let mut last = 0u64;
            let mut errors = Vec::new();
            while !stop.load(SeqCst) {
                match client.get("/v").await {
                    Ok((StatusCode::OK, label)) => {
                        // Versions only move forward on one connection.
                        let n: u64 = label.trim_start_matches('v').parse().unwrap_or(0);
                        if n < last {
                            errors.push(format!("v{n} after v{last}"));
                        }
                        last = n;
                        answered.fetch_add(1, SeqCst);
                    }
                    other => errors.push(format!("{other:?}")),
                }
            }
            errors
        }));
    }
    for v in 2..=101u64 {
        let before = answered.load(SeqCst);
        let options = if v % 2 == 0 {
            ReloadOptions::immediate()
        } else {
            ReloadOptions::quiesced(LONG)
        };
        let slot = Arc::clone(&server.slot);
        let next = server.version(&format!("v{v}"));
        tokio::task::spawn_blocking(move || {
            slot.prepare(next, &(), options)
                .and_then(|p| p.commit())
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap()
        .unwrap();
        // Traffic between reloads.
        let deadline = tokio::time::Instant::now() + LONG;
        while answered.load(SeqCst) < before + 64 {
            assert!(tokio::time::Instant::now() < deadline, "traffic stopped");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stop.store(true, SeqCst);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.await.unwrap());
    }
    assert_eq!(errors, Vec::<String>::new());
    assert!(answered.load(SeqCst) >= 100 * 64);
    assert_eq!(server.calls_after_shutdown(), 0);
    assert_eq!(server.slot.stats().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_slot_is_a_service_error_the_server_answers() {
    let server = Server::start().await;
    let mut client = Client::connect(server.addr).await;
    assert_eq!(client.get("/v").await.unwrap().1, "v1");
    let closed = server.slot.close().expect("was serving");
    drained(closed).await;
    let (status, text) = client.get("/v").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("closed"), "{text}");
}
