//! The fixture of the UDF-per-row measurements (`benches/udf.rs` for wall
//! time, `examples/udf_cost.rs` for callgrind): a table of `x`, and the
//! same score registered with SQLite several ways, so both measure the very
//! same code.
//!
//! | SQL function | what computes a row |
//! |---|---|
//! | `plain(x)` | a Rust function (the baseline) |
//! | `scoped(x)` | an in-process plugin through a lease taken once per statement ([`with_lease`]) |
//! | `per_row(x)` | the same plugin, a lease per row |
//! | `direct(x)` | the `udf` plugin library ([`Library`]) registered plainly with rusqlite: one lease held by the fixture, no reload machinery per row (the library's baseline) |
//! | `score(x)` | the same library through `reload-sqlite`: the crate's statement scope |
//! | `score_row(x)` | the same through `reload-sqlite` with a lease per row |
//!
//! Besides, for the other kinds: `tally(x)` (the `agg` library, an
//! aggregate through `reload-sqlite`) and the table `store` (the `store`
//! library, 2 000 rows, a virtual table through `reload-sqlite`), with
//! [`stored`] a plain table of the same rows to compare a scan with.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;

use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::{Hooks, OwnedLease, Plugin, Slot};
use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;

use reload_core::dylib::DylibError;
use reload_core::registry::OwnedCall;
use reload_sqlite::Hot;

use crate::sql::{reference_score, UdfCodec};

/// The in-process plugin: the score, behind a call the compiler cannot
/// inline into SQLite's callback (as a plugin's would not be).
#[derive(Debug)]
pub struct Score;

impl Hooks for Score {
    type Context = ();
}

impl Score {
    /// The score of `x`.
    #[inline(never)]
    pub fn score(&self, x: i64) -> i64 {
        reference_score(black_box(x))
    }
}

thread_local! {
    /// The statement's plugin: a raw pointer into the lease the statement
    /// holds (set and reset around it), so a row reads it with one load.
    static CURRENT: Cell<*const Score> = const { Cell::new(std::ptr::null()) };
}

/// Runs `statement` with one lease of `slot` for all its rows.
///
/// # Panics
///
/// If the slot is closed (the fixture never closes it).
pub fn with_lease<R>(slot: &Slot<Score>, statement: impl FnOnce() -> R) -> R {
    let lease: OwnedLease<Score> = slot.enter_owned().unwrap_or_else(|e| panic!("{e}"));
    CURRENT.with(|c| c.set(&*lease));
    // Reset however `statement` ends, before the lease goes.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|c| c.set(std::ptr::null()));
        }
    }
    let reset = Reset;
    let r = statement();
    drop(reset);
    drop(lease);
    r
}

/// An in-memory table `t(id, x)` of `rows` rows.
///
/// # Errors
///
/// SQLite's.
pub fn table(rows: i64) -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER NOT NULL)")?;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO t(id, x) SELECT i, (i * 7919) % 1000003 FROM n",
        [rows],
    )?;
    Ok(conn)
}

/// Registers `plain`, `scoped` and `per_row` on `conn`, the plugin ones on
/// `slot`; returns the slot.
///
/// # Errors
///
/// SQLite's.
pub fn in_process(conn: &Connection) -> rusqlite::Result<Arc<Slot<Score>>> {
    let flags = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("plain", 1, flags, |ctx| {
        Ok(reference_score(black_box(ctx.get::<i64>(0)?)))
    })?;
    conn.create_scalar_function("scoped", 1, flags, |ctx| {
        let x = ctx.get::<i64>(0)?;
        // SAFETY: non-null only while `with_lease` holds the lease.
        match unsafe { CURRENT.with(Cell::get).as_ref() } {
            Some(plugin) => Ok(plugin.score(x)),
            None => Err(rusqlite::Error::UserFunctionError("no scope".into())),
        }
    })?;
    let ready = Plugin::new(Score)
        .ready(&())
        .map_err(|e| rusqlite::Error::UserFunctionError(e.to_string().into()))?;
    let slot = Arc::new(Slot::new(ready));
    let per_row = Arc::clone(&slot);
    conn.create_scalar_function("per_row", 1, flags, move |ctx| {
        let x = ctx.get::<i64>(0)?;
        let lease = per_row
            .enter()
            .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
        Ok(lease.score(x))
    })?;
    Ok(slot)
}

/// The `udf` plugin library, registered, with `direct`, `score` and
/// `score_row` on the connection.
pub struct Library {
    /// The registry serving `udf`.
    pub registry: Arc<Registry<DylibPlugin>>,
    // Declared after the registry: dropped after it.
    _loader: Loader,
}

/// `udf`'s call, as `direct` makes it: `x` in, the score out.
fn call_udf(call: &OwnedCall<DylibPlugin>, x: i64) -> Result<i64, DylibError> {
    call.plugin().call_with(&x.to_le_bytes(), |reply| {
        reply
            .first_chunk::<8>()
            .map_or(i64::MIN, |b| i64::from_le_bytes(*b))
    })
}

impl Library {
    /// Builds the plugin libraries (cargo) and registers `udf` 1.0.0, with
    /// `direct`, `score` and `score_row` on `conn`.
    ///
    /// # Errors
    ///
    /// The build, the loader, the registry or SQLite refused.
    pub fn new(conn: &Connection) -> Result<Self, String> {
        let builds = crate::plugins::build()?;
        let loader = Loader::new().map_err(|e| e.to_string())?;
        let registry = Arc::new(Registry::new(Unchecked));
        for kind in ["udf", "agg", "store"] {
            let package = loader
                .package(&builds.path(kind, "1.0.0"))
                .map_err(|e| e.to_string())?;
            registry.register(package, b"").map_err(|r| r.to_string())?;
        }
        let held = registry.enter_owned("udf").map_err(|e| e.to_string())?;
        conn.create_scalar_function("direct", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let x = ctx.get::<i64>(0)?;
            call_udf(&held, x).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
        })
        .map_err(|e| e.to_string())?;
        Hot::new(Arc::clone(&registry))
            .scalar_with("score", 1, "udf", UdfCodec { version: false })
            .aggregate("tally", 1, "agg")
            .table("store", "store", crate::sql::STORE_COLUMNS)
            .attach(conn)
            .map_err(|e| e.to_string())?;
        Hot::new(Arc::clone(&registry))
            .scalar_with("score_row", 1, "udf", UdfCodec { version: false })
            .lease_per_row()
            .attach(conn)
            .map_err(|e| e.to_string())?;
        Ok(Library {
            registry,
            _loader: loader,
        })
    }
}

/// A plain table `stored(k, v, version)` of the rows the `store` plugin
/// serves.
///
/// # Errors
///
/// SQLite's.
pub fn stored(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE stored(k INTEGER, v INTEGER, version TEXT);
         WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < 2000)
         INSERT INTO stored SELECT k, k * k, '1.0.0' FROM n;",
    )
}

/// `SELECT sum(f(x)) FROM t`.
///
/// # Errors
///
/// SQLite's (or the function's).
#[inline(never)]
pub fn sum(conn: &Connection, f: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("SELECT sum({f}(x)) FROM t"), [], |r| r.get(0))
}
