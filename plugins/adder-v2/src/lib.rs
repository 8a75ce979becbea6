//! `adder` 1.1.0: the same UDF, now doubling. Built as a `cdylib` for the
//! dylib demo and tests.
#![allow(missing_docs)]

const VERSION: &str = "1.1.0";

fn apply(x: u64) -> u64 {
    x.wrapping_mul(2)
}

include!("../../shared/adder.rs");

reload_abi::export_plugin!(
    Adder,
    b"reload-manifest 1\nname adder\nversion 1.1.0\nexport call\n"
);
