//! What a registration or a reload will do, worked out from manifests
//! alone: which plugins change, which dependents must follow, the order
//! (dependencies first), which slots' turns to hold, and every typed
//! refusal. Pure functions of their inputs, so they are tested directly and
//! recomputed after the turns are taken.

// Registry errors are large (names, versions, ranges) and on the cold path:
// registrations and reloads, never calls. Boxing them would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::RegistryError;
use crate::manifest::{Manifest, Unmet};

/// Plugin name -> manifest of its current (or planned) version.
pub(crate) type View = BTreeMap<String, Arc<Manifest>>;

/// Supplies the next version of a dependent that must follow.
pub(crate) type Fetch<'a> = dyn FnMut(&str) -> Result<Option<Arc<Manifest>>, RegistryError> + 'a;

/// A planned change.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The plugins that get a new version, dependencies first.
    pub(crate) order: Vec<String>,
    /// Of those, the ones pulled in because their current version does not
    /// accept a new dependency version.
    pub(crate) followed: BTreeSet<String>,
    /// Every existing plugin whose turn must be held while the change is
    /// prepared and committed: the changed ones, their current dependents
    /// (whose requirements were checked) and their new dependencies (whose
    /// versions were checked).
    pub(crate) lock: BTreeSet<String>,
}

/// Plans new versions `updates` for registered plugins. A current dependent
/// whose requirement a new version does not meet must follow: `fetch`
/// supplies its next version (or `None`, and the plan is refused).
pub(crate) fn reload(
    current: &View,
    updates: &mut View,
    fetch: &mut Fetch<'_>,
) -> Result<Plan, RegistryError> {
    for name in updates.keys() {
        if !current.contains_key(name) {
            return Err(RegistryError::NotRegistered { name: name.clone() });
        }
    }
    let mut followed = BTreeSet::new();
    // Pull in dependents until every one left behind accepts the new
    // versions; each round adds at least one, so this ends.
    loop {
        let mut must_follow = None;
        'scan: for (dependent, manifest) in current {
            if updates.contains_key(dependent) {
                continue;
            }
            for requirement in manifest.requirements() {
                if let Some(new) = updates.get(requirement.name()) {
                    if let Err(unmet) = requirement.check(new) {
                        must_follow = Some((dependent.clone(), Arc::clone(new), unmet));
                        break 'scan;
                    }
                }
            }
        }
        let Some((dependent, dependency, unmet)) = must_follow else {
            break;
        };
        match fetch(&dependent)? {
            Some(next) => {
                followed.insert(dependent.clone());
                updates.insert(dependent, next);
            }
            None => {
                return Err(RegistryError::MustFollow {
                    dependent,
                    dependency: dependency.name().to_owned(),
                    version: dependency.version().clone(),
                    reason: describe(&unmet),
                })
            }
        }
    }
    let mut view = current.clone();
    view.extend(updates.iter().map(|(n, m)| (n.clone(), Arc::clone(m))));
    check_requirements(&view, updates.keys())?;
    let order = dependencies_first(&view, updates.keys())?;
    let mut lock: BTreeSet<String> = updates.keys().cloned().collect();
    for (dependent, manifest) in current {
        if manifest
            .requirements()
            .any(|r| updates.contains_key(r.name()))
        {
            lock.insert(dependent.clone());
        }
    }
    for manifest in updates.values() {
        lock.extend(manifest.requirements().map(|r| r.name().to_owned()));
    }
    Ok(Plan {
        order,
        followed,
        lock,
    })
}

/// Plans registering `adds` (new plugins) next to `current`.
pub(crate) fn register(current: &View, adds: &View) -> Result<Plan, RegistryError> {
    if let Some(name) = adds.keys().find(|n| current.contains_key(*n)) {
        return Err(RegistryError::AlreadyRegistered { name: name.clone() });
    }
    let mut view = current.clone();
    view.extend(adds.iter().map(|(n, m)| (n.clone(), Arc::clone(m))));
    check_requirements(&view, adds.keys())?;
    let order = dependencies_first(&view, adds.keys())?;
    // The dependencies already registered are frozen while we check and
    // insert; the new plugins have no slot (and so no turn) yet.
    let lock = adds
        .values()
        .flat_map(|m| m.requirements().map(|r| r.name().to_owned()))
        .filter(|n| current.contains_key(n))
        .collect();
    Ok(Plan {
        order,
        followed: BTreeSet::new(),
        lock,
    })
}

/// The plugins whose current version requires `name`.
pub(crate) fn dependents(current: &View, name: &str) -> Vec<String> {
    current
        .iter()
        .filter(|(_, m)| m.requirement(name).is_some())
        .map(|(n, _)| n.clone())
        .collect()
}

/// Every requirement of `changed` is met in `view`.
fn check_requirements<'a>(
    view: &View,
    changed: impl Iterator<Item = &'a String>,
) -> Result<(), RegistryError> {
    for name in changed {
        let manifest = &view[name];
        for requirement in manifest.requirements() {
            let found = view.get(requirement.name());
            let unmet = match found {
                None => Some("it is not registered".to_owned()),
                Some(dep) => requirement.check(dep).err().map(|u| describe(&u)),
            };
            if let Some(reason) = unmet {
                return Err(RegistryError::Unmet {
                    plugin: name.clone(),
                    dependency: requirement.name().to_owned(),
                    requires: requirement.versions().clone(),
                    found: found.map(|m| m.version().clone()),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// `changed`, ordered so each comes after the plugins it requires; refuses
/// a cycle anywhere reachable from them, naming it.
fn dependencies_first<'a>(
    view: &View,
    changed: impl Iterator<Item = &'a String>,
) -> Result<Vec<String>, RegistryError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        view: &View,
        name: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), RegistryError> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = path.iter().position(|p| p == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_owned());
                return Err(RegistryError::Cycle { path: cycle });
            }
            None => {}
        }
        marks.insert(name.to_owned(), Mark::Visiting);
        path.push(name.to_owned());
        if let Some(manifest) = view.get(name) {
            for requirement in manifest.requirements() {
                visit(view, requirement.name(), marks, path, out)?;
            }
        }
        path.pop();
        marks.insert(name.to_owned(), Mark::Done);
        out.push(name.to_owned());
        Ok(())
    }
    let changed: BTreeSet<&String> = changed.collect();
    let mut marks = BTreeMap::new();
    let mut everything = Vec::new();
    for name in &changed {
        visit(view, name, &mut marks, &mut Vec::new(), &mut everything)?;
    }
    Ok(everything
        .into_iter()
        .filter(|n| changed.contains(n))
        .collect())
}

fn describe(unmet: &Unmet) -> String {
    match unmet {
        Unmet::Name => "it is another plugin".to_owned(),
        Unmet::Version => "its version is outside the accepted range".to_owned(),
        Unmet::Export(e) => format!("it does not export `{e}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str, requires: &[(&str, &str)]) -> Arc<Manifest> {
        let base = Manifest::new(name, version)
            .and_then(|m| m.export("run"))
            .expect("valid");
        Arc::new(
            requires
                .iter()
                .try_fold(base, |m, (dep, range)| m.requires(dep, range, &["run"]))
                .expect("valid"),
        )
    }

    fn view(list: &[Arc<Manifest>]) -> View {
        list.iter()
            .map(|m| (m.name().to_owned(), Arc::clone(m)))
            .collect()
    }

    fn no_fetch(_: &str) -> Result<Option<Arc<Manifest>>, RegistryError> {
        Ok(None)
    }

    /// a <- b <- c, and an unrelated z.
    fn chain() -> View {
        view(&[
            m("a", "1.0.0", &[]),
            m("b", "1.0.0", &[("a", "^1")]),
            m("c", "1.0.0", &[("b", "^1")]),
            m("z", "1.0.0", &[]),
        ])
    }

    #[test]
    fn compatible_update_changes_one_and_locks_its_neighbours() {
        let mut updates = view(&[m("b", "1.1.0", &[("a", "^1")])]);
        let plan = reload(&chain(), &mut updates, &mut no_fetch).expect("plan");
        assert_eq!(plan.order, ["b"]);
        assert!(plan.followed.is_empty());
        assert_eq!(plan.lock, ["a", "b", "c"].map(String::from).into());
    }

    #[test]
    fn breaking_update_pulls_dependents_along_in_order() {
        let mut updates = view(&[m("a", "2.0.0", &[])]);
        let mut fetch = |name: &str| {
            Ok(match name {
                "b" => Some(m("b", "2.0.0", &[("a", "^2")])),
                "c" => Some(m("c", "2.0.0", &[("b", "^2")])),
                _ => None,
            })
        };
        let plan = reload(&chain(), &mut updates, &mut fetch).expect("plan");
        assert_eq!(plan.order, ["a", "b", "c"]);
        assert_eq!(plan.followed, ["b", "c"].map(String::from).into());
        assert!(!plan.lock.contains("z"));
    }

    #[test]
    fn breaking_update_with_no_next_dependent_is_refused() {
        let mut updates = view(&[m("a", "2.0.0", &[])]);
        let err = reload(&chain(), &mut updates, &mut no_fetch).expect_err("refused");
        assert!(matches!(err, RegistryError::MustFollow { ref dependent, .. } if dependent == "b"));
    }

    #[test]
    fn cycles_missing_and_unmet_are_typed() {
        let mut updates = view(&[m("a", "1.1.0", &[("c", "^1")])]);
        let err = reload(&chain(), &mut updates, &mut no_fetch).expect_err("cycle");
        assert!(
            matches!(&err, RegistryError::Cycle { path } if path == &["a", "c", "b", "a"]),
            "{err}"
        );
        let err =
            register(&chain(), &view(&[m("d", "1.0.0", &[("nope", "*")])])).expect_err("missing");
        assert!(matches!(err, RegistryError::Unmet { found: None, .. }));
        let err = register(&chain(), &view(&[m("d", "1.0.0", &[("a", "^3")])])).expect_err("range");
        assert!(matches!(err, RegistryError::Unmet { found: Some(_), .. }));
        let err = register(&chain(), &view(&[m("a", "1.0.0", &[])])).expect_err("taken");
        assert!(matches!(err, RegistryError::AlreadyRegistered { .. }));
        let batch = view(&[
            m("x", "1.0.0", &[("y", "*")]),
            m("y", "1.0.0", &[("x", "*")]),
        ]);
        assert!(matches!(
            register(&chain(), &batch),
            Err(RegistryError::Cycle { .. })
        ));
    }

    #[test]
    fn batch_registration_orders_dependencies_first() {
        let batch = view(&[
            m("y", "1.0.0", &[("x", "*"), ("a", "^1")]),
            m("x", "1.0.0", &[]),
        ]);
        let plan = register(&chain(), &batch).expect("plan");
        assert_eq!(plan.order, ["x", "y"]);
        assert_eq!(plan.lock, ["a".to_owned()].into());
        assert_eq!(dependents(&chain(), "a"), ["b"]);
    }
}
