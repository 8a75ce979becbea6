//! [`SavedState`]: a plugin's state bytes in the library's envelope.
//!
//! The bytes inside are the plugin's own encoding (any serde format, or
//! none); the envelope around them is ours, so that the library, not each
//! plugin, rejects state that was cut short, corrupted, or written by a
//! schema the new version does not know. The layout, all integers little
//! endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `RLST` |
//! | 4 | 1 | envelope format, `1` |
//! | 5 | 1 | flags, `0` (reserved) |
//! | 6 | 4 | schema version of the payload |
//! | 10 | 8 | payload length |
//! | 18 | 4 | CRC-32 (IEEE) of bytes 4..18 and the payload |
//! | 22 | n | payload |
//!
//! Decoding checks every field and the checksum and never panics on any
//! input (a fuzz target, `fuzz/fuzz_targets/envelope.rs`, holds it to that;
//! its findings replay as tests on stable).

use std::fmt;

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"RLST";
/// The envelope format this library writes and reads.
pub const FORMAT: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 22;

/// A plugin's saved state: its schema version and its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The schema version the bytes are written in (the saving version's
    /// [`Stateful::schema`](crate::Stateful::schema)).
    pub schema: u32,
    /// The plugin's own encoding of its state.
    pub bytes: Vec<u8>,
}

/// Why an envelope was rejected. Nothing is consumed: the bytes are still
/// the caller's, and a reload that met this error left the old version
/// serving.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Fewer bytes than the header, or than the header says follow.
    #[error("state envelope truncated: {needed} bytes needed, {found} present")]
    Truncated {
        /// Bytes the envelope needs.
        needed: u64,
        /// Bytes there are.
        found: u64,
    },
    /// Bytes follow the declared payload.
    #[error("state envelope has {extra} bytes after its declared payload")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// Not an envelope at all.
    #[error("not a state envelope (magic {found:02x?})")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// An envelope format this library does not read.
    #[error("state envelope format {found} is not supported (this library reads {FORMAT})")]
    UnsupportedFormat {
        /// The format byte.
        found: u8,
    },
    /// Reserved flags are set.
    #[error("state envelope has reserved flags {found:#04x} set")]
    ReservedFlags {
        /// The flags byte.
        found: u8,
    },
    /// The checksum does not match: the bytes were corrupted.
    #[error("state envelope checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The checksum in the envelope.
        stored: u32,
        /// The checksum of the bytes present.
        computed: u32,
    },
    /// The state's schema is newer than the version restoring it knows.
    #[error("state schema {found} is unknown to a version whose schema is {known}")]
    UnknownSchema {
        /// The state's schema.
        found: u32,
        /// The newest schema the restoring version knows.
        known: u32,
    },
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

impl SavedState {
    /// State `bytes` written in `schema`.
    pub fn new(schema: u32, bytes: Vec<u8>) -> Self {
        SavedState { schema, bytes }
    }

    /// The state in its envelope, ready to store or send.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.bytes.len());
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT);
        out.push(0);
        out.extend_from_slice(&self.schema.to_le_bytes());
        out.extend_from_slice(&(self.bytes.len() as u64).to_le_bytes());
        let crc = checksum(&out[4..18], &self.bytes);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Reads an envelope, checking every field and the checksum.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] says what is wrong; `envelope` is untouched.
    pub fn decode(envelope: &[u8]) -> Result<SavedState, EnvelopeError> {
        let found = envelope.len() as u64;
        let Some(header) = envelope.get(..HEADER_LEN) else {
            return Err(EnvelopeError::Truncated {
                needed: HEADER_LEN as u64,
                found,
            });
        };
        let field = |at: usize, len: usize| &header[at..at + len];
        let mut magic = [0; 4];
        magic.copy_from_slice(field(0, 4));
        if magic != MAGIC {
            return Err(EnvelopeError::BadMagic { found: magic });
        }
        if header[4] != FORMAT {
            return Err(EnvelopeError::UnsupportedFormat { found: header[4] });
        }
        if header[5] != 0 {
            return Err(EnvelopeError::ReservedFlags { found: header[5] });
        }
        let schema = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
        let mut len = [0; 8];
        len.copy_from_slice(field(10, 8));
        let len = u64::from_le_bytes(len);
        let needed = (HEADER_LEN as u64).saturating_add(len);
        if found < needed {
            return Err(EnvelopeError::Truncated { needed, found });
        }
        if found > needed {
            return Err(EnvelopeError::TrailingBytes {
                extra: found - needed,
            });
        }
        let stored = u32::from_le_bytes([header[18], header[19], header[20], header[21]]);
        let payload = &envelope[HEADER_LEN..];
        let computed = checksum(&header[4..18], payload);
        if stored != computed {
            return Err(EnvelopeError::Checksum { stored, computed });
        }
        Ok(SavedState {
            schema,
            bytes: payload.to_vec(),
        })
    }
}

impl fmt::Debug for SavedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedState")
            .field("schema", &self.schema)
            .field("len", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pins_the_layout() {
        let state = SavedState::new(3, b"counter=42".to_vec());
        let bytes = state.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 10);
        assert_eq!(&bytes[..4], b"RLST");
        assert_eq!(bytes[4..10], [1, 0, 3, 0, 0, 0]);
        assert_eq!(bytes[10..18], 10u64.to_le_bytes());
        assert_eq!(SavedState::decode(&bytes), Ok(state));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let bytes = SavedState::new(7, b"some state".to_vec()).encode();
        for i in 0..bytes.len() * 8 {
            let mut corrupt = bytes.clone();
            corrupt[i / 8] ^= 1 << (i % 8);
            assert!(
                SavedState::decode(&corrupt).is_err(),
                "flipping bit {i} went unnoticed"
            );
        }
    }

    /// A corrupted envelope is refused whatever its checksum field holds:
    /// the special values (zero, all ones, the checksum of the bytes as
    /// they were) are not a way around the check, with a payload or
    /// without one.
    #[test]
    fn a_checksum_field_of_any_special_value_is_verified() {
        for payload in [b"state".to_vec(), Vec::new()] {
            let good = SavedState::new(5, payload.clone()).encode();
            let original = u32::from_le_bytes([good[18], good[19], good[20], good[21]]);
            // Corrupt the schema (covered by the checksum), then write each
            // special value into the checksum field.
            let mut corrupt = good.clone();
            corrupt[6] ^= 0x01;
            for stored in [0, u32::MAX, original, original ^ 1] {
                let mut bytes = corrupt.clone();
                bytes[18..22].copy_from_slice(&stored.to_le_bytes());
                assert!(
                    matches!(
                        SavedState::decode(&bytes),
                        Err(EnvelopeError::Checksum { stored: s, .. }) if s == stored
                    ),
                    "payload {payload:?}, checksum field {stored:#x}"
                );
            }
            // And an intact envelope with a zeroed or saturated field is
            // refused too (its checksum is neither).
            for stored in [0, u32::MAX] {
                let mut bytes = good.clone();
                bytes[18..22].copy_from_slice(&stored.to_le_bytes());
                assert!(matches!(
                    SavedState::decode(&bytes),
                    Err(EnvelopeError::Checksum { .. })
                ));
            }
        }
    }

    /// The other header fields at their special values: each is refused
    /// with its own error, or (the schema, any value) carried exactly.
    #[test]
    fn header_fields_at_their_edges() {
        for schema in [0, 1, u32::MAX] {
            let state = SavedState::new(schema, vec![7; 3]);
            assert_eq!(SavedState::decode(&state.encode()), Ok(state));
        }
        let good = SavedState::new(1, vec![9; 4]).encode();
        let with = |at: usize, byte: u8| {
            let mut b = good.clone();
            b[at] = byte;
            SavedState::decode(&b)
        };
        for format in [0, 2, u8::MAX] {
            assert_eq!(
                with(4, format),
                Err(EnvelopeError::UnsupportedFormat { found: format })
            );
        }
        for flags in [1, 0x80, u8::MAX] {
            assert_eq!(
                with(5, flags),
                Err(EnvelopeError::ReservedFlags { found: flags })
            );
        }
        // A declared length of zero with a payload present: trailing bytes,
        // not a checksum question.
        let mut zero_len = good.clone();
        zero_len[10..18].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            SavedState::decode(&zero_len),
            Err(EnvelopeError::TrailingBytes { extra: 4 })
        );
        // One more than present, and the largest: truncated, no overflow.
        for len in [5u64, u64::MAX - 21, u64::MAX] {
            let mut bytes = good.clone();
            bytes[10..18].copy_from_slice(&len.to_le_bytes());
            assert!(
                matches!(
                    SavedState::decode(&bytes),
                    Err(EnvelopeError::Truncated { found: 26, .. })
                ),
                "{len}"
            );
        }
        // The magic off by one bit in each byte.
        for (i, byte) in MAGIC.iter().enumerate() {
            assert!(matches!(
                with(i, byte ^ 1),
                Err(EnvelopeError::BadMagic { .. })
            ));
        }
    }

    #[test]
    fn each_defect_has_its_own_error() {
        let good = SavedState::new(1, vec![9; 4]).encode();
        let with = |at: usize, byte: u8| {
            let mut b = good.clone();
            b[at] = byte;
            SavedState::decode(&b)
        };
        assert_eq!(
            SavedState::decode(&good[..5]),
            Err(EnvelopeError::Truncated {
                needed: 22,
                found: 5
            })
        );
        assert_eq!(
            SavedState::decode(&good[..24]),
            Err(EnvelopeError::Truncated {
                needed: 26,
                found: 24
            })
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            SavedState::decode(&long),
            Err(EnvelopeError::TrailingBytes { extra: 1 })
        );
        assert!(matches!(with(0, b'X'), Err(EnvelopeError::BadMagic { .. })));
        assert_eq!(
            with(4, 2),
            Err(EnvelopeError::UnsupportedFormat { found: 2 })
        );
        assert_eq!(with(5, 1), Err(EnvelopeError::ReservedFlags { found: 1 }));
        assert!(matches!(with(22, 0), Err(EnvelopeError::Checksum { .. })));
        // A length near u64::MAX must not overflow or allocate.
        let mut huge = good.clone();
        huge[10..18].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            SavedState::decode(&huge),
            Err(EnvelopeError::Truncated {
                needed: u64::MAX,
                ..
            })
        ));
    }
}
