//! The database's committed changes, fed to plugins in order and exactly
//! once: change-data sinks, and index kinds kept beside the tables.
//!
//! # Design
//!
//! A [`Feed`] names the tables and columns it captures and installs, on
//! the database, a change log and triggers that append every insert,
//! update and delete of those tables to it. The log is an ordinary table
//! of the database, written inside the writer's transaction, so it holds
//! exactly the committed changes (a rolled-back write leaves nothing) and
//! any client's writes are captured, not only this crate's: the triggers
//! are plain SQL, needing no function of the crate on the writing
//! connection. A change's **position** is its rowid in the log
//! (`AUTOINCREMENT`, so positions are never reused, even after a
//! [`trim`](Feed::trim)). SQLite has one writer at a time and a
//! transaction holds the write lock from its first write to its commit,
//! so positions follow the commit order and a reader never sees a
//! position before the ones below it.
//!
//! A consumer (a plugin) owns its position: it is part of its state, and
//! a reload carries it (a sink's stream `checkpoint` → `resume`; an
//! index's `persist` → `check_compat` → `open`, with the position inside
//! the persisted bytes). [`Feed::deliver`] asks the consumer for its
//! position and sends the changes after it, both under one lease, so the
//! version that reports the position is the version that receives the
//! batch. The crate resends from the reported position whatever happened
//! before (a failed delivery, a reload, a crash of the host): delivery is
//! at least once, and a consumer that skips what is at or below its
//! position and moves its position only with what it has applied makes it
//! exactly once.
//!
//! # The protocol
//!
//! - `P` → the consumer's position (`u64`, little-endian, 8 bytes): the
//!   last change it has applied, 0 for none.
//! - `D` followed by records → its position after applying them (8
//!   bytes). It may apply a prefix (the rest is sent again); it must not
//!   claim a position it was not sent.
//!
//! ```text
//! record := position u64 | op u8 (b'I', b'U', b'D') | rowid i64
//!         | table length u32 | table (UTF-8) | value (crate::wire)
//! ```
//!
//! Integers are little-endian. The value is the captured column's new
//! value, NULL for a delete. [`decode_batch`] reads a batch back (a Rust
//! consumer, a test).
//!
//! # What the crate checks
//!
//! A reply that is not 8 bytes, a position below the one reported before
//! or past the last change sent, a consumer behind the start of a trimmed
//! log, and a consumer that takes nothing are each a [`FeedError`] naming
//! the plugin and version; the consumer's position does not move, and the
//! next delivery sends the same changes again.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::Mutex;

use reload_core::registry::{EnterError, Registry};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use thiserror::Error;

use crate::column::quote;
use crate::error::panic_message;
use crate::plugin::SqlPlugin;
use crate::wire::{self, WireError};

/// Changes sent in one `D` call by [`Feed::catch_up`] and the pump.
pub const DEFAULT_BATCH: usize = 256;

/// Which changes a database feeds its consumers, and where it logs them.
///
/// Clones share one turn per consumer: deliveries to a consumer through a
/// feed and its clones (a [`Pump`](crate::Pump), the host's own
/// [`catch_up`](Feed::catch_up)) take turns, so one consumer's position is
/// never read by one delivery while another moves it.
#[derive(Clone, Debug)]
pub struct Feed {
    log: String,
    captures: Vec<(String, String)>,
    turns: Arc<Mutex<BTreeMap<String, Arc<Mutex<()>>>>>,
}

/// What a change did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`: the change's value is NULL.
    Delete,
}

impl Op {
    /// Its byte in the log and in a record.
    pub fn byte(self) -> u8 {
        match self {
            Op::Insert => b'I',
            Op::Update => b'U',
            Op::Delete => b'D',
        }
    }

    /// The op of a byte.
    pub fn from_byte(b: u8) -> Option<Op> {
        match b {
            b'I' => Some(Op::Insert),
            b'U' => Some(Op::Update),
            b'D' => Some(Op::Delete),
            _ => None,
        }
    }
}

/// One committed change.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Its position in the log.
    pub pos: u64,
    /// The table written.
    pub table: String,
    /// What was done.
    pub op: Op,
    /// The row's rowid.
    pub rowid: i64,
    /// The captured column's new value (NULL for a delete).
    pub value: Value,
}

/// One [`Feed::deliver`]: the version that took it, and how far it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The consumer's version.
    pub version: String,
    /// Its position before.
    pub from: u64,
    /// Changes sent.
    pub sent: usize,
    /// Its position after.
    pub position: u64,
}

/// A delivery that failed. The consumer's position is where it reported
/// it; the same changes are sent again next time.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The consumer is not registered.
    #[error("consumer `{plugin}`: {source}")]
    Enter {
        /// The plugin.
        plugin: String,
        /// Why.
        source: EnterError,
    },
    /// The consumer's call failed.
    #[error("consumer `{plugin}` {version} failed: {message}")]
    Call {
        /// The plugin.
        plugin: String,
        /// Its version.
        version: String,
        /// Its error.
        message: String,
    },
    /// The consumer's call panicked; the panic was caught.
    #[error("consumer `{plugin}` {version} panicked: {message}")]
    Panicked {
        /// The plugin.
        plugin: String,
        /// Its version.
        version: String,
        /// The panic's message.
        message: String,
    },
    /// The consumer's reply broke the protocol.
    #[error("consumer `{plugin}` {version} returned a bad reply: {reason}")]
    Reply {
        /// The plugin.
        plugin: String,
        /// Its version.
        version: String,
        /// What was wrong.
        reason: String,
    },
    /// The change after the consumer's position is gone from the log
    /// (trimmed, or deleted by hand).
    #[error(
        "consumer `{plugin}` {version} is at position {position}, but the log goes on at {first}"
    )]
    Behind {
        /// The plugin.
        plugin: String,
        /// Its version.
        version: String,
        /// Its position.
        position: u64,
        /// The first position after it in the log.
        first: u64,
    },
    /// The consumer was sent changes and took none.
    #[error("consumer `{plugin}` {version} took none of {sent} changes after position {position}")]
    Stuck {
        /// The plugin.
        plugin: String,
        /// Its version.
        version: String,
        /// Its position.
        position: u64,
        /// Changes sent.
        sent: usize,
    },
    /// The log could not be read, or installed.
    #[error("the change log: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The feed cannot be installed as declared.
    #[error("the change log `{log}` cannot be installed: {reason}")]
    Install {
        /// The log table.
        log: String,
        /// Why.
        reason: String,
    },
}

impl Feed {
    /// A feed logging to the table `log` (created by
    /// [`install`](Feed::install)), capturing nothing yet.
    pub fn new(log: &str) -> Feed {
        Feed {
            log: log.to_owned(),
            captures: Vec::new(),
            turns: Arc::default(),
        }
    }

    /// Captures the inserts, updates and deletes of `table` (a rowid
    /// table), with the new value of `column`.
    #[must_use]
    pub fn capture(mut self, table: &str, column: &str) -> Feed {
        self.captures.push((table.to_owned(), column.to_owned()));
        self
    }

    /// The log table's name.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// Creates the log and the triggers if they do not exist (in one
    /// savepoint: all or nothing). Idempotent; a database keeps them, so
    /// every connection writing the captured tables, from any client, is
    /// captured once installed.
    ///
    /// # Errors
    ///
    /// [`FeedError::Install`] for a feed capturing its own log;
    /// [`FeedError::Sql`] for a captured table or column that does not
    /// exist, a `WITHOUT ROWID` table, or a table of the log's name that is
    /// not a log. Nothing is installed then.
    pub fn install(&self, conn: &Connection) -> Result<(), FeedError> {
        if self
            .captures
            .iter()
            .any(|(t, _)| t.eq_ignore_ascii_case(&self.log))
        {
            return Err(FeedError::Install {
                log: self.log.clone(),
                reason: "a feed cannot capture its own log".to_owned(),
            });
        }
        let log = quote(&self.log);
        let mut sql = format!(
            "SAVEPOINT reload_feed;
             CREATE TABLE IF NOT EXISTS {log}(
                 pos INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,
                 op TEXT NOT NULL, row INTEGER NOT NULL, val);
             -- A table of that name made for something else fails here,
             -- not in every captured write.
             SELECT pos, tbl, op, row, val FROM {log} LIMIT 0;\n"
        );
        for (table, column) in &self.captures {
            let (t, c) = (quote(table), quote(column));
            let name = table.replace('\'', "''");
            for (event, op, value) in [
                ("INSERT", 'I', format!("new.{c}")),
                ("UPDATE", 'U', format!("new.{c}")),
                ("DELETE", 'D', "NULL".to_owned()),
            ] {
                let row = if op == 'D' { "old.rowid" } else { "new.rowid" };
                let trigger = quote(&format!("{}_{}_{}", self.log, table, op));
                sql.push_str(&format!(
                    "CREATE TRIGGER IF NOT EXISTS {trigger} AFTER {event} ON {t} BEGIN
                       INSERT INTO {log}(tbl, op, row, val) VALUES ('{name}', '{op}', {row}, {value});
                     END;\n"
                ));
            }
            // A column that does not exist fails here, not at the first
            // write. Qualified: SQLite reads an unknown bare "name" as a
            // string.
            sql.push_str(&format!("SELECT {t}.{c} FROM {t} LIMIT 0;\n"));
        }
        sql.push_str("RELEASE reload_feed;");
        conn.execute_batch(&sql).map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK TO reload_feed; RELEASE reload_feed;");
            FeedError::Sql(e)
        })
    }

    /// Up to `limit` changes after position `pos`, in order.
    ///
    /// # Errors
    ///
    /// SQLite's.
    pub fn changes_after(
        &self,
        conn: &Connection,
        pos: u64,
        limit: usize,
    ) -> rusqlite::Result<Vec<Change>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT pos, tbl, op, row, val FROM {} WHERE pos > ?1 ORDER BY pos LIMIT ?2",
            quote(&self.log)
        ))?;
        let pos = i64::try_from(pos).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map((pos, limit), |r| {
            let op: String = r.get(2)?;
            Ok(Change {
                pos: r.get::<_, i64>(0)?.max(0) as u64,
                table: r.get(1)?,
                // The triggers write only these three.
                op: op
                    .bytes()
                    .next()
                    .and_then(Op::from_byte)
                    .unwrap_or(Op::Update),
                rowid: r.get(3)?,
                value: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// The first and last positions in the log (`None` when empty).
    ///
    /// # Errors
    ///
    /// SQLite's.
    pub fn bounds(&self, conn: &Connection) -> rusqlite::Result<Option<(u64, u64)>> {
        conn.query_row(
            &format!("SELECT min(pos), max(pos) FROM {}", quote(&self.log)),
            [],
            |r| {
                Ok(
                    match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                        (Some(a), Some(b)) => Some((a.max(0) as u64, b.max(0) as u64)),
                        _ => None,
                    },
                )
            },
        )
    }

    /// Deletes the changes at or below `upto` (every consumer is past
    /// them); returns how many. Positions are never reused.
    ///
    /// # Errors
    ///
    /// SQLite's.
    pub fn trim(&self, conn: &Connection, upto: u64) -> rusqlite::Result<usize> {
        conn.execute(
            &format!("DELETE FROM {} WHERE pos <= ?1", quote(&self.log)),
            [i64::try_from(upto).unwrap_or(i64::MAX)],
        )
    }

    /// Sends consumer `plugin` the next `limit` changes after its
    /// position (none if it is caught up), under one lease, in the
    /// consumer's turn (see [`Feed`]). Two deliverers that do not share
    /// turns (two `Feed` values, two processes) may interleave: the later
    /// reply then claims a position it was not sent, a
    /// [`FeedError::Reply`] that loses nothing.
    ///
    /// # Errors
    ///
    /// [`FeedError`]; its position has not moved.
    pub fn deliver<P: SqlPlugin>(
        &self,
        conn: &Connection,
        registry: &Registry<P>,
        plugin: &str,
        limit: usize,
    ) -> Result<Delivered, FeedError> {
        let turn = Arc::clone(self.turns.lock().entry(plugin.to_owned()).or_default());
        let _turn = turn.lock();
        let call = registry.enter(plugin).map_err(|source| FeedError::Enter {
            plugin: plugin.to_owned(),
            source,
        })?;
        let version = call.manifest().version().to_string();
        let ask = |request: &[u8]| -> Result<u64, FeedError> {
            let reply = catch_unwind(AssertUnwindSafe(|| {
                call.plugin()
                    .call_sql(request, |r| <[u8; 8]>::try_from(r).map_err(|_| r.len()))
            }));
            match reply {
                Ok(Ok(Ok(bytes))) => Ok(u64::from_le_bytes(bytes)),
                Ok(Ok(Err(len))) => Err(FeedError::Reply {
                    plugin: plugin.to_owned(),
                    version: version.clone(),
                    reason: format!("a position is 8 bytes, got {len}"),
                }),
                Ok(Err(e)) => Err(FeedError::Call {
                    plugin: plugin.to_owned(),
                    version: version.clone(),
                    message: e.to_string(),
                }),
                Err(p) => Err(FeedError::Panicked {
                    plugin: plugin.to_owned(),
                    version: version.clone(),
                    message: panic_message(&*p),
                }),
            }
        };
        let from = ask(b"P")?;
        let changes = self.changes_after(conn, from, limit.max(1))?;
        let Some(last) = changes.last().map(|c| c.pos) else {
            return Ok(Delivered {
                version,
                from,
                sent: 0,
                position: from,
            });
        };
        // Positions are consecutive in a log never trimmed (`AUTOINCREMENT`,
        // and a rolled-back write takes its positions back with it), so a
        // gap is a trim, or rows deleted by hand: the next change is gone.
        if changes[0].pos != from + 1 {
            return Err(FeedError::Behind {
                plugin: plugin.to_owned(),
                version,
                position: from,
                first: changes[0].pos,
            });
        }
        let position = ask(&encode_batch(&changes))?;
        if position < from || position > last {
            return Err(FeedError::Reply {
                plugin: plugin.to_owned(),
                version,
                reason: format!(
                    "position {position} after a batch of {from}+1..={last} (it must be in {from}..={last})"
                ),
            });
        }
        if position == from {
            return Err(FeedError::Stuck {
                plugin: plugin.to_owned(),
                version,
                position,
                sent: changes.len(),
            });
        }
        Ok(Delivered {
            version,
            from,
            sent: changes.len(),
            position,
        })
    }

    /// Delivers to `plugin` until it has every change logged when the
    /// call began (later ones wait for the next call); returns its last
    /// delivery (`sent` summed over the batches).
    ///
    /// # Errors
    ///
    /// The first delivery that failed; the batches before it stay
    /// delivered.
    pub fn catch_up<P: SqlPlugin>(
        &self,
        conn: &Connection,
        registry: &Registry<P>,
        plugin: &str,
    ) -> Result<Delivered, FeedError> {
        let end = self.bounds(conn)?.map_or(0, |(_, last)| last);
        let mut sent = 0;
        loop {
            let mut d = self.deliver(conn, registry, plugin, DEFAULT_BATCH)?;
            sent += d.sent;
            if d.sent == 0 || d.position >= end {
                d.sent = sent;
                return Ok(d);
            }
        }
    }
}

/// The `D` request carrying `changes` (see the module's protocol).
pub fn encode_batch(changes: &[Change]) -> Vec<u8> {
    let mut out = vec![b'D'];
    for c in changes {
        out.extend_from_slice(&c.pos.to_le_bytes());
        out.push(c.op.byte());
        out.extend_from_slice(&c.rowid.to_le_bytes());
        // Table names are short; a name past u32 cannot be created.
        out.extend_from_slice(&(c.table.len() as u32).to_le_bytes());
        out.extend_from_slice(c.table.as_bytes());
        // SQLite's values are below its 2^31 byte limit: always encodes.
        if wire::encode(ValueRef::from(&c.value), &mut out).is_err() {
            out.push(0);
        }
    }
    out
}

/// Reads the records of a `D` request (without its `D`).
///
/// # Errors
///
/// The first thing that does not decode.
pub fn decode_batch(mut bytes: &[u8]) -> Result<Vec<Change>, WireError> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize, at: usize) -> Result<&'a [u8], WireError> {
        if bytes.len() < n {
            return Err(WireError::Truncated { at });
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    let total = bytes.len();
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let at = total - bytes.len();
        let mut word = [0u8; 8];
        word.copy_from_slice(take(&mut bytes, 8, at)?);
        let pos = u64::from_le_bytes(word);
        let op_at = total - bytes.len();
        let op = take(&mut bytes, 1, op_at)?[0];
        let op = Op::from_byte(op).ok_or(WireError::UnknownTag { tag: op, at: op_at })?;
        word.copy_from_slice(take(&mut bytes, 8, at)?);
        let rowid = i64::from_le_bytes(word);
        let mut len = [0u8; 4];
        len.copy_from_slice(take(&mut bytes, 4, at)?);
        let name_at = total - bytes.len();
        let name = take(&mut bytes, u32::from_le_bytes(len) as usize, name_at)?;
        let table = std::str::from_utf8(name)
            .map_err(|_| WireError::NotUtf8 { at: name_at })?
            .to_owned();
        let value_at = total - bytes.len();
        let (value, rest) = wire::decode_at(bytes, value_at)?;
        out.push(Change {
            pos,
            table,
            op,
            rowid,
            value: value.into(),
        });
        bytes = rest;
    }
    Ok(out)
}
