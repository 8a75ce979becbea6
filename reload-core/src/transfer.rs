//! The state transfer of a reload: what moves from the old version to the
//! new one, beside the [`Stateful`] trait that says how. State leaves the
//! old version through [`save_envelope`] (the library's envelope around the
//! plugin's bytes), is migrated one step at a time and restored; each
//! resource is persisted or checkpointed by the old version and opened or
//! resumed by the new one, after the new one checked the real bytes. The
//! old side is only read (`&P`), so a failed transfer leaves it as it was;
//! what it gave up is kept in a [`Salvage`] for the host.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::envelope::{EnvelopeError, SavedState};
use crate::error::ReloadFault;
use crate::hooks::{run_hook, run_ref_hook, Hook, HookFailure};
use crate::options::StateSource;
use crate::stateful::{Resource, ResourceKind, Stateful};

/// What a failed reload had taken from the old version before it failed:
/// nothing the old version owns is lost even if the host must recover by
/// hand (the old version itself still has all of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    /// The old version's state in its envelope (decode with
    /// [`SavedState::decode`], or pass to [`ReloadOptions::restore_from`](crate::ReloadOptions::restore_from)).
    pub state: Option<Vec<u8>>,
    /// Each index's persisted form, by resource name.
    pub persisted: Vec<(String, Vec<u8>)>,
    /// Each stream's checkpoint, by resource name.
    pub checkpoints: Vec<(String, u64)>,
}

/// What moved from the old version to the new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// The state's schema as saved, and as restored (`None` if the old
    /// version had no state).
    pub state: Option<(u32, u32)>,
    /// Migration steps run.
    pub migration_steps: u32,
    /// Size of the saved state's envelope.
    pub state_bytes: usize,
    /// Resources handed over, in order.
    pub resources: Vec<Resource>,
}

/// The resources the old version hands over must each be declared by the
/// new one, as the same kind. (Schemas are checked on the real persisted
/// bytes, by `check_compat`, during the transfer.)
pub(crate) fn declared_compatible(old: &[Resource], new: &[Resource]) -> Result<(), ReloadFault> {
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            None => {
                return Err(ReloadFault::Resource {
                    resource: o.name.clone(),
                    reason: "the old version hands it over but the new one does not declare it"
                        .to_owned(),
                })
            }
            Some(n) if n.kind != o.kind => {
                return Err(ReloadFault::Resource {
                    resource: o.name.clone(),
                    reason: format!(
                        "a {} in the old version but a {} in the new",
                        o.kind, n.kind
                    ),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Moves state and resources from `old` (read only) to `new`. The old side
/// runs first and fills `salvage`, so a failure on the new side loses
/// nothing; `opened` lists what the new side opened or resumed, for the
/// caller to close on failure.
pub(crate) fn transfer<P: Stateful>(
    old: &P,
    old_generation: u64,
    new: &mut P,
    source: &StateSource,
    salvage: &mut Salvage,
    opened: &mut Vec<String>,
) -> Result<Transfer, ReloadFault> {
    let old_gen = Some(old_generation);
    // Old side: save, persist, checkpoint. `&P` only.
    let envelope = match source {
        StateSource::Old => save_envelope(old, old_gen)?,
        StateSource::Envelope(bytes) => Some(bytes.clone()),
    };
    salvage.state.clone_from(&envelope);
    let resources = run_ref_hook(old, Hook::Describe, old_gen, |p| Ok(p.resources()))?;
    let mut persisted = Vec::new();
    let mut positions = Vec::new();
    for r in &resources {
        match r.kind {
            ResourceKind::Index => {
                let bytes = run_ref_hook(old, Hook::Persist, old_gen, |p| p.persist(&r.name))?;
                salvage.persisted.push((r.name.clone(), bytes.clone()));
                persisted.push((r, bytes));
            }
            ResourceKind::Stream => {
                let at = run_ref_hook(old, Hook::Checkpoint, old_gen, |p| p.checkpoint(&r.name))?;
                salvage.checkpoints.push((r.name.clone(), at));
                positions.push((r, at));
            }
        }
    }
    // New side: migrate and restore the state, then open and resume.
    let mut report = Transfer {
        resources: resources.clone(),
        ..Transfer::default()
    };
    if let Some(envelope) = &envelope {
        report.state_bytes = envelope.len();
        let saved = SavedState::decode(envelope)?;
        let target = run_hook(new, Hook::Describe, None, |p| Ok(p.schema()))?;
        if saved.schema > target {
            return Err(EnvelopeError::UnknownSchema {
                found: saved.schema,
                known: target,
            }
            .into());
        }
        let (mut schema, mut bytes) = (saved.schema, saved.bytes);
        while schema < target {
            let from = schema;
            let (to, out) = run_hook(new, Hook::Migrate, None, |p| p.migrate(from, bytes))?;
            if to <= from || to > target {
                return Err(ReloadFault::Migration { from, to, target });
            }
            report.migration_steps += 1;
            (schema, bytes) = (to, out);
        }
        run_hook(new, Hook::Restore, None, |p| p.restore(&bytes))?;
        report.state = Some((saved.schema, target));
    }
    let declared = run_hook(new, Hook::Describe, None, |p| Ok(p.resources()))?;
    declared_compatible(&resources, &declared)?;
    for (r, bytes) in &persisted {
        run_hook(new, Hook::CheckCompat, None, |p| p.check_compat(r, bytes))?;
        run_hook(new, Hook::Open, None, |p| p.open(&r.name, bytes))?;
        opened.push(r.name.clone());
    }
    for (r, at) in &positions {
        run_hook(new, Hook::Resume, None, |p| p.resume(&r.name, *at))?;
        opened.push(r.name.clone());
    }
    Ok(report)
}

/// `save` on `plugin`, its bytes put in the library's envelope (`None` if
/// it has no state). The one place state leaves a version.
pub(crate) fn save_envelope<P: Stateful>(
    plugin: &P,
    generation: Option<u64>,
) -> Result<Option<Vec<u8>>, HookFailure> {
    run_ref_hook(plugin, Hook::Save, generation, |p| {
        Ok(p.save()?
            .map(|bytes| SavedState::new(p.schema(), bytes).encode()))
    })
}

/// Closes, newest first, what the new version opened or resumed. A panic in
/// `close` is contained: the reload is failing already, and the old
/// version's resources are not the new one's to touch.
pub(crate) fn close_opened<P: Stateful>(new: &mut P, opened: &mut Vec<String>) {
    while let Some(name) = opened.pop() {
        let _ = catch_unwind(AssertUnwindSafe(|| new.close(&name)));
    }
}
