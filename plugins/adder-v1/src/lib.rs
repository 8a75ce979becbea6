//! `adder` 1.0.0: a UDF that adds one. Built as a `cdylib` for the dylib
//! demo and tests.
#![allow(missing_docs)]

// The version is written once, in Cargo.toml.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn apply(x: u64) -> u64 {
    x.wrapping_add(1)
}

include!("../../shared/adder.rs");

reload_abi::export_plugin!(Adder, name: "adder", exports: ["call"]);
