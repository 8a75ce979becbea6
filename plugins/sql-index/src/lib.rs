//! `index`: the SQL host's token index over `docs.body`, as a plugin
//! library; the host's `matches(id, term)` asks it.
//!
//! It is kept up to date as a consumer of `reload_sqlite::feed`: `P`
//! returns the position of the last change it applied, `D` with the feed's
//! records applies those of `docs` past it (and skips other tables') and
//! returns the new position. The position is part of the index.
//!
//! Its **index** resource `tokens` is handed over on reload: the old
//! version `persist`s it (magic `TIDX`, the schema, the position, then each
//! document's id and tokens), the new one checks the real bytes
//! (`check_compat`: the magic and the schema written in them must be its
//! own) and `open`s it, so it continues from the position it was persisted
//! at, and whatever the old version applied after that is sent again.
//! With `schema2` it reads and writes schema 2, which schema 1 bytes are
//! not: such a version is refused, the old one serving. With `open-fails`
//! its `open` fails.
//!
//! Calls: `P`, `D` (above), `M` id term (does the document have the token: 1 byte), `X` (the
//! persisted form, to compare with a rebuild), `N` (documents, 8 bytes).
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

include!("../../shared/version.rs");
include!("../../shared/feed.rs");

const MAGIC: &[u8; 4] = b"TIDX";
const SCHEMA: u32 = if cfg!(feature = "schema2") { 2 } else { 1 };

type Docs = BTreeMap<i64, BTreeSet<String>>;

/// The documents' tokens, and the feed position they include.
#[derive(Default)]
struct State {
    position: u64,
    docs: Docs,
}

pub struct Index {
    state: RwLock<State>,
}

/// Lowercase runs of ASCII letters and digits (the host rebuilds with the
/// same rule).
fn tokens(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SCHEMA.to_le_bytes());
    out.extend_from_slice(&state.position.to_le_bytes());
    out.extend_from_slice(&(state.docs.len() as u64).to_le_bytes());
    for (id, toks) in &state.docs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(toks.len() as u32).to_le_bytes());
        for t in toks {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("persisted index truncated".to_owned());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
}

/// The schema written in persisted bytes (checked before anything else).
fn header(bytes: &[u8]) -> Result<u32, String> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err("not a token index (bad magic)".to_owned());
    }
    r.u32()
}

fn decode(bytes: &[u8]) -> Result<State, String> {
    let schema = header(bytes)?;
    if schema != SCHEMA {
        return Err(format!(
            "index bytes are schema {schema}; this version reads {SCHEMA}"
        ));
    }
    let mut r = Reader(&bytes[8..]);
    let position = r.u64()?;
    let n = r.u64()?;
    let mut docs = Docs::new();
    for _ in 0..n {
        let id = r.u64()? as i64;
        let count = r.u32()?;
        let mut toks = BTreeSet::new();
        for _ in 0..count {
            let len = r.u32()? as usize;
            let t = std::str::from_utf8(r.take(len)?).map_err(|e| e.to_string())?;
            toks.insert(t.to_owned());
        }
        docs.insert(id, toks);
    }
    if !r.0.is_empty() {
        return Err("bytes after the persisted index".to_owned());
    }
    Ok(State { position, docs })
}

fn split_id(input: &[u8]) -> Result<(i64, &str), String> {
    if input.len() < 8 {
        return Err("request truncated".to_owned());
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&input[..8]);
    let text = std::str::from_utf8(&input[8..]).map_err(|e| e.to_string())?;
    Ok((i64::from_le_bytes(b), text))
}

impl Index {
    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, State>, String> {
        self.state.read().map_err(|_| "poisoned".to_owned())
    }

    /// Applies the changes of `docs` past the position; returns the new
    /// position. All or nothing: a batch that fails changes nothing.
    fn apply(&self, batch: &[u8]) -> Result<u64, String> {
        let records = feed::records(batch)?;
        let mut state = self.state.write().map_err(|_| "poisoned")?;
        let mut position = state.position;
        let mut updates = Vec::new();
        for r in &records {
            if r.pos <= position {
                continue;
            }
            if r.pos != position + 1 {
                return Err(format!("gap: at position {position}, got {}", r.pos));
            }
            position = r.pos;
            if r.table != "docs" {
                continue;
            }
            match (r.op, &r.value) {
                (b'D', _) => updates.push((r.rowid, None)),
                (_, feed::Val::Text(body)) => updates.push((r.rowid, Some(tokens(body)))),
                _ => return Err(format!("docs.body at position {} is not text", r.pos)),
            }
        }
        for (id, toks) in updates {
            match toks {
                Some(toks) => state.docs.insert(id, toks),
                None => state.docs.remove(&id),
            };
        }
        state.position = position;
        Ok(position)
    }
}

impl reload_abi::Plugin for Index {
    fn new() -> Self {
        Index {
            state: RwLock::new(State::default()),
        }
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        match input.split_first() {
            Some((b'P', [])) => Ok(self.read()?.position.to_le_bytes().to_vec()),
            Some((b'D', batch)) => Ok(self.apply(batch)?.to_le_bytes().to_vec()),
            Some((b'M', rest)) => {
                let (id, term) = split_id(rest)?;
                let state = self.read()?;
                let hit = state
                    .docs
                    .get(&id)
                    .is_some_and(|t| t.contains(&term.to_ascii_lowercase()));
                Ok(vec![u8::from(hit)])
            }
            Some((b'X', [])) => Ok(encode(&*self.read()?)),
            Some((b'N', [])) => Ok((self.read()?.docs.len() as u64).to_le_bytes().to_vec()),
            _ => Err("unknown request".to_owned()),
        }
    }

    fn resources(&self) -> Vec<reload_abi::Resource> {
        vec![reload_abi::Resource::index("tokens", SCHEMA)]
    }

    fn persist(&self, resource: &str) -> Result<Vec<u8>, String> {
        if resource != "tokens" {
            return Err(format!("no resource {resource}"));
        }
        Ok(encode(&*self.read()?))
    }

    fn check_compat(&self, old: &reload_abi::Resource, persisted: &[u8]) -> Result<(), String> {
        // The real bytes decide, not only what the old version declared.
        let written = header(persisted)?;
        if written != SCHEMA || old.schema != SCHEMA {
            return Err(format!(
                "`{}` was persisted in schema {written} (declared {}); this version reads only schema {SCHEMA}",
                old.name, old.schema
            ));
        }
        Ok(())
    }

    fn open(&mut self, resource: &str, persisted: &[u8]) -> Result<(), String> {
        if cfg!(feature = "open-fails") {
            return Err(format!("cannot open `{resource}`: this build's open fails"));
        }
        if resource != "tokens" {
            return Err(format!("no resource {resource}"));
        }
        *self.state.get_mut().map_err(|_| "poisoned")? = decode(persisted)?;
        Ok(())
    }

    fn close(&mut self, _resource: &str) {
        if let Ok(state) = self.state.get_mut() {
            *state = State::default();
        }
    }
}

export!(Index, "index", ["deliver", "position", "matches", "dump"]);
