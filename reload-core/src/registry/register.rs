//! Registering and unregistering plugins: map edits, serialized by the
//! registry's admin lock (calls and reloads never take it).

use super::*;

impl<P: Stateful> Registry<P> {
    /// Registers one plugin (see [`Registry::register_all`]).
    ///
    /// # Errors
    ///
    /// As [`Registry::register_all`].
    pub fn register(&self, package: Package<P>, cx: &P::Context) -> Result<(), Rejected<P>> {
        self.register_all(vec![package], cx)
    }

    /// Registers plugins that may require each other and registered ones:
    /// verified, checked against the requirements, then linked and
    /// initialized dependencies first. All are registered, or none.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with every package: a name taken or given twice, a
    /// verifier refusal, an unmet requirement, a cycle, a `link` or `init`
    /// failure, or a required plugin busy reloading past the turn timeout.
    pub fn register_all(
        &self,
        packages: Vec<Package<P>>,
        cx: &P::Context,
    ) -> Result<(), Rejected<P>> {
        let result = self.try_register(packages, cx);
        match &result {
            Ok(n) => {
                self.counters.registered.fetch_add(*n, Relaxed);
            }
            Err(rejected) => self.count_refusal(&rejected.error),
        }
        result.map(drop)
    }

    fn try_register(&self, packages: Vec<Package<P>>, cx: &P::Context) -> Result<u64, Rejected<P>> {
        let packages = match by_name(packages) {
            Ok(p) => p,
            Err((error, packages)) => return Err(Rejected::new(error, packages)),
        };
        if let Err(e) = self.verify_all(packages.values()) {
            return Err(Rejected::new(e, packages.into_values().collect()));
        }
        let _admin = self.admin.lock();
        let adds: plan::View = packages
            .iter()
            .map(|(n, p)| (n.clone(), Arc::clone(&p.manifest)))
            .collect();
        // Plan, freeze what we checked against, and plan again under the
        // turns (a reload may have committed in between).
        for _ in 0..MAX_ATTEMPTS {
            let map = self.map.load_full();
            let planned = plan::register(&view(&map), &adds).and_then(|plan| {
                let turns = self.take_turns(&map, &plan.lock)?;
                Ok((plan, turns))
            });
            let (plan, turns) = match planned {
                Ok(planned) => planned,
                Err(e) => return Err(Rejected::new(e, packages.into_values().collect())),
            };
            if plan::register(&view(&self.map.load()), &adds).is_ok_and(|again| again == plan) {
                let added = self.register_planned(&map, &plan, packages, cx)?;
                drop(turns);
                return Ok(added);
            }
        }
        Err(Rejected::new(
            self.too_busy(adds.keys()),
            packages.into_values().collect(),
        ))
    }

    /// Links and inits `packages` in `plan`'s order, then publishes them all
    /// at once; the caller holds the turns `plan` needs.
    fn register_planned(
        &self,
        map: &Arc<Map<P>>,
        plan: &plan::Plan,
        mut packages: BTreeMap<String, Package<P>>,
        cx: &P::Context,
    ) -> Result<u64, Rejected<P>> {
        let mut fresh: Map<P> = Map::new();
        for name in &plan.order {
            let Some(package) = packages.remove(name) else {
                unreachable!("the plan orders the packages given")
            };
            let deps = resolve(&package.manifest, map, &fresh);
            let manifest = Arc::clone(&package.manifest);
            match Plugin::new(Member::new(package, deps)).ready(cx) {
                Ok(ready) => {
                    let node = Node {
                        slot: Slot::new(ready),
                        current: Mutex::new(manifest),
                        previous: Mutex::new(None),
                        #[cfg(feature = "metrics")]
                        calls: crate::metrics::calls(name),
                    };
                    fresh.insert(name.clone(), Arc::new(node));
                }
                Err(e) => {
                    let (member, failure) = match e {
                        ReadyError::Link(e) => {
                            let (p, f) = e.into_parts();
                            (p.into_inner(), f)
                        }
                        ReadyError::Init(e) => {
                            let (p, f) = e.into_parts();
                            (p.into_inner(), f)
                        }
                    };
                    // Tear down the ones already made (never published, so
                    // no lease exists), dependents first: shut down, hand back.
                    let mut back = vec![member.into_package()];
                    let made: Vec<_> = plan
                        .order
                        .iter()
                        .rev()
                        .filter_map(|n| fresh.remove(n))
                        .collect();
                    back.extend(made.into_iter().filter_map(take_back));
                    back.extend(packages.into_values());
                    return Err(Rejected::new(RegistryError::Init(failure), back));
                }
            }
        }
        let added = fresh.len() as u64;
        let mut next = (**map).clone();
        next.extend(fresh);
        self.publish(next);
        Ok(added)
    }

    /// The plans kept changing under us: report the first plugin named.
    pub(super) fn too_busy<'a>(
        &self,
        mut names: impl Iterator<Item = &'a String>,
    ) -> RegistryError {
        RegistryError::Busy {
            name: names.next().cloned().unwrap_or_default(),
            waited: self.turn_timeout,
        }
    }

    /// Unregisters `name`: no new call reaches it; calls in flight finish
    /// on it. Returns its last version, draining: wait on it to see it
    /// shut down.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotRegistered`]; [`RegistryError::HasDependents`]
    /// naming the plugins that require it; [`RegistryError::Busy`] if a
    /// reload of it did not finish within the turn timeout.
    pub fn unregister(
        &self,
        name: &str,
    ) -> Result<Option<Plugin<Member<P>, Draining>>, RegistryError> {
        let _admin = self.admin.lock();
        let map = self.map.load_full();
        let Some(node) = map.get(name) else {
            return Err(RegistryError::NotRegistered {
                name: name.to_owned(),
            });
        };
        // The turn freezes the plugin; a reload adding a requirement on it
        // holds the same turn, so once we hold it the dependents are final.
        let _turn = self.take_turn(node)?;
        let dependents = plan::dependents(&view(&map), name);
        if !dependents.is_empty() {
            return Err(RegistryError::HasDependents {
                name: name.to_owned(),
                dependents,
            });
        }
        let mut next = (*map).clone();
        next.remove(name);
        self.publish(next);
        self.counters.unregistered.fetch_add(1, Relaxed);
        Ok(node.slot.close())
    }
}
