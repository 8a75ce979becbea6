//! The database: a SQLite file in WAL mode with the tables the clients
//! write (`t`, scored by the `score` UDF; `docs`, indexed by the token
//! index; `prices`, whose amounts the `money` column type encodes), the
//! background job's log, and a change log filled by triggers, whose rowid
//! is the change's position: the change-data sink's input.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Opens (and on first use creates) the database at `path`.
///
/// # Errors
///
/// SQLite's.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, x INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
-- Amounts stored by the `money` column type, beside their plain value.
CREATE TABLE IF NOT EXISTS prices(id INTEGER PRIMARY KEY, cents INTEGER NOT NULL, amount BLOB);
-- What the background job's ticks wrote.
CREATE TABLE IF NOT EXISTS job_log(tick INTEGER NOT NULL, version TEXT NOT NULL);
-- Positions are rowids: INTEGER PRIMARY KEY without AUTOINCREMENT takes
-- max + 1, and rows are never deleted, so committed positions are 1, 2, 3...
CREATE TABLE IF NOT EXISTS changes(
    pos INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL,
    id INTEGER NOT NULL, val TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS t_ins AFTER INSERT ON t BEGIN
    INSERT INTO changes(tbl, op, id, val) VALUES ('t', 'I', new.id, new.x); END;
CREATE TRIGGER IF NOT EXISTS t_upd AFTER UPDATE ON t BEGIN
    INSERT INTO changes(tbl, op, id, val) VALUES ('t', 'U', new.id, new.x); END;
CREATE TRIGGER IF NOT EXISTS docs_ins AFTER INSERT ON docs BEGIN
    INSERT INTO changes(tbl, op, id, val) VALUES ('d', 'I', new.id, new.body); END;
CREATE TRIGGER IF NOT EXISTS docs_upd AFTER UPDATE ON docs BEGIN
    INSERT INTO changes(tbl, op, id, val) VALUES ('d', 'U', new.id, new.body); END;
";

/// One committed change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its position.
    pub pos: u64,
    /// `t` or `d` (docs).
    pub table: u8,
    /// `I` or `U`.
    pub op: u8,
    /// The row.
    pub id: i64,
    /// The new value.
    pub value: String,
}

impl Change {
    /// The line the sink writes for it.
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.pos, self.table as char, self.op as char, self.id, self.value
        )
    }
}

/// Changes after `pos`, in order, at most `limit`.
///
/// # Errors
///
/// SQLite's.
pub fn changes_after(conn: &Connection, pos: u64, limit: usize) -> rusqlite::Result<Vec<Change>> {
    let mut stmt = conn.prepare_cached(
        "SELECT pos, tbl, op, id, val FROM changes WHERE pos > ?1 ORDER BY pos LIMIT ?2",
    )?;
    let rows = stmt.query_map((pos as i64, limit as i64), |r| {
        let table: String = r.get(1)?;
        let op: String = r.get(2)?;
        Ok(Change {
            pos: r.get::<_, i64>(0)? as u64,
            table: table.bytes().next().unwrap_or(b'?'),
            op: op.bytes().next().unwrap_or(b'?'),
            id: r.get(3)?,
            value: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The sink's batch encoding of `changes` (see the `cdc` plugin).
pub fn encode_batch(changes: &[Change]) -> Vec<u8> {
    let mut out = vec![b'D'];
    for c in changes {
        out.extend_from_slice(&c.pos.to_le_bytes());
        out.push(c.table);
        out.push(c.op);
        out.extend_from_slice(&c.id.to_le_bytes());
        out.extend_from_slice(&(c.value.len() as u32).to_le_bytes());
        out.extend_from_slice(c.value.as_bytes());
    }
    out
}

/// The tokens of a document, by the index plugin's rule (lowercase runs
/// of ASCII letters and digits): what a rebuild from the table indexes.
pub fn tokens(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}
