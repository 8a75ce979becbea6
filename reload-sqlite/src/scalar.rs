//! Scalar functions: `f(args)` calls a plugin once per row, on the
//! statement's lease of it (or, with [`Hot::lease_per_row`](crate::Hot::lease_per_row),
//! a lease of the row's own).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use smallvec::SmallVec;

use crate::error::{panic_message, HotError};
use crate::plugin::SqlPlugin;
use crate::scope::Scope;
use crate::shared::Shared;
use crate::wire::{Codec, WireError};

/// A scalar function the host declared.
#[derive(Clone)]
pub(crate) struct ScalarDef {
    pub sql_name: String,
    pub n_args: i32,
    pub plugin: usize,
    pub codec: Arc<dyn Codec>,
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
    let shared = Arc::clone(shared);
    let d = def.clone();
    // Not deterministic: a reload may change what it computes, so SQLite
    // must not fold calls across rows or statements.
    conn.create_scalar_function(
        def.sql_name.as_str(),
        def.n_args,
        FunctionFlags::SQLITE_UTF8,
        move |ctx| call(&shared, &d, ctx),
    )
}

fn call<P: SqlPlugin>(
    shared: &Arc<Shared<P>>,
    def: &ScalarDef,
    ctx: &Context<'_>,
) -> rusqlite::Result<Value> {
    let args: SmallVec<[ValueRef<'_>; 4]> = (0..ctx.len()).map(|i| ctx.get_raw(i)).collect();
    let mut buf = BUFFER
        .try_with(|b| std::mem::take(&mut *b.borrow_mut()))
        .unwrap_or_default();
    buf.clear();
    let result = (|| -> rusqlite::Result<Value> {
        let encoded = catch_unwind(AssertUnwindSafe(|| def.codec.encode(&args, &mut buf)))
            .unwrap_or_else(|payload| {
                Err(WireError::Other(format!(
                    "the codec panicked: {}",
                    panic_message(&*payload)
                )))
            });
        encoded.map_err(|source| HotError::Arguments {
            object: def.sql_name.clone(),
            source,
        })?;
        let i = def.plugin;
        let decode = |call: &reload_core::registry::Call<'_, P>| {
            shared.run(i, call, &buf, |reply| {
                def.codec.decode(reply).map_err(|source| HotError::Reply {
                    plugin: shared.plugins[i].clone(),
                    version: call.manifest().version().to_string(),
                    source,
                })
            })
        };
        if shared.per_row {
            let call = shared.enter(i)?;
            shared.counters[i]
                .calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(decode(&call)?)
        } else {
            let scope = Scope::of(shared, ctx)?;
            scope.count(i);
            Ok(decode(scope.lease(i)?)?)
        }
    })();
    let _ = BUFFER.try_with(|b| *b.borrow_mut() = buf);
    result
}
