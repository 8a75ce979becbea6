//! A server behind `ReloadLayer` on loopback, a plugin whose versions say
//! who they are, and a real HTTP/1.1 client (hyper's).
#![allow(dead_code, clippy::unwrap_used)]

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use reload_core::{BoxError as CoreBoxError, Hooks, Plugin, ReloadOptions, Slot, Stateful};
use reload_tower::{BoxError, Leased, ReloadLayer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

pub const LONG: Duration = Duration::from_secs(60);

/// A plugin version: its label, and every use after its shutdown counted.
pub struct Version {
    pub label: String,
    shut: AtomicBool,
    after_shutdown: Arc<AtomicU64>,
}

impl Hooks for Version {
    type Context = ();
    fn shutdown(&mut self) -> Result<(), CoreBoxError> {
        self.shut.store(true, SeqCst);
        Ok(())
    }
}

impl Stateful for Version {}

impl Version {
    /// What the version answers: its label.
    pub fn serve(&self) -> String {
        if self.shut.load(SeqCst) {
            self.after_shutdown.fetch_add(1, SeqCst);
        }
        self.label.clone()
    }
}

/// What the server and the test share.
pub struct Server {
    pub slot: Arc<Slot<Version>>,
    pub after_shutdown: Arc<AtomicU64>,
    pub addr: std::net::SocketAddr,
    /// `/wait` waits for this.
    pub release: Arc<Notify>,
    /// Each `/stream` registers its chunk sender here.
    pub streams: Arc<Mutex<Vec<mpsc::UnboundedSender<()>>>>,
}

/// A body that sends its version's label once per tick, until its sender
/// is dropped; it keeps the request's lease in it.
struct Ticks {
    leased: Leased<Version>,
    ticks: mpsc::UnboundedReceiver<()>,
}

impl http_body::Body for Ticks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.ticks.poll_recv(cx) {
            Poll::Ready(Some(())) => {
                let line = format!("{}\n", self.leased.serve());
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Server {
    pub fn version(&self, label: &str) -> Plugin<Version> {
        Plugin::new(Version {
            label: label.to_owned(),
            shut: AtomicBool::new(false),
            after_shutdown: Arc::clone(&self.after_shutdown),
        })
    }

    /// Serves `v1` on a free loopback port.
    pub async fn start() -> Server {
        let after_shutdown = Arc::new(AtomicU64::new(0));
        let first = Plugin::new(Version {
            label: "v1".to_owned(),
            shut: AtomicBool::new(false),
            after_shutdown: Arc::clone(&after_shutdown),
        })
        .ready(&())
        .ok()
        .unwrap();
        let slot = Arc::new(Slot::new(first));
        let release = Arc::new(Notify::new());
        let streams: Arc<Mutex<Vec<mpsc::UnboundedSender<()>>>> = Arc::default();
        let app = {
            let release = Arc::clone(&release);
            let streams = Arc::clone(&streams);
            Router::new()
                .route("/v", get(|v: Leased<Version>| async move { v.serve() }))
                .route(
                    "/wait",
                    get(move |v: Leased<Version>| async move {
                        release.notified().await;
                        v.serve()
                    }),
                )
                .route(
                    "/stream",
                    get(move |v: Leased<Version>| async move {
                        let (tx, ticks) = mpsc::unbounded_channel();
                        streams.lock().unwrap().push(tx);
                        AxumBody::new(Ticks { leased: v, ticks })
                    }),
                )
                .layer(
                    tower::ServiceBuilder::new()
                        .layer(HandleErrorLayer::new(|e: BoxError| async move {
                            (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                        }))
                        .layer(ReloadLayer::new(Arc::clone(&slot))),
                )
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            slot,
            after_shutdown,
            addr,
            release,
            streams,
        }
    }

    /// Reloads to `label`, immediately; returns the old version draining.
    pub fn reload(&self, label: &str) -> Plugin<Version, reload_core::Draining> {
        self.slot
            .prepare(self.version(label), &(), ReloadOptions::immediate())
            .and_then(|p| p.commit())
            .map_err(|e| e.to_string())
            .unwrap()
            .old
    }

    /// The streams opened so far.
    pub fn stream(&self, i: usize) -> mpsc::UnboundedSender<()> {
        self.streams.lock().unwrap()[i].clone()
    }

    /// Waits until `n` streams are open.
    pub async fn streams_open(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + LONG;
        while self.streams.lock().unwrap().len() < n {
            assert!(tokio::time::Instant::now() < deadline, "no stream opened");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Opens `/stream` on a new connection: the client, the body, and the
    /// sender whose ticks it sends.
    pub async fn open_stream(&self) -> (Client, hyper::body::Incoming, mpsc::UnboundedSender<()>) {
        let open = self.streams.lock().unwrap().len();
        let mut client = Client::connect(self.addr).await;
        let body = client.send("/stream").await.unwrap().into_body();
        self.streams_open(open + 1).await;
        (client, body, self.stream(open))
    }

    pub fn calls_after_shutdown(&self) -> u64 {
        self.after_shutdown.load(SeqCst)
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    sender: SendRequest<Empty<Bytes>>,
    connection: tokio::task::JoinHandle<()>,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let connection = tokio::spawn(async move {
            let _ = conn.await;
        });
        Client { sender, connection }
    }

    /// GET `path`: the status and the whole body.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), String> {
        let response = self.send(path).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn send(
        &mut self,
        path: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let request = Request::get(format!("http://localhost{path}"))
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }

    /// Closes the connection (a client that goes away).
    pub fn disconnect(self) {
        self.connection.abort();
        drop(self.sender);
    }
}

/// Waits (a generous bound) for `old` to drain and finalize.
pub async fn drained(old: Plugin<Version, reload_core::Draining>) {
    tokio::time::timeout(LONG, old.drained())
        .await
        .unwrap()
        .map_err(|e| e.to_string())
        .unwrap();
}

/// The next data frame of `body`, as text (`None` at its end).
pub async fn next_chunk(body: &mut hyper::body::Incoming) -> Option<String> {
    loop {
        let frame = body.frame().await?.ok()?;
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
    }
}
