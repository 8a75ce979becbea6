//! Scalar functions: one version per statement, whatever API ran it, and
//! the leases back when SQLite resets the statement.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{table, times, version_text, Fixture, LONG};
use reload_core::ReloadOptions;
use reload_sqlite::Hot;
use rusqlite::functions::FunctionFlags;

#[test]
fn a_reload_mid_statement_never_mixes_versions() {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    let conn = table(1000);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .attach(&conn)
        .unwrap();
    let mut stmt = conn.prepare("SELECT v(x) FROM t").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(rows.next().unwrap().unwrap().get::<_, String>(0).unwrap());
    }
    let report = f.reload("v", "2.0.0", version_text(), ReloadOptions::immediate());
    let old = &report.changes[0].committed.old;
    // The statement holds 1.0.0: it is not drained, and not shut down.
    assert!(!old.is_drained());
    // A statement started after the reload runs on the new version.
    let fresh: String = conn.query_row("SELECT v(1)", [], |r| r.get(0)).unwrap();
    assert_eq!(fresh, "2.0.0");
    while let Some(row) = rows.next().unwrap() {
        seen.push(row.get(0).unwrap());
    }
    assert_eq!(seen.len(), 1000);
    assert!(
        seen.iter().all(|v| v == "1.0.0"),
        "mixed: {:?}",
        seen.iter().collect::<std::collections::BTreeSet<_>>()
    );
    drop(rows);
    // Reset: the lease went back, the old version drains.
    assert!(old.wait_drained(Some(Instant::now() + LONG)));
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn every_way_of_running_a_statement_gives_its_leases_back() {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    let conn = table(100);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .attach(&conn)
        .unwrap();
    let report =
        |f: &Fixture, v: &str| f.reload("v", v, version_text(), ReloadOptions::immediate());
    let mut n = 1;
    let mut next = || {
        n += 1;
        format!("{n}.0.0")
    };
    // Each way: start a statement on the current version, reload, end the
    // statement its way, and see the old version drain.
    type Way = Box<dyn Fn(&rusqlite::Connection, &dyn Fn())>;
    let ways: Vec<(&str, Way)> = vec![
        (
            "prepared, half-iterated, dropped",
            Box::new(|conn, reload| {
                let mut stmt = conn.prepare("SELECT v(x) FROM t").unwrap();
                let mut rows = stmt.query([]).unwrap();
                rows.next().unwrap();
                reload();
            }),
        ),
        (
            "cached, half-iterated, dropped",
            Box::new(|conn, reload| {
                let mut stmt = conn.prepare_cached("SELECT v(x) FROM t").unwrap();
                let mut rows = stmt.query([]).unwrap();
                rows.next().unwrap();
                reload();
            }),
        ),
        (
            "query_row",
            Box::new(|conn, reload| {
                let _: String = conn
                    .query_row("SELECT v(x) FROM t", [], |r| {
                        reload();
                        r.get(0)
                    })
                    .unwrap();
            }),
        ),
        (
            "run to its end",
            Box::new(|conn, reload| {
                let mut stmt = conn.prepare("SELECT v(x) FROM t").unwrap();
                let mut rows = stmt.query([]).unwrap();
                rows.next().unwrap();
                reload();
                while rows.next().unwrap().is_some() {}
                // Not dropped yet: SQLite dropped the scope at the end.
                std::mem::forget(rows);
            }),
        ),
    ];
    for (name, way) in ways {
        let olds = Mutex::new(Vec::new());
        let version = next();
        way(&conn, &|| olds.lock().unwrap().push(report(&f, &version)));
        let olds = olds.into_inner().unwrap();
        assert_eq!(olds.len(), 1, "{name}");
        let old = &olds[0].changes[0].committed.old;
        assert!(
            old.wait_drained(Some(Instant::now() + LONG)),
            "{name}: the old version did not drain ({} in flight)",
            old.in_flight()
        );
    }
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn a_reload_from_inside_a_call_does_not_reach_the_rest_of_the_statement() {
    let f = Fixture::new();
    // At the 500th row, the plugin itself reloads to 2.0.0.
    let reloading = f.reloading_at(499, "v", "2.0.0", version_text(), version_text());
    f.register("v", "1.0.0", reloading);
    let conn = table(1000);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .attach(&conn)
        .unwrap();
    let versions: Vec<String> = conn
        .prepare("SELECT v(x) FROM t")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions.len(), 1000);
    assert!(versions.iter().all(|v| v == "1.0.0"));
    let after: String = conn.query_row("SELECT v(1)", [], |r| r.get(0)).unwrap();
    assert_eq!(after, "2.0.0");
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn every_function_of_a_statement_shares_its_versions() {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    f.register("k", "1.0.0", times(2));
    let conn = table(200);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .scalar("v2", 1, "v")
        .scalar("k", 1, "k")
        .attach(&conn)
        .unwrap();
    let mut stmt = conn.prepare("SELECT v(x), v2(x), k(x) FROM t").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut n = 0;
    while let Some(row) = rows.next().unwrap() {
        if n == 50 {
            f.reload("v", "2.0.0", version_text(), ReloadOptions::immediate());
            f.reload("k", "2.0.0", times(3), ReloadOptions::immediate());
        }
        let (a, b, k): (String, String, i64) = (
            row.get(0).unwrap(),
            row.get(1).unwrap(),
            row.get(2).unwrap(),
        );
        let x = n + 1;
        assert_eq!((a.as_str(), b.as_str(), k), ("1.0.0", "1.0.0", 2 * x));
        n += 1;
    }
    assert_eq!(n, 200);
    let (a, k): (String, i64) = conn
        .query_row("SELECT v(1), k(1)", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((a.as_str(), k), ("2.0.0", 3));
}

#[test]
fn a_statement_run_from_inside_a_call_is_a_statement_of_its_own() {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    let conn = table(100);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .attach(&conn)
        .unwrap();
    // A host function running a statement on the same connection.
    let registry = Arc::clone(&f.registry);
    let after = Arc::clone(&f.after_shutdown);
    let reloaded = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&reloaded);
    conn.create_scalar_function("nested", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let id: i64 = ctx.get(0)?;
        if id == 50 && r.fetch_add(1, SeqCst) == 0 {
            let fx = Fixture {
                registry: Arc::clone(&registry),
                after_shutdown: Arc::clone(&after),
            };
            fx.reload("v", "2.0.0", version_text(), ReloadOptions::immediate());
        }
        // SAFETY: the connection is used on this thread, inside the call.
        let conn = unsafe { ctx.get_connection()? };
        conn.query_row("SELECT v(1)", [], |r| r.get::<_, String>(0))
    })
    .unwrap();
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT v(x), nested(id) FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 100);
    // The outer statement: one version. The inner ones: their own, the
    // new one from the reload on.
    assert!(rows.iter().all(|(outer, _)| outer == "1.0.0"));
    for (i, (_, inner)) in rows.iter().enumerate() {
        let want = if i + 1 < 50 { "1.0.0" } else { "2.0.0" };
        assert_eq!(inner, want, "row {}", i + 1);
    }
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn each_firing_of_a_trigger_is_on_one_version() {
    let f = Fixture::new();
    // The 11th call (the first of firing 6) reloads: the second call of
    // that firing must stay on 1.0.0.
    let reloading = f.reloading_at(10, "v", "2.0.0", version_text(), version_text());
    f.register("v", "1.0.0", reloading);
    let conn = table(0);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .attach(&conn)
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE log(id INTEGER, a TEXT, b TEXT);
         CREATE TRIGGER tr AFTER INSERT ON t BEGIN
           INSERT INTO log VALUES (new.id, v(new.x), v(new.x));
         END;",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO t(id, x, g) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) SELECT i, i, 0 FROM n",
        [],
    )
    .unwrap();
    let log: Vec<(i64, String, String)> = conn
        .prepare("SELECT id, a, b FROM log ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(log.len(), 20);
    for (id, a, b) in &log {
        assert_eq!(a, b, "firing {id} mixed versions");
        let want = if *id <= 6 { "1.0.0" } else { "2.0.0" };
        assert_eq!(a, want, "firing {id}");
    }
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn a_failing_or_panicking_plugin_is_a_sql_error_naming_it() {
    let f = Fixture::new();
    f.register(
        "bad",
        "1.0.0",
        Arc::new(|_, input| match wire_int(input) {
            1 => Err("refuses one".to_owned()),
            2 => panic!("two is too many"),
            3 => Ok(vec![9, 9]),
            _ => Ok(vec![0]),
        }),
    );
    let conn = table(10);
    Hot::new(Arc::clone(&f.registry))
        .scalar("bad", 1, "bad")
        .attach(&conn)
        .unwrap();
    let err = |x: i64| {
        let e = conn
            .query_row("SELECT bad(?1)", [x], |r| r.get::<_, Option<i64>>(0))
            .unwrap_err();
        // SQLite carries the function's error to the caller as its message.
        match e {
            rusqlite::Error::SqliteFailure(_, Some(message)) => message,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        err(1).contains("bad` 1.0.0 failed: refuses one"),
        "{}",
        err(1)
    );
    assert!(err(2).contains("panicked: two is too many"), "{}", err(2));
    assert!(
        err(3).contains("bad reply: unknown value tag 0x09"),
        "{}",
        err(3)
    );
    // The connection and the plugin serve on.
    let ok: Option<i64> = conn.query_row("SELECT bad(4)", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, None);
    assert_eq!(f.registry.stats().per_plugin["bad"].in_flight, 0);
}

#[test]
fn a_function_of_a_plugin_not_registered_names_it() {
    let f = Fixture::new();
    let conn = table(1);
    Hot::new(Arc::clone(&f.registry))
        .scalar("ghost", 0, "ghost")
        .attach(&conn)
        .unwrap();
    let e = conn
        .query_row("SELECT ghost()", [], |r| r.get::<_, i64>(0))
        .unwrap_err();
    assert!(
        e.to_string().contains("no plugin `ghost` is registered"),
        "{e}"
    );
    // Registered later: it works, with no re-attach.
    f.register("ghost", "1.0.0", version_text());
    let v: String = conn.query_row("SELECT ghost()", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "1.0.0");
}

#[test]
fn a_lease_per_row_follows_reloads_within_a_statement() {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    let conn = table(100);
    Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .lease_per_row()
        .attach(&conn)
        .unwrap();
    let mut stmt = conn.prepare("SELECT v(x) FROM t").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let first: String = rows.next().unwrap().unwrap().get(0).unwrap();
    let report = f.reload("v", "2.0.0", version_text(), ReloadOptions::immediate());
    // No lease is held between rows: the old version drains at once.
    assert!(report.changes[0]
        .committed
        .old
        .wait_drained(Some(Instant::now() + Duration::from_secs(5))));
    let second: String = rows.next().unwrap().unwrap().get(0).unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("1.0.0", "2.0.0"));
}

fn wire_int(input: &[u8]) -> i64 {
    match reload_sqlite::wire::decode_all(input).ok().as_deref() {
        Some([rusqlite::types::ValueRef::Integer(x)]) => *x,
        _ => -1,
    }
}

#[test]
fn every_sql_type_and_many_arguments_cross_intact() {
    let f = Fixture::new();
    // Echoes its arguments back as one BLOB of their wire encoding, and
    // `first` returns its first argument.
    f.register(
        "echo",
        "1.0.0",
        Arc::new(|_, input| {
            Ok(reload_sqlite::wire::encode_one(rusqlite::types::ValueRef::Blob(input)).unwrap())
        }),
    );
    f.register(
        "first",
        "1.0.0",
        Arc::new(|_, input| {
            let args = reload_sqlite::wire::decode_all(input).map_err(|e| e.to_string())?;
            Ok(reload_sqlite::wire::encode_one(args[0]).unwrap())
        }),
    );
    let conn = table(1);
    Hot::new(Arc::clone(&f.registry))
        .scalar("echo", -1, "echo")
        .scalar("first", -1, "first")
        .attach(&conn)
        .unwrap();
    use rusqlite::types::Value;
    let values = [
        Value::Null,
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Real(-1.5e300),
        Value::Text("ünïcode ✓".into()),
        Value::Text(String::new()),
        Value::Blob(vec![0, 1, 255]),
        Value::Blob(Vec::new()),
    ];
    for v in &values {
        let back: Value = conn
            .query_row("SELECT first(?1)", [v], |r| r.get(0))
            .unwrap();
        // SQLite gives an empty BLOB back as an empty BLOB.
        assert_eq!(&back, v);
    }
    // Nine arguments (past the fixed-size fast path).
    let blob: Vec<u8> = conn
        .query_row("SELECT echo(1, 2, 3, 4, 5, 6, 7, 8, 'nine')", [], |r| {
            r.get(0)
        })
        .unwrap();
    let args = reload_sqlite::wire::decode_all(&blob).unwrap();
    assert_eq!(args.len(), 9);
    assert_eq!(args[8], rusqlite::types::ValueRef::Text(b"nine"));
}

#[test]
fn a_scalar_and_an_aggregate_of_one_statement_share_one_lease() {
    let f = Fixture::new();
    // One plugin serving both: as a scalar it returns its version; as an
    // aggregate it keeps the version that stepped it.
    let both: common::Behaviour =
        Arc::new(
            |version, input| match reload_sqlite::aggregate::parse_request(input) {
                Ok((b's', acc, _)) if !acc.is_empty() && acc != version.as_bytes() => {
                    Ok(b"MIXED".to_vec())
                }
                Ok((b's', _, _)) => Ok(version.as_bytes().to_vec()),
                Ok((b'f', acc, _)) => Ok(reload_sqlite::wire::encode_one(
                    rusqlite::types::ValueRef::Text(acc),
                )
                .unwrap()),
                _ => version_text()(version, input),
            },
        );
    f.register("both", "1.0.0", both);
    let conn = table(100);
    Hot::new(Arc::clone(&f.registry))
        .scalar("ver", 0, "both")
        .aggregate("agg_ver", 1, "both")
        .attach(&conn)
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT ver(), (SELECT agg_ver(x) FROM t) FROM t")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut n = 0;
    while let Some(row) = rows.next().unwrap() {
        if n == 3 {
            f.reload(
                "both",
                "2.0.0",
                Arc::new(|v, i| version_text()(v, i)),
                ReloadOptions::immediate(),
            );
        }
        let (a, b): (String, String) = (row.get(0).unwrap(), row.get(1).unwrap());
        assert_eq!((a.as_str(), b.as_str()), ("1.0.0", "1.0.0"), "row {n}");
        n += 1;
    }
    assert_eq!(n, 100);
}

#[test]
fn declarations_sqlite_cannot_take_are_refused_at_attach() {
    let f = Fixture::new();
    let conn = table(1);
    for (hot, why) in [
        (
            Hot::new(Arc::clone(&f.registry)).scalar("bad\0name", 1, "v"),
            "nul",
        ),
        (
            Hot::new(Arc::clone(&f.registry)).scalar("many", 32_767, "v"),
            "arity",
        ),
        (
            Hot::new(Arc::clone(&f.registry)).scalar("neg", -2, "v"),
            "arity",
        ),
        (
            Hot::new(Arc::clone(&f.registry)).aggregate("agg\0", 1, "v"),
            "nul",
        ),
    ] {
        let e = hot.attach(&conn).unwrap_err();
        assert!(
            matches!(e, reload_sqlite::AttachError::Sqlite { .. }),
            "{why}: {e}"
        );
    }
    // The connection is untouched and usable.
    let one: i64 = conn.query_row("SELECT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(one, 1);
}

#[test]
fn attaching_twice_replaces_the_objects_and_keeps_serving() {
    let f = Fixture::new();
    f.register("v", "1.0.0", version_text());
    let conn = table(10);
    let hot = Hot::new(Arc::clone(&f.registry))
        .scalar("v", 1, "v")
        .aggregate("vv", 1, "v")
        .table("vt", "v", &["a"]);
    hot.attach(&conn).unwrap();
    // A second attach (a pool re-initialising a connection) replaces them.
    hot.attach(&conn).unwrap();
    let (v, vv): (String, String) = conn
        .query_row("SELECT v(1), (SELECT vv(x) FROM t)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((v.as_str(), vv.as_str()), ("1.0.0", "1.0.0"));
    // The table is there (its plugin does not speak the table protocol:
    // a SQL error naming it, not a missing table).
    let e = conn
        .query_row("SELECT a FROM vt", [], |r| r.get::<_, String>(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("plugin `v` 1.0.0 returned a bad reply"), "{e}");
    drop(hot);
    // The objects outlive the `Hot` that declared them.
    let v: String = conn.query_row("SELECT v(1)", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "1.0.0");
}
