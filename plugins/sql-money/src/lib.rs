//! `money`: the SQL host's column type (reload-sqlite's column protocol):
//! an amount in cents stored as a tag byte and 8 bytes. With `tag2` it
//! stores and reads tag 2 only: a version that cannot read the rows the
//! others stored, which a deploy must refuse on the real rows.
#![allow(missing_docs)]

include!("../../shared/version.rs");
include!("../../shared/wire.rs");

const TAG: u8 = if cfg!(feature = "tag2") { 2 } else { 1 };

pub struct Money;

impl reload_abi::Plugin for Money {
    fn new() -> Self {
        Money
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        match input {
            [b'E', value @ ..] => {
                let cents = wire::read_integer(value)?;
                let mut out = vec![TAG];
                out.extend_from_slice(&cents.to_le_bytes());
                Ok(out)
            }
            [b'D', tag, rest @ ..] if *tag == TAG && rest.len() == 8 => {
                let cents = i64::from_le_bytes(rest.try_into().map_err(|_| "8 bytes")?);
                let mut out = Vec::new();
                wire::integer(&mut out, cents);
                Ok(out)
            }
            [b'D', tag, ..] => Err(format!("money {VERSION} reads tag {TAG}, not {tag}")),
            _ => Err("money answers E and D".to_owned()),
        }
    }
}

export!(Money, "money", ["encode", "decode"]);
