//! `adder` 1.1.0: the same UDF, now doubling. Built as a `cdylib` for the
//! dylib demo and tests.
#![allow(missing_docs)]

// The version is written once, in Cargo.toml.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn apply(x: u64) -> u64 {
    x.wrapping_mul(2)
}

include!("../../shared/adder.rs");

reload_abi::export_plugin!(Adder, name: "adder", exports: ["call"]);
