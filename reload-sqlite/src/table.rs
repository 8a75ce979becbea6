//! A storage backend as a virtual table: `SELECT .. FROM name` scans rows
//! a plugin returns, and each scan stays on one version from its first row
//! to its last ("the old storage continues until drained").
//!
//! # The protocol
//!
//! The table's columns are the host's ([`Hot::table`](crate::Hot::table));
//! the plugin serves rows in batches:
//!
//! - request: `S`, then the position to read from (`u64`, little-endian;
//!   0 at the start of a scan);
//! - reply: the position of the next batch (`u64`, little-endian;
//!   `u64::MAX` when this batch is the last), then the batch's rows, each
//!   as many [`wire`](mod@crate::wire) values as the table has columns.
//!
//! A reply that does not decode, a row of the wrong width or a plugin that
//! returns empty batches without end is a SQL error naming the plugin, its
//! version and the cause.
//!
//! # Versions
//!
//! A cursor leases the plugin when SQLite opens it (`xOpen`, as the
//! statement starts) and gives the lease back when SQLite closes it
//! (`xClose`, when the statement is reset or finalized). Every batch of a
//! scan, and of every rescan by the same cursor (the inner side of a
//! join), comes from that version; a scan that outlives reloads keeps the
//! old version alive, and the old version's drain waits for it (or the
//! reload's options decide: a quiesced reload times out and rolls back, an
//! immediate one returns the old version draining).

use std::marker::PhantomData;
use std::os::raw::c_int;
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::vtab::{
    self, eponymous_only_module, sqlite3_vtab, sqlite3_vtab_cursor, Filters, IndexInfo, VTab,
    VTabConfig, VTabConnection, VTabCursor,
};
use rusqlite::Connection;

use crate::error::HotError;
use crate::plugin::SqlPlugin;
use crate::scope::Scope;
use crate::shared::Shared;
use crate::wire;

/// Empty batches in a row before a scan is declared stuck.
const MAX_EMPTY_BATCHES: u32 = 1024;

/// A table the host declared.
#[derive(Clone)]
pub(crate) struct TableDef {
    pub name: String,
    pub plugin: usize,
    pub columns: Vec<String>,
}

pub(crate) struct TableAux<P: SqlPlugin> {
    shared: Arc<Shared<P>>,
    def: TableDef,
}

pub(crate) fn register<P: SqlPlugin>(
    conn: &Connection,
    shared: &Arc<Shared<P>>,
    def: &TableDef,
) -> rusqlite::Result<()> {
    let aux = Arc::new(TableAux {
        shared: Arc::clone(shared),
        def: def.clone(),
    });
    conn.create_module(
        def.name.as_str(),
        eponymous_only_module::<HotTable<P>>(),
        Some(aux),
    )
}

#[repr(C)]
pub(crate) struct HotTable<P: SqlPlugin> {
    /// SQLite's part; must come first.
    base: sqlite3_vtab,
    aux: Arc<TableAux<P>>,
}

fn module_error(e: &HotError) -> rusqlite::Error {
    rusqlite::Error::ModuleError(e.to_string())
}

// SAFETY: `HotTable` is `repr(C)` with `sqlite3_vtab` first, as the trait
// requires.
unsafe impl<'vtab, P: SqlPlugin> VTab<'vtab> for HotTable<P> {
    type Aux = Arc<TableAux<P>>;
    type Cursor = HotCursor<'vtab, P>;

    fn connect(
        db: &mut VTabConnection,
        aux: Option<&Self::Aux>,
        _args: &[&[u8]],
    ) -> rusqlite::Result<(String, Self)> {
        let aux = aux
            .cloned()
            .ok_or_else(|| rusqlite::Error::ModuleError("a hot table without its plugin".into()))?;
        // Reading it calls a plugin: only from top-level SQL, never from
        // a trigger or a view's schema where a reader would not expect it.
        db.config(VTabConfig::DirectOnly)?;
        let columns: Vec<String> = aux
            .def
            .columns
            .iter()
            .map(|c| format!("\"{}\"", vtab::escape_double_quote(c)))
            .collect();
        let sql = format!("CREATE TABLE x({})", columns.join(", "));
        Ok((
            sql,
            HotTable {
                base: sqlite3_vtab::default(),
                aux,
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<()> {
        // A full scan, every time: constraints are SQLite's to check.
        info.set_estimated_cost(1_000_000.0);
        Ok(())
    }

    fn open(&'vtab mut self) -> rusqlite::Result<Self::Cursor> {
        let aux = Arc::clone(&self.aux);
        let scope = Scope::detached(&aux.shared);
        // The scan's version, from the statement's start to its end.
        scope.lease(aux.def.plugin).map_err(|e| {
            aux.shared.counters[aux.def.plugin].failed(&e);
            module_error(&e)
        })?;
        Ok(HotCursor {
            base: sqlite3_vtab_cursor::default(),
            aux,
            scope,
            rows: Vec::new(),
            at: 0,
            next: None,
            rowid: 0,
            phantom: PhantomData,
        })
    }
}

#[repr(C)]
pub(crate) struct HotCursor<'vtab, P: SqlPlugin> {
    /// SQLite's part; must come first.
    base: sqlite3_vtab_cursor,
    aux: Arc<TableAux<P>>,
    /// Holds the cursor's lease.
    scope: Scope<P>,
    /// The batch, row after row, flattened.
    rows: Vec<Value>,
    /// The current row's first value in `rows`.
    at: usize,
    /// Where the next batch starts; `None` after the last.
    next: Option<u64>,
    rowid: i64,
    phantom: PhantomData<&'vtab HotTable<P>>,
}

impl<P: SqlPlugin> HotCursor<'_, P> {
    fn width(&self) -> usize {
        self.aux.def.columns.len().max(1)
    }

    /// Reads batches until one has rows or the scan ends.
    fn fetch(&mut self) -> Result<(), HotError> {
        let i = self.aux.def.plugin;
        let shared = Arc::clone(&self.aux.shared);
        let want = self.aux.def.columns.len();
        let mut empty = 0;
        self.rows.clear();
        self.at = 0;
        while let Some(position) = self.next {
            let call = self.scope.lease(i)?;
            let version = || call.manifest().version().to_string();
            let mut request = [0u8; 9];
            request[0] = b'S';
            request[1..].copy_from_slice(&position.to_le_bytes());
            self.scope.count(i);
            let (next, rows) = shared
                .run(i, call, &request, |reply| {
                    let bad = |source| HotError::Reply {
                        plugin: shared.plugins[i].clone(),
                        version: version(),
                        source,
                    };
                    let (head, mut rest) = reply
                        .split_first_chunk::<8>()
                        .ok_or(bad(wire::WireError::Truncated { at: 0 }))?;
                    let next = u64::from_le_bytes(*head);
                    let mut rows = Vec::new();
                    while !rest.is_empty() {
                        let mut got = 0;
                        while got < want && !rest.is_empty() {
                            let at = reply.len() - rest.len();
                            let (value, after) = wire::decode_at(rest, at).map_err(bad)?;
                            rows.push(Value::from(value));
                            rest = after;
                            got += 1;
                        }
                        if got != want {
                            return Err(HotError::Columns {
                                plugin: shared.plugins[i].clone(),
                                version: version(),
                                table: self.aux.def.name.clone(),
                                got,
                                want,
                            });
                        }
                    }
                    Ok((next, rows))
                })?
                .map_err(|e| shared.failed(i, e))?;
            self.next = (next != u64::MAX).then_some(next);
            if !rows.is_empty() {
                self.rows = rows;
                return Ok(());
            }
            empty += 1;
            if empty >= MAX_EMPTY_BATCHES {
                let e = HotError::Call {
                    plugin: shared.plugins[i].clone(),
                    version: version(),
                    message: format!(
                        "{MAX_EMPTY_BATCHES} empty batches in a row: the scan makes no progress"
                    ),
                };
                shared.counters[i].failed(&e);
                return Err(e);
            }
        }
        Ok(())
    }
}

// SAFETY: `HotCursor` is `repr(C)` with `sqlite3_vtab_cursor` first, as the
// trait requires.
unsafe impl<P: SqlPlugin> VTabCursor for HotCursor<'_, P> {
    fn filter(&mut self, _: c_int, _: Option<&str>, _: &Filters<'_>) -> rusqlite::Result<()> {
        self.next = Some(0);
        self.rowid = 0;
        self.fetch().map_err(|e| module_error(&e))
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.rowid += 1;
        self.at += self.width();
        if self.at >= self.rows.len() {
            self.fetch().map_err(|e| module_error(&e))?;
        }
        Ok(())
    }

    fn eof(&self) -> bool {
        self.at >= self.rows.len()
    }

    fn column(&self, ctx: &mut vtab::Context, i: c_int) -> rusqlite::Result<()> {
        let value = usize::try_from(i)
            .ok()
            .and_then(|i| self.rows.get(self.at + i))
            .unwrap_or(&Value::Null);
        ctx.set_result(value)
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.rowid)
    }
}
