//! The host's SQL objects, declared through `reload-sqlite`: which plugin
//! serves which function and table, and the codecs of the two plugins that
//! predate the crate's wire encoding. Everything else (statement scopes,
//! leases, containment, `reload_plugins`) is the crate's.
//!
//! | SQL | plugin | kind |
//! |---|---|---|
//! | `score(x)`, `score_by(x)` | `udf` | scalar: the score, and the version that computed it |
//! | `matches(id, term)` | `index` | scalar over the token index |
//! | `tally(x)` | `agg` | aggregate: `version:rows:sum` |
//! | `store(k, v, version)` | `store` | storage backend (virtual table) |
//! | `money_encode(c)`, `money_decode(b)` | `money` | column type of `prices.amount` |
//! | (a background job) | `job` | `reload_sqlite::job::Job`, a tick every 20 ms |
//! | `reload_plugins`, `reload_deploy`, `reload_revert` | | management, on the orchestrator's connection only ([`deployer`]) |

use std::sync::Arc;

use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_sqlite::{Codec, DylibDeployer, Hot, WireError};
use rusqlite::types::{Value, ValueRef};

/// The score every correct `udf` version computes.
pub fn reference_score(x: i64) -> i64 {
    x.wrapping_mul(31).wrapping_add(7)
}

fn integer(args: &[ValueRef<'_>], i: usize) -> Result<i64, WireError> {
    match args.get(i) {
        Some(ValueRef::Integer(x)) => Ok(*x),
        _ => Err(WireError::Other(format!(
            "argument {} is not an integer",
            i + 1
        ))),
    }
}

/// `udf`'s format: `x` as 8 bytes in; the score (8 bytes) then the
/// version's name out. `version` picks which half is the result.
#[derive(Clone, Copy, Debug)]
pub struct UdfCodec {
    /// Return the version rather than the score.
    pub version: bool,
}

impl Codec for UdfCodec {
    fn encode(&self, args: &[ValueRef<'_>], out: &mut Vec<u8>) -> Result<(), WireError> {
        out.extend_from_slice(&integer(args, 0)?.to_le_bytes());
        Ok(())
    }

    fn decode(&self, reply: &[u8]) -> Result<Value, WireError> {
        let (score, version) = reply
            .split_first_chunk::<8>()
            .ok_or(WireError::Truncated { at: 0 })?;
        if self.version {
            let v = std::str::from_utf8(version).map_err(|_| WireError::NotUtf8 { at: 8 })?;
            Ok(Value::Text(v.to_owned()))
        } else {
            Ok(Value::Integer(i64::from_le_bytes(*score)))
        }
    }
}

/// `index`'s `M` request (`M`, the id, the term) and its one-byte answer.
#[derive(Clone, Copy, Debug)]
pub struct MatchesCodec;

impl Codec for MatchesCodec {
    fn encode(&self, args: &[ValueRef<'_>], out: &mut Vec<u8>) -> Result<(), WireError> {
        out.push(b'M');
        out.extend_from_slice(&integer(args, 0)?.to_le_bytes());
        match args.get(1) {
            Some(ValueRef::Text(t)) => out.extend_from_slice(t),
            _ => return Err(WireError::Other("the term is not text".into())),
        }
        Ok(())
    }

    fn decode(&self, reply: &[u8]) -> Result<Value, WireError> {
        match reply {
            [hit] => Ok(Value::Integer(i64::from(*hit == 1))),
            _ => Err(WireError::Trailing {
                extra: reply.len().saturating_sub(1),
            }),
        }
    }
}

/// The columns of `store`.
pub const STORE_COLUMNS: &[&str] = &["k", "v", "version"];

/// The clients' objects.
pub fn hot(registry: &Arc<Registry<DylibPlugin>>) -> Hot<DylibPlugin> {
    Hot::new(Arc::clone(registry))
        .scalar_with("score", 1, "udf", UdfCodec { version: false })
        .scalar_with("score_by", 1, "udf", UdfCodec { version: true })
        .scalar_with("matches", 2, "index", MatchesCodec)
        .aggregate("tally", 1, "agg")
        .table("store", "store", STORE_COLUMNS)
        .column_type("money", "money", "prices", "amount")
}

/// The orchestrator's deployer: loading through `loader`, with `cdc`'s
/// configuration (for `hot.attach_admin`, so `reload_plugins` counts the
/// clients' calls).
pub fn deployer(
    loader: Arc<Loader>,
    cdc_config: Vec<u8>,
    options: reload_core::ReloadOptions,
) -> DylibDeployer {
    DylibDeployer::new(loader)
        .config("cdc", cdc_config)
        .options(options)
}
