//! The checks of the `abi` fuzz target, shared with its replay on stable:
//! every decoder the host runs on bytes a plugin library hands back
//! ([`reload_abi::wire`]) is total (no panic, whatever the bytes) and what
//! it accepts re-encodes to the very bytes it read (so nothing is
//! silently dropped or invented).
//!
//! The first byte picks the decoder; the rest is its input.

use reload_abi::wire;

/// Runs the decoder `data[0]` picks on `data[1..]`.
///
/// # Errors
///
/// A decoded value that does not re-encode to its input.
pub fn check(data: &[u8]) -> Result<(), String> {
    let Some((&pick, bytes)) = data.split_first() else {
        return Ok(());
    };
    let same = |encoded: Vec<u8>, what: &str| {
        if encoded == bytes {
            Ok(())
        } else {
            Err(format!(
                "{what}: decoded {bytes:?} re-encodes to {encoded:?}"
            ))
        }
    };
    match pick % 8 {
        0 => match wire::decode_description(bytes) {
            Ok((schema, resources)) => {
                let names: std::collections::BTreeSet<_> =
                    resources.iter().map(|r| &r.name).collect();
                if names.len() != resources.len() || resources.len() > wire::MAX_RESOURCES {
                    return Err("duplicate or too many resources accepted".to_owned());
                }
                same(wire::encode_description(schema, &resources), "description")
            }
            Err(_) => Ok(()),
        },
        1 => match wire::decode_saved(bytes) {
            Ok(saved) => same(wire::encode_saved(saved), "saved"),
            Err(_) => Ok(()),
        },
        2 => match wire::decode_at_schema(bytes) {
            Ok((schema, state)) => same(wire::encode_at_schema(schema, state), "at schema"),
            Err(_) => Ok(()),
        },
        3 => match wire::decode_position(bytes) {
            Ok(p) => same(p.to_le_bytes().to_vec(), "position"),
            Err(_) => Ok(()),
        },
        4 => match wire::decode_compat(bytes) {
            Ok((old, persisted)) => same(wire::encode_compat(&old, persisted), "compat"),
            Err(_) => Ok(()),
        },
        5 => match wire::decode_named(bytes) {
            Ok((name, rest)) => same(wire::encode_named(name, rest), "named"),
            Err(_) => Ok(()),
        },
        6 => match wire::decode_named_position(bytes) {
            Ok((name, p)) => same(wire::encode_named_position(name, p), "named position"),
            Err(_) => Ok(()),
        },
        _ => match wire::decode_name(bytes) {
            Ok(name) => same(wire::encode_name(name), "name"),
            Err(_) => Ok(()),
        },
    }
}
