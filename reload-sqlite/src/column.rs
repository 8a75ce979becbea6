//! A schema-typed kind: a plugin that defines how the stored values of a
//! column are encoded (a logical type: a point, a decimal, a CRDT's
//! state), and whose new versions must read every stored value.
//!
//! # The protocol
//!
//! - `E` and one [`wire`](mod@crate::wire) value: the bytes to store
//!   (`name_encode(v)` returns them as a BLOB);
//! - `D` and stored bytes: the value they stand for, one wire value
//!   (`name_decode(b)`).
//!
//! # The check
//!
//! Before a reload of such a plugin from SQL (`reload_deploy`), a probe of
//! the new version (its own copy, linked and initialized, never serving)
//! decodes every non-NULL value of each column declared with
//! [`Hot::column_type`](crate::Hot::column_type), in the database the
//! deploy runs in. One value it cannot read refuses the deploy
//! ([`DeployError::Incompatible`], naming the table, the column, the row
//! and why) before the registry is touched: the old version serves on, and
//! the stored bytes stay as they are. [`check_column`] is the same check
//! for a host that deploys from Rust.

// Deploy errors are large (names, paths, the registry's reason) and on
// the cold path: a deploy, never a call. Boxing them would buy nothing.
#![allow(clippy::result_large_err)]
use std::sync::Arc;

use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::error::DeployError;
use crate::plugin::SqlPlugin;
use crate::wire::{self, Codec, WireError};

/// A column whose values a plugin encodes.
#[derive(Clone, Debug)]
pub(crate) struct ColumnDef {
    pub plugin: String,
    pub table: String,
    pub column: String,
}

/// `E` + the value in; the stored bytes out, as a BLOB.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Encode;

impl Codec for Encode {
    fn encode(&self, args: &[ValueRef<'_>], out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(b'E');
        args.iter().try_for_each(|a| wire::encode(*a, out))
    }

    fn decode(&self, reply: &[u8]) -> Result<Value, WireError> {
        Ok(Value::Blob(reply.to_vec()))
    }

    fn shortcut(&self, args: &[ValueRef<'_>]) -> Option<Value> {
        matches!(args, [ValueRef::Null]).then_some(Value::Null)
    }
}

/// `D` + the stored bytes in; the value out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decode;

impl Codec for Decode {
    fn encode(&self, args: &[ValueRef<'_>], out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(b'D');
        match args.first() {
            Some(ValueRef::Blob(b)) => out.extend_from_slice(b),
            _ => return Err(WireError::Other("decodes a BLOB".into())),
        }
        Ok(())
    }

    fn decode(&self, reply: &[u8]) -> Result<Value, WireError> {
        wire::decode_one(reply)
    }

    fn shortcut(&self, args: &[ValueRef<'_>]) -> Option<Value> {
        matches!(args, [ValueRef::Null]).then_some(Value::Null)
    }
}

pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", rusqlite::vtab::escape_double_quote(identifier))
}

/// Decodes every non-NULL value of `table.column` on `conn` with `plugin`
/// (a version not serving yet); returns how many it read.
///
/// # Errors
///
/// [`DeployError::Incompatible`] at the first value it cannot read (a
/// failure, a panic, a reply that does not decode, a value that is not a
/// BLOB); [`DeployError::Package`] if the column cannot be read.
pub fn check_column<P: SqlPlugin>(
    conn: &Connection,
    plugin: &P,
    name: &str,
    version: &str,
    table: &str,
    column: &str,
) -> Result<u64, DeployError> {
    let incompatible = |rowid: i64, reason: String| DeployError::Incompatible {
        plugin: name.to_owned(),
        version: version.to_owned(),
        table: table.to_owned(),
        column: column.to_owned(),
        rowid,
        reason,
    };
    let sql = format!(
        "SELECT rowid, {c} FROM {t} WHERE {c} IS NOT NULL",
        c = quote(column),
        t = quote(table)
    );
    let unreadable = |e: rusqlite::Error| DeployError::Package {
        plugin: name.to_owned(),
        path: format!("{table}.{column}"),
        message: format!("cannot read the column: {e}"),
    };
    let mut stmt = conn.prepare(&sql).map_err(unreadable)?;
    let mut rows = stmt.query([]).map_err(unreadable)?;
    let mut n = 0;
    let mut request = Vec::new();
    while let Some(row) = rows.next().map_err(unreadable)? {
        let rowid: i64 = row.get(0).map_err(unreadable)?;
        let bytes = match row.get_ref(1).map_err(unreadable)? {
            ValueRef::Blob(b) => b,
            other => {
                return Err(incompatible(
                    rowid,
                    format!("a stored {:?}, not a BLOB", other.data_type()),
                ))
            }
        };
        request.clear();
        request.push(b'D');
        request.extend_from_slice(bytes);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plugin.call_sql(&request, |reply| wire::decode_one(reply).map(drop))
        }));
        match decoded {
            Ok(Ok(Ok(()))) => n += 1,
            Ok(Ok(Err(e))) => {
                return Err(incompatible(
                    rowid,
                    format!("its reply does not decode: {e}"),
                ))
            }
            Ok(Err(e)) => return Err(incompatible(rowid, e.to_string())),
            Err(p) => {
                return Err(incompatible(
                    rowid,
                    format!("it panicked: {}", crate::error::panic_message(&*p)),
                ))
            }
        }
    }
    Ok(n)
}

/// The columns of `plugin` among `columns`.
pub(crate) fn of<'a>(
    columns: &'a [ColumnDef],
    plugin: &'a str,
) -> impl Iterator<Item = &'a ColumnDef> + 'a {
    columns.iter().filter(move |c| c.plugin == plugin)
}

pub(crate) type Columns = Arc<[ColumnDef]>;
