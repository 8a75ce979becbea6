//! Just enough ELF to check a plugin library before it is mapped: that the
//! file is whole (the section header table, which linkers write last, lies
//! inside it), and to read the manifest section without running any of the
//! library's code. 64-bit little-endian only (x86-64, AArch64 Linux); every
//! offset is bounds-checked, so any bytes get a typed error, never a panic.

/// Why a file is not a loadable, complete plugin library.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// Not an ELF file.
    #[error("not an ELF file")]
    NotElf,
    /// An ELF file this reader does not handle (32-bit or big-endian).
    #[error("unsupported ELF class or byte order (64-bit little-endian only)")]
    Unsupported,
    /// A table or section lies past the end of the file: it is truncated
    /// (still being written) or corrupt.
    #[error("truncated or corrupt: {what} ends at byte {end}, the file has {len}")]
    Truncated {
        /// What lies outside.
        what: &'static str,
        /// Where it would end.
        end: u64,
        /// The file's length.
        len: usize,
    },
    /// No section of that name.
    #[error("no `{0}` section")]
    NoSection(String),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `[offset, offset + len)` of `bytes`, or `Truncated` naming `what`.
fn range(
    bytes: &[u8],
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<(usize, usize), ElfError> {
    let end = offset.checked_add(len).ok_or(ElfError::Truncated {
        what,
        end: u64::MAX,
        len: bytes.len(),
    })?;
    if end > bytes.len() as u64 {
        return Err(ElfError::Truncated {
            what,
            end,
            len: bytes.len(),
        });
    }
    // Both fit in the file's length, a `usize`.
    Ok((offset as usize, end as usize))
}

/// The contents of section `name`, after checking that the file is whole.
///
/// # Errors
///
/// An [`ElfError`].
pub fn section<'a>(bytes: &'a [u8], name: &str) -> Result<&'a [u8], ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS = 2 (64-bit), EI_DATA = 1 (little-endian).
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(ElfError::Unsupported);
    }
    let header = |what| ElfError::Truncated {
        what,
        end: 64,
        len: bytes.len(),
    };
    let shoff = u64_at(bytes, 0x28).ok_or(header("ELF header"))?;
    let shentsize = u16_at(bytes, 0x3a).ok_or(header("ELF header"))?;
    let shnum = u16_at(bytes, 0x3c).ok_or(header("ELF header"))?;
    let shstrndx = u16_at(bytes, 0x3e).ok_or(header("ELF header"))?;
    if shentsize < 64 || shnum == 0 || shstrndx >= shnum {
        return Err(ElfError::NotElf);
    }
    let table_len = u64::from(shentsize) * u64::from(shnum);
    let (table, _) = range(bytes, shoff, table_len, "the section header table")?;
    let header_at = |i: u16| table + usize::from(i) * usize::from(shentsize);
    let bounds = |i: u16, what| -> Result<(usize, usize), ElfError> {
        let h = header_at(i);
        // sh_type 8 (NOBITS, e.g. .bss) occupies no file bytes.
        let kind = u32_at(bytes, h + 4).ok_or(ElfError::NotElf)?;
        let offset = u64_at(bytes, h + 0x18).ok_or(ElfError::NotElf)?;
        let size = if kind == 8 {
            0
        } else {
            u64_at(bytes, h + 0x20).ok_or(ElfError::NotElf)?
        };
        range(bytes, offset, size, what)
    };
    // Every section must lie inside the file: a half-written library fails
    // here even if its header table happened to be complete.
    for i in 0..shnum {
        bounds(i, "a section")?;
    }
    let (names, names_end) = bounds(shstrndx, "the section name table")?;
    let names = &bytes[names..names_end];
    for i in 0..shnum {
        let name_at = u32_at(bytes, header_at(i)).ok_or(ElfError::NotElf)? as usize;
        let Some(rest) = names.get(name_at..) else {
            continue;
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            let (start, end) = bounds(i, "the manifest section")?;
            return Ok(&bytes[start..end]);
        }
    }
    Err(ElfError::NoSection(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_whole_elf_file_without_panicking() {
        assert_eq!(section(b"", ".x"), Err(ElfError::NotElf));
        assert_eq!(section(b"MZ\x90\x00", ".x"), Err(ElfError::NotElf));
        assert_eq!(
            section(b"\x7fELF\x01\x01", ".x"),
            Err(ElfError::Unsupported)
        );
        assert!(matches!(
            section(b"\x7fELF\x02\x01\x01", ".x"),
            Err(ElfError::Truncated { .. })
        ));
        // This test binary is a whole ELF file: every prefix of it is
        // refused, and the whole is accepted (it has no manifest section).
        let me = std::fs::read(std::env::current_exe().expect("path")).expect("readable");
        assert!(matches!(
            section(&me, ".reload_manifest"),
            Err(ElfError::NoSection(_))
        ));
        assert!(section(&me, ".text").is_ok_and(|t| !t.is_empty()));
        for cut in [64, 4096, me.len() / 2, me.len() - 1] {
            assert!(
                matches!(
                    section(&me[..cut], ".text"),
                    Err(ElfError::Truncated { .. })
                ),
                "a file cut at {cut} bytes was accepted"
            );
        }
    }
}
