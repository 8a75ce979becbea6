//! The typestate markers: one zero-sized type per lifecycle phase.
//!
//! A [`Plugin<P, S>`](crate::Plugin) is a plugin version in phase `S`. The
//! markers are sealed (only this crate defines phases), each names its
//! [`lifecycle::Phase`] in [`State::PHASE`], and the legal edges are the
//! impls of [`TransitionTo`]. Every impl is checked against
//! [`Phase::can_transition_to`] at compile time, and a test asserts that the
//! impls cover every edge of [`lifecycle::EDGES`]: the typestate is the
//! lifecycle table in the type system, not a second copy of it.
//!
//! An illegal transition does not compile. A loaded plugin cannot be
//! initialized before it is linked:
//!
//! ```compile_fail,E0599
//! # use reload_core::{Hooks, Plugin};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! let plugin = Plugin::new(Udf);
//! let plugin = plugin.init(&()); // error: no method `init` on Plugin<Udf, Loaded>
//! ```
//!
//! while the legal path does:
//!
//! ```
//! # use reload_core::{Hooks, Plugin};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! let plugin = Plugin::new(Udf);
//! let plugin = plugin.link().map_err(|e| e.to_string())?.init(&()).map_err(|e| e.to_string())?;
//! # Ok::<(), String>(())
//! ```
//!
//! A version that was only linked cannot be installed in a slot:
//!
//! ```compile_fail,E0308
//! # use reload_core::{Hooks, Plugin, Slot};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! let linked = Plugin::new(Udf).link().ok().unwrap();
//! let slot = Slot::new(linked); // error: expected Plugin<Udf, Initialized>
//! ```
//!
//! ```
//! # use reload_core::{Hooks, Plugin, Slot};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! let ready = Plugin::new(Udf).link().ok().unwrap().init(&()).ok().unwrap();
//! let slot = Slot::new(ready);
//! ```
//!
//! A removed version cannot be linked again, nor put back into a slot:
//!
//! ```compile_fail,E0308
//! # use reload_core::{Hooks, Plugin, Slot};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! # let ready = || Plugin::new(Udf).link().ok().unwrap().init(&()).ok().unwrap();
//! let slot = Slot::new(ready());
//! let removed = slot.replace(ready()).ok().unwrap().wait().ok().unwrap();
//! slot.replace(removed); // error: expected Plugin<Udf, Initialized>, found Plugin<Udf, Removed>
//! ```
//!
//! ```
//! # use reload_core::{Hooks, Plugin, Slot};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! # let ready = || Plugin::new(Udf).link().ok().unwrap().init(&()).ok().unwrap();
//! let slot = Slot::new(ready());
//! let removed = slot.replace(ready()).ok().unwrap().wait().ok().unwrap();
//! let udf: Udf = removed.into_inner(); // the host gets its value back
//! ```
//!
//! A draining version cannot be finalized without waiting for its drain
//! (there is no `finalize` or `shutdown` on `Plugin<P, Draining>`; the only
//! ways out are the waits):
//!
//! ```compile_fail,E0599
//! # use reload_core::{Hooks, Plugin, Slot};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! # let ready = || Plugin::new(Udf).link().ok().unwrap().init(&()).ok().unwrap();
//! let slot = Slot::new(ready());
//! let draining = slot.replace(ready()).ok().unwrap();
//! draining.into_inner(); // error: the plugin is not the host's until it is Removed
//! ```
//!
//! ```
//! # use reload_core::{Hooks, Plugin, Slot};
//! # struct Udf;
//! # impl Hooks for Udf { type Context = (); }
//! # let ready = || Plugin::new(Udf).link().ok().unwrap().init(&()).ok().unwrap();
//! let slot = Slot::new(ready());
//! let draining = slot.replace(ready()).ok().unwrap();
//! let udf: Udf = draining.wait().ok().unwrap().into_inner();
//! ```

use std::convert::Infallible;
use std::marker::PhantomData;

use lifecycle::Phase;

use crate::shared::DrainingBody;
use crate::stats::RemovalReport;
use crate::Hooks;

/// What a `Plugin<P, Removed>` holds: the value, and how its removal went.
#[doc(hidden)]
pub struct RemovedBody<P> {
    pub(crate) plugin: P,
    pub(crate) report: RemovalReport,
}

mod sealed {
    pub trait Sealed {}
}

/// A lifecycle phase as a type. Sealed: the phases are the six of
/// [`lifecycle::Phase`].
pub trait State: sealed::Sealed + Sized + 'static {
    /// The lifecycle phase this marker stands for.
    const PHASE: Phase;

    /// What a [`Plugin`](crate::Plugin) holds in this phase: the plugin
    /// value itself while the host owns it, a handle on the slot's version
    /// while it drains.
    #[doc(hidden)]
    type Body<P: Hooks>;
}

/// `Self -> T` is a legal edge of the lifecycle.
///
/// The transitions of [`Plugin`](crate::Plugin) and [`Slot`](crate::Slot)
/// are bounded by this trait; its impls are exactly [`lifecycle::EDGES`].
pub trait TransitionTo<T: State>: State {}

/// The phases in which the host owns the plugin value (before it is
/// installed, and after it was removed).
#[doc(hidden)]
pub trait HoldsPlugin: State {
    #[doc(hidden)]
    fn get<P: Hooks>(body: &Self::Body<P>) -> &P;
    #[doc(hidden)]
    fn get_mut<P: Hooks>(body: &mut Self::Body<P>) -> &mut P;
    #[doc(hidden)]
    fn take<P: Hooks>(body: Self::Body<P>) -> P;
}

/// The body of [`Active`]: there is none. An active version lives inside
/// its [`Slot`](crate::Slot) and is reached through a
/// [`Lease`](crate::Lease); no `Plugin<P, Active>` value exists.
#[doc(hidden)]
pub struct InSlot<P>(Infallible, PhantomData<P>);

macro_rules! phases {
    ($($(#[$doc:meta])* $marker:ident => $phase:ident, body = $body:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $marker;
        impl sealed::Sealed for $marker {}
        impl State for $marker {
            const PHASE: Phase = Phase::$phase;
            type Body<P: Hooks> = $body;
        }
    )*};
}

phases! {
    /// [`Phase::Loaded`]: the plugin value exists; nothing resolved yet.
    Loaded => Loaded, body = P;
    /// [`Phase::Linked`]: entry points resolved.
    Linked => Linked, body = P;
    /// [`Phase::Initialized`]: ready to be installed in a slot.
    Initialized => Initialized, body = P;
    /// [`Phase::Active`]: a slot's current version (only inside a slot).
    Active => Active, body = InSlot<P>;
    /// [`Phase::Draining`]: cut over away from; in-flight calls finishing.
    Draining => Draining, body = DrainingBody<P>;
    /// [`Phase::Removed`]: drained and shut down; the value is the host's again.
    Removed => Removed, body = RemovedBody<P>;
}

macro_rules! holds_plugin_directly {
    ($($marker:ident),*) => {$(
        impl HoldsPlugin for $marker {
            fn get<P: Hooks>(body: &P) -> &P { body }
            fn get_mut<P: Hooks>(body: &mut P) -> &mut P { body }
            fn take<P: Hooks>(body: P) -> P { body }
        }
    )*};
}
holds_plugin_directly!(Loaded, Linked, Initialized);

impl HoldsPlugin for Removed {
    fn get<P: Hooks>(body: &RemovedBody<P>) -> &P {
        &body.plugin
    }
    fn get_mut<P: Hooks>(body: &mut RemovedBody<P>) -> &mut P {
        &mut body.plugin
    }
    fn take<P: Hooks>(body: RemovedBody<P>) -> P {
        body.plugin
    }
}

macro_rules! edges {
    ($($from:ident => $to:ident),* $(,)?) => {
        $(
            impl TransitionTo<$to> for $from {}
            const _: () = assert!(
                <$from as State>::PHASE.can_transition_to(<$to as State>::PHASE),
                concat!("typestate edge ", stringify!($from), " -> ", stringify!($to),
                        " is not in the lifecycle table"),
            );
        )*
        /// The typestate's edges as phases, for the test that compares them
        /// with [`lifecycle::EDGES`].
        #[cfg(test)]
        pub(crate) const TYPESTATE_EDGES: &[(Phase, Phase)] =
            &[$((<$from as State>::PHASE, <$to as State>::PHASE)),*];
    };
}

edges! {
    Loaded => Linked,
    Linked => Initialized,
    Initialized => Active,
    Active => Draining,
    Draining => Removed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typestate_edges_are_exactly_the_lifecycle_table() {
        let mut ours = TYPESTATE_EDGES.to_vec();
        let mut table = lifecycle::EDGES.to_vec();
        ours.sort();
        table.sort();
        assert_eq!(ours, table);
    }

    #[test]
    fn each_marker_names_a_distinct_phase() {
        let phases = [
            Loaded::PHASE,
            Linked::PHASE,
            Initialized::PHASE,
            Active::PHASE,
            Draining::PHASE,
            Removed::PHASE,
        ];
        assert_eq!(phases, Phase::ALL);
    }

    #[test]
    fn markers_are_zero_sized() {
        assert_eq!(std::mem::size_of::<Loaded>(), 0);
        assert_eq!(std::mem::size_of::<Draining>(), 0);
        assert_eq!(std::mem::size_of::<Removed>(), 0);
    }
}
