//! `ver`: a scalar function in reload-sqlite's wire encoding that returns
//! the version computing it (TEXT), whatever its arguments: the loadable
//! extension's tests count the versions of each statement's rows with it.
#![allow(missing_docs)]

include!("../../shared/version.rs");
include!("../../shared/wire.rs");

pub struct Ver;

impl reload_abi::Plugin for Ver {
    fn new() -> Self {
        Ver
    }

    fn call(&self, _input: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        wire::text(&mut out, VERSION);
        Ok(out)
    }
}

export!(Ver, "ver", ["ver"]);
