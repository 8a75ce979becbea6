//! `cdc`: the SQL host's change-data sink, as a plugin library.
//!
//! The host captures every committed change in a change log whose rowid is
//! the position, and feeds batches to the sink; the sink appends each
//! change to its output file (named by the `cdc_out=` line of its
//! configuration) and advances its position. Its **stream** resource
//! `changes` is handed over on reload: the old version's `checkpoint` is
//! its position, the new version `resume`s there. A record at or below the
//! position is skipped (already delivered), one past a gap refused, so a
//! change is delivered exactly once and in order whatever the host
//! re-sends. Its state (schema 1) is the count of changes delivered and a
//! running hash of their positions, carried across reloads.
//!
//! It is a consumer of `reload_sqlite::feed`: `P` returns the position (8
//! bytes); `D` followed by the feed's records delivers them and returns
//! the position after them (8 bytes). `S` returns the state (delivered and
//! hash, 16 bytes).
#![allow(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

include!("../../shared/version.rs");
include!("../../shared/feed.rs");

#[derive(Default)]
struct Inner {
    out: Option<File>,
    position: u64,
    delivered: u64,
    hash: u64,
    shut: bool,
}

pub struct Sink {
    inner: Mutex<Inner>,
}

fn mix(hash: u64, position: u64) -> u64 {
    (hash ^ position)
        .wrapping_mul(0x100_0000_01b3)
        .rotate_left(17)
}

fn u64_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

impl Sink {
    fn deliver(&self, batch: &[u8]) -> Result<Vec<u8>, String> {
        let mut inner = self.inner.lock().map_err(|_| "poisoned")?;
        if inner.shut {
            return Err(format!("cdc {VERSION} called after its shutdown"));
        }
        let mut text = String::new();
        let (mut position, mut delivered, mut hash) = (inner.position, inner.delivered, inner.hash);
        for r in feed::records(batch)? {
            let pos = r.pos;
            if pos <= position {
                continue;
            }
            if pos != position + 1 {
                return Err(format!("gap: at position {position}, got {pos}"));
            }
            text.push_str(&format!(
                "{pos}\t{}\t{}\t{}\t{}\n",
                r.table, r.op as char, r.rowid, r.value
            ));
            position = pos;
            delivered += 1;
            hash = mix(hash, pos);
        }
        let out = inner
            .out
            .as_mut()
            .ok_or("no output file (init did not run)")?;
        // The position moves only once the records are written.
        out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        inner.position = position;
        inner.delivered = delivered;
        inner.hash = hash;
        Ok(position.to_le_bytes().to_vec())
    }
}

impl reload_abi::Plugin for Sink {
    fn new() -> Self {
        Sink {
            inner: Mutex::new(Inner::default()),
        }
    }

    fn init(&mut self, config: &[u8]) -> Result<(), String> {
        let config = std::str::from_utf8(config).map_err(|e| e.to_string())?;
        let path = config
            .lines()
            .find_map(|l| l.strip_prefix("cdc_out="))
            .ok_or("configuration has no cdc_out= line")?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))?;
        self.inner.get_mut().map_err(|_| "poisoned")?.out = Some(file);
        Ok(())
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        match input.split_first() {
            Some((b'P', [])) => {
                let inner = self.inner.lock().map_err(|_| "poisoned")?;
                Ok(inner.position.to_le_bytes().to_vec())
            }
            Some((b'S', [])) => {
                let inner = self.inner.lock().map_err(|_| "poisoned")?;
                Ok([inner.delivered.to_le_bytes(), inner.hash.to_le_bytes()].concat())
            }
            Some((b'D', batch)) => self.deliver(batch),
            _ => Err("unknown request".to_owned()),
        }
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let inner = self.inner.get_mut().map_err(|_| "poisoned")?;
        inner.shut = true;
        inner.out = None;
        Ok(())
    }

    fn schema(&self) -> u32 {
        1
    }

    fn resources(&self) -> Vec<reload_abi::Resource> {
        vec![reload_abi::Resource::stream("changes", 1)]
    }

    fn save(&self) -> Result<Option<Vec<u8>>, String> {
        let inner = self.inner.lock().map_err(|_| "poisoned")?;
        Ok(Some(
            [inner.delivered.to_le_bytes(), inner.hash.to_le_bytes()].concat(),
        ))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        if state.len() != 16 {
            return Err(format!("state is 16 bytes, got {}", state.len()));
        }
        let inner = self.inner.get_mut().map_err(|_| "poisoned")?;
        inner.delivered = u64_of(&state[..8]);
        inner.hash = u64_of(&state[8..]);
        Ok(())
    }

    fn checkpoint(&self, resource: &str) -> Result<u64, String> {
        if resource != "changes" {
            return Err(format!("no resource {resource}"));
        }
        Ok(self.inner.lock().map_err(|_| "poisoned")?.position)
    }

    fn resume(&mut self, resource: &str, position: u64) -> Result<(), String> {
        if resource != "changes" {
            return Err(format!("no resource {resource}"));
        }
        self.inner.get_mut().map_err(|_| "poisoned")?.position = position;
        Ok(())
    }
}

export!(Sink, "cdc", ["deliver", "position"]);
