//! The library's own WIT package, `reload:plugin` (`wit/plugin.wit`):
//! the `bindgen!` types of its interfaces, the optional ones a component
//! of any world may export ([`Surface`]: lifecycle, state, resources), and
//! [`PluginWorld`], the world of bytes-in, bytes-out plugins.

use wasmtime::component::{Instance, InstancePre};
use wasmtime::StoreContextMut;

use super::world::{Binding, Host, InterfaceName, World};
use crate::wasm::WasmError;

/// What `bindgen!` makes of `wit/plugin.wit` (its docs are the WIT's).
#[allow(missing_docs)]
mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "reload:plugin/resource-plugin",
    });
}

/// The `reload:plugin/guest` interface of an instance: `call_call(store,
/// input)` is one call.
pub use generated::exports::reload::plugin::guest::Guest as GuestInterface;
use generated::exports::reload::plugin::{guest, lifecycle, resources, state};
pub(super) use generated::reload::plugin::types::{ResourceDecl, ResourceKind, Snapshot};
pub(super) use resources::Guest as ResourcesInterface;
pub(super) use state::Guest as StateInterface;

/// The version of `reload:plugin` this library is built from.
pub const PACKAGE_VERSION: &str = "0.1.0";

/// The full name of interface `name` of `reload:plugin`.
pub(super) fn own(name: &str) -> InterfaceName {
    InterfaceName {
        package: "reload:plugin".to_owned(),
        interface: name.to_owned(),
        version: semver::Version::parse(PACKAGE_VERSION).ok(),
    }
}

/// Which of the optional interfaces a component exports, found from its
/// type before instantiation: `None` when absent, an error when present at
/// a version this library cannot call.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Exports {
    pub lifecycle: bool,
    pub state: bool,
    pub resources: bool,
}

impl Exports {
    /// Reads `exported` (the component's exported interface names).
    pub(super) fn of(exported: &[InterfaceName]) -> Result<Self, WasmError> {
        let mut found = Exports::default();
        for name in exported.iter().filter(|n| n.package == "reload:plugin") {
            let slot = match name.interface.as_str() {
                "lifecycle" => &mut found.lifecycle,
                "state" => &mut found.state,
                "resources" => &mut found.resources,
                _ => continue,
            };
            if !name.satisfies(&own(&name.interface)) {
                return Err(WasmError::Incompatible {
                    wanted: own(&name.interface).to_string(),
                    found: name.to_string(),
                });
            }
            *slot = true;
        }
        Ok(found)
    }
}

/// The export indices of the optional interfaces a component has, looked
/// up once per version.
pub(super) struct SurfaceIndices {
    lifecycle: Option<lifecycle::GuestIndices>,
    state: Option<state::GuestIndices>,
    resources: Option<resources::GuestIndices>,
}

impl SurfaceIndices {
    pub(super) fn new<T: 'static>(
        exports: Exports,
        pre: &InstancePre<T>,
    ) -> Result<Self, WasmError> {
        let typed = |what: &'static str| {
            move |e: wasmtime::Error| WasmError::Signature {
                name: what,
                reason: format!("{e:#}"),
            }
        };
        Ok(SurfaceIndices {
            lifecycle: exports
                .lifecycle
                .then(|| lifecycle::GuestIndices::new(pre))
                .transpose()
                .map_err(typed("reload:plugin/lifecycle"))?,
            state: exports
                .state
                .then(|| state::GuestIndices::new(pre))
                .transpose()
                .map_err(typed("reload:plugin/state"))?,
            resources: exports
                .resources
                .then(|| resources::GuestIndices::new(pre))
                .transpose()
                .map_err(typed("reload:plugin/resources"))?,
        })
    }

    /// Whether the version keeps one instance: it has state or resources.
    pub(super) fn stateful(&self) -> bool {
        self.state.is_some() || self.resources.is_some()
    }

    pub(super) fn load<D: 'static>(
        &self,
        mut store: StoreContextMut<'_, Host<D>>,
        instance: &Instance,
    ) -> wasmtime::Result<Surface> {
        Ok(Surface {
            lifecycle: self
                .lifecycle
                .as_ref()
                .map(|i| i.load(&mut store, instance))
                .transpose()?,
            state: self
                .state
                .as_ref()
                .map(|i| i.load(&mut store, instance))
                .transpose()?,
            resources: self
                .resources
                .as_ref()
                .map(|i| i.load(&mut store, instance))
                .transpose()?,
        })
    }
}

/// The optional `reload:plugin` interfaces of one instance.
pub(super) struct Surface {
    pub lifecycle: Option<lifecycle::Guest>,
    pub state: Option<state::Guest>,
    pub resources: Option<resources::Guest>,
}

/// The world of `reload:plugin`'s plain plugins: `call`, bytes in, bytes
/// out ([`ComponentPlugin::call`](super::ComponentPlugin::call)). Its
/// components may also export the lifecycle, state and resources
/// interfaces (the worlds `lifecycle-plugin`, `stateful-plugin` and
/// `resource-plugin`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PluginWorld;

impl World for PluginWorld {
    type Bindings = GuestInterface;
    type Data = ();

    fn bindings(&self) -> Vec<Binding> {
        vec![Binding {
            label: PACKAGE_VERSION,
            requires: vec![own("guest")],
        }]
    }

    fn data(&self) {}

    fn bind(
        &self,
        _binding: usize,
        mut store: StoreContextMut<'_, Host<()>>,
        instance: &Instance,
    ) -> wasmtime::Result<GuestInterface> {
        let pre = instance.instance_pre(&store);
        guest::GuestIndices::new(&pre)?.load(&mut store, instance)
    }
}

impl From<ResourceKind> for crate::ResourceKind {
    fn from(k: ResourceKind) -> Self {
        match k {
            ResourceKind::Index => crate::ResourceKind::Index,
            ResourceKind::Stream => crate::ResourceKind::Stream,
        }
    }
}

impl From<&crate::Resource> for ResourceDecl {
    fn from(r: &crate::Resource) -> Self {
        ResourceDecl {
            name: r.name.clone(),
            kind: match r.kind {
                crate::ResourceKind::Index => ResourceKind::Index,
                crate::ResourceKind::Stream => ResourceKind::Stream,
            },
            schema: r.schema,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<InterfaceName> {
        list.iter()
            .map(|n| InterfaceName::parse(n).expect(n))
            .collect()
    }

    #[test]
    fn the_optional_interfaces_are_found_by_name_and_their_line_checked() {
        let found = Exports::of(&names(&[
            "reload:plugin/guest@0.1.0",
            "reload:plugin/state@0.1.3",
            "my:udf/scalar@1.0.0",
        ]))
        .expect("compatible");
        assert!(!found.lifecycle && found.state && !found.resources);
        match Exports::of(&names(&["reload:plugin/lifecycle@0.2.0"])) {
            Err(WasmError::Incompatible { wanted, found }) => {
                assert_eq!(wanted, "reload:plugin/lifecycle@0.1.0");
                assert_eq!(found, "reload:plugin/lifecycle@0.2.0");
            }
            other => panic!("{other:?}"),
        }
        // Unversioned is not this library's package either.
        assert!(Exports::of(&names(&["reload:plugin/state"])).is_err());
    }
}
