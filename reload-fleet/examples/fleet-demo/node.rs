//! One host process of the fleet: axum on hyper, its one route served by
//! the `rules` plugin through `reload-tower` (a registry handle as the
//! source: every request on the version that admitted it), a fleet node
//! agent beside it, and the health figures it publishes. `GET /` answers
//! `<version> ok` (200) or `<version> err` (500).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;
use reload_fleet::{Counters, DirStore, Node, NodeConfig, Warmed};
use reload_tower::{BoxError, Leased, ReloadLayer};
use tower::ServiceBuilder;

use crate::rule::{self, Rule};

pub struct Args {
    pub name: String,
    pub port: u16,
    pub etcd: String,
    pub store: PathBuf,
    pub state: PathBuf,
    pub data_schema: u32,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let get = |flag: &str| -> Result<String, String> {
            let i = args
                .iter()
                .position(|a| a == flag)
                .ok_or(format!("missing {flag}"))?;
            args.get(i + 1)
                .cloned()
                .ok_or(format!("{flag} needs a value"))
        };
        Ok(Args {
            name: get("--name")?,
            port: get("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            etcd: get("--etcd")?,
            store: get("--store")?.into(),
            state: get("--state")?.into(),
            data_schema: get("--data-schema")?
                .parse()
                .map_err(|e| format!("--data-schema: {e}"))?,
        })
    }
}

pub fn main(args: Args) -> Result<(), String> {
    let registry = Arc::new(Registry::new(Unchecked));
    // The host's own version (what it was built with): 1.0.0.
    let default = std::fs::read(args.store.join("rules-1.0.0")).map_err(|e| e.to_string())?;
    let package = rule::unpack(&default, args.data_schema).map_err(|e| e.to_string())?;
    registry
        .register(package, &())
        .map_err(|r| r.error.to_string())?;

    // Warm before serving: the node comes up on what the fleet committed.
    let counters = Arc::new(Counters::new());
    let mut cfg = NodeConfig::new(&args.name, &["rules"], &[&args.etcd], &args.state);
    cfg.resync = Duration::from_millis(250);
    cfg.request_timeout = Duration::from_millis(700);
    cfg.lease_ttl = Duration::from_secs(3);
    cfg.reload = ReloadOptions::quiesced(Duration::from_secs(10));
    let schema = args.data_schema;
    let node = Node::start(
        cfg,
        Arc::clone(&registry),
        DirStore::new(&args.store),
        move |_: &str, bytes: Vec<u8>, _: &Path| rule::unpack(&bytes, schema),
        Arc::new(()),
        Arc::clone(&counters),
    )
    .map_err(|e| e.to_string())?;
    let warmed = match node.warmed().get("rules") {
        Some(Warmed::Fleet(t)) => format!("the fleet's {}", t.version),
        Some(Warmed::Local(t)) => format!("{} kept locally (etcd out of reach)", t.version),
        Some(Warmed::Host { why }) => format!("the host's own ({why})"),
        None => "nothing".to_owned(),
    };

    let handle = registry.handle("rules").map_err(|e| e.to_string())?;
    let app = Router::new().route(
        "/",
        get(move |rule: Leased<Rule>| {
            let counters = Arc::clone(&counters);
            async move {
                let start = Instant::now();
                let r: &Rule = &rule;
                let ok = r.serve();
                counters.record("rules", ok, start.elapsed());
                let status = if ok {
                    StatusCode::OK
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                let word = if ok { "ok" } else { "err" };
                (status, format!("{} {word}", r.doc.version))
            }
        })
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("- unserved {e}"))
                }))
                .layer(ReloadLayer::new(handle)),
        ),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| e.to_string())?;
        println!("ready {} on {warmed}", args.name);
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })?;
    drop(node);
    Ok(())
}
