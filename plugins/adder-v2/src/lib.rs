//! `adder` 1.1.0: the same UDF, now doubling. Built as a `cdylib` for the
//! dylib demo and tests; refuses calls after its shutdown.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};

pub struct Adder {
    shut: AtomicBool,
}

impl reload_abi::Plugin for Adder {
    fn new() -> Self {
        Adder {
            shut: AtomicBool::new(false),
        }
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        if self.shut.load(Ordering::Acquire) {
            return Err("adder 1.1.0 called after its shutdown".to_owned());
        }
        let x = u64::from_le_bytes(input.try_into().map_err(|_| "expects 8 bytes")?);
        Ok(x.wrapping_mul(2).to_le_bytes().to_vec())
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.shut.store(true, Ordering::Release);
        Ok(())
    }
}

reload_abi::export_plugin!(
    Adder,
    b"reload-manifest 1\nname adder\nversion 1.1.0\nexport call\n"
);
