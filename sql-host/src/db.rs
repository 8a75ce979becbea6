//! The database: a SQLite file in WAL mode with the tables the clients
//! write (`t`, scored by the `score` UDF; `docs`, indexed by the token
//! index; `prices`, whose amounts the `money` column type encodes), the
//! background job's log, and the change log of `reload_sqlite::feed`
//! (triggers on `t` and `docs`), whose rowid is the change's position: the
//! input of the change-data sink and of the index.

use std::path::Path;
use std::time::Duration;

use reload_sqlite::feed::Change;
use reload_sqlite::Feed;
use rusqlite::types::Value;
use rusqlite::Connection;

/// The changes the sink and the index consume.
pub fn feed() -> Feed {
    Feed::new("changes")
        .capture("t", "x")
        .capture("docs", "body")
}

/// Opens (and on first use creates) the database at `path`.
///
/// # Errors
///
/// SQLite's, or the feed's.
pub fn open(path: &Path) -> Result<Connection, reload_sqlite::FeedError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    feed().install(&conn)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, x INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
-- Amounts stored by the `money` column type, beside their plain value.
CREATE TABLE IF NOT EXISTS prices(id INTEGER PRIMARY KEY, cents INTEGER NOT NULL, amount BLOB);
-- What the background job's ticks wrote.
CREATE TABLE IF NOT EXISTS job_log(tick INTEGER NOT NULL, version TEXT NOT NULL);
";

/// The line the sink writes for `change` (as the `cdc` plugin formats it).
pub fn line(change: &Change) -> String {
    let value = match &change.value {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    };
    format!(
        "{}\t{}\t{}\t{}\t{value}",
        change.pos,
        change.table,
        change.op.byte() as char,
        change.rowid
    )
}

/// The tokens of a document, by the index plugin's rule (lowercase runs
/// of ASCII letters and digits): what a rebuild from the table indexes.
pub fn tokens(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}
