//! Instruction counts of `SELECT sum(f(x)) FROM t` per row, for callgrind
//! (noise-free, unlike wall time on a shared machine):
//!
//! ```sh
//! cargo build --release -p sql-host --example udf_cost
//! valgrind --tool=callgrind --toggle-collect='udf_cost::measure*' \
//!     target/release/examples/udf_cost plain 100000
//! ```
//!
//! Variants: `plain`, `statement` (in-process plugin, one owned lease per
//! statement), `row` (a lease per row), `library` (the `udf` plugin library
//! through the registry, leases per statement), `library-row`.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;

use reload_core::dylib::Loader;
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::{Hooks, OwnedLease, Plugin, Slot};
use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;
use sql_host::scope::{self, reference_score, Plugins};

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

#[inline(never)]
fn measure(conn: &Connection, f: &str) -> i64 {
    conn.query_row(&format!("SELECT sum({f}(x)) FROM t"), [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "plain".to_owned());
    let rows: i64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER NOT NULL)")
        .unwrap_or_else(|e| panic!("{e}"));
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO t(id, x) SELECT i, (i * 7919) % 1000003 FROM n",
        [rows],
    )
    .unwrap_or_else(|e| panic!("{e}"));
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

    let sum = match variant.as_str() {
        "plain" => measure(&conn, "plain"),
        "statement" => with_lease(&slot, || measure(&conn, "scoped")),
        "row" => measure(&conn, "per_row"),
        "library" | "library-row" => {
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
            if variant == "library" {
                scope::scoped(&plugins, || measure(&conn, "score"))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .0
            } else {
                measure(&conn, "score")
            }
        }
        other => panic!("unknown variant {other}"),
    };
    println!("{variant}: sum {sum} over {rows} rows");
}
