//! The functions' and aggregates' entry points, on SQLite's C API.
//!
//! They are registered with `sqlite3_create_function_v2` and
//! `sqlite3_create_window_function` rather than through rusqlite's
//! closures for two reasons, both about the statement scope
//! ([`crate::scope`]):
//!
//! - the scope must be one object per statement for scalars and
//!   aggregates alike, and rusqlite's auxiliary data wraps values in a
//!   type of its own that an aggregate's context cannot be read as;
//! - a row reads the scope with `sqlite3_get_auxdata` and borrows it: no
//!   reference count touched, no type check, no closure frame per row
//!   (rusqlite's `get_aux` clones an `Arc` per call: two locked
//!   instructions per row).
//!
//! Everything here is `unsafe` at the edges only: every entry point runs
//! the crate's code under `catch_unwind` and reports a failure with
//! `sqlite3_result_error`, so nothing unwinds into SQLite.

use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rusqlite::ffi;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::error::panic_message;
use crate::plugin::SqlPlugin;
use crate::scope::Scope;
use crate::shared::Shared;

/// Argument `i` of a call.
///
/// # Safety
///
/// `argv` holds `argc` values of the running call and `i < argc`; the
/// reference lives no longer than the call.
pub(crate) unsafe fn arg<'a>(argv: *mut *mut ffi::sqlite3_value, i: usize) -> ValueRef<'a> {
    // SAFETY: per the contract.
    unsafe {
        let v = *argv.add(i);
        match ffi::sqlite3_value_type(v) {
            ffi::SQLITE_INTEGER => ValueRef::Integer(ffi::sqlite3_value_int64(v)),
            ffi::SQLITE_FLOAT => ValueRef::Real(ffi::sqlite3_value_double(v)),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_value_text(v);
                let n = usize::try_from(ffi::sqlite3_value_bytes(v)).unwrap_or(0);
                ValueRef::Text(if p.is_null() || n == 0 {
                    &[]
                } else {
                    std::slice::from_raw_parts(p, n)
                })
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_value_blob(v).cast::<u8>();
                let n = usize::try_from(ffi::sqlite3_value_bytes(v)).unwrap_or(0);
                ValueRef::Blob(if p.is_null() || n == 0 {
                    &[]
                } else {
                    std::slice::from_raw_parts(p, n)
                })
            }
            _ => ValueRef::Null,
        }
    }
}

/// Sets the call's result.
///
/// # Safety
///
/// `ctx` is the running call's.
pub(crate) unsafe fn set_result(ctx: *mut ffi::sqlite3_context, value: &Value) {
    // SAFETY: per the contract; text and blobs are copied by SQLite
    // (SQLITE_TRANSIENT) before this returns.
    unsafe {
        match value {
            Value::Null => ffi::sqlite3_result_null(ctx),
            Value::Integer(i) => ffi::sqlite3_result_int64(ctx, *i),
            Value::Real(f) => ffi::sqlite3_result_double(ctx, *f),
            Value::Text(s) => ffi::sqlite3_result_text64(
                ctx,
                s.as_ptr().cast::<c_char>(),
                s.len() as u64,
                ffi::SQLITE_TRANSIENT(),
                ffi::SQLITE_UTF8 as u8,
            ),
            Value::Blob(b) => ffi::sqlite3_result_blob64(
                ctx,
                b.as_ptr().cast::<c_void>(),
                b.len() as u64,
                ffi::SQLITE_TRANSIENT(),
            ),
        }
    }
}

/// Fails the call with `message`.
///
/// # Safety
///
/// `ctx` is the running call's.
pub(crate) unsafe fn set_error(ctx: *mut ffi::sqlite3_context, message: &str) {
    let len = c_int::try_from(message.len()).unwrap_or(c_int::MAX);
    // SAFETY: per the contract; SQLite copies the message.
    unsafe { ffi::sqlite3_result_error(ctx, message.as_ptr().cast::<c_char>(), len) }
}

/// Runs `f` for the call, containing a panic, and reports its outcome.
///
/// # Safety
///
/// `ctx` is the running call's.
pub(crate) unsafe fn report(
    ctx: *mut ffi::sqlite3_context,
    what: &str,
    f: impl FnOnce() -> Result<Option<Value>, String>,
) {
    let outcome = catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(format!("{what} panicked: {}", panic_message(&*payload))));
    // SAFETY: per the contract.
    unsafe {
        match outcome {
            Ok(Some(value)) => set_result(ctx, &value),
            Ok(None) => {}
            Err(message) => set_error(ctx, &message),
        }
    }
}

/// Drops the scope SQLite kept as the statement's auxiliary data.
unsafe extern "C" fn drop_scope<P: SqlPlugin>(p: *mut c_void) {
    // SAFETY: `p` is the `Arc::into_raw` of `statement_scope`, given to
    // SQLite once; it calls this once. Dropping gives the leases back
    // (reload-core contains any hook that runs then).
    let _ = catch_unwind(|| drop(unsafe { Arc::from_raw(p.cast::<Scope<P>>()) }));
}

/// The running statement's scope, made at its first call.
///
/// # Safety
///
/// `ctx` is a running call of a function of `shared`'s `Hot` (its key is
/// used by no other type).
pub(crate) unsafe fn statement_scope<P: SqlPlugin>(
    ctx: *mut ffi::sqlite3_context,
    shared: &Arc<Shared<P>>,
) -> Option<*const Scope<P>> {
    // SAFETY: only this `Hot`'s functions set data under its key, always
    // an `Arc<Scope<P>>` from `into_raw`.
    unsafe {
        let found = ffi::sqlite3_get_auxdata(ctx, shared.key).cast::<Scope<P>>();
        if !found.is_null() {
            return Some(found);
        }
        let scope = Arc::into_raw(Arc::new(Scope::detached(shared)));
        ffi::sqlite3_set_auxdata(
            ctx,
            shared.key,
            scope.cast_mut().cast(),
            Some(drop_scope::<P>),
        );
        // SQLite may have refused (out of memory) and dropped it already.
        let set = ffi::sqlite3_get_auxdata(ctx, shared.key).cast::<Scope<P>>();
        (!set.is_null()).then_some(set.cast_const())
    }
}

/// Registers a function (or an aggregate) whose `pApp` is `data`;
/// SQLite owns `data` from here on (it drops it with `destroy`, also when
/// registering fails).
///
/// # Safety
///
/// The callbacks take `pApp` as a `*const T` where `T` is `data`'s type,
/// and `destroy` drops a `Box<T>`.
pub(crate) unsafe fn create<T>(
    conn: &Connection,
    name: &str,
    n_args: i32,
    data: Box<T>,
    register: impl FnOnce(*mut ffi::sqlite3, *const c_char, c_int, *mut c_void) -> c_int,
) -> rusqlite::Result<()> {
    let name = CString::new(name).map_err(rusqlite::Error::NulError)?;
    // SAFETY: the handle is the connection's, used on this thread.
    let db = unsafe { conn.handle() };
    let rc = register(db, name.as_ptr(), n_args, Box::into_raw(data).cast());
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: `db` is open; the message is copied before the next call.
    let message = unsafe {
        let m = ffi::sqlite3_errmsg(db);
        (!m.is_null()).then(|| std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message))
}

/// Drops a `Box<T>` given to SQLite as a function's `pApp`.
pub(crate) unsafe extern "C" fn destroy<T>(p: *mut c_void) {
    // SAFETY: `p` is the `Box::into_raw` of `create`, dropped once.
    let _ = catch_unwind(|| drop(unsafe { Box::from_raw(p.cast::<T>()) }));
}

/// The `pApp` of the running call.
///
/// # Safety
///
/// The function was registered by [`create`] with a `Box<T>`.
pub(crate) unsafe fn user_data<'a, T>(ctx: *mut ffi::sqlite3_context) -> &'a T {
    // SAFETY: per the contract; SQLite keeps `pApp` until `destroy`, which
    // cannot run during a call of the function.
    unsafe { &*ffi::sqlite3_user_data(ctx).cast::<T>() }
}
