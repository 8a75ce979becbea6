//! The manifest a library carries, built at compile time by
//! [`export_plugin!`](crate::export_plugin) from the plugin's name, version
//! (Cargo's by default) and exports, so the version is written once, in
//! `Cargo.toml`.
//!
//! The result is the host's manifest text format:
//!
//! ```text
//! reload-manifest 1
//! name adder
//! version 1.0.0
//! export call
//! requires math >=1,<2 uses eval
//! ```
//!
//! Nothing here checks the fields: the host decodes the manifest (strictly)
//! before it maps the library, so a bad name or version is refused there,
//! typed, with the line it stopped at.

const HEADER: &str = "reload-manifest 1\n";

const fn line_len(key: &str, value: &str) -> usize {
    key.len() + 1 + value.len() + 1
}

/// The manifest's length in bytes.
pub const fn manifest_len(name: &str, version: &str, exports: &[&str], requires: &[&str]) -> usize {
    let mut len = HEADER.len() + line_len("name", name) + line_len("version", version);
    let mut i = 0;
    while i < exports.len() {
        len += line_len("export", exports[i]);
        i += 1;
    }
    let mut i = 0;
    while i < requires.len() {
        len += line_len("requires", requires[i]);
        i += 1;
    }
    len
}

const fn put(out: &mut [u8], mut at: usize, s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        out[at] = bytes[i];
        at += 1;
        i += 1;
    }
    at
}

const fn put_line(out: &mut [u8], at: usize, key: &str, value: &str) -> usize {
    let at = put(out, at, key);
    let at = put(out, at, " ");
    let at = put(out, at, value);
    put(out, at, "\n")
}

/// The manifest's bytes; `N` must be [`manifest_len`] of the same
/// arguments (a mismatch fails the build, as a const-evaluation panic).
pub const fn manifest_bytes<const N: usize>(
    name: &str,
    version: &str,
    exports: &[&str],
    requires: &[&str],
) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = put(&mut out, 0, HEADER);
    at = put_line(&mut out, at, "name", name);
    at = put_line(&mut out, at, "version", version);
    let mut i = 0;
    while i < exports.len() {
        at = put_line(&mut out, at, "export", exports[i]);
        i += 1;
    }
    let mut i = 0;
    while i < requires.len() {
        at = put_line(&mut out, at, "requires", requires[i]);
        i += 1;
    }
    assert!(at == N, "manifest length mismatch");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_text_format() {
        const LEN: usize = manifest_len("adder", "1.2.0", &["call", "sum"], &["math ^1 uses eval"]);
        const BYTES: [u8; LEN] =
            manifest_bytes("adder", "1.2.0", &["call", "sum"], &["math ^1 uses eval"]);
        assert_eq!(
            &BYTES[..],
            b"reload-manifest 1\nname adder\nversion 1.2.0\nexport call\nexport sum\nrequires math ^1 uses eval\n"
        );
    }
}
