//! The fixture of the UDF-per-row measurements (`benches/udf.rs` for wall
//! time, `examples/udf_cost.rs` for callgrind): a table of `x`, and the
//! same score registered with SQLite five ways, so both measure the very
//! same code.
//!
//! | SQL function | what computes a row |
//! |---|---|
//! | `plain(x)` | a Rust function (the baseline) |
//! | `scoped(x)` | an in-process plugin through a lease taken once per statement ([`with_lease`]) |
//! | `per_row(x)` | the same plugin, a lease per row |
//! | `score(x)` | the `udf` plugin library ([`Library`]), scoped with [`scope::scoped`] or not |

use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;

use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::{Hooks, OwnedLease, Plugin, Slot};
use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;

use crate::scope::{self, reference_score, Plugins};

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

/// The `udf` (and `index`) plugin libraries, registered, with `score` and
/// `matches` on the connection.
pub struct Library {
    /// The handles the SQL functions call.
    pub plugins: Plugins,
    // Declared after the handles: dropped after them.
    _registry: Registry<DylibPlugin>,
    _loader: Loader,
}

impl Library {
    /// Builds the plugin libraries (cargo) and registers version 1.0.0 of
    /// each, with `score` and `matches` on `conn`.
    ///
    /// # Errors
    ///
    /// The build, the loader, the registry or SQLite refused.
    pub fn new(conn: &Connection) -> Result<Self, String> {
        let builds = crate::plugins::build()?;
        let loader = Loader::new().map_err(|e| e.to_string())?;
        let registry = Registry::new(Unchecked);
        for kind in ["udf", "index"] {
            let package = loader
                .package(&builds.path(kind, "1.0.0"))
                .map_err(|e| e.to_string())?;
            registry.register(package, b"").map_err(|r| r.to_string())?;
        }
        let plugins = Plugins {
            udf: registry.handle("udf").map_err(|e| e.to_string())?,
            index: registry.handle("index").map_err(|e| e.to_string())?,
        };
        scope::register(conn, &plugins).map_err(|e| e.to_string())?;
        Ok(Library {
            plugins,
            _registry: registry,
            _loader: loader,
        })
    }
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
