//! The byte encodings that cross the boundary besides plain call input and
//! output: the version's description, saved state, migration steps and the
//! resource hand-off requests.
//!
//! Both sides use this module: the plugin to decode what the host sends,
//! the host to decode what a library hands back. A library may be buggy or
//! hostile, so every decoder is total: it checks each length against the
//! bytes it has, refuses trailing bytes where the format has an end, and
//! returns a [`WireError`], never panics. (The `abi` fuzz target runs the
//! host's decoders on arbitrary bytes.)
//!
//! Integers are little-endian; a string or byte field is a `u32` length
//! and that many bytes; a field written last ("the rest") has no length.
//!
//! | what | layout |
//! |---|---|
//! | resource | kind `u8` (0 index, 1 stream), schema `u32`, name |
//! | description | schema `u32`, count `u32`, that many resources |
//! | saved state | `0`, or `1` and the state (the rest) |
//! | state at a schema | schema `u32`, the state (the rest) |
//! | named bytes | name, the bytes (the rest) |
//! | named position | name, position `u64` |
//! | position | `u64`, exactly eight bytes |

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Longest resource name, in bytes.
pub const MAX_NAME: usize = 256;

/// Most resources one version may declare.
pub const MAX_RESOURCES: usize = 256;

/// How a resource is handed over (the host's `ResourceKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// Persisted by the old version, opened by the new.
    Index,
    /// Checkpointed by the old version, resumed by the new.
    Stream,
}

/// A resource a version owns and hands to the next (the host's `Resource`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Unique within the plugin.
    pub name: String,
    /// How it is handed over.
    pub kind: ResourceKind,
    /// Schema of its persisted form, or of the records at its positions.
    pub schema: u32,
}

impl Resource {
    /// An index: `persist` on the old version, `open` on the new.
    pub fn index(name: &str, schema: u32) -> Self {
        Resource {
            name: String::from(name),
            kind: ResourceKind::Index,
            schema,
        }
    }

    /// A stream: `checkpoint` on the old version, `resume` on the new.
    pub fn stream(name: &str, schema: u32) -> Self {
        Resource {
            name: String::from(name),
            kind: ResourceKind::Stream,
            schema,
        }
    }
}

/// Why bytes from the other side do not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// A field runs past the end: `needed` bytes at `at`, `len` in all.
    Truncated {
        /// Offset of the field.
        at: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes there are in all.
        len: usize,
    },
    /// Bytes left over after the last field.
    Trailing {
        /// How many.
        extra: usize,
    },
    /// A name that is empty, longer than [`MAX_NAME`] or not UTF-8.
    BadName,
    /// More than [`MAX_RESOURCES`] resources.
    TooMany {
        /// How many were claimed.
        count: u32,
    },
    /// Two resources with one name.
    Duplicate,
    /// A tag byte the format does not define.
    BadTag {
        /// Which field.
        field: &'static str,
        /// Its value.
        tag: u8,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { at, needed, len } => write!(
                f,
                "truncated: {needed} bytes needed at offset {at}, {len} in all"
            ),
            WireError::Trailing { extra } => write!(f, "{extra} bytes after the last field"),
            WireError::BadName => write!(f, "a name that is empty, too long or not UTF-8"),
            WireError::TooMany { count } => {
                write!(f, "{count} resources (at most {MAX_RESOURCES})")
            }
            WireError::Duplicate => write!(f, "two resources with one name"),
            WireError::BadTag { field, tag } => write!(f, "unknown {field} tag {tag}"),
        }
    }
}

impl core::error::Error for WireError {}

/// A cursor over bytes from the other side.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let truncated = WireError::Truncated {
            at: self.at,
            needed: n,
            len: self.bytes.len(),
        };
        let end = self.at.checked_add(n).ok_or(truncated.clone())?;
        let field = self.bytes.get(self.at..end).ok_or(truncated)?;
        self.at = end;
        Ok(field)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn name(&mut self) -> Result<&'a str, WireError> {
        let len = self.u32()? as usize;
        if len == 0 || len > MAX_NAME {
            return Err(WireError::BadName);
        }
        core::str::from_utf8(self.take(len)?).map_err(|_| WireError::BadName)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    fn finish(self) -> Result<(), WireError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            extra => Err(WireError::Trailing { extra }),
        }
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

fn put_resource(out: &mut Vec<u8>, r: &Resource) {
    out.push(match r.kind {
        ResourceKind::Index => 0,
        ResourceKind::Stream => 1,
    });
    out.extend_from_slice(&r.schema.to_le_bytes());
    put_name(out, &r.name);
}

fn read_resource(r: &mut Reader<'_>) -> Result<Resource, WireError> {
    let kind = match r.u8()? {
        0 => ResourceKind::Index,
        1 => ResourceKind::Stream,
        tag => {
            return Err(WireError::BadTag {
                field: "resource kind",
                tag,
            })
        }
    };
    let schema = r.u32()?;
    let name = String::from(r.name()?);
    Ok(Resource { name, kind, schema })
}

/// A version's description: its state schema and its resources.
pub fn encode_description(schema: u32, resources: &[Resource]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&schema.to_le_bytes());
    out.extend_from_slice(&(resources.len() as u32).to_le_bytes());
    for r in resources {
        put_resource(&mut out, r);
    }
    out
}

/// Decodes [`encode_description`]: names unique, at most
/// [`MAX_RESOURCES`].
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_description(bytes: &[u8]) -> Result<(u32, Vec<Resource>), WireError> {
    let mut r = Reader::new(bytes);
    let schema = r.u32()?;
    let count = r.u32()?;
    if count as usize > MAX_RESOURCES {
        return Err(WireError::TooMany { count });
    }
    let mut resources: Vec<Resource> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let next = read_resource(&mut r)?;
        if resources.iter().any(|x| x.name == next.name) {
            return Err(WireError::Duplicate);
        }
        resources.push(next);
    }
    r.finish()?;
    Ok((schema, resources))
}

/// One resource (the old version's, sent to the new one's `check_compat`)
/// followed by its persisted bytes.
pub fn encode_compat(old: &Resource, persisted: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(persisted.len() + 16 + old.name.len());
    put_resource(&mut out, old);
    out.extend_from_slice(persisted);
    out
}

/// Decodes [`encode_compat`].
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_compat(bytes: &[u8]) -> Result<(Resource, &[u8]), WireError> {
    let mut r = Reader::new(bytes);
    let old = read_resource(&mut r)?;
    Ok((old, r.rest()))
}

/// Saved state: none, or the plugin's bytes.
pub fn encode_saved(state: Option<&[u8]>) -> Vec<u8> {
    match state {
        None => alloc::vec![0],
        Some(bytes) => {
            let mut out = Vec::with_capacity(bytes.len() + 1);
            out.push(1);
            out.extend_from_slice(bytes);
            out
        }
    }
}

/// Decodes [`encode_saved`].
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_saved(bytes: &[u8]) -> Result<Option<&[u8]>, WireError> {
    let mut r = Reader::new(bytes);
    match r.u8()? {
        0 => r.finish().map(|()| None),
        1 => Ok(Some(r.rest())),
        tag => Err(WireError::BadTag {
            field: "saved state",
            tag,
        }),
    }
}

/// State written in `schema` (a migration step's input and output).
pub fn encode_at_schema(schema: u32, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(state.len() + 4);
    out.extend_from_slice(&schema.to_le_bytes());
    out.extend_from_slice(state);
    out
}

/// Decodes [`encode_at_schema`].
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_at_schema(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    let mut r = Reader::new(bytes);
    let schema = r.u32()?;
    Ok((schema, r.rest()))
}

/// A resource name and bytes (`open`'s request).
pub fn encode_named(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4 + name.len());
    put_name(&mut out, name);
    out.extend_from_slice(bytes);
    out
}

/// Decodes [`encode_named`].
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_named(bytes: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let mut r = Reader::new(bytes);
    let name = r.name()?;
    Ok((name, r.rest()))
}

/// A resource name and a position (`resume`'s request).
pub fn encode_named_position(name: &str, position: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + name.len());
    put_name(&mut out, name);
    out.extend_from_slice(&position.to_le_bytes());
    out
}

/// Decodes [`encode_named_position`].
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_named_position(bytes: &[u8]) -> Result<(&str, u64), WireError> {
    let mut r = Reader::new(bytes);
    let name = r.name()?;
    let position = r.u64()?;
    r.finish()?;
    Ok((name, position))
}

/// Decodes a position (`checkpoint`'s output): exactly eight bytes.
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_position(bytes: &[u8]) -> Result<u64, WireError> {
    let mut r = Reader::new(bytes);
    let position = r.u64()?;
    r.finish()?;
    Ok(position)
}

/// Decodes a resource name (`persist`, `checkpoint` and `close`'s request).
///
/// # Errors
///
/// A [`WireError`].
pub fn decode_name(bytes: &[u8]) -> Result<&str, WireError> {
    let mut r = Reader::new(bytes);
    let name = r.name()?;
    r.finish()?;
    Ok(name)
}

/// A resource name alone.
pub fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + name.len());
    put_name(&mut out, name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn every_encoding_round_trips() {
        let rs = vec![Resource::index("tokens", 2), Resource::stream("cdc", 1)];
        assert_eq!(
            decode_description(&encode_description(3, &rs)),
            Ok((3, rs.clone()))
        );
        assert_eq!(
            decode_compat(&encode_compat(&rs[0], b"xyz")),
            Ok((rs[0].clone(), &b"xyz"[..]))
        );
        assert_eq!(decode_saved(&encode_saved(None)), Ok(None));
        assert_eq!(decode_saved(&encode_saved(Some(b""))), Ok(Some(&b""[..])));
        assert_eq!(
            decode_at_schema(&encode_at_schema(7, b"s")),
            Ok((7, &b"s"[..]))
        );
        assert_eq!(decode_named(&encode_named("a", b"b")), Ok(("a", &b"b"[..])));
        assert_eq!(
            decode_named_position(&encode_named_position("cdc", u64::MAX)),
            Ok(("cdc", u64::MAX))
        );
        assert_eq!(decode_name(&encode_name("n")), Ok("n"));
        assert_eq!(decode_position(&9u64.to_le_bytes()), Ok(9));
    }

    #[test]
    fn garbage_is_refused_typed() {
        assert!(matches!(
            decode_description(&[1, 0, 0, 0, 255, 255, 255, 255]),
            Err(WireError::TooMany { .. })
        ));
        // One resource claimed, whose name length runs past the end.
        let mut lying = encode_description(0, &[Resource::index("x", 1)]);
        lying[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_description(&lying), Err(WireError::BadName));
        lying[13..17].copy_from_slice(&200u32.to_le_bytes());
        assert!(matches!(
            decode_description(&lying),
            Err(WireError::Truncated {
                at: 17,
                needed: 200,
                ..
            })
        ));
        let dup = encode_description(0, &[Resource::index("x", 1), Resource::stream("x", 1)]);
        assert_eq!(decode_description(&dup), Err(WireError::Duplicate));
        assert!(matches!(
            decode_saved(&[2]),
            Err(WireError::BadTag { tag: 2, .. })
        ));
        assert_eq!(decode_saved(&[0, 1]), Err(WireError::Trailing { extra: 1 }));
        assert!(matches!(
            decode_position(&[1, 2, 3]),
            Err(WireError::Truncated { .. })
        ));
        assert_eq!(
            decode_position(&[0; 9]),
            Err(WireError::Trailing { extra: 1 })
        );
        assert_eq!(decode_name(&[0, 0, 0, 0]), Err(WireError::BadName));
        // The longest name is accepted, one byte more is not.
        let name = |len: usize| {
            let mut out = (len as u32).to_le_bytes().to_vec();
            out.resize(4 + len, b'n');
            out
        };
        assert_eq!(decode_name(&name(MAX_NAME)).map(str::len), Ok(MAX_NAME));
        assert_eq!(decode_name(&name(MAX_NAME + 1)), Err(WireError::BadName));
        assert_eq!(decode_name(&[1, 0, 0, 0, 0xff]), Err(WireError::BadName));
    }
}
