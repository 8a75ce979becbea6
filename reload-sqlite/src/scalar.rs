//! Scalar functions: `f(args)` calls a plugin once per row, on the
//! statement's lease of it (or, with [`Hot::lease_per_row`](crate::Hot::lease_per_row),
//! a lease of the row's own).

use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::Arc;

use reload_core::registry::Call;
use rusqlite::ffi;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::error::HotError;
use crate::plugin::SqlPlugin;
use crate::raw;
use crate::scope::Scope;
use crate::shared::Shared;
use crate::wire::Codec;

/// A scalar function the host declared.
#[derive(Clone)]
pub(crate) struct ScalarDef {
    pub sql_name: String,
    pub n_args: i32,
    pub plugin: usize,
    pub codec: Arc<dyn Codec>,
}

struct Data<P: SqlPlugin> {
    shared: Arc<Shared<P>>,
    def: ScalarDef,
}

thread_local! {
    /// The request buffer, reused row after row. Taken out while in use, so
    /// a statement run from inside a plugin call finds it empty and
    /// allocates its own rather than aliasing.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn register<P: SqlPlugin>(
    conn: &Connection,
    shared: &Arc<Shared<P>>,
    def: &ScalarDef,
) -> rusqlite::Result<()> {
    let data = Box::new(Data {
        shared: Arc::clone(shared),
        def: def.clone(),
    });
    // Not deterministic: a reload may change what it computes, so SQLite
    // must not fold calls across rows or statements.
    // SAFETY: `x_func::<P>` and `destroy::<Data<P>>` take `pApp` as the
    // `Data<P>` given.
    unsafe {
        raw::create(conn, &def.sql_name, def.n_args, data, |db, name, n, app| {
            ffi::sqlite3_create_function_v2(
                db,
                name,
                n,
                ffi::SQLITE_UTF8,
                app,
                Some(x_func::<P>),
                None,
                None,
                Some(raw::destroy::<Data<P>>),
            )
        })
    }
}

unsafe extern "C" fn x_func<P: SqlPlugin>(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: registered by `register` with a `Data<P>`; `argv` holds
    // `argc` values for the length of this call.
    unsafe {
        let data = raw::user_data::<Data<P>>(ctx);
        raw::report(ctx, &data.def.sql_name, || {
            let n = usize::try_from(argc).unwrap_or(0);
            let mut small = [ValueRef::Null; 4];
            let mut large = Vec::new();
            let args: &[ValueRef<'_>] = if n <= small.len() {
                for (i, slot) in small.iter_mut().enumerate().take(n) {
                    *slot = raw::arg(argv, i);
                }
                &small[..n]
            } else {
                large.extend((0..n).map(|i| raw::arg(argv, i)));
                &large
            };
            call(&data.shared, &data.def, ctx, args)
                .map(Some)
                .map_err(|e| e.to_string())
        });
    }
}

/// # Safety
///
/// `ctx` is the running call of a function of `shared`.
unsafe fn call<P: SqlPlugin>(
    shared: &Arc<Shared<P>>,
    def: &ScalarDef,
    ctx: *mut ffi::sqlite3_context,
    args: &[ValueRef<'_>],
) -> Result<Value, HotError> {
    if let Some(value) = def.codec.shortcut(args) {
        return Ok(value);
    }
    let mut buf = BUFFER
        .try_with(|b| std::mem::take(&mut *b.borrow_mut()))
        .unwrap_or_default();
    buf.clear();
    let result = (|| {
        def.codec
            .encode(args, &mut buf)
            .map_err(|source| HotError::Arguments {
                object: def.sql_name.clone(),
                source,
            })?;
        let i = def.plugin;
        let decode = |call: &Call<'_, P>| {
            shared.run_decoding(i, call, &buf, |reply| def.codec.decode(reply))
        };
        if shared.per_row {
            let call = shared.enter(i)?;
            shared.counters[i]
                .calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return decode(&call);
        }
        // SAFETY: per the contract.
        match unsafe { raw::statement_scope(ctx, shared) } {
            Some(scope) => {
                // SAFETY: SQLite keeps the scope until the statement is reset
                // or finalized, which cannot happen during this call.
                let scope: &Scope<P> = unsafe { &*scope };
                scope.count(i);
                decode(scope.lease(i)?)
            }
            None => {
                // SQLite could not keep a scope (out of memory): this row's own.
                let scope = Scope::detached(shared);
                scope.count(i);
                decode(scope.lease(i)?)
            }
        }
    })();
    let _ = BUFFER.try_with(|b| *b.borrow_mut() = buf);
    result
}
