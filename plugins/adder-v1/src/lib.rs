//! `adder` 1.0.0: a UDF that adds one. Built as a `cdylib` for the dylib
//! demo and tests.
#![allow(missing_docs)]

const VERSION: &str = "1.0.0";

fn apply(x: u64) -> u64 {
    x.wrapping_add(1)
}

include!("../../shared/adder.rs");

reload_abi::export_plugin!(
    Adder,
    b"reload-manifest 1\nname adder\nversion 1.0.0\nexport call\n"
);
