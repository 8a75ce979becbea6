//! Moving to an assignment: fetch, verify, unpack, reload (or register);
//! and coming up on one at start, from etcd or from the state directory.

use super::*;

impl<P> Shared<P>
where
    P: Stateful,
    P::Context: Send + Sync + 'static,
{
    /// The node's assignment for `plugin`, else the fleet's version.
    pub(super) async fn assignment(&self, plugin: &str) -> Result<Option<Target>, FleetError> {
        let keys = self.etcd.keys();
        if let Some(t) = self.etcd.get(&keys.assign(&self.cfg.node, plugin)).await? {
            return Ok(Some(t));
        }
        self.etcd.get(&keys.fleet(plugin)).await
    }
    pub(super) fn local_path(&self, plugin: &str) -> PathBuf {
        self.cfg
            .state_dir
            .join("assigned")
            .join(format!("{plugin}.json"))
    }
    pub(super) fn keep_local(&self, plugin: &str, target: &Target) {
        let path = self.local_path(plugin);
        let tmp = path.with_extension("tmp");
        // Best effort: without it, a start with etcd out of reach falls
        // back to the host's version.
        let _ = std::fs::write(&tmp, encode(target)).and_then(|()| std::fs::rename(&tmp, &path));
    }
    pub(super) fn read_local(&self, plugin: &str) -> Option<Target> {
        let path = self.local_path(plugin);
        let bytes = std::fs::read(&path).ok()?;
        decode(&path.display().to_string(), &bytes).ok()
    }
    /// Comes up on the assignment (see the module docs).
    pub(super) fn warm(&self, plugin: &str) -> Warmed {
        let read = self.runtime.block_on(self.assignment(plugin));
        let (target, warmed) = match read {
            Ok(Some(t)) => (t.clone(), Warmed::Fleet(t)),
            Ok(None) => {
                return Warmed::Host {
                    why: "the fleet has no version of it yet".to_owned(),
                }
            }
            Err(e) => match self.read_local(plugin) {
                Some(t) => (t.clone(), Warmed::Local(t)),
                None => {
                    return Warmed::Host {
                        why: format!("etcd out of reach ({e}) and nothing kept locally"),
                    }
                }
            },
        };
        if self
            .serving(plugin)
            .is_some_and(|s| s.digest == target.digest)
        {
            self.keep_local(plugin, &target);
            return warmed;
        }
        match self.apply(plugin, &target) {
            Ok(()) => warmed,
            Err(why) => Warmed::Host { why },
        }
    }
    /// Fetches, verifies and unpacks `target` as a package of `plugin`.
    pub(super) fn package(&self, plugin: &str, target: &Target) -> Result<Package<P>, Refusal> {
        let (bytes, path) = self.cache.get(&*self.store, target)?;
        let unpacked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.unpack.unpack(plugin, bytes, &path)
        }));
        let package = match unpacked {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return Err(Refusal::Unpack {
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(Refusal::Unpack {
                    reason: "the host's unpack panicked".to_owned(),
                })
            }
        };
        let m = package.manifest();
        if m.name() != plugin || m.version().to_string() != target.version {
            return Err(Refusal::Unpack {
                reason: format!(
                    "the package is `{}` {}, the plan names `{plugin}` {}",
                    m.name(),
                    m.version(),
                    target.version
                ),
            });
        }
        Ok(package)
    }
    /// Moves `plugin` to `target` with an ordinary reload (or registers
    /// it, if the host did not).
    pub(super) fn apply(&self, plugin: &str, target: &Target) -> Result<(), String> {
        let result = self
            .package(plugin, target)
            .map_err(|r| r.to_string())
            .and_then(|package| {
                if self.registry.contains(plugin) {
                    self.registry
                        .reload(vec![package], &self.cx, self.cfg.reload.clone())
                        .map(drop)
                } else {
                    self.registry.register(package, &self.cx)
                }
                .map_err(|rejected| rejected.error.to_string())
            });
        let mut local = self.local.lock();
        match &result {
            Ok(()) => {
                local.behind.remove(plugin);
                drop(local);
                self.keep_local(plugin, target);
                self.event(
                    plugin,
                    What::Applied {
                        version: target.version.clone(),
                    },
                );
            }
            Err(reason) => {
                local.behind.insert(
                    plugin.to_owned(),
                    (target.digest.clone(), Instant::now(), reason.clone()),
                );
                drop(local);
                self.event(
                    plugin,
                    What::Behind {
                        version: target.version.clone(),
                        reason: reason.clone(),
                    },
                );
            }
        }
        result
    }
}
