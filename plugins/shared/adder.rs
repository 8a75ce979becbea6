// The body both `adder` versions share; each crate defines `VERSION` (as in
// its manifest) and `apply` (what the version computes) and includes this.
// Each refuses calls after its shutdown, so a host that made one would be
// caught.

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
            return Err(format!("adder {VERSION} called after its shutdown"));
        }
        let x = u64::from_le_bytes(input.try_into().map_err(|_| "expects 8 bytes")?);
        Ok(apply(x).to_le_bytes().to_vec())
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.shut.store(true, Ordering::Release);
        Ok(())
    }
}
