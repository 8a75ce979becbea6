//! A [`Package`] (what the host hands the registry) and a [`Member`] (a
//! package loaded into a registry slot, with its dependencies resolved).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Node;
use crate::manifest::{Manifest, ManifestError};
use crate::verify::{Artifact, Digest};
use crate::{BoxError, Hooks, Resource, Stateful};

/// One version of a plugin as the host hands it over: the plugin value, its
/// [`Manifest`], and the artifact the [`Verifier`](crate::verify::Verifier)
/// checks (content and an optional detached signature).
pub struct Package<P> {
    pub(crate) plugin: P,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) content: Arc<[u8]>,
    pub(crate) digest: Digest,
    pub(crate) signature: Option<Arc<[u8]>>,
    pub(crate) respawn: Option<Respawn<P>>,
}

/// How to make a version's plugin value again from its manifest and
/// content, so the registry can [`revert`](super::Registry::revert) to it
/// after the value itself was shut down (see [`Package::respawn`]).
pub type Respawn<P> = Arc<dyn Fn(&Manifest, &[u8]) -> Result<P, BoxError> + Send + Sync>;

/// What the registry keeps of a version to make it again: everything of
/// its package but the plugin value.
pub(crate) struct Kept<P> {
    manifest: Arc<Manifest>,
    content: Arc<[u8]>,
    digest: Digest,
    signature: Option<Arc<[u8]>>,
    respawn: Option<Respawn<P>>,
}

impl<P> Clone for Kept<P> {
    fn clone(&self) -> Self {
        Kept {
            manifest: Arc::clone(&self.manifest),
            content: Arc::clone(&self.content),
            digest: self.digest,
            signature: self.signature.clone(),
            respawn: self.respawn.clone(),
        }
    }
}

impl<P> Kept<P> {
    pub(crate) fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub(crate) fn digest(&self) -> &Digest {
        &self.digest
    }

    /// A new package of the same artifact: `None` if it has no respawn.
    pub(crate) fn respawn(&self) -> Option<Result<Package<P>, BoxError>> {
        let respawn = self.respawn.as_ref()?;
        // The host's code: a panic is an error of the revert, like a
        // failure.
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            respawn(&self.manifest, &self.content)
        }))
        .unwrap_or_else(|payload| {
            Err(format!(
                "respawn panicked: {}",
                crate::hooks::panic_message(payload.as_ref())
            )
            .into())
        });
        Some(made.map(|plugin| Package {
            plugin,
            manifest: Arc::clone(&self.manifest),
            content: Arc::clone(&self.content),
            digest: self.digest,
            signature: self.signature.clone(),
            respawn: self.respawn.clone(),
        }))
    }
}

impl<P> Package<P> {
    /// A package of `plugin`, described by `manifest`, built from `content`.
    pub fn new(plugin: P, manifest: Manifest, content: impl Into<Arc<[u8]>>) -> Self {
        let content = content.into();
        Package {
            plugin,
            manifest: Arc::new(manifest),
            digest: Digest::of(&content),
            content,
            signature: None,
            respawn: None,
        }
    }

    /// Like [`Package::new`], with the manifest decoded from bytes.
    ///
    /// # Errors
    ///
    /// The [`ManifestError`], with `plugin` handed back.
    pub fn decode(
        plugin: P,
        manifest: &[u8],
        content: impl Into<Arc<[u8]>>,
    ) -> Result<Self, (ManifestError, P)> {
        match Manifest::decode(manifest) {
            Ok(m) => Ok(Package::new(plugin, m, content)),
            Err(e) => Err((e, plugin)),
        }
    }

    /// Attaches a detached signature (see [`Signed`](crate::verify::Signed)).
    #[must_use]
    pub fn signed(mut self, signature: impl Into<Arc<[u8]>>) -> Self {
        self.signature = Some(signature.into());
        self
    }

    /// Says how to make this version's plugin value again from its
    /// manifest and content. The registry keeps the recipe (not the value)
    /// of the version a reload replaced, so [`Registry::revert`](super::Registry::revert) can go
    /// back to it, verified again on the same bytes. A package without one
    /// cannot be reverted to.
    #[must_use]
    pub fn respawn(
        mut self,
        respawn: impl Fn(&Manifest, &[u8]) -> Result<P, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.respawn = Some(Arc::new(respawn));
        self
    }

    /// Whether it says how to make it again ([`Package::respawn`]).
    pub fn can_respawn(&self) -> bool {
        self.respawn.is_some()
    }

    pub(crate) fn kept(&self) -> Kept<P> {
        Kept {
            manifest: Arc::clone(&self.manifest),
            content: Arc::clone(&self.content),
            digest: self.digest,
            signature: self.signature.clone(),
            respawn: self.respawn.clone(),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of the content.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The plugin.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// The plugin value.
    pub fn into_plugin(self) -> P {
        self.plugin
    }

    pub(crate) fn artifact(&self) -> Artifact<'_> {
        Artifact {
            manifest: &self.manifest,
            content: &self.content,
            digest: &self.digest,
            signature: self.signature.as_deref(),
        }
    }
}

impl<P> fmt::Debug for Package<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Package")
            .field("name", &self.manifest.name())
            .field("version", &self.manifest.version().to_string())
            .field("digest", &self.digest)
            .field("signed", &self.signature.is_some())
            .finish_non_exhaustive()
    }
}

/// A package loaded into a registry slot: what a registry slot holds, and
/// what its draining handles and failed reloads give back. Its hooks are
/// the plugin's; its name and version are the manifest's.
pub struct Member<P: Stateful> {
    pub(crate) package: Package<P>,
    version: String,
    /// The nodes of the manifest's requirements, in the manifest's order.
    /// Holding them keeps a dependency's slot alive for as long as any
    /// version that may lease it.
    pub(crate) deps: Vec<Arc<Node<P>>>,
    /// Per requirement: the last generation of that dependency seen to
    /// satisfy it (0: none yet). A cache of a pure function of immutable
    /// data (a generation's manifest never changes), so any ordering is
    /// correct; Relaxed.
    accepted: Vec<AtomicU64>,
}

impl<P: Stateful> Member<P> {
    pub(crate) fn new(package: Package<P>, deps: Vec<Arc<Node<P>>>) -> Self {
        debug_assert_eq!(deps.len(), package.manifest.requirements().len());
        Member {
            version: package.manifest.version().to_string(),
            accepted: deps.iter().map(|_| AtomicU64::new(0)).collect(),
            package,
            deps,
        }
    }

    /// The plugin.
    pub fn plugin(&self) -> &P {
        &self.package.plugin
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.package.manifest
    }

    /// SHA-256 of the artifact it was loaded from.
    pub fn digest(&self) -> &Digest {
        &self.package.digest
    }

    /// The package, as handed over.
    pub fn into_package(self) -> Package<P> {
        self.package
    }

    /// Whether the dependency version `found` (generation `generation` of
    /// requirement `i`'s plugin) satisfies requirement `i`.
    pub(crate) fn accepts(&self, i: usize, generation: u64, found: &Manifest) -> bool {
        let cache = &self.accepted[i];
        if cache.load(Ordering::Relaxed) == generation {
            return true;
        }
        let Some(requirement) = self.manifest().requirements().nth(i) else {
            return false;
        };
        let ok = requirement.check(found).is_ok();
        if ok {
            cache.store(generation, Ordering::Relaxed);
        }
        ok
    }
}

impl<P: Stateful> fmt::Debug for Member<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.manifest().name())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<P: Stateful> Hooks for Member<P> {
    type Context = P::Context;

    fn name(&self) -> &str {
        self.package.manifest.name()
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn link(&mut self) -> Result<(), BoxError> {
        self.package.plugin.link()
    }

    fn init(&mut self, cx: &Self::Context) -> Result<(), BoxError> {
        self.package.plugin.init(cx)
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.package.plugin.shutdown()
    }
}

impl<P: Stateful> Stateful for Member<P> {
    fn schema(&self) -> u32 {
        self.plugin().schema()
    }

    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        self.plugin().save()
    }

    fn migrate(&self, from: u32, state: Vec<u8>) -> Result<(u32, Vec<u8>), BoxError> {
        self.plugin().migrate(from, state)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.package.plugin.restore(state)
    }

    fn resources(&self) -> Vec<Resource> {
        self.plugin().resources()
    }

    fn persist(&self, resource: &str) -> Result<Vec<u8>, BoxError> {
        self.plugin().persist(resource)
    }

    fn checkpoint(&self, resource: &str) -> Result<u64, BoxError> {
        self.plugin().checkpoint(resource)
    }

    fn check_compat(&self, old: &Resource, persisted: &[u8]) -> Result<(), BoxError> {
        self.plugin().check_compat(old, persisted)
    }

    fn open(&mut self, resource: &str, persisted: &[u8]) -> Result<(), BoxError> {
        self.package.plugin.open(resource, persisted)
    }

    fn resume(&mut self, resource: &str, position: u64) -> Result<(), BoxError> {
        self.package.plugin.resume(resource, position)
    }

    fn close(&mut self, resource: &str) {
        self.package.plugin.close(resource);
    }
}
