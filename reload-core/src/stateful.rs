//! [`Stateful`]: what a plugin that owns state and resources writes so that
//! a reload carries them to the next version.

use std::fmt;

use crate::hooks::{BoxError, Hooks};

/// A resource a version owns beyond its state, handed to the next version
/// in two phases by a reload (see [`Stateful`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Its name, unique within the plugin (`"primary-index"`, `"cdc"`).
    pub name: String,
    /// How it is handed over.
    pub kind: ResourceKind,
    /// The schema version of its persisted form (for an index) or of the
    /// records at its positions (for a stream).
    pub schema: u32,
}

impl Resource {
    /// An index-like resource: `persist` on the old version, `open` on the new.
    pub fn index(name: impl Into<String>, schema: u32) -> Self {
        Resource {
            name: name.into(),
            kind: ResourceKind::Index,
            schema,
        }
    }

    /// A stream-like resource: `checkpoint` on the old version, `resume` on the new.
    pub fn stream(name: impl Into<String>, schema: u32) -> Self {
        Resource {
            name: name.into(),
            kind: ResourceKind::Stream,
            schema,
        }
    }
}

/// A resource as the plugin ABIs carry it (native libraries, WebAssembly).
#[cfg(any(feature = "dylib", feature = "wasm"))]
impl From<reload_abi::wire::Resource> for Resource {
    fn from(r: reload_abi::wire::Resource) -> Self {
        let kind = match r.kind {
            reload_abi::wire::ResourceKind::Index => ResourceKind::Index,
            reload_abi::wire::ResourceKind::Stream => ResourceKind::Stream,
        };
        Resource {
            name: r.name,
            kind,
            schema: r.schema,
        }
    }
}

#[cfg(any(feature = "dylib", feature = "wasm"))]
impl From<&Resource> for reload_abi::wire::Resource {
    fn from(r: &Resource) -> Self {
        let kind = match r.kind {
            ResourceKind::Index => reload_abi::wire::ResourceKind::Index,
            ResourceKind::Stream => reload_abi::wire::ResourceKind::Stream,
        };
        reload_abi::wire::Resource {
            name: r.name.clone(),
            kind,
            schema: r.schema,
        }
    }
}

/// How a [`Resource`] is handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// Written out by [`Stateful::persist`], read in by [`Stateful::open`].
    Index,
    /// A position from [`Stateful::checkpoint`], continued by [`Stateful::resume`].
    Stream,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Index => "index",
            ResourceKind::Stream => "stream",
        })
    }
}

/// A plugin whose versions carry state and resources across a reload.
///
/// Every method has a default, so `impl Stateful for P {}` declares a plugin
/// with no state and no resources (it can still use the prepare / commit /
/// abort transaction of [`Slot::prepare`](crate::Slot::prepare)).
///
/// # What a reload does with these
///
/// 1. **State.** [`save`](Self::save) on the old version (exactly once),
///    wrapped in the library's envelope ([`SavedState`](crate::SavedState):
///    schema, length, checksum), then [`migrate`](Self::migrate) on the *new*
///    version, one step at a time, from the old schema up to the new
///    version's [`schema`](Self::schema) (v1 -> v2 -> v3), then
///    [`restore`](Self::restore) on the new version (exactly once).
/// 2. **Resources, two-phase.** For each of the old version's
///    [`resources`](Self::resources): an index is [`persist`](Self::persist)ed
///    by the old version, checked against the new one on the real persisted
///    bytes ([`check_compat`](Self::check_compat)) and [`open`](Self::open)ed
///    by it; a stream is [`checkpoint`](Self::checkpoint)ed by the old and
///    [`resume`](Self::resume)d by the new. *Every* handoff is done before the
///    new version is cut in, and the old version's resources are released only
///    by its own [`shutdown`](Hooks::shutdown), after its drain. If any step
///    fails, the library calls [`close`](Self::close) on each resource the new
///    version had opened or resumed, the old version keeps serving with all of
///    its resources open, and the error carries the saved state, the persisted
///    bytes and the checkpoints.
///
/// When the old version is saved decides what "nothing lost" means, and is
/// the host's choice per reload ([`Mode`](crate::Mode)): *quiesced*
/// saves after the old version drained with its gate closed, so no update is
/// lost; *immediate* saves at prepare while the old version keeps serving
/// (right for caches and state that is rebuilt).
///
/// The methods that read the old version take `&self`: it may be rolled
/// back to and must come out of a failed reload exactly as it went in.
pub trait Stateful: Hooks {
    /// The schema version of the state this version saves and restores.
    /// A reload migrates older state up to it and refuses newer state.
    fn schema(&self) -> u32 {
        0
    }

    /// This version's state, in the plugin's own encoding, or `None` if it
    /// has none. Called once per reload on the old version, with no call in
    /// flight on it in quiesced mode.
    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }

    /// One migration step, called on the new version: turn `state` written
    /// in schema `from` into a later schema, and say which. The library
    /// repeats it until the state reaches [`schema`](Self::schema); a step
    /// that does not move forward, or overshoots, is refused.
    fn migrate(&self, from: u32, state: Vec<u8>) -> Result<(u32, Vec<u8>), BoxError> {
        let _ = state;
        Err(format!("no migration from schema {from} to {}", self.schema()).into())
    }

    /// Take over `state` (already migrated to [`schema`](Self::schema)).
    /// Called once per reload, on the new version, before it serves.
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let _ = state;
        Ok(())
    }

    /// The resources this version owns and hands over on reload.
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }

    /// Old version: write `resource`'s persisted form (or a handle to it,
    /// such as a file name), keeping the resource open and serving.
    fn persist(&self, resource: &str) -> Result<Vec<u8>, BoxError> {
        Err(format!("`persist` is not implemented (resource `{resource}`)").into())
    }

    /// Old version: the position `resource` has reached, keeping it open.
    fn checkpoint(&self, resource: &str) -> Result<u64, BoxError> {
        Err(format!("`checkpoint` is not implemented (resource `{resource}`)").into())
    }

    /// New version: can it read `persisted`, written by the old version as
    /// `old` (whose schema may differ from this version's)? Called on the
    /// real persisted bytes before [`open`](Self::open); an error is a hard
    /// refusal of the reload. The default accepts only the same schema.
    fn check_compat(&self, old: &Resource, persisted: &[u8]) -> Result<(), BoxError> {
        let _ = persisted;
        let mine = self.resources().into_iter().find(|r| r.name == old.name);
        match mine {
            Some(mine) if mine.schema == old.schema => Ok(()),
            Some(mine) => Err(format!(
                "`{}` is schema {} here but {} in the old version",
                old.name, mine.schema, old.schema
            )
            .into()),
            None => Err(format!("`{}` is not a resource of this version", old.name).into()),
        }
    }

    /// New version: open `resource` from what the old version persisted.
    fn open(&mut self, resource: &str, persisted: &[u8]) -> Result<(), BoxError> {
        let _ = persisted;
        Err(format!("`open` is not implemented (resource `{resource}`)").into())
    }

    /// New version: continue `resource` from `position`.
    fn resume(&mut self, resource: &str, position: u64) -> Result<(), BoxError> {
        Err(format!("`resume` is not implemented (resource `{resource}` at {position})").into())
    }

    /// New version: undo an [`open`](Self::open) or [`resume`](Self::resume)
    /// because the reload failed. Must not touch what the old version owns.
    fn close(&mut self, resource: &str) {
        let _ = resource;
    }
}
