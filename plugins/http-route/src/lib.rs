//! The HTTP host's plugins, one per build (feature `transform`, `filter`
//! or `stream`). Every reply starts with the version that computed it and
//! a newline, so the host's clients can check that what they got came
//! from the version the response says admitted it.
//!
//! - `transform` (a request transform): the request body, uppercased.
//! - `filter` (a response filter): the page with every `secret-` word
//!   redacted to `[redacted]`.
//! - `stream` (a streaming handler): `C` and a chunk number (`u32`,
//!   little-endian) → the chunk `"<n>\n"`; `P` → the pause between chunks
//!   in milliseconds (`u32`): 2, or 100 with `slow`.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};

include!("../../shared/version.rs");

pub struct Route {
    shut: AtomicBool,
}

fn reply(payload: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(VERSION.len() + 1 + payload.len());
    out.extend_from_slice(VERSION.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload.as_bytes());
    out
}

fn text(input: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(input).map_err(|e| e.to_string())
}

impl Route {
    fn transform(input: &[u8]) -> Result<Vec<u8>, String> {
        let text = text(input)?;
        Ok(reply(&if cfg!(feature = "wrong") {
            text.to_lowercase()
        } else {
            text.to_uppercase()
        }))
    }

    fn filter(input: &[u8]) -> Result<Vec<u8>, String> {
        let page = text(input)?;
        let filtered: Vec<&str> = page
            .split(' ')
            .map(|w| {
                if w.starts_with("secret-") && !cfg!(feature = "wrong") {
                    "[redacted]"
                } else {
                    w
                }
            })
            .collect();
        Ok(reply(&filtered.join(" ")))
    }

    fn stream(input: &[u8]) -> Result<Vec<u8>, String> {
        match input.split_first() {
            Some((b'P', [])) => {
                let pause: u32 = if cfg!(feature = "slow") { 100 } else { 2 };
                Ok(pause.to_le_bytes().to_vec())
            }
            Some((b'C', n)) => {
                let mut n =
                    u32::from_le_bytes(n.try_into().map_err(|_| "a chunk number is 4 bytes")?);
                if cfg!(feature = "wrong") {
                    n = n.saturating_sub(1);
                }
                Ok(reply(&format!("{n}\n")))
            }
            _ => Err("unknown request".to_owned()),
        }
    }
}

impl reload_abi::Plugin for Route {
    fn new() -> Self {
        Route {
            shut: AtomicBool::new(false),
        }
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        if self.shut.load(Ordering::Acquire) {
            return Err(format!("{VERSION} called after its shutdown"));
        }
        if cfg!(feature = "transform") {
            Route::transform(input)
        } else if cfg!(feature = "filter") {
            Route::filter(input)
        } else {
            Route::stream(input)
        }
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.shut.store(true, Ordering::Release);
        Ok(())
    }
}

#[cfg(feature = "transform")]
export!(Route, "transform", ["call"]);
#[cfg(feature = "filter")]
export!(Route, "filter", ["call"]);
#[cfg(all(
    feature = "stream",
    not(any(feature = "transform", feature = "filter"))
))]
export!(Route, "stream", ["call"]);
