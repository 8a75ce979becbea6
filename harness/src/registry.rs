//! Registry operations against a reference, and the manifest decoder's
//! contract.
//!
//! [`run`] applies [`ROp`]s (register, unregister, reload, call) to a real
//! [`Registry`] of [`Part`]s and to a reference that is a plain map of
//! plugin -> (major version, required plugin), and after every step
//! compares: the outcome (`Ok`, or which typed refusal), the registry's
//! listing (versions, requirements, dependents), and, for a call, the
//! versions it leased. The reference is written from the rules, not
//! from the registry's planner: a dependency is accepted at its major, a
//! breaking reload needs its dependents to follow (there is no source here,
//! so it is refused), a plugin required by others cannot be unregistered,
//! and requirements cannot form a cycle.
//!
//! [`check_manifest`] is the manifest fuzz target's body: decoding never
//! panics, a decoded manifest re-encodes canonically and round-trips, and
//! registering it next to a fixture either succeeds or fails typed, leaving
//! the fixture serving.

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use reload_core::manifest::Manifest;
use reload_core::registry::{EnterError, Package, Registry, RegistryError};
use reload_core::testing::{Part, PartFaults, Parts};
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;

/// Plugin names the operations draw from.
pub const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// A fault in a new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum RFault {
    /// None.
    None,
    /// `init` fails.
    Init,
    /// `restore` fails (a quiesced reload then rolls back at commit).
    Restore,
}

/// One registry operation; names are indexes into [`NAMES`], majors are
/// taken modulo 3 (plus 1).
#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
pub enum ROp {
    /// Register `name` at `major`, requiring `requires` at its major `req`.
    Register {
        /// Plugin.
        name: u8,
        /// Its major version.
        major: u8,
        /// A plugin it requires, and the major it accepts.
        requires: Option<(u8, u8)>,
        /// Fault.
        fault: RFault,
    },
    /// Unregister `name`.
    Unregister {
        /// Plugin.
        name: u8,
    },
    /// Reload `name` to `major` (quiesced or immediate).
    Reload {
        /// Plugin.
        name: u8,
        /// New major version.
        major: u8,
        /// Its requirement.
        requires: Option<(u8, u8)>,
        /// Fault.
        fault: RFault,
        /// Quiesced commit.
        quiesced: bool,
    },
    /// A call on `name`.
    Call {
        /// Plugin.
        name: u8,
    },
}

/// Bytes to operations (the fuzz target's and the replay's decoder).
pub fn decode(bytes: &[u8]) -> Vec<ROp> {
    let mut u = Unstructured::new(bytes);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 64 {
        match ROp::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// A plugin in the reference: major version, requirement (plugin, major).
type Entry = (u64, Option<(String, u64)>);

/// The outcome class both sides must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Ok,
    /// Refused: not registered.
    NotRegistered,
    /// Refused: name taken.
    AlreadyRegistered,
    /// Refused: a requirement unmet (missing, or wrong major).
    Unmet,
    /// Refused: a dependent must follow.
    MustFollow(String),
    /// Refused: required by these.
    HasDependents(Vec<String>),
    /// Refused: a cycle.
    Cycle,
    /// `init` failed at registration.
    Init,
    /// The reload failed (init or restore); everything old serves on.
    ReloadError,
    /// Some other error (never expected).
    Other(String),
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations that succeeded.
    pub ok: usize,
    /// Operations refused or failed, as expected.
    pub refused: usize,
    /// Calls served.
    pub calls: usize,
}

fn name(i: u8) -> String {
    NAMES[usize::from(i) % NAMES.len()].to_owned()
}

fn major(m: u8) -> u64 {
    u64::from(m % 3) + 1
}

fn package(
    book: &Arc<Parts>,
    name: &str,
    major: u64,
    requires: &Option<(String, u64)>,
    fault: RFault,
) -> Package<Part> {
    let faults = PartFaults {
        fail_init: fault == RFault::Init,
        fail_restore: fault == RFault::Restore,
        ..PartFaults::default()
    };
    let reqs: Vec<(String, String)> = requires
        .iter()
        .map(|(d, m)| (d.clone(), format!("^{m}")))
        .collect();
    let reqs: Vec<(&str, &str)> = reqs.iter().map(|(d, r)| (d.as_str(), r.as_str())).collect();
    match Part::new(name, &format!("{major}.0.0"), book)
        .with_faults(faults)
        .package(&reqs)
    {
        Ok(p) => p,
        Err(e) => unreachable!("the harness builds valid manifests: {e}"),
    }
}

fn classify(e: &RegistryError) -> Outcome {
    match e {
        RegistryError::NotRegistered { .. } => Outcome::NotRegistered,
        RegistryError::AlreadyRegistered { .. } => Outcome::AlreadyRegistered,
        RegistryError::Unmet { .. } => Outcome::Unmet,
        RegistryError::MustFollow { dependent, .. } => Outcome::MustFollow(dependent.clone()),
        RegistryError::HasDependents { dependents, .. } => {
            Outcome::HasDependents(dependents.clone())
        }
        RegistryError::Cycle { .. } => Outcome::Cycle,
        RegistryError::Init(_) => Outcome::Init,
        RegistryError::Reload { .. } => Outcome::ReloadError,
        other => Outcome::Other(other.to_string()),
    }
}

fn dependents(model: &BTreeMap<String, Entry>, of: &str) -> Vec<String> {
    model
        .iter()
        .filter(|(_, (_, r))| r.as_ref().is_some_and(|(d, _)| d == of))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Whether following requirements from `from` reaches `to`.
fn reaches(model: &BTreeMap<String, Entry>, from: &str, to: &str) -> bool {
    let mut at = from.to_owned();
    for _ in 0..=model.len() {
        if at == to {
            return true;
        }
        match model.get(&at).and_then(|(_, r)| r.as_ref()) {
            Some((d, _)) => at = d.clone(),
            None => return false,
        }
    }
    false
}

fn requirement_ok(model: &BTreeMap<String, Entry>, requires: &Option<(String, u64)>) -> bool {
    match requires {
        None => true,
        Some((d, m)) => model.get(d).is_some_and(|(have, _)| have == m),
    }
}

/// Runs `ops`; `Err` describes the first disagreement.
///
/// # Errors
///
/// The first step where the registry and the reference disagree.
pub fn run(ops: &[ROp]) -> Result<Report, String> {
    let book = Arc::new(Parts::default());
    let registry: Registry<Part> = Registry::new(Unchecked);
    let mut model: BTreeMap<String, Entry> = BTreeMap::new();
    let mut report = Report::default();
    for (step, op) in ops.iter().enumerate() {
        let (expected, got) = match op {
            ROp::Register {
                name: n,
                major: m,
                requires,
                fault,
            } => {
                let (n, m) = (name(*n), major(*m));
                // A manifest cannot require itself (a typed manifest error,
                // tested elsewhere); the harness drops such a requirement.
                let req = requires
                    .map(|(d, r)| (name(d), major(r)))
                    .filter(|(d, _)| d != &n);
                let expected = if model.contains_key(&n) {
                    Outcome::AlreadyRegistered
                } else if !requirement_ok(&model, &req) {
                    Outcome::Unmet
                } else if *fault == RFault::Init {
                    Outcome::Init
                } else {
                    Outcome::Ok
                };
                let got = match registry.register(package(&book, &n, m, &req, *fault), &()) {
                    Ok(()) => Outcome::Ok,
                    Err(r) => classify(&r.error),
                };
                if expected == Outcome::Ok && got == Outcome::Ok {
                    model.insert(n, (m, req));
                }
                (expected, got)
            }
            ROp::Unregister { name: n } => {
                let n = name(*n);
                let expected = if !model.contains_key(&n) {
                    Outcome::NotRegistered
                } else {
                    let d = dependents(&model, &n);
                    if d.is_empty() {
                        Outcome::Ok
                    } else {
                        Outcome::HasDependents(d)
                    }
                };
                let got = match registry.unregister(&n) {
                    Ok(draining) => {
                        if let Some(d) = draining {
                            if d.wait().is_err() {
                                return Err(format!("step {step}: shutdown failed"));
                            }
                        }
                        Outcome::Ok
                    }
                    Err(e) => classify(&e),
                };
                if got == Outcome::Ok {
                    model.remove(&n);
                }
                (expected, got)
            }
            ROp::Reload {
                name: n,
                major: m,
                requires,
                fault,
                quiesced,
            } => {
                let (n, m) = (name(*n), major(*m));
                let req = requires
                    .map(|(d, r)| (name(d), major(r)))
                    .filter(|(d, _)| d != &n);
                let must_follow = dependents(&model, &n)
                    .into_iter()
                    .find(|d| model[d].1.as_ref().is_some_and(|(_, want)| *want != m));
                let expected = if !model.contains_key(&n) {
                    Outcome::NotRegistered
                } else if let Some(d) = must_follow {
                    Outcome::MustFollow(d)
                } else if !requirement_ok(&model, &req) {
                    Outcome::Unmet
                } else if req.as_ref().is_some_and(|(d, _)| reaches(&model, d, &n)) {
                    Outcome::Cycle
                } else if *fault != RFault::None {
                    // Init fails at prepare; restore at prepare (immediate)
                    // or at commit (quiesced). Either way nothing changes.
                    Outcome::ReloadError
                } else {
                    Outcome::Ok
                };
                let options = if *quiesced {
                    ReloadOptions::quiesced(std::time::Duration::from_secs(60))
                } else {
                    ReloadOptions::immediate()
                };
                let got = match registry.reload(
                    vec![package(&book, &n, m, &req, *fault)],
                    &(),
                    options,
                ) {
                    Ok(changes) => {
                        for c in changes.changes {
                            if c.committed.old.wait().is_err() {
                                return Err(format!("step {step}: shutdown failed"));
                            }
                        }
                        Outcome::Ok
                    }
                    Err(r) => {
                        if r.packages.len() != 1 {
                            return Err(format!(
                                "step {step}: {} packages handed back",
                                r.packages.len()
                            ));
                        }
                        classify(&r.error)
                    }
                };
                if got == Outcome::Ok {
                    model.insert(n, (m, req));
                }
                (expected, got)
            }
            ROp::Call { name: n } => {
                let n = name(*n);
                let expected = if model.contains_key(&n) {
                    Outcome::Ok
                } else {
                    Outcome::NotRegistered
                };
                let got = match registry.enter(&n) {
                    Ok(call) => {
                        // The chain the call leased is the reference's.
                        let mut at = Some(n.clone());
                        let mut chain = Vec::new();
                        while let Some(p) = at {
                            let (m, r) = &model[&p];
                            chain.push((p, *m));
                            at = r.as_ref().map(|(d, _)| d.clone());
                        }
                        let leased: Vec<(String, u64)> = call
                            .leased()
                            .map(|d| (d.manifest().name().to_owned(), d.manifest().version().major))
                            .collect();
                        if leased != chain {
                            return Err(format!(
                                "step {step}: call leased {leased:?}, reference {chain:?}"
                            ));
                        }
                        call.run();
                        report.calls += 1;
                        Outcome::Ok
                    }
                    Err(EnterError::NotRegistered { .. }) => Outcome::NotRegistered,
                    Err(e) => Outcome::Other(e.to_string()),
                };
                (expected, got)
            }
        };
        if expected != got {
            return Err(format!(
                "step {step}: {op:?}: expected {expected:?}, got {got:?}"
            ));
        }
        if got == Outcome::Ok {
            report.ok += 1;
        } else {
            report.refused += 1;
        }
        let listed: BTreeMap<String, (u64, Vec<String>, Vec<String>)> = registry
            .list()
            .into_iter()
            .map(|p| {
                let reqs = p.requires.iter().map(|(d, r)| format!("{d} {r}")).collect();
                (p.name, (p.version.major, reqs, p.dependents))
            })
            .collect();
        let reference: BTreeMap<String, (u64, Vec<String>, Vec<String>)> = model
            .iter()
            .map(|(n, (m, r))| {
                let reqs = r.iter().map(|(d, want)| format!("{d} ^{want}")).collect();
                (n.clone(), (*m, reqs, dependents(&model, n)))
            })
            .collect();
        if listed != reference {
            return Err(format!(
                "step {step}: {op:?}: listing {listed:?}, reference {reference:?}"
            ));
        }
    }
    let used = book
        .used_after_shutdown
        .load(std::sync::atomic::Ordering::Relaxed);
    if used != 0 {
        return Err(format!("{used} uses after shutdown"));
    }
    Ok(report)
}

/// The manifest fuzz target's contract on arbitrary bytes.
///
/// # Errors
///
/// What was violated.
pub fn check_manifest(bytes: &[u8]) -> Result<(), String> {
    let manifest = match Manifest::decode(bytes) {
        Err(e) => {
            if e.to_string().is_empty() {
                return Err("an error with no message".to_owned());
            }
            return Ok(());
        }
        Ok(m) => m,
    };
    let encoded = manifest.encode();
    let again = Manifest::decode(&encoded).map_err(|e| format!("canonical form refused: {e}"))?;
    if again != manifest {
        return Err(format!("round trip changed it: {manifest:?} -> {again:?}"));
    }
    if again.encode() != encoded {
        return Err("encoding is not canonical".to_owned());
    }
    // Register it next to a fixture: typed refusal or success, and the
    // fixture keeps serving either way.
    let book = Arc::new(Parts::default());
    let registry: Registry<Part> = Registry::new(Unchecked);
    let fixture = package(&book, "a", 1, &None, RFault::None);
    registry
        .register(fixture, &())
        .map_err(|r| format!("fixture refused: {r}"))?;
    let version = manifest.version().to_string();
    let plugin = Part::new(manifest.name(), &version, &book);
    let content = bytes.to_vec();
    let outcome = registry.register(Package::new(plugin, manifest.clone(), content), &());
    match outcome {
        Ok(()) => {
            let call = registry
                .enter(manifest.name())
                .map_err(|e| format!("registered but not callable: {e}"))?;
            if call.manifest() != &manifest {
                return Err("registered another manifest".to_owned());
            }
        }
        Err(r) => {
            if let Outcome::Other(e) = classify(&r.error) {
                return Err(format!("unexpected refusal: {e}"));
            }
            if r.packages.len() != 1 {
                return Err("package not handed back".to_owned());
            }
        }
    }
    registry
        .enter("a")
        .map(|c| c.run())
        .map_err(|e| format!("fixture stopped serving: {e}"))?;
    Ok(())
}
