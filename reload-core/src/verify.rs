//! Integrity checks: every version a [`Registry`](crate::registry::Registry)
//! loads, at registration and on every reload, first goes through the
//! [`Verifier`] the host configured. A refusal is a typed [`VerifyError`]
//! and the old version keeps serving.
//!
//! Out of the box: [`HashPin`] (the SHA-256 of the artifact must be one the
//! host pinned for that plugin), [`Signed`] (a detached signature over that
//! digest, checked by a [`SignatureScheme`] the host brings: this crate
//! ships no cryptography of its own beyond the hash) and [`Unchecked`]
//! (for tests and builds the host trusts, named so that it shows in review).
//! Verifiers compose as tuples: `(HashPin, Signed<S>)` requires both.
//!
//! What is checked is the [`Artifact`]: the bytes the plugin was built
//! from (a library file, say), its manifest, and an optional signature.
//! For a plugin compiled into the host, the artifact is whatever bytes
//! identify its build; the manifest should be part of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use parking_lot::RwLock;
use sha2::{Digest as _, Sha256};

use crate::manifest::Manifest;
use crate::BoxError;

/// A SHA-256 digest; displayed and parsed as 64 lowercase hex digits (what
/// `sha256sum` prints).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A digest that is not 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a SHA-256 digest is 64 hex digits")]
pub struct BadDigest;

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(text: &str) -> Result<Self, BadDigest> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return Err(BadDigest);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let hex = |c: u8| match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(BadDigest),
            };
            *byte = hex(pair[0])? << 4 | hex(pair[1])?;
        }
        Ok(Digest(out))
    }
}

/// What a verifier sees of a version about to be loaded.
#[derive(Clone, Copy, Debug)]
pub struct Artifact<'a> {
    /// Its manifest (already decoded and checked for shape).
    pub manifest: &'a Manifest,
    /// The bytes it was built from.
    pub content: &'a [u8],
    /// SHA-256 of `content`, computed once by the library.
    pub digest: &'a Digest,
    /// A detached signature shipped with it, if any.
    pub signature: Option<&'a [u8]>,
}

/// Why a verifier refused a version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No digest is pinned for this plugin.
    #[error("no digest is pinned for plugin `{plugin}`")]
    Unpinned {
        /// The plugin.
        plugin: String,
    },
    /// The digest is not one of those pinned.
    #[error("plugin `{plugin}` {version}: digest {found} is not pinned")]
    DigestMismatch {
        /// The plugin.
        plugin: String,
        /// The version it claims.
        version: String,
        /// Its digest.
        found: Digest,
    },
    /// A signature was required and none came with the artifact.
    #[error("plugin `{plugin}` {version} is not signed")]
    Unsigned {
        /// The plugin.
        plugin: String,
        /// The version it claims.
        version: String,
    },
    /// The signature did not verify.
    #[error("plugin `{plugin}` {version}: bad signature: {reason}")]
    BadSignature {
        /// The plugin.
        plugin: String,
        /// The version it claims.
        version: String,
        /// The scheme's reason.
        reason: String,
    },
    /// A host-defined verifier refused it.
    #[error("plugin `{plugin}` {version} refused: {reason}")]
    Refused {
        /// The plugin.
        plugin: String,
        /// The version it claims.
        version: String,
        /// Why.
        reason: String,
    },
    /// The verifier panicked (contained): the artifact counts as refused.
    #[error("plugin `{plugin}` {version}: the verifier panicked: {message}")]
    Panicked {
        /// The plugin.
        plugin: String,
        /// The version it claims.
        version: String,
        /// The panic message.
        message: String,
    },
}

/// Decides whether a version may be loaded. Runs before `link`, on the
/// registering or reloading thread; the old version serves meanwhile.
pub trait Verifier: Send + Sync + 'static {
    /// `Ok` to load it.
    ///
    /// # Errors
    ///
    /// A [`VerifyError`] saying why not.
    fn verify(&self, artifact: &Artifact<'_>) -> Result<(), VerifyError>;
}

/// Accepts everything. For tests, and for builds the host already trusts;
/// named so that it stands out where it is configured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unchecked;

impl Verifier for Unchecked {
    fn verify(&self, _: &Artifact<'_>) -> Result<(), VerifyError> {
        Ok(())
    }
}

/// Both must accept.
impl<A: Verifier, B: Verifier> Verifier for (A, B) {
    fn verify(&self, artifact: &Artifact<'_>) -> Result<(), VerifyError> {
        self.0.verify(artifact)?;
        self.1.verify(artifact)
    }
}

/// Any `Fn(&Artifact) -> Result<(), VerifyError>` is a verifier.
impl<F> Verifier for F
where
    F: Fn(&Artifact<'_>) -> Result<(), VerifyError> + Send + Sync + 'static,
{
    fn verify(&self, artifact: &Artifact<'_>) -> Result<(), VerifyError> {
        self(artifact)
    }
}

/// Content hash pins: a version loads only if the SHA-256 of its artifact
/// is pinned for its plugin. Pins can be added and removed while the host
/// runs (a deploy pins the new build before triggering the reload).
#[derive(Debug, Default)]
pub struct HashPin {
    pins: RwLock<BTreeMap<String, BTreeSet<Digest>>>,
}

impl HashPin {
    /// No pins: everything is refused until pinned.
    pub fn new() -> Self {
        HashPin::default()
    }

    /// Pins `digest` for `plugin` (builder form).
    #[must_use]
    pub fn with(self, plugin: &str, digest: Digest) -> Self {
        self.pin(plugin, digest);
        self
    }

    /// Pins `digest` for `plugin`.
    pub fn pin(&self, plugin: &str, digest: Digest) {
        self.pins
            .write()
            .entry(plugin.to_owned())
            .or_default()
            .insert(digest);
    }

    /// Unpins `digest` for `plugin`; returns whether it was pinned.
    pub fn unpin(&self, plugin: &str, digest: &Digest) -> bool {
        self.pins
            .write()
            .get_mut(plugin)
            .is_some_and(|set| set.remove(digest))
    }
}

impl Verifier for HashPin {
    fn verify(&self, artifact: &Artifact<'_>) -> Result<(), VerifyError> {
        let plugin = artifact.manifest.name();
        let pins = self.pins.read();
        match pins.get(plugin) {
            None => Err(VerifyError::Unpinned {
                plugin: plugin.to_owned(),
            }),
            Some(set) if set.contains(artifact.digest) => Ok(()),
            Some(_) => Err(VerifyError::DigestMismatch {
                plugin: plugin.to_owned(),
                version: artifact.manifest.version().to_string(),
                found: *artifact.digest,
            }),
        }
    }
}

/// A signature scheme the host brings (ed25519, a KMS call, ...).
pub trait SignatureScheme: Send + Sync + 'static {
    /// Checks `signature` over `message` (the artifact's digest).
    ///
    /// # Errors
    ///
    /// Why it does not verify.
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), BoxError>;
}

/// Requires a signature over the artifact's SHA-256 digest that `S` accepts.
#[derive(Debug, Default)]
pub struct Signed<S>(pub S);

impl<S: SignatureScheme> Verifier for Signed<S> {
    fn verify(&self, artifact: &Artifact<'_>) -> Result<(), VerifyError> {
        let plugin = artifact.manifest.name().to_owned();
        let version = artifact.manifest.version().to_string();
        let Some(signature) = artifact.signature else {
            return Err(VerifyError::Unsigned { plugin, version });
        };
        self.0
            .verify(artifact.digest.as_bytes(), signature)
            .map_err(|e| VerifyError::BadSignature {
                plugin,
                version,
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_and_round_trips_as_hex() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert_eq!("xyz".parse::<Digest>(), Err(BadDigest));
        assert_eq!("g".repeat(64).parse::<Digest>(), Err(BadDigest));
    }

    #[test]
    fn hash_pin_accepts_only_pinned_digests() {
        let m = Manifest::new("codec", "1.0.0").expect("valid");
        let artifact = |content: &'static [u8], digest: &'static Digest| Artifact {
            manifest: Box::leak(Box::new(m.clone())),
            content,
            digest,
            signature: None,
        };
        let good: &'static Digest = Box::leak(Box::new(Digest::of(b"v1")));
        let evil: &'static Digest = Box::leak(Box::new(Digest::of(b"v1 tampered")));
        let pins = HashPin::new();
        assert!(matches!(
            pins.verify(&artifact(b"v1", good)),
            Err(VerifyError::Unpinned { .. })
        ));
        pins.pin("codec", *good);
        assert_eq!(pins.verify(&artifact(b"v1", good)), Ok(()));
        assert!(matches!(
            pins.verify(&artifact(b"v1 tampered", evil)),
            Err(VerifyError::DigestMismatch { found, .. }) if found == *evil
        ));
        assert!(pins.unpin("codec", good));
        assert!(pins.verify(&artifact(b"v1", good)).is_err());
    }
}
