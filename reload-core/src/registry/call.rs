//! A registry [`Call`]: leases on a plugin and, transitively, on the
//! dependency versions it declared, taken so that the set is consistent.
//!
//! The rule (checked by the `registry` model): a call holds a lease on the
//! root and on every plugin its version requires, each version satisfying
//! the requirement of the version that leads to it. Because every plugin
//! it reaches is leased for the whole call, none of them can be finalized
//! under it (S1 per slot), and because the set is checked, it never mixes
//! a dependent with a dependency version outside its declared range.
//!
//! How it stays deadlock free next to a group commit
//! ([`Prepared::commit_together`](crate::Prepared::commit_together)), which
//! closes every gate of the group, drains them, and cuts over
//! dependencies first: a call never waits while holding a lease. It takes
//! leases with `try_enter`; at a closed gate it gives back everything it
//! holds, waits (parked) for that gate, and starts over. A set that mixes
//! versions (possible only in the instants of a group cut-over) is also
//! given back and retried; the retry meets the gates, so it does not spin.

use std::ops::Deref;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use smallvec::SmallVec;

use super::{Counters, EnterError, Member, Node};
use crate::error::TryEnterError;
use crate::manifest::Manifest;
use crate::{OwnedLease, Phase, Stateful};

/// Inline room for a root and three dependencies before a call allocates.
/// (Kept small: a call is returned by value on every enter.)
type Held<P> = SmallVec<[OwnedLease<Member<P>>; 4]>;

/// One call through a [`Registry`](super::Registry): derefs to the plugin,
/// and holds its declared dependencies (see [`Call::dependency`]) at
/// versions that satisfy its manifest, for as long as it lives.
///
/// A call owns its leases ([`OwnedLease`]s): it borrows neither the
/// registry nor a handle, so it is `Send + 'static` and can move into a
/// spawned task, be held across `.await` and be dropped on another thread;
/// it may outlive the plugin's unregistration (the versions it holds are
/// finalized when it goes).
///
/// Hold it for a call, not for the life of a task: none of the versions it
/// holds can finish draining until it is dropped.
#[must_use = "a call's leases are given back as soon as it is dropped"]
pub struct Call<P: Stateful> {
    held: Held<P>,
}

/// A plugin version held by a [`Call`]: the root or one of its dependencies.
#[derive(Clone, Copy)]
pub struct Dep<'c, P: Stateful> {
    member: &'c Member<P>,
    generation: u64,
}

impl<'c, P: Stateful> Dep<'c, P> {
    /// The plugin.
    pub fn plugin(&self) -> &'c P {
        self.member.plugin()
    }

    /// Its manifest.
    pub fn manifest(&self) -> &'c Manifest {
        self.member.manifest()
    }

    /// Its generation in its slot.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl<P: Stateful> Deref for Dep<'_, P> {
    type Target = P;

    fn deref(&self) -> &P {
        self.member.plugin()
    }
}

impl<P: Stateful> Call<P> {
    /// A call on `root`.
    pub(crate) fn new(root: &Node<P>, counters: &Counters) -> Result<Self, EnterError> {
        #[cfg(feature = "metrics")]
        root.calls.increment(1);
        Ok(Call {
            held: acquire(root, counters)?,
        })
    }

    /// The plugin called.
    pub fn plugin(&self) -> &P {
        self.root().plugin()
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        self.root().manifest()
    }

    /// Its generation.
    pub fn generation(&self) -> u64 {
        self.held[0].generation()
    }

    /// A plugin this one requires (directly or through another), at the
    /// version leased for this call; `None` if it is not a requirement.
    pub fn dependency(&self, name: &str) -> Option<Dep<'_, P>> {
        self.leased().skip(1).find(|d| d.manifest().name() == name)
    }

    /// Every version this call holds: the plugin called first, then its
    /// requirements, breadth first.
    pub fn leased(&self) -> impl Iterator<Item = Dep<'_, P>> + '_ {
        self.held.iter().map(|l| Dep {
            member: l,
            generation: l.generation(),
        })
    }

    fn root(&self) -> &Member<P> {
        &self.held[0]
    }
}

impl<P: Stateful> Deref for Call<P> {
    type Target = P;

    fn deref(&self) -> &P {
        self.plugin()
    }
}

impl<P: Stateful> std::fmt::Debug for Call<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for d in self.leased() {
            list.entry(&format_args!(
                "{} {} (generation {})",
                d.manifest().name(),
                d.manifest().version(),
                d.generation()
            ));
        }
        list.finish()
    }
}

enum Attempt {
    Done,
    /// A gate was closed: we gave everything back and waited for it.
    Waited,
    /// The set mixed versions, or reached a slot closed under it.
    Retry,
}

/// Leases `root` and its requirements, consistently (see the module docs).
/// Each lease is owned: it keeps its slot's shared part alive itself, so
/// the call needs neither the root's node nor a dependency's to outlive it.
fn acquire<P: Stateful>(root: &Node<P>, counters: &Counters) -> Result<Held<P>, EnterError> {
    let mut held: Held<P> = SmallVec::new();
    loop {
        held.clear();
        match lease_all(root, &mut held)? {
            Attempt::Done => return Ok(held),
            Attempt::Waited => {
                counters.gate_waits.fetch_add(1, Relaxed);
            }
            Attempt::Retry => {
                counters.call_retries.fetch_add(1, Relaxed);
                std::thread::yield_now();
            }
        }
    }
}

fn lease_all<P: Stateful>(root: &Node<P>, held: &mut Held<P>) -> Result<Attempt, EnterError> {
    match root.slot.try_enter_owned() {
        Ok(lease) => held.push(lease),
        Err(TryEnterError::Quiescing) => {
            root.slot.shared.wait_gate(None);
            return Ok(Attempt::Waited);
        }
        Err(TryEnterError::Closed) => {
            return Err(EnterError::Unregistered {
                name: root.slot.name().to_owned(),
            })
        }
    }
    let mut i = 0;
    while i < held.len() {
        let member: *const Member<P> = &*held[i];
        // SAFETY: `held[i]` is a lease on the version that owns this
        // member; it stays in `held` (which only grows) until we return,
        // so the member is live while we use it. Pushing may move the
        // `Leased` values, not the versions they point to.
        let member = unsafe { &*member };
        for (k, dep) in member.deps.iter().enumerate() {
            // A slot is one node's, so its leases name the node.
            if let Some(seen) = held.iter().find(|l| l.is_of(&dep.slot)) {
                // Reached twice (a diamond): one version for both paths.
                if !member.accepts(k, seen.generation(), seen.manifest()) {
                    return Ok(Attempt::Retry);
                }
                continue;
            }
            match dep.slot.try_enter_owned() {
                Ok(lease) => {
                    if !member.accepts(k, lease.generation(), lease.manifest()) {
                        return Ok(Attempt::Retry);
                    }
                    held.push(lease);
                }
                Err(TryEnterError::Quiescing) => {
                    // Give everything back before waiting: the group commit
                    // that closed this gate may be draining what we hold.
                    // `dep` lives in a member we are about to release.
                    let dep = Arc::clone(dep);
                    held.clear();
                    dep.slot.shared.wait_gate(None);
                    return Ok(Attempt::Waited);
                }
                // A closed dependency: only a version already cut over
                // from can still require a plugin that was unregistered,
                // so the root has moved on; start over on its new version.
                // If the root is still current, the registry is broken:
                // say so rather than spin.
                Err(TryEnterError::Closed) => {
                    if held[0].phase() == Phase::Active {
                        return Err(EnterError::Unregistered {
                            name: dep.slot.name().to_owned(),
                        });
                    }
                    return Ok(Attempt::Retry);
                }
            }
        }
        i += 1;
    }
    Ok(Attempt::Done)
}
