//! Statement-scoped leases: the host takes the leases of the plugins a
//! statement uses when the statement starts, and every row of it uses
//! them, so a reload mid-query never mixes versions within one result
//! (the discipline of the database plugin systems this mirrors, whose
//! queries capture their providers once).
//!
//! SQLite calls a scalar function on the thread that steps the statement,
//! so the scope is thread-local: [`scoped`] puts the leases there for the
//! statement's run and takes them back after. A function called outside a
//! scope (a host that cannot scope its statements) takes a lease per row.

use std::cell::RefCell;

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

struct Scope {
    udf: Call<DylibPlugin>,
    index: Call<DylibPlugin>,
    report: StatementReport,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
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
    let udf_version = udf.manifest().version().to_string();
    let previous = SCOPE.with(|s| {
        s.borrow_mut().replace(Scope {
            udf,
            index,
            report: StatementReport {
                udf_version,
                ..StatementReport::default()
            },
        })
    });
    // Restores the outer scope (if statements nest) however `statement`
    // ends, so a panic cannot leave leases in the thread-local.
    struct Restore(Option<Option<Scope>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                let _ = SCOPE.try_with(|s| *s.borrow_mut() = previous);
            }
        }
    }
    let mut restore = Restore(Some(previous));
    let result = statement();
    let mine = SCOPE.with(|s| s.borrow_mut().take());
    if let Some(previous) = restore.0.take() {
        SCOPE.with(|s| *s.borrow_mut() = previous);
    }
    let report = mine.map(|m| m.report).unwrap_or_default();
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
    SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        match s.as_mut() {
            Some(scope) => {
                let reply = scope.udf.plugin().call(&input).map_err(user_error)?;
                let (score, version) = parse_score(&reply)?;
                let report = &mut scope.report;
                report.rows += 1;
                if version != report.udf_version.as_bytes() {
                    report
                        .foreign
                        .push(String::from_utf8_lossy(version).into_owned());
                }
                if score != reference_score(x) {
                    report.wrong += 1;
                }
                Ok(score)
            }
            None => {
                // No scope: a lease for this row alone.
                let call = plugins.udf.enter().map_err(user_error)?;
                let reply = call.plugin().call(&input).map_err(user_error)?;
                Ok(parse_score(&reply)?.0)
            }
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
    let reply = SCOPE.with(|s| match s.borrow().as_ref() {
        Some(scope) => scope.index.plugin().call(&request).map_err(user_error),
        None => {
            let call = plugins.index.enter().map_err(user_error)?;
            call.plugin().call(&request).map_err(user_error)
        }
    })?;
    Ok(reply.first() == Some(&1))
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
