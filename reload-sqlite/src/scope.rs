//! One version per statement: a statement's leases live in SQLite's own
//! per-statement auxiliary data.
//!
//! # The mechanism
//!
//! `sqlite3_set_auxdata` with a **negative** key attaches a value to the
//! running prepared statement as a whole, shared by every function call in
//! it, and SQLite runs its destructor when the statement is reset or
//! finalized (`sqlite3VdbeDeleteAuxData(.., -1, ..)` on both paths). SQLite
//! uses this for its own JSON functions (a parse cache under key
//! `-429938`); `sqlite3.c` documents it above `sqlite3_get_auxdata`.
//!
//! So the first call into any hot object of a statement creates a
//! scope there; each plugin is leased the first time the statement
//! calls it, and every later call of the statement uses that lease. When
//! the statement finishes, is reset (rusqlite resets on `Rows` drop, on
//! `query_row`, on returning a cached statement) or is finalized, SQLite
//! drops the scope and the leases go back: a statement dropped
//! half-iterated releases its versions at once, whatever API ran it.
//! There is no pointer into anyone's stack, and nothing for the host to
//! wrap.
//!
//! Each [`Hot`](crate::Hot) has its own key, so two attached to one
//! connection (two plugin types) never see each other's scope.
//!
//! # What counts as a statement
//!
//! - A statement run from inside a plugin call, or from a function of the
//!   host, is another prepared statement: its own scope.
//! - A trigger's program runs as a sub-program with its own auxiliary
//!   data, which SQLite drops when that firing ends: each firing of a
//!   trigger is a scope of its own (every call of the firing on one
//!   version; the next firing may be on a newer one).
//! - A virtual table cursor is not a function call and cannot see the
//!   statement's auxiliary data: it leases at `xOpen` and gives back at
//!   `xClose` (see [`crate::table`]), which SQLite calls at the
//!   statement's start and end.
//! - An aggregate's accumulator holds the scope it started in, so a group
//!   finishes on the version it started on even if the statement was
//!   reset first.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use reload_core::registry::OwnedCall;

use crate::error::HotError;
use crate::plugin::SqlPlugin;
use crate::shared::Shared;

/// Keys of the scopes, one per `Hot`: negative (statement-wide), far from
/// SQLite's own (`-429938`).
static NEXT_KEY: AtomicI32 = AtomicI32::new(-0x5243_0000);

pub(crate) fn new_key() -> c_int {
    NEXT_KEY.fetch_sub(1, Relaxed)
}

/// A statement's leases, one per plugin it called, and what it called.
pub(crate) struct Scope<P: SqlPlugin> {
    shared: Arc<Shared<P>>,
    leases: Box<[OnceLock<OwnedCall<P>>]>,
    /// Calls per plugin in this statement. A statement is stepped by one
    /// thread at a time (SQLite holds the connection's mutex), so a load
    /// and a store suffice: no read-modify-write per row.
    calls: Box<[AtomicU64]>,
}

impl<P: SqlPlugin> Scope<P> {
    fn new(shared: &Arc<Shared<P>>) -> Self {
        let n = shared.plugins.len();
        Scope {
            shared: Arc::clone(shared),
            leases: (0..n).map(|_| OnceLock::new()).collect(),
            calls: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A new scope: a statement's (kept by SQLite, `raw::statement_scope`),
    /// or one of its own (a table cursor, an aggregate with no rows).
    pub(crate) fn detached(shared: &Arc<Shared<P>>) -> Self {
        Scope::new(shared)
    }

    /// Plugin `i`'s lease for this statement, taken at its first call.
    pub(crate) fn lease(&self, i: usize) -> Result<&OwnedCall<P>, HotError> {
        if let Some(call) = self.leases[i].get() {
            return Ok(call);
        }
        let call = self.shared.enter(i)?;
        // Only this statement's thread sets it; were it set meanwhile, ours
        // is dropped and theirs is the statement's.
        let _ = self.leases[i].set(call);
        match self.leases[i].get() {
            Some(call) => Ok(call),
            None => Err(HotError::Call {
                plugin: self.shared.plugins[i].clone(),
                version: String::new(),
                message: "the statement's lease vanished".to_owned(),
            }),
        }
    }

    /// Counts one call of plugin `i`.
    pub(crate) fn count(&self, i: usize) {
        let c = &self.calls[i];
        c.store(c.load(Relaxed) + 1, Relaxed);
    }
}

impl<P: SqlPlugin> Drop for Scope<P> {
    fn drop(&mut self) {
        for (i, c) in self.calls.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                self.shared.counters[i].calls.fetch_add(n, Relaxed);
            }
        }
        // The leases go back here, as the fields drop.
    }
}
