//! Statement-scoped leases: the host takes the leases of the plugins a
//! statement uses when the statement starts, and every row of it uses
//! them, so a reload mid-query never mixes versions within one result
//! (the discipline of the database plugin systems this mirrors, whose
//! queries capture their providers once).
//!
//! SQLite calls a scalar function on the thread that steps the statement,
//! so the scope is thread-local: [`scoped`] holds the leases on its stack
//! frame and points the thread at them for the statement's run. A function called outside a
//! scope (a host that cannot scope its statements) takes a lease per row.

use std::cell::{Cell, RefCell};

use reload_core::dylib::DylibPlugin;
use reload_core::registry::{Call, EnterError, Handle};
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::Connection;

/// The plugins the SQL functions call.
#[derive(Clone, Debug)]
pub struct Plugins {
    /// `score(x)`.
    pub udf: Handle<DylibPlugin>,
    /// `matches(id, term)`.
    pub index: Handle<DylibPlugin>,
}

/// What one scoped statement saw.
#[derive(Clone, Debug, Default)]
pub struct StatementReport {
    /// The `udf` version leased at the statement's start.
    pub udf_version: String,
    /// Rows `score` computed.
    pub rows: u64,
    /// Versions other than `udf_version` that computed a row (must stay
    /// empty: one version per statement).
    pub foreign: Vec<String>,
    /// Rows whose score differs from the reference.
    pub wrong: u64,
}

/// The leases of one statement, on [`scoped`]'s stack frame; the rows
/// reach it through [`SCOPE`]. Counters are cells: rows only read it. The
/// calls borrow the statement's handles (`'h`).
struct Scope<'h> {
    udf: Call<'h, DylibPlugin>,
    index: Call<'h, DylibPlugin>,
    udf_version: String,
    rows: Cell<u64>,
    wrong: Cell<u64>,
    foreign: RefCell<Vec<String>>,
}

thread_local! {
    /// The current statement's scope on this thread, or null. A raw
    /// pointer, not an owning cell: a thread-local with no destructor is
    /// one load to read, where an owning one pays a state check per row.
    /// (`'static` only in the pointer's type: see `with_scope`.)
    static SCOPE: Cell<*const Scope<'static>> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with the current scope, if any.
fn with_scope<R>(f: impl FnOnce(Option<&Scope<'_>>) -> R) -> R {
    let scope = SCOPE.with(Cell::get);
    // SAFETY: a non-null pointer was set by `scoped` on this thread to a
    // `Scope` on its stack frame, and is reset (by its guard, also on
    // unwind) before that frame ends; rows run inside it. The reference
    // handed to `f` lives no longer than this call, inside that frame, so
    // the borrows the scope's calls hold are alive.
    f(unsafe { scope.as_ref() })
}

/// The score every correct `udf` version computes.
pub fn reference_score(x: i64) -> i64 {
    x.wrapping_mul(31).wrapping_add(7)
}

/// Runs `statement` with the leases of `plugins` taken at its start and
/// given back at its end; reports what its rows saw.
///
/// # Errors
///
/// A plugin is not registered (or was unregistered).
pub fn scoped<R>(
    plugins: &Plugins,
    statement: impl FnOnce() -> R,
) -> Result<(R, StatementReport), EnterError> {
    let udf = plugins.udf.enter()?;
    let index = plugins.index.enter()?;
    let scope = Scope {
        udf_version: udf.manifest().version().to_string(),
        udf,
        index,
        rows: Cell::new(0),
        wrong: Cell::new(0),
        foreign: RefCell::new(Vec::new()),
    };
    // Puts back the outer scope (statements may nest) however `statement`
    // ends, so no pointer to this frame outlives it.
    struct Restore(*const Scope<'static>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = SCOPE.try_with(|s| s.set(self.0));
        }
    }
    // The cast only forgets the lifetime: the pointer is unset before
    // `scope` goes (above).
    let this: *const Scope<'_> = &scope;
    let _restore = Restore(SCOPE.with(|s| s.replace(this.cast())));
    let result = statement();
    drop(_restore);
    let report = StatementReport {
        udf_version: scope.udf_version,
        rows: scope.rows.get(),
        foreign: scope.foreign.into_inner(),
        wrong: scope.wrong.get(),
    };
    Ok((result, report))
}

fn user_error(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(e.to_string().into())
}

/// Parses a `udf` reply: the score, and the version that computed it.
fn parse_score(reply: &[u8]) -> rusqlite::Result<(i64, &[u8])> {
    let (score, version) = reply
        .split_first_chunk::<8>()
        .ok_or_else(|| user_error("udf reply shorter than 8 bytes"))?;
    Ok((i64::from_le_bytes(*score), version))
}

fn score(plugins: &Plugins, ctx: &Context<'_>) -> rusqlite::Result<i64> {
    let x: i64 = ctx.get(0)?;
    let input = x.to_le_bytes();
    with_scope(|scope| match scope {
        Some(scope) => scope
            .udf
            .plugin()
            .call_with(&input, |reply| {
                let (score, version) = parse_score(reply)?;
                scope.rows.set(scope.rows.get() + 1);
                if version != scope.udf_version.as_bytes() {
                    scope
                        .foreign
                        .borrow_mut()
                        .push(String::from_utf8_lossy(version).into_owned());
                }
                if score != reference_score(x) {
                    scope.wrong.set(scope.wrong.get() + 1);
                }
                Ok(score)
            })
            .map_err(user_error)?,
        None => {
            // No scope: a lease for this row alone.
            let call = plugins.udf.enter().map_err(user_error)?;
            call.plugin()
                .call_with(&input, |reply| Ok(parse_score(reply)?.0))
                .map_err(user_error)?
        }
    })
}

fn matches(plugins: &Plugins, ctx: &Context<'_>) -> rusqlite::Result<bool> {
    let id: i64 = ctx.get(0)?;
    let term: String = ctx.get(1)?;
    let mut request = Vec::with_capacity(9 + term.len());
    request.push(b'M');
    request.extend_from_slice(&id.to_le_bytes());
    request.extend_from_slice(term.as_bytes());
    let hit = |reply: &[u8]| reply.first() == Some(&1);
    with_scope(|scope| match scope {
        Some(scope) => scope
            .index
            .plugin()
            .call_with(&request, hit)
            .map_err(user_error),
        None => {
            let call = plugins.index.enter().map_err(user_error)?;
            call.plugin().call_with(&request, hit).map_err(user_error)
        }
    })
}

/// Registers `score(x)` and `matches(id, term)` on `conn`. Neither is
/// marked deterministic: a reload may change what they compute.
///
/// # Errors
///
/// SQLite's.
pub fn register(conn: &Connection, plugins: &Plugins) -> rusqlite::Result<()> {
    let p = plugins.clone();
    conn.create_scalar_function("score", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
        score(&p, ctx)
    })?;
    let p = plugins.clone();
    conn.create_scalar_function("matches", 2, FunctionFlags::SQLITE_UTF8, move |ctx| {
        matches(&p, ctx)
    })?;
    Ok(())
}
