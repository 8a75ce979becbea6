//! Packages, content-addressed: a [`PackageStore`] fetches the bytes a
//! plan's [`Target`] names, the node checks their SHA-256 against the
//! target's before anything else, and an [`Unpack`] (the host's) turns the
//! verified bytes into a [`Package`] of its plugin type.
//!
//! A node keeps every package it verified in its cache directory, named by
//! digest, so that it can come up on its last assignment with etcd out of
//! reach.

use std::fs;
use std::path::{Path, PathBuf};

use reload_core::registry::Package;
use reload_core::verify::Digest;
use reload_core::{BoxError, Stateful};

use crate::records::{Refusal, Target};

/// Where packages come from. A shared directory ([`DirStore`]) is enough
/// on one machine; an object store or an HTTP server would implement the
/// same trait.
pub trait PackageStore: Send + Sync + 'static {
    /// The bytes at `location`.
    ///
    /// # Errors
    ///
    /// The store's, as text for the node's [`Refusal::Fetch`].
    fn fetch(&self, location: &str) -> Result<Vec<u8>, BoxError>;
}

/// Packages as files in one directory; a location is a file name in it.
#[derive(Clone, Debug)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// Packages in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirStore { dir: dir.into() }
    }

    /// Copies `file` into the store under `name` and returns the target
    /// for it at `version` (its digest computed from the bytes stored).
    ///
    /// # Errors
    ///
    /// Reading or writing failed, or `name` is not a plain file name.
    pub fn publish(&self, file: &Path, name: &str, version: &str) -> Result<Target, BoxError> {
        let bytes = fs::read(file)?;
        self.publish_bytes(&bytes, name, version)
    }

    /// Stores `bytes` under `name` and returns the target for it.
    ///
    /// # Errors
    ///
    /// Writing failed, or `name` is not a plain file name.
    pub fn publish_bytes(
        &self,
        bytes: &[u8],
        name: &str,
        version: &str,
    ) -> Result<Target, BoxError> {
        if !crate::keys::valid_name(name) {
            return Err(format!("`{name}` is not a plain file name").into());
        }
        fs::create_dir_all(&self.dir)?;
        // Written aside and renamed: a node never reads half a package.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, self.dir.join(name))?;
        Ok(Target {
            version: version.to_owned(),
            digest: Digest::of(bytes).to_string(),
            location: name.to_owned(),
        })
    }
}

impl PackageStore for DirStore {
    fn fetch(&self, location: &str) -> Result<Vec<u8>, BoxError> {
        // A location is one file name: a plan cannot name a file outside
        // the store.
        if !crate::keys::valid_name(location) {
            return Err(format!("`{location}` is not a file name in the store").into());
        }
        Ok(fs::read(self.dir.join(location))?)
    }
}

/// Turns verified bytes into a package of the host's plugin type.
pub trait Unpack<P: Stateful>: Send + Sync + 'static {
    /// A package of `plugin` from `bytes`, which are also at `path` (the
    /// node's cached copy, for loaders that map files).
    ///
    /// # Errors
    ///
    /// The bytes are not a package of `plugin` the host can load.
    fn unpack(&self, plugin: &str, bytes: Vec<u8>, path: &Path) -> Result<Package<P>, BoxError>;
}

impl<P, F> Unpack<P> for F
where
    P: Stateful,
    F: Fn(&str, Vec<u8>, &Path) -> Result<Package<P>, BoxError> + Send + Sync + 'static,
{
    fn unpack(&self, plugin: &str, bytes: Vec<u8>, path: &Path) -> Result<Package<P>, BoxError> {
        self(plugin, bytes, path)
    }
}

/// Native plugin libraries, through `reload-core`'s loader (its private
/// copy per version).
#[cfg(feature = "dylib")]
impl Unpack<reload_core::dylib::DylibPlugin> for reload_core::dylib::Loader {
    fn unpack(
        &self,
        _plugin: &str,
        _bytes: Vec<u8>,
        path: &Path,
    ) -> Result<Package<reload_core::dylib::DylibPlugin>, BoxError> {
        Ok(self.package(path)?)
    }
}

/// A node's package cache: verified bytes by digest.
#[derive(Clone, Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    pub(crate) fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// The target's bytes: from the cache if there and whole, else from
    /// the store; verified either way, and cached.
    pub(crate) fn get(
        &self,
        store: &dyn PackageStore,
        target: &Target,
    ) -> Result<(Vec<u8>, PathBuf), Refusal> {
        let expected: Digest = target.digest.parse().map_err(|_| Refusal::Digest {
            expected: target.digest.clone(),
            found: "(the plan's digest is not 64 hex digits)".to_owned(),
        })?;
        let path = self.path(&expected.to_string());
        if let Ok(bytes) = fs::read(&path) {
            if Digest::of(&bytes) == expected {
                return Ok((bytes, path));
            }
        }
        // The store is the host's code: a panic is a failed fetch.
        let fetched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.fetch(&target.location)
        }))
        .unwrap_or_else(|_| Err("the package store panicked".into()));
        let bytes = fetched.map_err(|e| Refusal::Fetch {
            location: target.location.clone(),
            reason: e.to_string(),
        })?;
        let found = Digest::of(&bytes);
        if found != expected {
            return Err(Refusal::Digest {
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
        let cached = fs::create_dir_all(&self.dir).and_then(|()| {
            let tmp = self.dir.join(format!(".{found}.tmp"));
            fs::write(&tmp, &bytes)?;
            fs::rename(&tmp, &path)
        });
        cached.map_err(|e| Refusal::Fetch {
            location: target.location.clone(),
            reason: format!("caching in {} failed: {e}", self.dir.display()),
        })?;
        Ok((bytes, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reload-fleet-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn bytes_are_verified_before_they_are_cached_or_used() {
        let root = temp("cache");
        let store = DirStore::new(root.join("store"));
        let cache = Cache::new(root.join("cache"));
        let target = store
            .publish_bytes(b"version one", "p-1", "1.0.0")
            .expect("published");
        let (bytes, path) = cache.get(&store, &target).expect("fetched");
        assert_eq!(bytes, b"version one");
        assert_eq!(fs::read(&path).expect("cached"), b"version one");

        // The store's file replaced by other bytes: the cache still has
        // the verified ones.
        store
            .publish_bytes(b"tampered", "p-1", "1.0.0")
            .expect("replaced");
        assert_eq!(
            cache.get(&store, &target).expect("cached").0,
            b"version one"
        );

        // Not cached, and the store's bytes do not match: refused.
        let wrong = Target {
            digest: Digest::of(b"something else").to_string(),
            ..target.clone()
        };
        match cache.get(&store, &wrong) {
            Err(Refusal::Digest { found, .. }) => {
                assert_eq!(found, Digest::of(b"tampered").to_string())
            }
            other => panic!("expected a digest refusal, got {other:?}"),
        }
        let garbage = Target {
            digest: "zz".into(),
            ..target.clone()
        };
        assert!(matches!(
            cache.get(&store, &garbage),
            Err(Refusal::Digest { .. })
        ));
        let escape = Target {
            location: "../etc/passwd".into(),
            digest: Digest::of(b"x").to_string(),
            ..target
        };
        assert!(matches!(
            cache.get(&store, &escape),
            Err(Refusal::Fetch { .. })
        ));
        let _ = fs::remove_dir_all(&root);
    }
}
