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

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use rusqlite::functions::{Aggregate, Context, FunctionFlags, WindowAggregate};
use rusqlite::types::Value;
use rusqlite::Connection;

use crate::error::HotError;
use crate::plugin::SqlPlugin;
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
pub(crate) struct Acc<P: SqlPlugin> {
    scope: Arc<Scope<P>>,
    state: Vec<u8>,
    /// A step failed: the statement is failing, nothing more to compute.
    failed: bool,
}

struct Function<P: SqlPlugin> {
    shared: Arc<Shared<P>>,
    def: AggregateDef,
}

type A<P> = AssertUnwindSafe<Acc<P>>;

pub(crate) fn register<P: SqlPlugin>(
    conn: &Connection,
    shared: &Arc<Shared<P>>,
    def: &AggregateDef,
) -> rusqlite::Result<()> {
    let f = Function {
        shared: Arc::clone(shared),
        def: def.clone(),
    };
    let flags = FunctionFlags::SQLITE_UTF8;
    if def.window {
        conn.create_window_function(def.sql_name.as_str(), def.n_args, flags, f)
    } else {
        conn.create_aggregate_function(def.sql_name.as_str(), def.n_args, flags, f)
    }
}

fn request(op: u8, state: &[u8], args: Option<&Context<'_>>) -> Result<Vec<u8>, wire::WireError> {
    let len =
        u32::try_from(state.len()).map_err(|_| wire::WireError::TooLong { len: state.len() })?;
    let mut out = Vec::with_capacity(5 + state.len() + 16);
    out.push(op);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(state);
    if let Some(ctx) = args {
        for i in 0..ctx.len() {
            wire::encode(ctx.get_raw(i), &mut out)?;
        }
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

    /// Steps (`s`) or inverts (`i`) the accumulator with the row in `ctx`.
    fn fold(&self, op: u8, ctx: &Context<'_>, acc: &mut Acc<P>) -> rusqlite::Result<()> {
        let i = self.def.plugin;
        let result = (|| {
            let input = request(op, &acc.state, Some(ctx)).map_err(|e| self.args_error(e))?;
            acc.scope.count(i);
            let call = acc.scope.lease(i)?;
            self.shared.run(i, call, &input, |reply| Ok(reply.to_vec()))
        })();
        match result {
            Ok(state) => {
                acc.state = state;
                Ok(())
            }
            Err(e) => {
                acc.failed = true;
                Err(e.into())
            }
        }
    }

    /// The result (`f`, `v`) of `state` on `scope`'s lease.
    fn result(&self, op: u8, scope: &Scope<P>, state: &[u8]) -> rusqlite::Result<Value> {
        let i = self.def.plugin;
        let input = request(op, state, None).map_err(|e| self.args_error(e))?;
        scope.count(i);
        let call = scope.lease(i)?;
        let value = self.shared.run(i, call, &input, |reply| {
            wire::decode_one(reply).map_err(|source| HotError::Reply {
                plugin: self.shared.plugins[i].clone(),
                version: call.manifest().version().to_string(),
                source,
            })
        })?;
        Ok(value)
    }
}

impl<P: SqlPlugin> Aggregate<A<P>, Value> for Function<P> {
    fn init(&self, ctx: &mut Context<'_>) -> rusqlite::Result<A<P>> {
        let scope = Scope::of(&self.shared, ctx)?;
        // Lease now: the group is on this version from its first row.
        scope.lease(self.def.plugin)?;
        Ok(AssertUnwindSafe(Acc {
            scope,
            state: Vec::new(),
            failed: false,
        }))
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut A<P>) -> rusqlite::Result<()> {
        self.fold(b's', ctx, acc)
    }

    fn finalize(&self, _: &mut Context<'_>, acc: Option<A<P>>) -> rusqlite::Result<Value> {
        match acc {
            Some(acc) if acc.failed => Ok(Value::Null),
            Some(acc) => self.result(b'f', &acc.scope, &acc.state),
            // No rows: the finalizing context has no statement scope to
            // read, so the call leases on its own.
            None => self.result(b'f', &Scope::detached(&self.shared), &[]),
        }
    }
}

impl<P: SqlPlugin> WindowAggregate<A<P>, Value> for Function<P> {
    fn value(&self, acc: Option<&mut A<P>>) -> rusqlite::Result<Value> {
        match acc {
            Some(acc) if acc.failed => Ok(Value::Null),
            Some(acc) => self.result(b'v', &acc.scope, &acc.state),
            None => self.result(b'v', &Scope::detached(&self.shared), &[]),
        }
    }

    fn inverse(&self, ctx: &mut Context<'_>, acc: &mut A<P>) -> rusqlite::Result<()> {
        self.fold(b'i', ctx, acc)
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
