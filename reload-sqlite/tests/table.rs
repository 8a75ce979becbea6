//! A storage backend as a virtual table: a scan keeps its version from
//! its first row to its last, new scans take the new one, and the old
//! version's drain waits for the scan.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{table, Behaviour, Fixture, LONG};
use reload_core::ReloadOptions;
use reload_sqlite::{wire, Hot};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// `rows` rows `(i, version)`, served `batch` at a time.
fn store(rows: u64, batch: u64) -> Behaviour {
    Arc::new(move |version, request| {
        let position = match request {
            [b'S', rest @ ..] => u64::from_le_bytes(rest.try_into().map_err(|_| "8 bytes")?),
            _ => return Err("unknown request".into()),
        };
        let end = (position + batch).min(rows);
        let next = if end == rows { u64::MAX } else { end };
        let mut out = next.to_le_bytes().to_vec();
        for i in position..end {
            wire::encode(ValueRef::Integer(i as i64), &mut out).unwrap();
            wire::encode(ValueRef::Text(version.as_bytes()), &mut out).unwrap();
        }
        Ok(out)
    })
}

fn attach(f: &Fixture, conn: &Connection) {
    Hot::new(Arc::clone(&f.registry))
        .table("kv", "store", &["k", "version"])
        .attach(conn)
        .unwrap();
}

fn versions(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT version FROM kv")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_ten_second_scan_across_three_reloads_reads_one_version() {
    let f = Fixture::new();
    f.register("store", "1.0.0", store(100, 7));
    let conn = table(0);
    attach(&f, &conn);
    let other = table(0);
    attach(&f, &other);
    let mut stmt = conn.prepare("SELECT k, version FROM kv").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut olds = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let (k, v): (i64, String) = (row.get(0).unwrap(), row.get(1).unwrap());
        assert_eq!(k, seen.len() as i64);
        seen.push(v);
        if seen.len() % 25 == 0 && seen.len() < 100 {
            let n = seen.len() / 25 + 1;
            let report = f.reload(
                "store",
                &format!("{n}.0.0"),
                store(100, 7),
                ReloadOptions::immediate(),
            );
            olds.push(report);
            // A new scan, on another connection, reads the new version.
            let fresh = versions(&other);
            assert_eq!(fresh.len(), 100);
            assert!(fresh.iter().all(|v| *v == format!("{n}.0.0")));
        }
        if seen.len() == 99 {
            // The last row is not read yet: the scan still holds 1.0.0.
            assert!(!olds[0].changes[0].committed.old.is_drained());
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(seen.len(), 100);
    assert!(seen.iter().all(|v| v == "1.0.0"), "a scan mixed versions");
    // 2.0.0 and 3.0.0 were held by no one; 1.0.0 by the scan, which
    // SQLite closed when it reached its end.
    assert_eq!(olds.len(), 3);
    let first = &olds[0].changes[0].committed.old;
    for later in &olds[1..] {
        assert!(later.changes[0]
            .committed
            .old
            .wait_drained(Some(Instant::now() + LONG)));
    }
    drop(rows);
    drop(stmt);
    assert!(first.wait_drained(Some(Instant::now() + LONG)));
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn a_quiesced_reload_waits_for_a_scan_and_its_deadline_rolls_back() {
    let f = Fixture::new();
    f.register("store", "1.0.0", store(50, 5));
    let conn = table(0);
    attach(&f, &conn);
    let mut stmt = conn.prepare("SELECT version FROM kv").unwrap();
    let mut rows = stmt.query([]).unwrap();
    rows.next().unwrap();
    let package = f.package("store", "2.0.0", store(50, 5));
    let refused = f
        .registry
        .reload(
            vec![package],
            &(),
            ReloadOptions::quiesced(Duration::from_millis(200)),
        )
        .map(|_| ())
        .unwrap_err();
    assert!(
        refused.error.to_string().contains("drain"),
        "{}",
        refused.error
    );
    // Nothing changed: the scan and new scans read 1.0.0.
    let mut rest = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        rest.push(row.get::<_, String>(0).unwrap());
    }
    assert_eq!(rest.len(), 49);
    assert!(rest.iter().all(|v| v == "1.0.0"));
    drop(rows);
    assert!(versions(&conn).iter().all(|v| v == "1.0.0"));
    // With the scan done, the same reload commits at once.
    f.reload(
        "store",
        "2.0.0",
        store(50, 5),
        ReloadOptions::quiesced(LONG),
    );
    assert!(versions(&conn).iter().all(|v| v == "2.0.0"));
}

#[test]
fn a_join_rescans_on_the_cursors_version() {
    let f = Fixture::new();
    f.register("store", "1.0.0", store(10, 3));
    let conn = table(0);
    attach(&f, &conn);
    let mut stmt = conn
        .prepare("SELECT a.k, b.k, a.version, b.version FROM kv a, kv b")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut n = 0;
    while let Some(row) = rows.next().unwrap() {
        if n == 5 {
            f.reload("store", "2.0.0", store(10, 3), ReloadOptions::immediate());
        }
        let (a, b): (String, String) = (row.get(2).unwrap(), row.get(3).unwrap());
        assert_eq!((a.as_str(), b.as_str()), ("1.0.0", "1.0.0"), "row {n}");
        n += 1;
    }
    assert_eq!(n, 100);
}

fn reply(next: u64, values: &[ValueRef<'_>]) -> Vec<u8> {
    let mut out = next.to_le_bytes().to_vec();
    for v in values {
        wire::encode(*v, &mut out).unwrap();
    }
    out
}

#[test]
fn garbage_rows_and_wrong_widths_are_sql_errors_naming_the_cause() {
    let cases: Vec<(&str, Behaviour, &str)> = vec![
        (
            "three values for two columns",
            Arc::new(|_, _| {
                Ok(reply(
                    u64::MAX,
                    &[ValueRef::Integer(1), ValueRef::Null, ValueRef::Null],
                ))
            }),
            "returned a row of 1 columns; table `kv` has 2",
        ),
        (
            "an unknown tag",
            Arc::new(|_, _| {
                let mut r = reply(u64::MAX, &[ValueRef::Integer(1)]);
                r.push(0x7f);
                Ok(r)
            }),
            "bad reply: unknown value tag 0x7f at byte 17",
        ),
        (
            "a reply shorter than its header",
            Arc::new(|_, _| Ok(vec![1, 2, 3])),
            "bad reply: the reply ends inside a value",
        ),
        (
            "text that is not UTF-8",
            Arc::new(|_, _| {
                let mut r = reply(u64::MAX, &[ValueRef::Integer(1)]);
                r.extend_from_slice(&[3, 1, 0, 0, 0, 0xff]);
                Ok(r)
            }),
            "is not UTF-8",
        ),
        (
            "empty batches without end",
            Arc::new(|_, _| Ok(reply(0, &[]))),
            "empty batches in a row: the scan makes no progress",
        ),
        (
            "a failure",
            Arc::new(|_, _| Err("the disk is gone".into())),
            "plugin `store` 1.0.0 failed: the disk is gone",
        ),
        (
            "a panic",
            Arc::new(|_, _| panic!("storage panicked")),
            "plugin `store` 1.0.0 panicked: storage panicked",
        ),
    ];
    for (case, behaviour, want) in cases {
        let f = Fixture::new();
        f.register("store", "1.0.0", behaviour);
        let conn = table(0);
        attach(&f, &conn);
        let e = conn
            .prepare("SELECT * FROM kv")
            .unwrap()
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        assert!(e.to_string().contains(want), "{case}: {e}");
        // Nothing held; the connection serves a good version after.
        assert_eq!(
            f.registry.stats().per_plugin["store"].in_flight,
            0,
            "{case}"
        );
        f.reload("store", "2.0.0", store(3, 2), ReloadOptions::immediate());
        assert_eq!(versions(&conn), ["2.0.0"; 3], "{case}");
    }
}

#[test]
fn a_table_with_no_columns_is_refused_at_attach() {
    let f = Fixture::new();
    let conn = table(0);
    let e = Hot::new(Arc::clone(&f.registry))
        .table("empty", "store", &[])
        .attach(&conn)
        .unwrap_err();
    assert!(e.to_string().contains("at least one column"), "{e}");
}
