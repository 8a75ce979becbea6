//! The load generator: keep-alive HTTP/1.1 connections (hyper's client)
//! over loopback, each sending transforms, pages and streams in turn and
//! checking every answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::server::{page, VERSION_HEADER};

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// Answered 200 with a body that checks out or is wrong (counted below).
    pub answered: u64,
    /// Not answered, or not 200.
    pub failed: u64,
    /// The first failures.
    pub errors: Vec<String>,
    /// Wrong answers, by `kind version`.
    pub wrong: BTreeMap<String, u64>,
    /// Wrong answers to requests sent after the bad version's revert.
    pub wrong_after_revert: u64,
    /// Answers whose body came from another version than the header says
    /// admitted it, or streams whose chunks came from two versions.
    pub mixed: u64,
    /// Streams read to the end, and their chunks.
    pub streams: u64,
    /// Chunks of those.
    pub chunks: u64,
    /// Latencies (µs) of transforms and pages sent while no deploy ran.
    pub quiet: Vec<u64>,
    /// ... and while one did.
    pub deploying: Vec<u64>,
    /// Answers by `kind version`.
    pub by_version: BTreeMap<String, u64>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.errors.len() < 10 {
            self.errors.push(what);
        }
    }
}

/// What the clients and the orchestrator share.
#[derive(Debug, Default)]
pub struct Load {
    /// Set to stop the clients (each finishes its request).
    pub stop: AtomicBool,
    /// Odd while a deploy is in progress (the latency split).
    pub deploying: AtomicU64,
    /// When the bad version was reverted.
    pub reverted_at: Mutex<Option<Instant>>,
    /// What they saw.
    pub tally: Mutex<Tally>,
}

/// One keep-alive connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// The connection or the handshake failed.
    pub async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// Sends a request; the status, the version header and the whole body.
    ///
    /// # Errors
    ///
    /// The request could not be sent or its body read.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: String,
    ) -> Result<(StatusCode, String, String), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let request = Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let version = response
            .headers()
            .get(VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, version, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The filter's correct output for page `n`.
fn redacted(n: u64) -> String {
    page(n)
        .split(' ')
        .map(|w| {
            if w.starts_with("secret-") {
                "[redacted]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one answer was.
enum Verdict {
    Right,
    Wrong,
    Mixed,
}

/// Checks a transform or page answer: `version\npayload`.
fn check(header: &str, body: &str, expected: &str) -> Verdict {
    match body.split_once('\n') {
        Some((v, _)) if v != header => Verdict::Mixed,
        Some((_, payload)) if payload == expected => Verdict::Right,
        _ => Verdict::Wrong,
    }
}

/// Checks a stream of `n` chunks, each `version\nk\n`.
fn check_stream(header: &str, body: &str, n: u32) -> (Verdict, u64) {
    let lines: Vec<&str> = body.lines().collect();
    let mut chunks = 0u64;
    let mut verdict = Verdict::Right;
    for (k, pair) in lines.chunks(2).enumerate() {
        chunks += 1;
        match pair {
            [v, _] if *v != header => return (Verdict::Mixed, chunks),
            [_, i] if i.parse::<usize>().ok() == Some(k) => {}
            _ => verdict = Verdict::Wrong,
        }
    }
    if chunks != u64::from(n) {
        verdict = Verdict::Wrong;
    }
    (verdict, chunks)
}

/// One client: requests on one connection (a new one if it breaks) until
/// told to stop.
pub async fn client(load: Arc<Load>, addr: SocketAddr, seed: u64) {
    let mut conn = None;
    let mut i = seed * 1_000_003;
    while !load.stop.load(SeqCst) {
        i += 1;
        let c = match &mut conn {
            Some(c) => c,
            None => match Conn::connect(addr).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    load.tally.lock().fail(format!("connect: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let during = load.deploying.load(SeqCst) % 2 == 1;
        let started = Instant::now();
        let (kind, result) = match i % 10 {
            0..=3 => {
                let text = format!("hello plugin {i}");
                let r = c.request(Method::POST, "/transform", text.clone()).await;
                ("transform", r.map(|r| (r, Some(text.to_uppercase()))))
            }
            4..=7 => {
                let r = c
                    .request(Method::GET, &format!("/page?n={i}"), String::new())
                    .await;
                ("filter", r.map(|r| (r, Some(redacted(i)))))
            }
            _ => {
                let r = c.request(Method::GET, "/stream?n=8", String::new()).await;
                ("stream", r.map(|r| (r, None)))
            }
        };
        let took = started.elapsed();
        let mut t = load.tally.lock();
        t.sent += 1;
        let ((status, version, body), expected) = match result {
            Ok(r) => r,
            Err(e) => {
                t.fail(format!("{kind}: {e}"));
                drop(t);
                conn = None;
                continue;
            }
        };
        if status != StatusCode::OK {
            t.fail(format!("{kind}: {status} {body}"));
            continue;
        }
        t.answered += 1;
        *t.by_version.entry(format!("{kind} {version}")).or_default() += 1;
        let verdict = match &expected {
            Some(expected) => {
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                if during {
                    t.deploying.push(micros);
                } else {
                    t.quiet.push(micros);
                }
                check(&version, &body, expected)
            }
            None => {
                let (verdict, chunks) = check_stream(&version, &body, 8);
                t.streams += 1;
                t.chunks += chunks;
                verdict
            }
        };
        match verdict {
            Verdict::Right => {}
            Verdict::Mixed => t.mixed += 1,
            Verdict::Wrong => {
                *t.wrong.entry(format!("{kind} {version}")).or_default() += 1;
                if load.reverted_at.lock().is_some_and(|at| started > at) {
                    t.wrong_after_revert += 1;
                }
            }
        }
    }
}
