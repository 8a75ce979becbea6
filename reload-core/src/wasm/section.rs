//! Reading a WebAssembly module's custom section without compiling it:
//! the manifest travels in a custom section named [`MANIFEST_SECTION`], so
//! the host reads and verifies it before anything of the module runs (as
//! for native libraries' `.reload_manifest`).
//!
//! The reader is total: any bytes give a section or a typed
//! [`SectionError`], never a panic, and a section it returns lies inside
//! the input (the `wasm` fuzz target checks both).

/// The custom section holding the manifest text.
pub const MANIFEST_SECTION: &str = "reload-manifest";

/// Why the bytes are not a module with that section.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionError {
    /// Neither a module (`\0asm` version 1) nor a component (`\0asm`
    /// version `0x0d`, layer 1).
    #[error("not a WebAssembly module or component (bad magic or version)")]
    NotWasm,
    /// A section's length runs past the end, or a LEB128 is malformed.
    #[error("truncated or malformed at byte {at}")]
    Malformed {
        /// Where.
        at: usize,
    },
    /// No custom section of that name.
    #[error("no `{0}` custom section")]
    Missing(&'static str),
    /// Two of them.
    #[error("two `{0}` custom sections")]
    Duplicate(&'static str),
}

/// Reads an unsigned LEB128 of at most 32 bits at `*at`.
fn leb_u32(bytes: &[u8], at: &mut usize) -> Result<u32, SectionError> {
    let start = *at;
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes
            .get(*at)
            .ok_or(SectionError::Malformed { at: start })?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| SectionError::Malformed { at: start });
        }
    }
    Err(SectionError::Malformed { at: start })
}

/// A core module's preamble: magic and version 1.
const MODULE: &[u8; 8] = b"\0asm\x01\0\0\0";
/// A component's preamble: magic, version `0x0d`, layer 1.
const COMPONENT: &[u8; 8] = b"\0asm\x0d\0\x01\0";

/// Whether `bytes` start as a component (rather than a core module).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.get(..8) == Some(COMPONENT.as_slice())
}

/// The payload of the custom section `name` at the top level of `module`
/// (a core module, or a component: its nested modules' sections are not
/// looked into).
///
/// # Errors
///
/// A [`SectionError`].
pub fn custom_section<'a>(module: &'a [u8], name: &'static str) -> Result<&'a [u8], SectionError> {
    let preamble = module.get(..8);
    if preamble != Some(MODULE.as_slice()) && preamble != Some(COMPONENT.as_slice()) {
        return Err(SectionError::NotWasm);
    }
    let mut at = 8;
    let mut found = None;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = leb_u32(module, &mut at)? as usize;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= module.len())
            .ok_or(SectionError::Malformed { at })?;
        if id == 0 {
            let mut p = at;
            let len = leb_u32(module, &mut p)? as usize;
            let name_end = p
                .checked_add(len)
                .filter(|&e| e <= end)
                .ok_or(SectionError::Malformed { at: p })?;
            if &module[p..name_end] == name.as_bytes() {
                if found.is_some() {
                    return Err(SectionError::Duplicate(name));
                }
                found = Some(&module[name_end..end]);
            }
        }
        at = end;
    }
    found.ok_or(SectionError::Missing(name))
}

/// Appends a custom section `name` holding `payload` to `binary` (a core
/// module or a component: custom sections may come last in both), as
/// [`custom_section`] reads it back. With [`MANIFEST_SECTION`] and a
/// manifest's text, this is how a plugin's build (or a test) attaches the
/// manifest the host reads before compiling anything.
pub fn append_custom_section(binary: &mut Vec<u8>, name: &str, payload: &[u8]) {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::with_capacity(name.len() + payload.len() + 5);
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    binary.push(0);
    leb(body.len(), binary);
    binary.extend_from_slice(&body);
}

/// The manifest section of `module` (see [`custom_section`]).
///
/// # Errors
///
/// A [`SectionError`].
pub fn manifest_section(module: &[u8]) -> Result<&[u8], SectionError> {
    custom_section(module, MANIFEST_SECTION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        for (id, payload) in sections {
            m.push(*id);
            m.push(u8::try_from(payload.len()).expect("small"));
            m.extend_from_slice(payload);
        }
        m
    }

    fn custom(name: &str, payload: &[u8]) -> (u8, Vec<u8>) {
        let mut p = vec![u8::try_from(name.len()).expect("small")];
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(payload);
        (0, p)
    }

    #[test]
    fn an_appended_section_reads_back_from_modules_and_components() {
        let big = vec![7u8; 300]; // a length over one LEB128 byte
        for preamble in [&b"\0asm\x01\0\0\0"[..], &b"\0asm\x0d\0\x01\0"[..]] {
            let mut binary = preamble.to_vec();
            append_custom_section(&mut binary, "x", b"other");
            append_custom_section(&mut binary, MANIFEST_SECTION, &big);
            assert_eq!(manifest_section(&binary), Ok(&big[..]));
            assert_eq!(custom_section(&binary, "x"), Ok(&b"other"[..]));
        }
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm\x01\0\0\0"));
    }

    #[test]
    fn finds_the_manifest_and_refuses_the_rest_typed() {
        let good = module(&[
            (1, vec![0]),
            custom("reload-manifest", b"m"),
            custom("x", b"y"),
        ]);
        assert_eq!(manifest_section(&good), Ok(&b"m"[..]));
        assert_eq!(
            manifest_section(b"\0asm\x02\0\0\0"),
            Err(SectionError::NotWasm)
        );
        assert_eq!(
            manifest_section(&module(&[custom("x", b"")])),
            Err(SectionError::Missing(MANIFEST_SECTION))
        );
        let two = module(&[
            custom("reload-manifest", b"a"),
            custom("reload-manifest", b"b"),
        ]);
        assert_eq!(
            manifest_section(&two),
            Err(SectionError::Duplicate(MANIFEST_SECTION))
        );
        let mut cut = good.clone();
        cut.truncate(good.len() - 3);
        assert!(matches!(
            manifest_section(&cut),
            Err(SectionError::Malformed { .. })
        ));
        // A LEB128 that never ends.
        let mut endless = b"\0asm\x01\0\0\0\0".to_vec();
        endless.extend_from_slice(&[0xff; 6]);
        assert!(matches!(
            manifest_section(&endless),
            Err(SectionError::Malformed { .. })
        ));
    }
}
