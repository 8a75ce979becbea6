//! Reloading plugins: plan (which dependents must follow), verify, take the
//! turns of every slot involved in name order, prepare in dependency
//! order, and commit all together, or hand everything back.

use super::*;

/// A two-phase reload's barrier, as the transaction holds it.
pub(super) type Barrier<'b> = &'b mut dyn FnMut(&[Arc<Manifest>]) -> Result<(), String>;

impl<P: Stateful> Registry<P> {
    /// Reloads the plugins `packages` are new versions of, with every
    /// dependent that must follow (its next version from the [`Source`]),
    /// as one transaction: verified, prepared dependencies first, then
    /// committed together in `options`' mode, or aborted together. Every
    /// old version serves until the commit, and on after any failure.
    ///
    /// The options' mode applies to every plugin; a state envelope given
    /// with [`ReloadOptions::restore_from`] would apply to each, so give
    /// one only when reloading one plugin.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with every package handed back (and the [`Salvage`](crate::Salvage) of
    /// old versions, if the failure came after their state was taken).
    pub fn reload(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        self.reload_counted(packages, cx, options, None, None)
    }

    /// [`Registry::reload`] in two phases: everything is verified and
    /// prepared (every new version linked and initialized, every
    /// [`Hooks::prepare`](crate::Hooks) check made) while the old versions
    /// serve; then `barrier` is called with the manifests prepared, and
    /// decides. `Ok(())` commits as [`Registry::reload`] would; `Err(reason)`
    /// aborts every prepared version and hands every package back, with
    /// [`RegistryError::Withheld`]. Nothing any caller sees changes before
    /// the barrier returns.
    ///
    /// This is the participant's side of a distributed commit (the fleet
    /// crate's node waits in `barrier` for the rollout's decision): the
    /// barrier may block, for as long as it likes, holding this reload's
    /// turns (another reload of these plugins waits its turn meanwhile, or
    /// gives up with [`RegistryError::Busy`]), never a lease, so calls go
    /// on. A barrier that panics withholds the commit.
    ///
    /// # Errors
    ///
    /// As [`Registry::reload`], and [`RegistryError::Withheld`].
    pub fn reload_with_barrier(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
        barrier: impl FnOnce(&[Arc<Manifest>]) -> Result<(), String>,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let mut once = Some(barrier);
        let mut barrier = |prepared: &[Arc<Manifest>]| match once.take() {
            Some(f) => f(prepared),
            None => Err("the barrier was asked twice".to_owned()),
        };
        self.reload_counted(packages, cx, options, None, Some(&mut barrier))
    }

    /// [`Registry::reload`], with `reverting` the plugin a
    /// [`Registry::revert`] goes back on (its replaced version is not kept).
    pub(super) fn reload_counted(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
        reverting: Option<&str>,
        barrier: Option<Barrier<'_>>,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let result = self.try_reload(packages, cx, options, reverting, barrier);
        match &result {
            Ok(report) => {
                self.counters.reloads.fetch_add(1, Relaxed);
                let followed = report.changes.iter().filter(|c| c.followed).count();
                self.counters
                    .plugins_reloaded
                    .fetch_add(report.changes.len() as u64, Relaxed);
                self.counters.followed.fetch_add(followed as u64, Relaxed);
            }
            Err(rejected) => self.count_refusal(&rejected.error),
        }
        result
    }

    /// [`Registry::reload`] of one plugin, checking that `package` is a
    /// version of `name`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::WrongPlugin`], or as [`Registry::reload`].
    pub fn reload_plugin(
        &self,
        name: &str,
        package: Package<P>,
        cx: &P::Context,
        options: ReloadOptions,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        if package.manifest.name() != name {
            let error = RegistryError::WrongPlugin {
                expected: name.to_owned(),
                found: package.manifest.name().to_owned(),
            };
            self.count_refusal(&error);
            return Err(Rejected::new(error, vec![package]));
        }
        self.reload(vec![package], cx, options)
    }

    fn try_reload(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
        reverting: Option<&str>,
        mut barrier: Option<Barrier<'_>>,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let given = match by_name(packages) {
            Ok(p) => p,
            Err((error, packages)) => return Err(Rejected::new(error, packages)),
        };
        if let Err(e) = self.verify_all(given.values()) {
            return Err(Rejected::new(e, given.into_values().collect()));
        }
        let mut fetched: BTreeMap<String, Package<P>> = BTreeMap::new();
        for _ in 0..MAX_ATTEMPTS {
            let map = self.map.load_full();
            let planned = self
                .plan_reload(&map, &given, &mut fetched)
                .and_then(|plan| {
                    let turns = self.take_turns(&map, &plan.lock)?;
                    Ok((plan, turns))
                });
            let (plan, turns) = match planned {
                Ok(planned) => planned,
                Err(e) => return Err(Rejected::new(e, hand_back(given, fetched))),
            };
            // Under the turns, with the map as it is now: same nodes and
            // the same plan, or start over.
            let now = self.map.load_full();
            let same_nodes = plan.lock.iter().all(|n| match (map.get(n), now.get(n)) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            });
            let again = self.plan_reload(&now, &given, &mut fetched);
            if same_nodes && again.is_ok_and(|again| again == plan) {
                let mut packages = given;
                packages.append(&mut fetched);
                let barrier = barrier.take();
                return self.reload_planned(
                    &map, &plan, turns, packages, cx, options, reverting, barrier,
                );
            }
        }
        Err(Rejected::new(
            self.too_busy(given.keys()),
            hand_back(given, fetched),
        ))
    }

    /// Prepares, dependencies first, and commits `plan`; the caller took
    /// the turns it needs (`turns`, one per locked plugin).
    #[allow(clippy::too_many_arguments)]
    fn reload_planned(
        &self,
        map: &Arc<Map<P>>,
        plan: &plan::Plan,
        turns: Turns<'_, P>,
        mut packages: BTreeMap<String, Package<P>>,
        cx: &P::Context,
        options: ReloadOptions,
        reverting: Option<&str>,
        barrier: Option<Barrier<'_>>,
    ) -> Result<ReloadReport<P>, Rejected<P>> {
        let mut turns: BTreeMap<String, Turn<'_, Member<P>>> = turns.into_iter().collect();
        let mut prepared = Vec::with_capacity(plan.order.len());
        // Each slot's turn, kept out of its reload: a commit would give it
        // back as it ends, and another reload of the slot could then
        // commit and publish before this one publishes its manifest (the
        // registry would then name a version it does not serve).
        let mut held = Vec::with_capacity(plan.order.len());
        let mut olds = Vec::with_capacity(plan.order.len());
        for (i, name) in plan.order.iter().enumerate() {
            let (Some(package), Some(turn)) = (packages.remove(name), turns.remove(name)) else {
                unreachable!("the plan orders and locks the packages it changes")
            };
            let node = &map[name];
            olds.push((
                Arc::clone(&node.current.lock()),
                current_kept(node),
                Arc::clone(&package.manifest),
                package.digest,
            ));
            let deps = resolve(&package.manifest, map, &Map::new());
            let member = Plugin::new(Member::new(package, deps));
            match node.slot.prepare_in_turn(turn, member, cx, options.clone()) {
                Ok(mut p) => {
                    held.push(p.keep_turn());
                    prepared.push(p);
                }
                Err(failed) => {
                    let (fault, returned, salvage) = failed.into_parts();
                    let mut back = vec![returned.into_plugin().into_package()];
                    // Abort the ones prepared, newest first.
                    back.extend(
                        prepared.drain(..).rev().map(|p: Prepared<'_, Member<P>>| {
                            p.abort().into_inner().into_package()
                        }),
                    );
                    back.extend(
                        plan.order[i + 1..]
                            .iter()
                            .filter_map(|n| packages.remove(n)),
                    );
                    let mut rejected = Rejected::new(
                        RegistryError::Reload {
                            plugin: name.clone(),
                            fault,
                        },
                        back,
                    );
                    rejected.salvage.push((name.clone(), salvage));
                    return Err(rejected);
                }
            }
        }
        if let Some(barrier) = barrier {
            let manifests: Vec<Arc<Manifest>> = olds.iter().map(|o| Arc::clone(&o.2)).collect();
            // The barrier is the host's code: a panic withholds the commit.
            let verdict =
                catch_unwind(AssertUnwindSafe(|| barrier(&manifests))).unwrap_or_else(|payload| {
                    Err(format!("panicked: {}", panic_message(payload.as_ref())))
                });
            if let Err(reason) = verdict {
                let back = prepared
                    .drain(..)
                    .rev()
                    .map(|p: Prepared<'_, Member<P>>| p.abort().into_inner().into_package())
                    .collect();
                return Err(Rejected::new(RegistryError::Withheld { reason }, back));
            }
        }
        let committed = if prepared.len() == 1 {
            let Some(only) = prepared.pop() else {
                unreachable!("one member")
            };
            only.commit().map(|c| vec![c]).map_err(|failed| {
                let name = failed.plugin_name().to_owned();
                let (fault, returned, salvage) = failed.into_parts();
                let mut rejected = Rejected::new(
                    RegistryError::Reload {
                        plugin: name.clone(),
                        fault,
                    },
                    vec![returned.into_plugin().into_package()],
                );
                rejected.salvage.push((name, salvage));
                rejected
            })
        } else {
            Prepared::commit_together(prepared).map_err(group_rejected)
        }?;
        // Publish the new manifests (still under the turns) and report.
        let changes = plan
            .order
            .iter()
            .zip(olds)
            .zip(committed)
            .map(|((name, (old, old_kept, new, new_digest)), committed)| {
                *map[name].current.lock() = Arc::clone(&new);
                let same_build = old_kept.as_ref().map(Kept::digest) == Some(&new_digest);
                // The version replaced is kept for a revert; the one a
                // revert goes back on is not (nobody reverts to it).
                *map[name].previous.lock() = match reverting {
                    Some(r) if r == name => None,
                    _ => old_kept,
                };
                change(
                    name,
                    &old,
                    &new,
                    same_build,
                    plan.followed.contains(name),
                    committed,
                )
            })
            .collect();
        drop((turns, held));
        Ok(ReloadReport { changes })
    }

    fn plan_reload(
        &self,
        map: &Map<P>,
        given: &BTreeMap<String, Package<P>>,
        fetched: &mut BTreeMap<String, Package<P>>,
    ) -> Result<plan::Plan, RegistryError> {
        let mut updates: plan::View = given
            .iter()
            .chain(fetched.iter())
            .map(|(n, p)| (n.clone(), Arc::clone(&p.manifest)))
            .collect();
        let mut fetch = |name: &str| -> Result<Option<Arc<Manifest>>, RegistryError> {
            if let Some(p) = fetched.get(name) {
                return Ok(Some(Arc::clone(&p.manifest)));
            }
            let Some(source) = &self.source else {
                return Ok(None);
            };
            // The host's source is code we did not write: a panic is a
            // refusal of this reload, like an error.
            let package = match catch_unwind(AssertUnwindSafe(|| source.next_version(name))) {
                Ok(fetched) => fetched.map_err(|e| e.to_string()),
                Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
            }
            .map_err(|reason| RegistryError::Source {
                name: name.to_owned(),
                reason,
            })?;
            let Some(package) = package else {
                return Ok(None);
            };
            if package.manifest.name() != name {
                return Err(RegistryError::WrongPlugin {
                    expected: name.to_owned(),
                    found: package.manifest.name().to_owned(),
                });
            }
            self.verify(&package)?;
            let manifest = Arc::clone(&package.manifest);
            fetched.insert(name.to_owned(), package);
            Ok(Some(manifest))
        };
        let mut plan = plan::reload(&view(map), &mut updates, &mut fetch)?;
        // Fetched on an earlier attempt or this one: either way, followed.
        plan.followed = fetched.keys().cloned().collect();
        Ok(plan)
    }
}
