//! `SELECT sum(f(x)) FROM t` over a million rows, one statement per
//! iteration, with `f` computing the same score six ways
//! (`sql_host::fixture`): a plain Rust function (the baseline), an
//! in-process plugin with its lease per statement and per row, and the
//! `udf` plugin library registered plainly (`direct`, the library's
//! baseline) and through `reload-sqlite`, per statement and per row.
//!
//! Ratios to `plain` are in `docs/performance.md`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sql_host::fixture::{self, Library};

const ROWS: i64 = 1_000_000;

fn udf(c: &mut Criterion) {
    let conn = fixture::table(ROWS).unwrap_or_else(|e| panic!("{e}"));
    let slot = fixture::in_process(&conn).unwrap_or_else(|e| panic!("{e}"));
    let library = Library::new(&conn).unwrap_or_else(|e| panic!("{e}"));
    let sum = |f: &str| fixture::sum(&conn, f).unwrap_or_else(|e| panic!("{e}"));
    let expected = sum("plain");

    let mut group = c.benchmark_group("select_sum_1m_rows");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("plain", |b| b.iter(|| assert_eq!(sum("plain"), expected)));
    group.bench_function("plugin/statement", |b| {
        b.iter(|| assert_eq!(fixture::with_lease(&slot, || sum("scoped")), expected));
    });
    group.bench_function("plugin/row", |b| {
        b.iter(|| assert_eq!(sum("per_row"), expected));
    });
    group.bench_function("library/direct", |b| {
        b.iter(|| assert_eq!(sum("direct"), expected));
    });
    group.bench_function("library/statement", |b| {
        b.iter(|| assert_eq!(sum("score"), expected));
    });
    group.bench_function("library/row", |b| {
        b.iter(|| assert_eq!(sum("score_row"), expected));
    });
    drop(library);
    group.finish();
}

criterion_group!(benches, udf);
criterion_main!(benches);
