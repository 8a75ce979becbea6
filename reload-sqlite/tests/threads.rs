//! Many connections on many threads, every kind of object, under 100
//! reloads: 0 query errors, one version per statement, none called after
//! its shutdown, every old version drained.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{table, version_text, Behaviour, Fixture, LONG};
use reload_core::ReloadOptions;
use reload_sqlite::aggregate::parse_request;
use reload_sqlite::{wire, Hot};
use rusqlite::types::ValueRef;

/// An aggregate counting rows, its accumulator and result tagged with the
/// version.
fn count() -> Behaviour {
    Arc::new(|version, request| {
        let (op, acc, _) = parse_request(request).map_err(|e| e.to_string())?;
        let n = if acc.is_empty() {
            0
        } else {
            let text = std::str::from_utf8(acc).map_err(|e| e.to_string())?;
            let (tag, n) = text.split_once(':').ok_or("bad accumulator")?;
            if tag != version {
                return Err(format!("a group of {tag} stepped by {version}"));
            }
            n.parse::<u64>().map_err(|e| e.to_string())?
        };
        match op {
            b's' => Ok(format!("{version}:{}", n + 1).into_bytes()),
            b'f' => {
                Ok(wire::encode_one(ValueRef::Text(format!("{version}:{n}").as_bytes())).unwrap())
            }
            _ => Err("unknown op".into()),
        }
    })
}

/// Rows `(version)` in batches of 4.
fn store() -> Behaviour {
    Arc::new(|version, request| {
        let position = u64::from_le_bytes(request[1..9].try_into().map_err(|_| "8 bytes")?);
        let end = (position + 4).min(20);
        let next = if end == 20 { u64::MAX } else { end };
        let mut out = next.to_le_bytes().to_vec();
        for _ in position..end {
            wire::encode(ValueRef::Text(version.as_bytes()), &mut out).unwrap();
        }
        Ok(out)
    })
}

#[test]
fn many_connections_under_a_hundred_reloads() {
    let f = Arc::new(Fixture::new());
    f.register("v", "0.0.0", version_text());
    f.register("c", "0.0.0", count());
    f.register("s", "0.0.0", store());
    let hot = Arc::new(
        Hot::new(Arc::clone(&f.registry))
            .scalar("v", 1, "v")
            .aggregate("c", 1, "c")
            .table("s", "s", &["version"]),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let statements = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (hot, stop, statements) =
            (Arc::clone(&hot), Arc::clone(&stop), Arc::clone(&statements));
        threads.push(thread::spawn(move || -> Result<(), String> {
            let conn = table(64);
            hot.attach(&conn).map_err(|e| e.to_string())?;
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                i += 1;
                let e = |e: rusqlite::Error| format!("thread {t}: {e}");
                match (i + t) % 3 {
                    0 => {
                        let mut stmt = conn.prepare_cached("SELECT v(x) FROM t").map_err(e)?;
                        let versions: BTreeSet<String> = stmt
                            .query_map([], |r| r.get(0))
                            .map_err(e)?
                            .collect::<Result<_, _>>()
                            .map_err(e)?;
                        if versions.len() != 1 {
                            return Err(format!("a statement mixed {versions:?}"));
                        }
                    }
                    1 => {
                        let r: String = conn
                            .query_row("SELECT c(x) FROM t", [], |r| r.get(0))
                            .map_err(e)?;
                        if !r.ends_with(":64") {
                            return Err(format!("count {r}"));
                        }
                    }
                    _ => {
                        let mut stmt = conn.prepare_cached("SELECT version FROM s").map_err(e)?;
                        let versions: Vec<String> = stmt
                            .query_map([], |r| r.get(0))
                            .map_err(e)?
                            .collect::<Result<_, _>>()
                            .map_err(e)?;
                        let distinct: BTreeSet<_> = versions.iter().collect();
                        if versions.len() != 20 || distinct.len() != 1 {
                            return Err(format!(
                                "a scan read {} rows of {distinct:?}",
                                versions.len()
                            ));
                        }
                    }
                }
                statements.fetch_add(1, SeqCst);
            }
            Ok(())
        }));
    }
    let mut olds = Vec::new();
    for r in 1..=100 {
        let (name, behaviour) = match r % 3 {
            0 => ("v", version_text()),
            1 => ("c", count()),
            _ => ("s", store()),
        };
        let options = if r % 2 == 0 {
            ReloadOptions::immediate()
        } else {
            ReloadOptions::quiesced(LONG)
        };
        olds.push(f.reload(name, &format!("{r}.0.0"), behaviour, options));
        thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, SeqCst);
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert!(statements.load(SeqCst) > 0);
    for report in &olds {
        assert!(report.changes[0]
            .committed
            .old
            .wait_drained(Some(Instant::now() + LONG)));
    }
    assert_eq!(f.calls_after_shutdown(), 0);
    let stats = f.registry.stats();
    assert_eq!(stats.plugins_reloaded, 100);
    assert!(stats.per_plugin.values().all(|s| s.in_flight == 0));
}
