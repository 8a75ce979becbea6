//! Aggregates and window functions: a group finishes on the version it
//! started on, whatever commits meanwhile.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

use common::{table, Behaviour, Fixture, LONG};
use reload_core::ReloadOptions;
use reload_sqlite::aggregate::parse_request;
use reload_sqlite::{wire, Hot};
use rusqlite::types::ValueRef;

/// A sum whose accumulator carries the version that started it: a step
/// by another version poisons it, and the result is `version:sum:rows`.
fn tagged_sum(step_hook: Arc<dyn Fn(u64) + Send + Sync>) -> Behaviour {
    let steps = Arc::new(AtomicU64::new(0));
    Arc::new(move |version, request| {
        let (op, acc, args) = parse_request(request).map_err(|e| e.to_string())?;
        let text = std::str::from_utf8(acc).map_err(|e| e.to_string())?;
        let (tag, sum, rows) = match text.split(':').collect::<Vec<_>>()[..] {
            [] | [""] => (version.to_owned(), 0i64, 0i64),
            [tag, sum, rows] => (tag.to_owned(), sum.parse().unwrap(), rows.parse().unwrap()),
            _ => return Err(format!("a bad accumulator: {text}")),
        };
        let tag = if tag == version {
            tag
        } else {
            format!("MIXED({tag}+{version})")
        };
        let x = match wire::decode_all(args).map_err(|e| e.to_string())?[..] {
            [ValueRef::Integer(x)] => x,
            [] => 0,
            _ => return Err("takes one integer".into()),
        };
        match op {
            b's' => {
                step_hook(steps.fetch_add(1, SeqCst));
                Ok(format!("{tag}:{}:{}", sum + x, rows + 1).into_bytes())
            }
            b'i' => Ok(format!("{tag}:{}:{}", sum - x, rows - 1).into_bytes()),
            b'f' | b'v' => {
                let out = format!("{tag}:{sum}:{rows}");
                Ok(wire::encode_one(ValueRef::Text(out.as_bytes())).unwrap())
            }
            op => Err(format!("unknown op {op}")),
        }
    })
}

fn no_hook() -> Arc<dyn Fn(u64) + Send + Sync> {
    Arc::new(|_| {})
}

#[test]
fn a_group_finishes_on_its_version_when_a_reload_commits_mid_group() {
    let f = Fixture::new();
    let registry = Arc::downgrade(&f.registry);
    let after = Arc::clone(&f.after_shutdown);
    // At the 1000th step (mid-way through the groups), the plugin reloads.
    let hook: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |n| {
        if n == 999 {
            if let Some(registry) = registry.upgrade() {
                let fx = Fixture {
                    registry,
                    after_shutdown: Arc::clone(&after),
                };
                fx.reload(
                    "sum",
                    "2.0.0",
                    tagged_sum(no_hook()),
                    ReloadOptions::immediate(),
                );
            }
        }
    });
    f.register("sum", "1.0.0", tagged_sum(hook));
    let conn = table(4000);
    Hot::new(Arc::clone(&f.registry))
        .aggregate("tsum", 1, "sum")
        .attach(&conn)
        .unwrap();
    let groups: Vec<(i64, String)> = conn
        .prepare("SELECT g, tsum(x) FROM t GROUP BY g ORDER BY g")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(groups.len(), 4);
    for (g, result) in &groups {
        let want_sum: i64 = (1..=4000).filter(|x| x % 4 == *g).sum();
        assert_eq!(result, &format!("1.0.0:{want_sum}:1000"), "group {g}");
    }
    let after: String = conn
        .query_row("SELECT tsum(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, format!("2.0.0:{}:4000", (1..=4000i64).sum::<i64>()));
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn groups_read_after_a_reload_were_computed_on_the_statements_version() {
    let f = Fixture::new();
    f.register("sum", "1.0.0", tagged_sum(no_hook()));
    let conn = table(100);
    Hot::new(Arc::clone(&f.registry))
        .aggregate("tsum", 1, "sum")
        .attach(&conn)
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT g, tsum(x) FROM t GROUP BY g ORDER BY g")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let first: String = rows.next().unwrap().unwrap().get(1).unwrap();
    let report = f.reload(
        "sum",
        "2.0.0",
        tagged_sum(no_hook()),
        ReloadOptions::immediate(),
    );
    let mut rest = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        rest.push(row.get::<_, String>(1).unwrap());
    }
    assert!(first.starts_with("1.0.0:"));
    assert!(rest.iter().all(|r| r.starts_with("1.0.0:")), "{rest:?}");
    drop(rows);
    assert!(report.changes[0]
        .committed
        .old
        .wait_drained(Some(Instant::now() + LONG)));
}

#[test]
fn an_empty_group_is_finalized_too() {
    let f = Fixture::new();
    f.register("sum", "1.0.0", tagged_sum(no_hook()));
    let conn = table(0);
    Hot::new(Arc::clone(&f.registry))
        .aggregate("tsum", 1, "sum")
        .attach(&conn)
        .unwrap();
    let r: String = conn
        .query_row("SELECT tsum(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "1.0.0:0:0");
}

#[test]
#[cfg(feature = "window")]
fn a_window_function_runs_on_one_version() {
    let f = Fixture::new();
    f.register("sum", "1.0.0", tagged_sum(no_hook()));
    let conn = table(50);
    Hot::new(Arc::clone(&f.registry))
        .window("tsum", 1, "sum")
        .attach(&conn)
        .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT id, tsum(x) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t",
        )
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut n = 0;
    while let Some(row) = rows.next().unwrap() {
        if n == 10 {
            f.reload(
                "sum",
                "2.0.0",
                tagged_sum(no_hook()),
                ReloadOptions::immediate(),
            );
        }
        let id: i64 = row.get(0).unwrap();
        let r: String = row.get(1).unwrap();
        let lo = (id - 2).max(1);
        let sum: i64 = (lo..=id).sum();
        assert_eq!(r, format!("1.0.0:{sum}:{}", id - lo + 1), "row {id}");
        n += 1;
    }
    assert_eq!(n, 50);
}

#[test]
fn an_aggregate_panicking_mid_group_is_a_sql_error_and_loses_nothing() {
    let f = Fixture::new();
    let hook: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(|n| {
        if n == 10 {
            panic!("the eleventh row");
        }
    });
    f.register("sum", "1.0.0", tagged_sum(hook));
    let conn = table(40);
    Hot::new(Arc::clone(&f.registry))
        .aggregate("tsum", 1, "sum")
        .attach(&conn)
        .unwrap();
    let e = conn
        .query_row("SELECT tsum(x) FROM t", [], |r| r.get::<_, String>(0))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("plugin `sum` 1.0.0 panicked: the eleventh row"),
        "{e}"
    );
    // Nothing held, the connection usable, the plugin serving on.
    assert_eq!(f.registry.stats().per_plugin["sum"].in_flight, 0);
    let r: String = conn
        .query_row("SELECT tsum(x) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, format!("1.0.0:{}:40", (1..=40i64).sum::<i64>()));
    // And a reload drains at once.
    let report = f.reload(
        "sum",
        "2.0.0",
        tagged_sum(no_hook()),
        ReloadOptions::immediate(),
    );
    assert!(report.changes[0]
        .committed
        .old
        .wait_drained(Some(Instant::now() + LONG)));
}
