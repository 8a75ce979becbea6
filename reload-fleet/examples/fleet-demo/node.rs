//! One host process of the fleet: a registry serving the `rules` plugin
//! over TCP (one line per request: `x` in, `<version> ok|err` out), a
//! fleet node agent beside it, and the health figures it publishes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;
use reload_fleet::{Counters, DirStore, Node, NodeConfig, Warmed};

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
    let listener = TcpListener::bind(("127.0.0.1", args.port)).map_err(|e| e.to_string())?;
    println!("ready {} on {warmed}", args.name);
    let _ = std::io::stdout().flush();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (registry, counters) = (Arc::clone(&registry), Arc::clone(&counters));
        std::thread::spawn(move || {
            let Ok(read) = conn.try_clone() else { return };
            let mut out = conn;
            for line in BufReader::new(read).lines() {
                if line.is_err() {
                    return;
                }
                let start = Instant::now();
                let answer = registry.call("rules", |c| {
                    let r: &Rule = c.plugin();
                    (r.doc.version.clone(), r.serve())
                });
                let reply = match answer {
                    Ok((version, ok)) => {
                        counters.record("rules", ok, start.elapsed());
                        format!("{version} {}\n", if ok { "ok" } else { "err" })
                    }
                    Err(e) => {
                        counters.record("rules", false, start.elapsed());
                        format!("- unserved {e}\n")
                    }
                };
                if out.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
    drop(node);
    Ok(())
}
