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
//! statement), `row` (a lease per row), `direct` (the `udf` plugin library
//! registered plainly, one lease held outside), `library` (the same through
//! `reload-sqlite`, its statement scope), `library-row` (through
//! `reload-sqlite`, a lease per row). The other kinds: `agg` (`tally(x)`
//! through `reload-sqlite`) against `agg-builtin` (`sum(x)`, `count(*)`);
//! `scan` (the `store` virtual table, 50 scans of 2 000 rows) against
//! `scan-plain` (a plain table of the same rows). The code measured is
//! `sql_host::fixture`'s, as in the benchmark.

use rusqlite::Connection;
use sql_host::fixture::{self, Library};

/// What callgrind counts: one statement.
#[inline(never)]
fn measure(conn: &Connection, f: &str) -> i64 {
    fixture::sum(conn, f).unwrap_or_else(|e| panic!("{e}"))
}

/// What callgrind counts for the other kinds: one aggregate over `rows`
/// rows, or `rows / 2000` scans.
#[inline(never)]
fn measure_other(conn: &Connection, variant: &str, rows: i64) -> i64 {
    let one = |sql: &str| -> i64 {
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or(0)
    };
    match variant {
        "agg" => one("SELECT length(tally(x)) FROM t"),
        "agg-builtin" => one("SELECT sum(x) + count(*) FROM t"),
        "scan" => (0..rows / 2000)
            .map(|_| one("SELECT sum(v) FROM store"))
            .sum(),
        _ => (0..rows / 2000)
            .map(|_| one("SELECT sum(v) FROM stored"))
            .sum(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "plain".to_owned());
    let rows: i64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let conn = fixture::table(rows).unwrap_or_else(|e| panic!("{e}"));
    let slot = fixture::in_process(&conn).unwrap_or_else(|e| panic!("{e}"));
    let sum = match variant.as_str() {
        "plain" => measure(&conn, "plain"),
        "statement" => fixture::with_lease(&slot, || measure(&conn, "scoped")),
        "row" => measure(&conn, "per_row"),
        "direct" | "library" | "library-row" => {
            let _library = Library::new(&conn).unwrap_or_else(|e| panic!("{e}"));
            let f = match variant.as_str() {
                "direct" => "direct",
                "library" => "score",
                _ => "score_row",
            };
            measure(&conn, f)
        }
        "agg" | "agg-builtin" | "scan" | "scan-plain" => {
            let _library = Library::new(&conn).unwrap_or_else(|e| panic!("{e}"));
            fixture::stored(&conn).unwrap_or_else(|e| panic!("{e}"));
            measure_other(&conn, &variant, rows)
        }
        other => panic!("unknown variant {other}"),
    };
    println!("{variant}: sum {sum} over {rows} rows");
}
