//! `store`: the SQL host's storage backend, the virtual table `store(k,
//! v, version)`, as a plugin library (reload-sqlite's table protocol:
//! rows in batches from a position).
//!
//! It serves `ROWS` rows, `v = k * k`, each tagged with the version that
//! served it, `BATCH` at a time: the host checks a scan is complete, in
//! order, and from one version.
#![allow(missing_docs)]

include!("../../shared/version.rs");
include!("../../shared/wire.rs");

const ROWS: u64 = 2_000;
const BATCH: u64 = 64;

pub struct Store;

impl reload_abi::Plugin for Store {
    fn new() -> Self {
        Store
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let position = match input {
            [b'S', rest @ ..] => {
                u64::from_le_bytes(rest.try_into().map_err(|_| "S takes 8 bytes")?)
            }
            _ => return Err("store answers S only".to_owned()),
        };
        let end = position.saturating_add(BATCH).min(ROWS);
        let next = if end == ROWS { u64::MAX } else { end };
        let mut out = next.to_le_bytes().to_vec();
        for k in position..end {
            let k = k as i64;
            wire::integer(&mut out, k);
            wire::integer(&mut out, k * k);
            wire::text(&mut out, VERSION);
        }
        Ok(out)
    }
}

export!(Store, "store", ["scan"]);
