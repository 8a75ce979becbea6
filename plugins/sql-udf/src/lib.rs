//! `udf`: the SQL host's scalar function, `score(x)`, as a plugin library.
//!
//! A call takes `x` (eight bytes, little-endian `i64`) and returns the score
//! (eight bytes) followed by the version that computed it, so the host can
//! check that every row of a statement was computed by the version it
//! leased. Its state is the number of rows it scored, carried across
//! reloads (schema 1). With the `wrong` feature it returns wrong scores: a
//! version that commits fine and misbehaves, for the host to revert.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

include!("../../shared/version.rs");

/// The score every correct version computes.
fn score(x: i64) -> i64 {
    x.wrapping_mul(31).wrapping_add(7)
}

pub struct Udf {
    scored: AtomicU64,
    shut: AtomicBool,
}

impl reload_abi::Plugin for Udf {
    fn new() -> Self {
        Udf {
            scored: AtomicU64::new(0),
            shut: AtomicBool::new(false),
        }
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        if self.shut.load(Ordering::Acquire) {
            return Err(format!("udf {VERSION} called after its shutdown"));
        }
        let x = i64::from_le_bytes(input.try_into().map_err(|_| "score takes 8 bytes")?);
        let mut s = score(x);
        if cfg!(feature = "wrong") {
            s = s.wrapping_add(1);
        }
        self.scored.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(8 + VERSION.len());
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(VERSION.as_bytes());
        Ok(out)
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.shut.store(true, Ordering::Release);
        Ok(())
    }

    fn schema(&self) -> u32 {
        1
    }

    fn save(&self) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(
            self.scored.load(Ordering::SeqCst).to_le_bytes().to_vec(),
        ))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let n = u64::from_le_bytes(state.try_into().map_err(|_| "state is 8 bytes")?);
        *self.scored.get_mut() = n;
        Ok(())
    }
}

export!(Udf, "udf", ["score"]);
