//! `SELECT sum(f(x)) FROM t` over a million rows, one statement per
//! iteration, with `f` computing the same score five ways:
//!
//! - `plain`: a Rust function registered with SQLite (the baseline);
//! - `plugin/statement`: an in-process plugin in a `Slot`, its lease taken
//!   once when the statement starts (an owned lease in a thread-local);
//! - `plugin/row`: the same plugin, a lease per row (a host that cannot
//!   scope its statements);
//! - `library/statement` and `library/row`: the `udf` plugin library
//!   through the registry, as the SQL host calls it.
//!
//! Ratios to `plain` are in `docs/performance.md`.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use reload_core::dylib::Loader;
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::{Hooks, OwnedLease, Plugin, Slot};
use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;
use sql_host::scope::{self, reference_score, Plugins};

const ROWS: i64 = 1_000_000;

struct Score;

impl Hooks for Score {
    type Context = ();
}

impl Score {
    #[inline(never)]
    fn score(&self, x: i64) -> i64 {
        reference_score(black_box(x))
    }
}

thread_local! {
    /// The statement's plugin: a raw pointer into the lease the statement
    /// holds (set and reset around it), so a row reads it with one load.
    static CURRENT: Cell<*const Score> = const { Cell::new(std::ptr::null()) };
}

/// Runs `statement` with one lease of `slot` for all its rows.
fn with_lease<R>(slot: &Slot<Score>, statement: impl FnOnce() -> R) -> R {
    let lease: OwnedLease<Score> = slot.enter_owned().unwrap_or_else(|e| panic!("{e}"));
    CURRENT.with(|c| c.set(&*lease));
    let r = statement();
    CURRENT.with(|c| c.set(std::ptr::null()));
    drop(lease);
    r
}

fn table() -> Connection {
    let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER NOT NULL); BEGIN;")
        .unwrap_or_else(|e| panic!("{e}"));
    {
        let mut insert = conn
            .prepare("INSERT INTO t(id, x) VALUES (?1, ?2)")
            .unwrap_or_else(|e| panic!("{e}"));
        for id in 0..ROWS {
            insert
                .execute((id, id.wrapping_mul(7919) % 1_000_003))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    conn.execute_batch("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    conn
}

fn sum(conn: &Connection, f: &str) -> i64 {
    conn.query_row(&format!("SELECT sum({f}(x)) FROM t"), [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn udf(c: &mut Criterion) {
    let conn = table();
    let flags = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("plain", 1, flags, |ctx| {
        Ok(reference_score(black_box(ctx.get::<i64>(0)?)))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let slot = Arc::new(Slot::new(
        Plugin::new(Score)
            .ready(&())
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    conn.create_scalar_function("scoped", 1, flags, |ctx| {
        let x = ctx.get::<i64>(0)?;
        // SAFETY: non-null only while `with_lease` holds the lease.
        match unsafe { CURRENT.with(Cell::get).as_ref() } {
            Some(plugin) => Ok(plugin.score(x)),
            None => Err(rusqlite::Error::UserFunctionError("no scope".into())),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let per_row = Arc::clone(&slot);
    conn.create_scalar_function("per_row", 1, flags, move |ctx| {
        let x = ctx.get::<i64>(0)?;
        let lease = per_row
            .enter()
            .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
        Ok(lease.score(x))
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let builds = sql_host::plugins::build().unwrap_or_else(|e| panic!("{e}"));
    let loader = Loader::new().unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::new(Unchecked);
    for kind in ["udf", "index"] {
        let package = loader
            .package(&builds.path(kind, "1.0.0"))
            .unwrap_or_else(|e| panic!("{e}"));
        if let Err(r) = registry.register(package, b"") {
            panic!("{r}");
        }
    }
    let plugins = Plugins {
        udf: registry.handle("udf").unwrap_or_else(|e| panic!("{e}")),
        index: registry.handle("index").unwrap_or_else(|e| panic!("{e}")),
    };
    scope::register(&conn, &plugins).unwrap_or_else(|e| panic!("{e}"));

    let expected = sum(&conn, "plain");
    let mut group = c.benchmark_group("select_sum_1m_rows");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("plain", |b| {
        b.iter(|| assert_eq!(sum(&conn, "plain"), expected))
    });
    group.bench_function("plugin/statement", |b| {
        b.iter(|| {
            assert_eq!(with_lease(&slot, || sum(&conn, "scoped")), expected);
        });
    });
    group.bench_function("plugin/row", |b| {
        b.iter(|| assert_eq!(sum(&conn, "per_row"), expected));
    });
    group.bench_function("library/statement", |b| {
        b.iter(|| {
            let (s, report) =
                scope::scoped(&plugins, || sum(&conn, "score")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((s, report.rows), (expected, ROWS as u64));
        });
    });
    group.bench_function("library/row", |b| {
        b.iter(|| assert_eq!(sum(&conn, "score"), expected));
    });
    group.finish();
}

criterion_group!(benches, udf);
criterion_main!(benches);
