//! Aggregate and window functions: the accumulator is bytes the host
//! keeps, and the plugin is a pure function of them, so any version can
//! be asked to step it, and a group is only ever stepped by one.
//!
//! # The protocol
//!
//! A request is an operation byte, the accumulator (`u32` length,
//! little-endian, then its bytes: empty at a group's start) and, for
//! steps, the row's arguments in the [`wire`](mod@crate::wire) encoding:
//!
//! | op  | request                 | reply                          |
//! |-----|-------------------------|--------------------------------|
//! | `s` | accumulator, arguments  | the new accumulator (raw)      |
//! | `f` | accumulator             | the result: one wire value     |
//! | `i` | accumulator, arguments  | the accumulator without the row (window `inverse`) |
//! | `v` | accumulator             | the current result (window `value`) |
//!
//! # Versions
//!
//! The first step of a group takes the statement's lease of the plugin
//! ([`crate::scope`]) and the accumulator holds that scope until the group
//! is finalized: every step and the final call of a group run on one
//! version, even if a reload commits mid-group, and every group of a
//! statement runs on the statement's version. A group with no rows is
//! finalized on the version current then.

use std::ffi::c_int;
use std::sync::Arc;

use rusqlite::ffi;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::error::HotError;
use crate::plugin::SqlPlugin;
use crate::raw;
use crate::scope::Scope;
use crate::shared::Shared;
use crate::wire;

/// An aggregate the host declared.
#[derive(Clone)]
pub(crate) struct AggregateDef {
    pub sql_name: String,
    pub n_args: i32,
    pub plugin: usize,
    pub window: bool,
}

/// A group's accumulator: the scope whose lease steps it, and its bytes.
struct Acc<P: SqlPlugin> {
    scope: Arc<Scope<P>>,
    state: Vec<u8>,
    /// A step failed: the statement is failing, nothing more to compute.
    failed: bool,
}

struct Function<P: SqlPlugin> {
    shared: Arc<Shared<P>>,
    def: AggregateDef,
}

pub(crate) fn register<P: SqlPlugin>(
    conn: &Connection,
    shared: &Arc<Shared<P>>,
    def: &AggregateDef,
) -> rusqlite::Result<()> {
    let data = Box::new(Function {
        shared: Arc::clone(shared),
        def: def.clone(),
    });
    let window = def.window;
    // SAFETY: every callback takes `pApp` as the `Function<P>` given, and
    // the aggregate context as a `*mut Acc<P>` slot.
    unsafe {
        raw::create(conn, &def.sql_name, def.n_args, data, |db, name, n, app| {
            #[cfg(feature = "window")]
            if window {
                return ffi::sqlite3_create_window_function(
                    db,
                    name,
                    n,
                    ffi::SQLITE_UTF8,
                    app,
                    Some(x_step::<P>),
                    Some(x_final::<P>),
                    Some(x_value::<P>),
                    Some(x_inverse::<P>),
                    Some(raw::destroy::<Function<P>>),
                );
            }
            {
                let _ = window;
                ffi::sqlite3_create_function_v2(
                    db,
                    name,
                    n,
                    ffi::SQLITE_UTF8,
                    app,
                    None,
                    Some(x_step::<P>),
                    Some(x_final::<P>),
                    Some(raw::destroy::<Function<P>>),
                )
            }
        })
    }
}

fn request(op: u8, state: &[u8], args: &[ValueRef<'_>]) -> Result<Vec<u8>, wire::WireError> {
    let len =
        u32::try_from(state.len()).map_err(|_| wire::WireError::TooLong { len: state.len() })?;
    let mut out = Vec::with_capacity(5 + state.len() + 16);
    out.push(op);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(state);
    for a in args {
        wire::encode(*a, &mut out)?;
    }
    Ok(out)
}

impl<P: SqlPlugin> Function<P> {
    fn args_error(&self, source: wire::WireError) -> HotError {
        HotError::Arguments {
            object: self.def.sql_name.clone(),
            source,
        }
    }

    /// Steps (`s`) or inverts (`i`) the accumulator with a row.
    fn fold(&self, op: u8, args: &[ValueRef<'_>], acc: &mut Acc<P>) -> Result<(), HotError> {
        let i = self.def.plugin;
        let result = (|| {
            let input = request(op, &acc.state, args).map_err(|e| self.args_error(e))?;
            acc.scope.count(i);
            let call = acc.scope.lease(i)?;
            self.shared.run(i, call, &input, <[u8]>::to_vec)
        })();
        match result {
            Ok(state) => {
                acc.state = state;
                Ok(())
            }
            Err(e) => {
                acc.failed = true;
                Err(e)
            }
        }
    }

    /// The result (`f`, `v`) of `state` on `scope`'s lease.
    fn result(&self, op: u8, scope: &Scope<P>, state: &[u8]) -> Result<Value, HotError> {
        let i = self.def.plugin;
        let input = request(op, state, &[]).map_err(|e| self.args_error(e))?;
        scope.count(i);
        let call = scope.lease(i)?;
        self.shared.run_decoding(i, call, &input, wire::decode_one)
    }

    /// The group's accumulator, made at its first row on the statement's
    /// scope (leased now: the group is on this version from its first row).
    ///
    /// # Safety
    ///
    /// `ctx` is a running step of this aggregate.
    unsafe fn accumulator<'a>(
        &self,
        ctx: *mut ffi::sqlite3_context,
    ) -> Result<&'a mut Acc<P>, HotError> {
        // SAFETY: SQLite gives each group a zeroed slot the size of a
        // pointer, the same at every call of the group, until `x_final`.
        unsafe {
            let size = c_int::try_from(std::mem::size_of::<*mut Acc<P>>()).unwrap_or(8);
            let slot = ffi::sqlite3_aggregate_context(ctx, size).cast::<*mut Acc<P>>();
            if slot.is_null() {
                return Err(self.args_error(wire::WireError::Other("out of memory".into())));
            }
            if (*slot).is_null() {
                let scope = match raw::statement_scope(ctx, &self.shared) {
                    Some(p) => {
                        // The accumulator holds the scope too: a new
                        // reference to SQLite's.
                        Arc::increment_strong_count(p);
                        Arc::from_raw(p)
                    }
                    None => Arc::new(Scope::detached(&self.shared)),
                };
                scope.lease(self.def.plugin)?;
                *slot = Box::into_raw(Box::new(Acc {
                    scope,
                    state: Vec::new(),
                    failed: false,
                }));
            }
            Ok(&mut **slot)
        }
    }

    /// Takes the group's accumulator (`x_final`), or borrows it
    /// (`x_value`), if a row made one.
    ///
    /// # Safety
    ///
    /// `ctx` is a running final or value call of this aggregate.
    unsafe fn existing(ctx: *mut ffi::sqlite3_context) -> *mut *mut Acc<P> {
        // SAFETY: size 0 does not allocate: null if no row made the slot.
        unsafe { ffi::sqlite3_aggregate_context(ctx, 0).cast::<*mut Acc<P>>() }
    }

    fn finish(&self, op: u8, acc: Option<&Acc<P>>) -> Result<Option<Value>, String> {
        let r = match acc {
            Some(acc) if acc.failed => Ok(Value::Null),
            Some(acc) => self.result(op, &acc.scope, &acc.state),
            // No rows: the finalizing context has no statement scope to
            // read, so the call leases on its own.
            None => self.result(op, &Scope::detached(&self.shared), &[]),
        };
        r.map(Some).map_err(|e| e.to_string())
    }
}

/// The row's arguments, collected.
///
/// # Safety
///
/// As [`raw::arg`].
unsafe fn args<'a>(argc: c_int, argv: *mut *mut ffi::sqlite3_value) -> Vec<ValueRef<'a>> {
    let n = usize::try_from(argc).unwrap_or(0);
    // SAFETY: per the contract.
    (0..n).map(|i| unsafe { raw::arg(argv, i) }).collect()
}

/// Folds the row into the group's accumulator with `op` (`s` or `i`).
///
/// # Safety
///
/// `ctx` is a running step or inverse of an aggregate registered by
/// `register`; `argv` holds `argc` values.
unsafe fn fold_row<P: SqlPlugin>(
    op: u8,
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: per the contract.
    unsafe {
        let f = raw::user_data::<Function<P>>(ctx);
        raw::report(ctx, &f.def.sql_name, || {
            let acc = f.accumulator(ctx).map_err(|e| e.to_string())?;
            f.fold(op, &args(argc, argv), acc)
                .map(|()| None)
                .map_err(|e| e.to_string())
        });
    }
}

unsafe extern "C" fn x_step<P: SqlPlugin>(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite calls it as the step of an aggregate of `register`.
    unsafe { fold_row::<P>(b's', ctx, argc, argv) }
}

#[cfg(feature = "window")]
unsafe extern "C" fn x_inverse<P: SqlPlugin>(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite calls it as the inverse of a window function of
    // `register`.
    unsafe { fold_row::<P>(b'i', ctx, argc, argv) }
}

#[cfg(feature = "window")]
unsafe extern "C" fn x_value<P: SqlPlugin>(ctx: *mut ffi::sqlite3_context) {
    // SAFETY: registered by `register`; the slot, if any, holds the group's
    // accumulator until `x_final`.
    unsafe {
        let f = raw::user_data::<Function<P>>(ctx);
        raw::report(ctx, &f.def.sql_name, || {
            let slot = Function::<P>::existing(ctx);
            let acc = (!slot.is_null() && !(*slot).is_null()).then(|| &**slot);
            f.finish(b'v', acc)
        });
    }
}

unsafe extern "C" fn x_final<P: SqlPlugin>(ctx: *mut ffi::sqlite3_context) {
    // SAFETY: as `x_value`; the accumulator is taken out of its slot, so
    // it is dropped exactly once, here, whatever happens.
    unsafe {
        let f = raw::user_data::<Function<P>>(ctx);
        let slot = Function::<P>::existing(ctx);
        let acc = if slot.is_null() || (*slot).is_null() {
            None
        } else {
            Some(Box::from_raw(std::mem::replace(
                &mut *slot,
                std::ptr::null_mut(),
            )))
        };
        raw::report(ctx, &f.def.sql_name, || f.finish(b'f', acc.as_deref()));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(acc)));
    }
}

/// For plugins: splits an aggregate request into its operation, its
/// accumulator and the rest (the arguments' wire values).
///
/// # Errors
///
/// A request too short for its accumulator's length.
pub fn parse_request(request: &[u8]) -> Result<(u8, &[u8], &[u8]), wire::WireError> {
    let truncated = wire::WireError::Truncated { at: 0 };
    let (&op, rest) = request.split_first().ok_or(truncated.clone())?;
    let len: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(truncated.clone())?;
    let len = u32::from_le_bytes(len) as usize;
    let end = len.checked_add(4).ok_or(truncated.clone())?;
    let state = rest.get(4..end).ok_or(truncated)?;
    Ok((op, state, &rest[end..]))
}
