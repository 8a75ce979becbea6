//! Going back: [`Registry::revert`] reloads the version a reload replaced,
//! made again from what the registry kept of its package.

use super::*;

impl<P: Stateful> Registry<P> {
    /// Reverts `name` to the version its last reload replaced: a version
    /// that committed but misbehaves (wrong results, failing calls) is
    /// swapped back out by an ordinary reload, drained, with state and
    /// resources carried back to the previous version as in any reload.
    ///
    /// The previous version is made again from its kept package (its
    /// manifest, content and signature, and the recipe given with
    /// [`Package::respawn`]), verified again on the same bytes, and
    /// reloaded with `options`. After a revert there is nothing to revert
    /// to: the version reverted away from is not kept, so a second
    /// `revert` is refused rather than going back to the bad version.
    ///
    /// # Errors
    ///
    /// - [`RegistryError::NotRegistered`];
    /// - [`RegistryError::NothingToRevert`]: no reload replaced a version
    ///   of `name` since it was registered (or since its last revert), or
    ///   the version replaced has no respawn recipe, or the recipe failed;
    /// - anything [`Registry::reload`] refuses with: the verifier, a
    ///   dependent that does not accept the old version, and state that
    ///   cannot go back (the current state's schema is newer than the
    ///   previous version reads: [`RegistryError::Reload`] with a transfer
    ///   fault). The current version serves on after every refusal, and
    ///   the previous one stays kept.
    pub fn revert(
        &self,
        name: &str,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let refuse = |error: RegistryError| {
            self.count_refusal(&error);
            Err(Rejected::new(error, Vec::new()))
        };
        let Some(node) = self.map.load().get(name).map(Arc::clone) else {
            return refuse(RegistryError::NotRegistered {
                name: name.to_owned(),
            });
        };
        let Some(kept) = node.previous.lock().clone() else {
            return refuse(RegistryError::NothingToRevert {
                name: name.to_owned(),
                reason: "no reload has replaced a version of it since it was registered or last reverted"
                    .to_owned(),
            });
        };
        let version = kept.manifest().version().clone();
        let package = match kept.respawn() {
            Some(Ok(package)) => package,
            Some(Err(e)) => {
                return refuse(RegistryError::NothingToRevert {
                    name: name.to_owned(),
                    reason: format!("making version {version} again failed: {e}"),
                })
            }
            None => {
                return refuse(RegistryError::NothingToRevert {
                    name: name.to_owned(),
                    reason: format!("version {version} was given without a respawn recipe"),
                })
            }
        };
        let result = self.reload_counted(vec![package], cx, options, Some(name), None);
        if result.is_ok() {
            self.counters.reverts.fetch_add(1, Relaxed);
        }
        result
    }

    /// The version [`Registry::revert`] would go back to, if any.
    pub fn previous_version(&self, name: &str) -> Option<crate::manifest::Version> {
        let node = self.map.load().get(name).map(Arc::clone)?;
        let previous = node.previous.lock();
        previous.as_ref().map(|k| k.manifest().version().clone())
    }
}
