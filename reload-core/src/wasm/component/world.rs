//! What a host declares of its plugin kind ([`World`]), the interface
//! names components export and when one satisfies another
//! ([`InterfaceName`]), and the data every component store carries
//! ([`Host`]).
//!
//! # Versions side by side
//!
//! A host that has shipped `my:udf/scalar@1.0.0` and then
//! `my:udf/scalar@1.1.0` keeps loading guests of both: its [`World`] lists
//! one [`Binding`] per interface version, newest first, each with its own
//! linker (the host functions of that version) and its own `bindgen!`
//! types. A component is bound through the first binding whose every
//! interface it exports at a semver-compatible version: same package and
//! interface, same major version (same minor below 1.0), and a version at
//! least the one the binding was generated from (so it has every function
//! the binding calls). This choice is made from the component's type,
//! before any instance exists; no binding fitting is
//! [`WasmError::Incompatible`](super::WasmError::Incompatible).

use std::fmt;
use std::time::Instant;

use wasmtime::component::{Instance, Linker};
use wasmtime::{StoreContextMut, StoreLimits};

use crate::wasm::guest::Bounded;

/// An exported interface's name, `namespace:package/interface@version`
/// (the version optional), as components name their exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceName {
    /// `namespace:package`.
    pub package: String,
    /// The interface within it.
    pub interface: String,
    /// Its version, if the package has one.
    pub version: Option<semver::Version>,
}

impl InterfaceName {
    /// Parses `ns:pkg/iface` or `ns:pkg/iface@1.2.3`; `None` for anything
    /// else (a plain function or instance name, a bad version).
    pub fn parse(name: &str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((path, v)) => (path, Some(semver::Version::parse(v).ok()?)),
            None => (name, None),
        };
        let (package, interface) = path.split_once('/')?;
        let (ns, pkg) = package.split_once(':')?;
        let word = |s: &str| !s.is_empty() && !s.contains(['/', ':', '@']);
        if !word(ns) || !word(pkg) || !word(interface) {
            return None;
        }
        Some(InterfaceName {
            package: package.to_owned(),
            interface: interface.to_owned(),
            version,
        })
    }

    /// Whether a component exporting `self` can be called by a host built
    /// against `wanted`: the same interface, a semver-compatible version
    /// no older than `wanted`'s (pre-releases only match exactly).
    pub fn satisfies(&self, wanted: &InterfaceName) -> bool {
        if self.package != wanted.package || self.interface != wanted.interface {
            return false;
        }
        match (&self.version, &wanted.version) {
            (None, None) => true,
            (Some(have), Some(want)) => {
                if !have.pre.is_empty() || !want.pre.is_empty() {
                    return have == want;
                }
                let same_line = if want.major == 0 {
                    have.major == 0 && have.minor == want.minor
                } else {
                    have.major == want.major
                };
                same_line && (have.minor, have.patch) >= (want.minor, want.patch)
            }
            _ => false,
        }
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.package, self.interface)?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

/// One interface version a host can bind: the interfaces (by their full
/// names, `my:udf/scalar@1.1.0`) a component must export for it.
#[derive(Clone, Debug)]
pub struct Binding {
    /// A label for messages and [`ComponentPlugin::binding`](super::ComponentPlugin::binding) (say `"1.1"`).
    pub label: &'static str,
    /// The interfaces it calls.
    pub requires: Vec<InterfaceName>,
}

impl Binding {
    /// A binding labelled `label` requiring `interfaces` (full names).
    ///
    /// # Panics
    ///
    /// If a name is not `namespace:package/interface[@version]`: the
    /// names are the host's own constants.
    pub fn new(label: &'static str, interfaces: &[&str]) -> Self {
        Binding {
            label,
            requires: interfaces
                .iter()
                .map(|n| {
                    InterfaceName::parse(n)
                        .unwrap_or_else(|| panic!("`{n}` is not `ns:pkg/interface[@version]`"))
                })
                .collect(),
        }
    }
}

/// A plugin kind a host declares as a WIT world: which interface versions
/// it binds, the host functions each offers, and how to make its
/// `bindgen!` types from an instance. The library's own `reload:plugin`
/// world is one ([`PluginWorld`](super::PluginWorld)).
///
/// Everything here is the host's code, called by the library while it
/// makes instances; a panic in it is contained and reported like a
/// plugin's.
pub trait World: Send + Sync + 'static {
    /// What `bind` makes: the `bindgen!` types of the chosen binding (an
    /// enum of them when there are several versions).
    type Bindings: Send + 'static;
    /// What host functions see of each instance's store
    /// ([`Host::data`]).
    type Data: Send + 'static;

    /// The interface versions this host binds, most preferred first.
    fn bindings(&self) -> Vec<Binding>;

    /// Fresh host data for a new instance.
    fn data(&self) -> Self::Data;

    /// Adds the host functions of binding `binding` (an index into
    /// [`bindings`](World::bindings)) to its own linker. The default adds
    /// none.
    ///
    /// # Errors
    ///
    /// wasmtime's, when a definition clashes.
    fn link(&self, binding: usize, linker: &mut Linker<Host<Self::Data>>) -> wasmtime::Result<()> {
        let _ = (binding, linker);
        Ok(())
    }

    /// The bindings of `binding` for a new `instance` (typically
    /// `Generated::new(store, instance)`).
    ///
    /// # Errors
    ///
    /// wasmtime's, when an export does not type-check.
    fn bind(
        &self,
        binding: usize,
        store: StoreContextMut<'_, Host<Self::Data>>,
        instance: &Instance,
    ) -> wasmtime::Result<Self::Bindings>;
}

/// The data of every component store: the host's own
/// ([`data`](Host::data)) beside the library's limits and deadline.
pub struct Host<D> {
    pub(super) limits: StoreLimits,
    pub(super) until: Option<Instant>,
    data: D,
}

impl<D> Host<D> {
    pub(super) fn new(limits: StoreLimits, data: D) -> Self {
        Host {
            limits,
            until: None,
            data,
        }
    }

    /// The host's data (what `add_to_linker`'s getter returns).
    pub fn data(&mut self) -> &mut D {
        &mut self.data
    }
}

impl<D: 'static> Bounded for Host<D> {
    fn until(&self) -> Option<Instant> {
        self.until
    }
    fn set_until(&mut self, until: Option<Instant>) {
        self.until = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> InterfaceName {
        InterfaceName::parse(s).expect(s)
    }

    #[test]
    fn names_parse_and_print_back() {
        for s in ["my:udf/scalar@1.1.0", "a:b/c", "wasi:io/streams@0.2.0-rc.1"] {
            assert_eq!(n(s).to_string(), s);
        }
        for bad in [
            "call",
            "a:b",
            "a/b@1.0.0",
            "a:b/c@x",
            ":b/c",
            "a:b/",
            "a:b/c@1",
        ] {
            assert_eq!(InterfaceName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn newer_minors_satisfy_older_and_nothing_else_does() {
        let want = n("my:udf/scalar@1.1.0");
        assert!(n("my:udf/scalar@1.1.0").satisfies(&want));
        assert!(n("my:udf/scalar@1.4.2").satisfies(&want));
        assert!(!n("my:udf/scalar@1.0.9").satisfies(&want), "older minor");
        assert!(!n("my:udf/scalar@2.0.0").satisfies(&want), "other major");
        assert!(!n("my:udf/other@1.1.0").satisfies(&want), "other interface");
        assert!(!n("my:udg/scalar@1.1.0").satisfies(&want), "other package");
        assert!(!n("my:udf/scalar").satisfies(&want), "unversioned");
        // Below 1.0 the minor is the line.
        let zero = n("reload:plugin/guest@0.1.0");
        assert!(n("reload:plugin/guest@0.1.7").satisfies(&zero));
        assert!(!n("reload:plugin/guest@0.2.0").satisfies(&zero));
        // Pre-releases match only themselves.
        let rc = n("a:b/c@1.0.0-rc.1");
        assert!(n("a:b/c@1.0.0-rc.1").satisfies(&rc));
        assert!(!n("a:b/c@1.0.0").satisfies(&rc));
        assert!(!rc.satisfies(&n("a:b/c@1.0.0")));
    }
}
