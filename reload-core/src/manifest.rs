//! What a plugin version says about itself: its [`Manifest`] (name,
//! version, exports, requirements), and the text format it travels in.
//!
//! The format is small, line based and strict, so that a manifest embedded
//! in a library or shipped next to it can be read by a human and decoded by
//! a host that trusts nothing about it:
//!
//! ```text
//! reload-manifest 1
//! name codec
//! version 1.2.0
//! export decode
//! export encode
//! requires udf >=1.0,<2.0 uses eval,compile
//! ```
//!
//! - The first line is the header; `1` is the format.
//! - `name` and `version` (semver) appear once each.
//! - `export` names one entry point; `requires` names a plugin, the range
//!   of its versions this one accepts (a semver requirement, written
//!   without spaces), and optionally the exports it uses.
//! - Blank lines and lines starting with `#` are ignored; fields are
//!   separated by single spaces; `\r` is refused.
//!
//! # Limits
//!
//! One set, the same whether a manifest is built ([`Manifest::new`],
//! [`Manifest::export`], [`Manifest::requires`]) or decoded, so that every
//! manifest that can be built encodes to bytes that decode to it again:
//!
//! | what | limit |
//! |---|---|
//! | a name (plugin, export, required plugin, used export) | 1 to [`MAX_NAME`] (64) characters of `a-z`, `0-9`, `_`, `-` and `.` |
//! | the version | at most [`MAX_VERSION`] (128) bytes of semver |
//! | a requirement's range | at most [`MAX_RANGE`] (128) bytes, in its canonical form |
//! | exports; requirements; exports one requirement uses | at most [`MAX_ENTRIES`] (256) each |
//! | the canonical encoding ([`Manifest::encode`]) | at most [`MAX_LEN`] (64 KiB) |
//!
//! The last is checked on every addition: a manifest within every other
//! limit can still be too large (256 requirements each using 256 exports
//! of 64 characters would be 4 MiB), and an addition that would make it so
//! is refused with [`ManifestError::TooLarge`].
//!
//! [`Manifest::decode`] never panics and returns a typed [`ManifestError`]
//! with the line it stopped at; [`Manifest::encode`] writes the canonical
//! form (exports and requirements sorted), which decodes to an equal
//! manifest. Both are exercised by the `manifest` fuzz target, and the
//! round trip by a property test over the limits.

use std::collections::BTreeMap;
use std::fmt;

pub use semver::{Version, VersionReq};

/// The header's format number this crate reads and writes.
pub const FORMAT: u32 = 1;

/// Longest manifest accepted, in bytes: of the bytes decoded, and of the
/// canonical encoding of one built.
pub const MAX_LEN: usize = 64 * 1024;

/// Most exports, most requirements, and most exports one requirement
/// uses, a manifest may list.
pub const MAX_ENTRIES: usize = 256;

/// Longest name (of the plugin, an export, a required plugin), in
/// characters.
pub const MAX_NAME: usize = 64;

/// Longest version, in bytes of its semver text.
pub const MAX_VERSION: usize = 128;

/// Longest version range of a requirement, in bytes of its canonical text.
pub const MAX_RANGE: usize = 128;

const HEADER: &str = "reload-manifest";

/// A plugin version's description: checked at registration and on every
/// reload (see [`Registry`](crate::registry::Registry)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    name: String,
    version: Version,
    /// Sorted, unique.
    exports: Vec<String>,
    /// By plugin name: sorted, unique.
    requires: BTreeMap<String, Requirement>,
    /// The length of [`Manifest::encode`], kept as lines are added so the
    /// [`MAX_LEN`] check costs nothing per addition.
    len: usize,
}

/// One plugin this version needs: which versions of it, and which of its
/// exports it calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    name: String,
    versions: VersionReq,
    /// Sorted, unique.
    uses: Vec<String>,
}

/// Why bytes, or a manifest being built, were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// More than [`MAX_LEN`] bytes: decoded, or as [`Manifest::encode`]
    /// would write it after the addition that was refused.
    #[error("manifest is {len} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its length.
        len: usize,
        /// [`MAX_LEN`].
        max: usize,
    },
    /// Not UTF-8.
    #[error("manifest is not UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The first line is not `reload-manifest <format>`.
    #[error("line 1: not a manifest (expected `{HEADER} {FORMAT}`)")]
    NotAManifest,
    /// A format this crate does not read.
    #[error("line 1: manifest format {found} is not supported (this build reads {FORMAT})")]
    UnsupportedFormat {
        /// The format given.
        found: String,
    },
    /// A line this format does not have, or with the wrong shape.
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A name (of the plugin, an export or a requirement) outside the
    /// allowed characters or length ([`MAX_NAME`]).
    #[error("line {line}: `{name}` is not a valid name (1-64 of a-z 0-9 _ - .)")]
    BadName {
        /// 1-based line number (0: built, not decoded).
        line: usize,
        /// The name (cut to 80 characters).
        name: String,
    },
    /// Not a semver version, or longer than [`MAX_VERSION`].
    #[error("line {line}: bad version `{text}`: {reason}")]
    BadVersion {
        /// 1-based line number (0: built, not decoded).
        line: usize,
        /// The text (cut to 80 characters).
        text: String,
        /// The parser's message.
        reason: String,
    },
    /// Not a semver requirement, or longer than [`MAX_RANGE`].
    #[error("line {line}: bad version requirement `{text}`: {reason}")]
    BadRequirement {
        /// 1-based line number (0: built, not decoded).
        line: usize,
        /// The text (cut to 80 characters).
        text: String,
        /// The parser's message.
        reason: String,
    },
    /// A field that appears at most once appeared again, or an export or
    /// requirement was listed twice.
    #[error("line {line}: duplicate {what} `{value}`")]
    Duplicate {
        /// 1-based line number (0: built, not decoded).
        line: usize,
        /// `name`, `version`, `export`, `requires` or `uses`.
        what: &'static str,
        /// The repeated value.
        value: String,
    },
    /// `name` or `version` is missing.
    #[error("manifest has no `{field}` line")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// More than [`MAX_ENTRIES`] exports or requirements.
    #[error("more than {max} {what}")]
    TooMany {
        /// `exports` or `requirements`.
        what: &'static str,
        /// [`MAX_ENTRIES`].
        max: usize,
    },
    /// A plugin that requires itself.
    #[error("plugin `{name}` requires itself")]
    RequiresItself {
        /// The plugin.
        name: String,
    },
}

impl Manifest {
    /// A manifest for `name` at `version` (semver), with no exports and no
    /// requirements.
    ///
    /// # Errors
    ///
    /// [`ManifestError::BadName`] or [`ManifestError::BadVersion`].
    pub fn new(name: &str, version: &str) -> Result<Self, ManifestError> {
        Ok(Manifest::start(
            checked_name(0, name)?.to_owned(),
            parse_version(0, version)?,
        ))
    }

    /// The header, name and version lines; both are within their limits,
    /// so these lines are far below [`MAX_LEN`].
    fn start(name: String, version: Version) -> Self {
        let len = HEADER.len() + 3 // "reload-manifest 1\n"
            + "name \n".len() + name.len()
            + "version \n".len() + version.to_string().len();
        Manifest {
            name,
            version,
            exports: Vec::new(),
            requires: BTreeMap::new(),
            len,
        }
    }

    /// Grows the encoded length by `line` bytes, or refuses if that would
    /// pass [`MAX_LEN`] (leaving the manifest as it was).
    fn grow(&mut self, line: usize) -> Result<(), ManifestError> {
        match self.len.checked_add(line) {
            Some(len) if len <= MAX_LEN => {
                self.len = len;
                Ok(())
            }
            _ => Err(ManifestError::TooLarge {
                len: self.len.saturating_add(line),
                max: MAX_LEN,
            }),
        }
    }

    /// Adds an export.
    ///
    /// # Errors
    ///
    /// A bad name, a duplicate, or too many exports.
    pub fn export(mut self, name: &str) -> Result<Self, ManifestError> {
        self.add_export(0, name)?;
        Ok(self)
    }

    /// Adds a requirement: plugin `name`, at versions matching `versions`
    /// (a semver requirement such as `^1.2` or `>=1.0,<3`), of which this
    /// version calls the exports `uses`.
    ///
    /// # Errors
    ///
    /// A bad name or requirement, a duplicate, too many requirements, or a
    /// plugin requiring itself.
    pub fn requires(
        mut self,
        name: &str,
        versions: &str,
        uses: &[&str],
    ) -> Result<Self, ManifestError> {
        let versions = parse_requirement(0, versions)?;
        self.add_requirement(0, name, versions, uses.iter().copied())?;
        Ok(self)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This version.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The entry points it exports, sorted.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Whether it exports `name`.
    pub fn exports_name(&self, name: &str) -> bool {
        self.exports
            .binary_search_by(|e| e.as_str().cmp(name))
            .is_ok()
    }

    /// What it requires, by plugin name.
    pub fn requirements(&self) -> impl ExactSizeIterator<Item = &Requirement> + '_ {
        self.requires.values()
    }

    /// Its requirement on plugin `name`, if any.
    pub fn requirement(&self, name: &str) -> Option<&Requirement> {
        self.requires.get(name)
    }

    /// Decodes a manifest (see the [module docs](self) for the format).
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] naming the first problem and its line.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_LEN {
            return Err(ManifestError::TooLarge {
                len: bytes.len(),
                max: MAX_LEN,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, header)) => check_header(header)?,
            None => return Err(ManifestError::NotAManifest),
        }
        let mut name = None;
        let mut version = None;
        let mut exports = Vec::new();
        let mut requires = Vec::new();
        for (line, text) in lines {
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            if let Some(bad) = text.chars().find(|c| c.is_control()) {
                return Err(malformed(line, format!("control character {bad:?}")));
            }
            let fields: Vec<&str> = text.split(' ').collect();
            if fields.iter().any(|f| f.is_empty()) {
                return Err(malformed(line, "fields are separated by single spaces"));
            }
            match fields.as_slice() {
                ["name", value] => {
                    if name.is_some() {
                        return Err(duplicate(line, "name", value));
                    }
                    name = Some(checked_name(line, value)?.to_owned());
                }
                ["version", value] => {
                    if version.is_some() {
                        return Err(duplicate(line, "version", value));
                    }
                    version = Some(parse_version(line, value)?);
                }
                ["export", value] => exports.push((line, *value)),
                ["requires", dep, range] => requires.push((line, *dep, *range, "")),
                ["requires", dep, range, "uses", uses] => {
                    requires.push((line, *dep, *range, *uses))
                }
                [field, ..] if matches!(*field, "name" | "version" | "export" | "requires") => {
                    return Err(malformed(
                        line,
                        format!("wrong number of fields for `{field}`"),
                    ));
                }
                [field, ..] => {
                    return Err(malformed(line, format!("unknown field `{}`", cut(field))));
                }
                [] => unreachable!("split yields at least one field"),
            }
        }
        let name = name.ok_or(ManifestError::Missing { field: "name" })?;
        let version = version.ok_or(ManifestError::Missing { field: "version" })?;
        let mut manifest = Manifest::start(name, version);
        for (line, export) in exports {
            manifest.add_export(line, export)?;
        }
        for (line, dep, range, uses) in requires {
            let versions = parse_requirement(line, range)?;
            let uses = uses.split(',').filter(|u| !u.is_empty());
            manifest.add_requirement(line, dep, versions, uses)?;
        }
        Ok(manifest)
    }

    /// The canonical encoding: decodes to a manifest equal to this one.
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    fn add_export(&mut self, line: usize, name: &str) -> Result<(), ManifestError> {
        let name = checked_name(line, name)?;
        match self.exports.binary_search_by(|e| e.as_str().cmp(name)) {
            Ok(_) => Err(duplicate(line, "export", name)),
            Err(_) if self.exports.len() >= MAX_ENTRIES => Err(ManifestError::TooMany {
                what: "exports",
                max: MAX_ENTRIES,
            }),
            Err(at) => {
                self.grow("export \n".len() + name.len())?;
                self.exports.insert(at, name.to_owned());
                Ok(())
            }
        }
    }

    fn add_requirement<'u>(
        &mut self,
        line: usize,
        name: &str,
        versions: VersionReq,
        uses: impl Iterator<Item = &'u str>,
    ) -> Result<(), ManifestError> {
        let name = checked_name(line, name)?;
        if name == self.name {
            return Err(ManifestError::RequiresItself {
                name: name.to_owned(),
            });
        }
        if self.requires.contains_key(name) {
            return Err(duplicate(line, "requires", name));
        }
        if self.requires.len() >= MAX_ENTRIES {
            return Err(ManifestError::TooMany {
                what: "requirements",
                max: MAX_ENTRIES,
            });
        }
        let mut used: Vec<String> = Vec::new();
        for export in uses {
            let export = checked_name(line, export)?;
            match used.binary_search_by(|e| e.as_str().cmp(export)) {
                Ok(_) => return Err(duplicate(line, "uses", export)),
                Err(_) if used.len() >= MAX_ENTRIES => {
                    return Err(ManifestError::TooMany {
                        what: "used exports",
                        max: MAX_ENTRIES,
                    })
                }
                Err(at) => used.insert(at, export.to_owned()),
            }
        }
        let uses_len = if used.is_empty() {
            0
        } else {
            " uses ".len() + used.iter().map(|u| u.len() + 1).sum::<usize>() - 1
        };
        self.grow("requires  \n".len() + name.len() + canonical_range(&versions).len() + uses_len)?;
        self.requires.insert(
            name.to_owned(),
            Requirement {
                name: name.to_owned(),
                versions,
                uses: used,
            },
        );
        Ok(())
    }
}

impl Requirement {
    /// The plugin required.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The versions of it accepted.
    pub fn versions(&self) -> &VersionReq {
        &self.versions
    }

    /// The exports of it that are called, sorted.
    pub fn uses(&self) -> &[String] {
        &self.uses
    }

    /// Whether `dependency` satisfies this requirement: right name, a
    /// version in range, and every used export present. `Err` names the
    /// first thing that does not hold.
    pub fn check(&self, dependency: &Manifest) -> Result<(), Unmet> {
        if dependency.name != self.name {
            return Err(Unmet::Name);
        }
        if !self.versions.matches(&dependency.version) {
            return Err(Unmet::Version);
        }
        match self.uses.iter().find(|u| !dependency.exports_name(u)) {
            Some(missing) => Err(Unmet::Export(missing.clone())),
            None => Ok(()),
        }
    }
}

/// Why a [`Requirement`] is not met by a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmet {
    /// It is another plugin.
    Name,
    /// Its version is outside the range.
    Version,
    /// It does not export this.
    Export(String),
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{HEADER} {FORMAT}")?;
        writeln!(f, "name {}", self.name)?;
        writeln!(f, "version {}", self.version)?;
        for export in &self.exports {
            writeln!(f, "export {export}")?;
        }
        for r in self.requires.values() {
            let range = canonical_range(&r.versions);
            write!(f, "requires {} {range}", r.name)?;
            if !r.uses.is_empty() {
                write!(f, " uses {}", r.uses.join(","))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn check_header(line: &str) -> Result<(), ManifestError> {
    match line.split_once(' ') {
        Some((HEADER, format)) if format == FORMAT.to_string() => Ok(()),
        Some((HEADER, format)) => Err(ManifestError::UnsupportedFormat { found: cut(format) }),
        _ => Err(ManifestError::NotAManifest),
    }
}

fn checked_name(line: usize, name: &str) -> Result<&str, ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(ManifestError::BadName {
            line,
            name: cut(name),
        })
    }
}

fn parse_version(line: usize, text: &str) -> Result<Version, ManifestError> {
    let bad = |reason: String| ManifestError::BadVersion {
        line,
        text: cut(text),
        reason,
    };
    if text.len() > MAX_VERSION {
        return Err(bad(format!("longer than {MAX_VERSION} bytes")));
    }
    let version = Version::parse(text).map_err(|e| bad(e.to_string()))?;
    // What `encode` writes is semver's own text: held to the limit too.
    if version.to_string().len() > MAX_VERSION {
        return Err(bad(format!("longer than {MAX_VERSION} bytes as written")));
    }
    Ok(version)
}

/// A range as `encode` writes it: semver's text without its spaces (the
/// format splits fields on spaces; semver writes `>=1, <2`).
fn canonical_range(range: &VersionReq) -> String {
    range.to_string().replace(' ', "")
}

fn parse_requirement(line: usize, text: &str) -> Result<VersionReq, ManifestError> {
    let bad = |reason: String| ManifestError::BadRequirement {
        line,
        text: cut(text),
        reason,
    };
    // Checked before parsing, so a huge text costs nothing; and on the
    // canonical form after (`1.0` is written `^1.0`).
    if text.len() > MAX_RANGE {
        return Err(bad(format!("longer than {MAX_RANGE} bytes")));
    }
    let req = VersionReq::parse(text).map_err(|e| bad(e.to_string()))?;
    // Canonical form must survive the trip through `encode`.
    let canonical = canonical_range(&req);
    if canonical.len() > MAX_RANGE {
        return Err(bad(format!(
            "longer than {MAX_RANGE} bytes as written (`{}`)",
            cut(&canonical)
        )));
    }
    match VersionReq::parse(&canonical) {
        Ok(again) if again == req => Ok(req),
        _ => Err(bad("it does not survive re-encoding".to_owned())),
    }
}

fn malformed(line: usize, reason: impl Into<String>) -> ManifestError {
    ManifestError::Malformed {
        line,
        reason: reason.into(),
    }
}

fn duplicate(line: usize, what: &'static str, value: &str) -> ManifestError {
    ManifestError::Duplicate {
        line,
        what,
        value: cut(value),
    }
}

/// At most 80 characters of untrusted text, for an error message.
fn cut(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Manifest {
        Manifest::new("codec", "1.2.0")
            .and_then(|m| m.export("encode"))
            .and_then(|m| m.export("decode"))
            .and_then(|m| m.requires("udf", ">=1.0, <2.0", &["eval", "compile"]))
            .expect("valid")
    }

    #[test]
    fn encodes_canonically_and_round_trips() {
        let m = codec();
        let text = String::from_utf8(m.encode()).expect("utf-8");
        assert_eq!(
            text,
            "reload-manifest 1\nname codec\nversion 1.2.0\nexport decode\nexport encode\n\
             requires udf >=1.0,<2.0 uses compile,eval\n"
        );
        assert_eq!(Manifest::decode(text.as_bytes()), Ok(m));
    }

    #[test]
    fn accepts_comments_blank_lines_and_any_order() {
        let text = "reload-manifest 1\n# a comment\n\nexport b\nrequires x ^1\nversion 0.1.0\nname p\nexport a";
        let m = Manifest::decode(text.as_bytes()).expect("valid");
        assert_eq!(m.exports(), ["a", "b"]);
        assert_eq!(m.requirement("x").map(|r| r.uses().len()), Some(0));
        assert!(m
            .requirement("x")
            .expect("x")
            .versions()
            .matches(&Version::new(1, 9, 0)));
    }

    #[test]
    fn refuses_bad_input_with_the_line() {
        let cases: &[(&[u8], ManifestError)] = &[
            (b"", ManifestError::NotAManifest),
            (
                b"reload-manifest 2\n",
                ManifestError::UnsupportedFormat { found: "2".into() },
            ),
            (b"\xff", ManifestError::NotUtf8 { offset: 0 }),
            (
                b"reload-manifest 1\nname a\n",
                ManifestError::Missing { field: "version" },
            ),
            (
                b"reload-manifest 1\nname a\nname b\n",
                ManifestError::Duplicate {
                    line: 3,
                    what: "name",
                    value: "b".into(),
                },
            ),
            (
                b"reload-manifest 1\nname A\n",
                ManifestError::BadName {
                    line: 2,
                    name: "A".into(),
                },
            ),
            (
                b"reload-manifest 1\nname a\nversion 1\n",
                ManifestError::BadVersion {
                    line: 3,
                    text: "1".into(),
                    reason: "unexpected end of input while parsing major version number".into(),
                },
            ),
            (
                b"reload-manifest 1\nname a\nversion 1.0.0\nrequires a ^1\n",
                ManifestError::RequiresItself { name: "a".into() },
            ),
            (
                b"reload-manifest 1\nname a\nversion 1.0.0\nexport x\nexport x\n",
                ManifestError::Duplicate {
                    line: 5,
                    what: "export",
                    value: "x".into(),
                },
            ),
            (
                b"reload-manifest 1\nname a\r\n",
                ManifestError::Malformed {
                    line: 2,
                    reason: "control character '\\r'".into(),
                },
            ),
            (
                b"reload-manifest 1\nname  a\n",
                ManifestError::Malformed {
                    line: 2,
                    reason: "fields are separated by single spaces".into(),
                },
            ),
            (
                b"reload-manifest 1\nsigned yes\n",
                ManifestError::Malformed {
                    line: 2,
                    reason: "unknown field `signed`".into(),
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Manifest::decode(bytes).as_ref(), Err(expected), "{bytes:?}");
        }
        let big = vec![b'#'; MAX_LEN + 1];
        assert_eq!(
            Manifest::decode(&big),
            Err(ManifestError::TooLarge {
                len: MAX_LEN + 1,
                max: MAX_LEN
            })
        );
    }

    #[test]
    fn requirement_checks_name_range_and_exports() {
        let r = codec().requirement("udf").expect("udf").clone();
        let udf = |v: &str, exports: &[&str]| {
            exports
                .iter()
                .try_fold(Manifest::new("udf", v).expect("valid"), |m, e| m.export(e))
                .expect("valid")
        };
        assert_eq!(r.check(&udf("1.4.0", &["eval", "compile", "x"])), Ok(()));
        assert_eq!(
            r.check(&udf("2.0.0", &["eval", "compile"])),
            Err(Unmet::Version)
        );
        assert_eq!(
            r.check(&udf("1.0.0", &["eval"])),
            Err(Unmet::Export("compile".into()))
        );
        assert_eq!(
            r.check(&Manifest::new("other", "1.0.0").expect("valid")),
            Err(Unmet::Name)
        );
    }
}
