//! The crate's encoding of SQL values as bytes, for plugins that take
//! SQL arguments and return SQL values ([`Wire`], the default
//! [`Codec`]), and for the rows a table plugin returns.
//!
//! ```text
//! value := 0x00                              NULL
//!        | 0x01  i64, 8 bytes little-endian  INTEGER
//!        | 0x02  f64, 8 bytes little-endian  REAL
//!        | 0x03  u32 length (LE), UTF-8      TEXT
//!        | 0x04  u32 length (LE), bytes      BLOB
//! ```
//!
//! A scalar function's request is its arguments' values one after another
//! (the count is the function's arity); its reply is exactly one value.
//! Decoding checks everything a plugin could get wrong (an unknown tag, a
//! length past the end, text that is not UTF-8, bytes left over) and says
//! which, so a plugin returning garbage is a SQL error naming the cause,
//! never a wrong value.

use rusqlite::types::{Value, ValueRef};
use thiserror::Error;

const NULL: u8 = 0;
const INTEGER: u8 = 1;
const REAL: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;

/// Why bytes did not decode (or a value did not encode).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes ended inside a value, or before one.
    #[error("the reply ends inside a value (at byte {at})")]
    Truncated {
        /// Where the value started.
        at: usize,
    },
    /// A tag byte the encoding does not have.
    #[error("unknown value tag {tag:#04x} at byte {at}")]
    UnknownTag {
        /// The tag.
        tag: u8,
        /// Where.
        at: usize,
    },
    /// Text that is not UTF-8.
    #[error("text at byte {at} is not UTF-8")]
    NotUtf8 {
        /// Where the value started.
        at: usize,
    },
    /// Bytes after the last value expected.
    #[error("{extra} bytes after the last value")]
    Trailing {
        /// How many.
        extra: usize,
    },
    /// A text or blob longer than a `u32` length can say.
    #[error("a value of {len} bytes is too long to encode")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A codec of the host's own refused the arguments or the reply.
    #[error("{0}")]
    Other(String),
}

/// Appends `value` to `out`.
///
/// # Errors
///
/// [`WireError::TooLong`] for a text or blob of 4 GiB or more.
pub fn encode(value: ValueRef<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
    match value {
        ValueRef::Null => out.push(NULL),
        ValueRef::Integer(i) => {
            out.push(INTEGER);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Real(f) => {
            out.push(REAL);
            out.extend_from_slice(&f.to_le_bytes());
        }
        ValueRef::Text(b) | ValueRef::Blob(b) => {
            let tag = if matches!(value, ValueRef::Text(_)) {
                TEXT
            } else {
                BLOB
            };
            let len = u32::try_from(b.len()).map_err(|_| WireError::TooLong { len: b.len() })?;
            out.push(tag);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

/// Decodes one value at the start of `bytes`; returns it and the bytes
/// after it.
///
/// # Errors
///
/// [`WireError::Truncated`], [`WireError::UnknownTag`],
/// [`WireError::NotUtf8`]; `at` counts from `base`.
pub fn decode_at(bytes: &[u8], base: usize) -> Result<(ValueRef<'_>, &[u8]), WireError> {
    let truncated = WireError::Truncated { at: base };
    let (&tag, rest) = bytes.split_first().ok_or(truncated.clone())?;
    let fixed = |rest: &[u8]| -> Result<[u8; 8], WireError> {
        rest.get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(WireError::Truncated { at: base })
    };
    match tag {
        NULL => Ok((ValueRef::Null, rest)),
        INTEGER => Ok((
            ValueRef::Integer(i64::from_le_bytes(fixed(rest)?)),
            &rest[8..],
        )),
        REAL => Ok((ValueRef::Real(f64::from_le_bytes(fixed(rest)?)), &rest[8..])),
        TEXT | BLOB => {
            let len: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(truncated.clone())?;
            let end = (u32::from_le_bytes(len) as usize)
                .checked_add(4)
                .ok_or(truncated.clone())?;
            let body = rest.get(4..end).ok_or(truncated)?;
            let after = &rest[end..];
            if tag == TEXT {
                std::str::from_utf8(body).map_err(|_| WireError::NotUtf8 { at: base })?;
                Ok((ValueRef::Text(body), after))
            } else {
                Ok((ValueRef::Blob(body), after))
            }
        }
        tag => Err(WireError::UnknownTag { tag, at: base }),
    }
}

/// Decodes every value in `bytes` (a scalar function's arguments, for a
/// plugin written in Rust).
///
/// # Errors
///
/// As [`decode_at`].
pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<ValueRef<'_>>, WireError> {
    let total = bytes.len();
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let (value, rest) = decode_at(bytes, total - bytes.len())?;
        values.push(value);
        bytes = rest;
    }
    Ok(values)
}

/// `value` encoded alone (a scalar function's reply, for a plugin written
/// in Rust).
///
/// # Errors
///
/// [`WireError::TooLong`].
pub fn encode_one(value: ValueRef<'_>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    encode(value, &mut out)?;
    Ok(out)
}

/// Decodes exactly one value from `bytes`.
///
/// # Errors
///
/// As [`decode_at`], and [`WireError::Trailing`].
pub fn decode_one(bytes: &[u8]) -> Result<Value, WireError> {
    let (value, rest) = decode_at(bytes, 0)?;
    if !rest.is_empty() {
        return Err(WireError::Trailing { extra: rest.len() });
    }
    Ok(value.into())
}

/// How a scalar function's arguments become the plugin's request, and its
/// reply the function's result.
///
/// [`Wire`] is the default; a host whose plugins speak another format
/// (fixed-width integers, JSON, its own) implements this. Both methods run
/// once per row: keep them cheap. A panic in them is caught like a
/// plugin's.
pub trait Codec: Send + Sync + 'static {
    /// Appends the request for `args` to `out` (empty on entry).
    ///
    /// # Errors
    ///
    /// Arguments this function cannot take: a SQL error.
    fn encode(&self, args: &[ValueRef<'_>], out: &mut Vec<u8>) -> Result<(), WireError>;

    /// The result the plugin's `reply` stands for.
    ///
    /// # Errors
    ///
    /// A reply that does not decode: a SQL error naming why.
    fn decode(&self, reply: &[u8]) -> Result<Value, WireError>;

    /// A result for `args` without calling the plugin (no lease is taken
    /// either): `None`, the default, calls it. The column types answer
    /// SQL NULL with NULL this way.
    fn shortcut(&self, args: &[ValueRef<'_>]) -> Option<Value> {
        let _ = args;
        None
    }
}

/// The crate's encoding (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Wire;

impl Codec for Wire {
    fn encode(&self, args: &[ValueRef<'_>], out: &mut Vec<u8>) -> Result<(), WireError> {
        args.iter().try_for_each(|a| encode(*a, out))
    }

    fn decode(&self, reply: &[u8]) -> Result<Value, WireError> {
        decode_one(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        let values = [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(-0.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 255, 7]),
            Value::Text(String::new()),
        ];
        for v in values {
            let mut out = Vec::new();
            encode(ValueRef::from(&v), &mut out).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(decode_one(&out), Ok(v));
        }
    }

    #[test]
    fn garbage_is_named() {
        assert_eq!(decode_one(&[]), Err(WireError::Truncated { at: 0 }));
        assert_eq!(
            decode_one(&[9]),
            Err(WireError::UnknownTag { tag: 9, at: 0 })
        );
        assert_eq!(decode_one(&[1, 0, 0]), Err(WireError::Truncated { at: 0 }));
        assert_eq!(
            decode_one(&[3, 2, 0, 0, 0, 0xff, 0xfe]),
            Err(WireError::NotUtf8 { at: 0 })
        );
        assert_eq!(
            decode_one(&[3, 255, 255, 255, 255, b'a']),
            Err(WireError::Truncated { at: 0 })
        );
        assert_eq!(decode_one(&[0, 0]), Err(WireError::Trailing { extra: 1 }));
    }
}
