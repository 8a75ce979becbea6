//! The invariants checked against the database itself: the index equals a
//! rebuild from `docs`, and the sink's output equals the change log.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use rusqlite::Connection;

use crate::db;

/// The index's persisted form (`X`), decoded by the host: documents and
/// their tokens. `None` if it does not decode.
pub fn decode_index(bytes: &[u8]) -> Option<BTreeMap<i64, BTreeSet<String>>> {
    let mut at = 16usize; // magic, schema and feed position
    let mut take = |n: usize| -> Option<&[u8]> {
        let field = bytes.get(at..at.checked_add(n)?)?;
        at += n;
        Some(field)
    };
    let n = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let mut docs = BTreeMap::new();
    for _ in 0..n {
        let id = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut toks = BTreeSet::new();
        for _ in 0..count {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            toks.insert(String::from_utf8(take(len)?.to_vec()).ok()?);
        }
        docs.insert(id, toks);
    }
    (bytes.get(..4) == Some(b"TIDX".as_slice())).then_some(docs)
}

/// The index a rebuild from `docs` would hold.
///
/// # Errors
///
/// SQLite's.
pub fn rebuild_index(conn: &Connection) -> rusqlite::Result<BTreeMap<i64, BTreeSet<String>>> {
    let mut stmt = conn.prepare("SELECT id, body FROM docs")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|r| r.map(|(id, body)| (id, db::tokens(&body))))
        .collect()
}

/// How the sink's output compares with the change log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Changes committed (rows of the change log).
    pub committed: u64,
    /// Lines the sink wrote.
    pub delivered: u64,
    /// Positions written more than once.
    pub duplicates: u64,
    /// Committed positions never written.
    pub missing: u64,
    /// Lines whose position is not one past the previous line's.
    pub out_of_order: u64,
    /// Lines whose content differs from the change at their position.
    pub corrupt: u64,
}

impl Delivery {
    /// Exactly once, in order, intact.
    pub fn exact(&self) -> bool {
        self.committed == self.delivered
            && self.duplicates == 0
            && self.missing == 0
            && self.out_of_order == 0
            && self.corrupt == 0
    }
}

/// Compares the sink's output file with the change log.
///
/// # Errors
///
/// Reading the file, or SQLite's.
pub fn delivery(conn: &Connection, sink: &Path) -> Result<Delivery, String> {
    let expected = db::feed()
        .changes_after(conn, 0, usize::MAX)
        .map_err(|e| e.to_string())?;
    let text = fs::read_to_string(sink).map_err(|e| format!("{}: {e}", sink.display()))?;
    let by_pos: BTreeMap<u64, String> = expected.iter().map(|c| (c.pos, db::line(c))).collect();
    let mut d = Delivery {
        committed: expected.len() as u64,
        ..Delivery::default()
    };
    let mut seen = BTreeSet::new();
    let mut last = 0u64;
    for line in text.lines() {
        d.delivered += 1;
        let pos: u64 = line
            .split('\t')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if !seen.insert(pos) {
            d.duplicates += 1;
        }
        if pos != last + 1 {
            d.out_of_order += 1;
        }
        last = pos;
        if by_pos.get(&pos).map(String::as_str) != Some(line) {
            d.corrupt += 1;
        }
    }
    d.missing = by_pos.keys().filter(|p| !seen.contains(p)).count() as u64;
    Ok(d)
}

/// Distinct files under `dir` mapped into this process now (`None` where
/// `/proc/self/maps` cannot be read).
pub fn mapped_from(dir: &Path) -> Option<usize> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    let dir = dir.to_string_lossy();
    let files: BTreeSet<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with(dir.as_ref()))
        .collect();
    Some(files.len())
}

/// `q`-quantile of `samples` (microseconds), 0 if none.
pub fn quantile(samples: &mut [u64], q: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i.min(samples.len() - 1)]
}
