//! [`Plugin<P, S>`]: one version of a plugin, in lifecycle phase `S`.

use std::fmt;

use lifecycle::Phase;

use crate::hooks::{run_hook, Hook, HookFailure};
use crate::state::{HoldsPlugin, Initialized, Linked, Loaded, Removed, State, TransitionTo};
use crate::stats::RemovalReport;
use crate::Hooks;

/// One version of plugin `P` in phase `S` (one of the markers of
/// [`state`](crate::state)).
///
/// The host drives a version `Loaded -> Linked -> Initialized` with
/// [`link`](Plugin::link) and [`init`](Plugin::init), installs it in a
/// [`Slot`](crate::Slot) (where it is `Active`), gets it back as
/// `Plugin<P, Draining>` when it is replaced, and, once its drain completes,
/// as `Plugin<P, Removed>`. Every transition consumes `self`; a fallible one
/// hands the original back inside its error.
pub struct Plugin<P: Hooks, S: State = Loaded> {
    pub(crate) body: S::Body<P>,
}

impl<P: Hooks> Plugin<P, Loaded> {
    /// A freshly loaded version.
    pub fn new(plugin: P) -> Self {
        Plugin { body: plugin }
    }

    /// Runs [`Hooks::link`]: `Loaded -> Linked`.
    ///
    /// # Errors
    ///
    /// If the hook fails or panics, the plugin comes back, still `Loaded`,
    /// inside the error.
    pub fn link(self) -> Result<Plugin<P, Linked>, LinkError<P>> {
        self.step(Hook::Link, |p| p.link())
    }

    /// Makes the version ready to serve: links and initializes it in one
    /// go, `Loaded -> Linked -> Initialized`. (Not to be confused with
    /// [`Slot::prepare`](crate::Slot::prepare), the first half of a reload
    /// transaction.)
    ///
    /// # Errors
    ///
    /// The error holds the plugin in the phase it had reached.
    pub fn ready(self, cx: &P::Context) -> Result<Plugin<P, Initialized>, ReadyError<P>> {
        Ok(self.link()?.init(cx)?)
    }
}

impl<P: Hooks> Plugin<P, Linked> {
    /// Runs [`Hooks::init`] with the host's context: `Linked -> Initialized`.
    ///
    /// # Errors
    ///
    /// If the hook fails or panics, the plugin comes back, still `Linked`,
    /// inside the error.
    pub fn init(self, cx: &P::Context) -> Result<Plugin<P, Initialized>, InitError<P>> {
        self.step(Hook::Init, |p| p.init(cx))
    }
}

impl<P: Hooks, S: HoldsPlugin> Plugin<P, S> {
    /// One step along a legal edge whose hook may fail: the bound
    /// `S: TransitionTo<T>` is the lifecycle table.
    fn step<T>(
        mut self,
        hook: Hook,
        f: impl FnOnce(&mut P) -> Result<(), crate::BoxError>,
    ) -> Result<Plugin<P, T>, StepError<P, S>>
    where
        S: TransitionTo<T>,
        T: HoldsPlugin + State<Body<P> = P>,
    {
        match run_hook(S::get_mut(&mut self.body), hook, None, f) {
            Ok(()) => Ok(Plugin {
                body: S::take(self.body),
            }),
            Err(failure) => Err(StepError {
                plugin: self,
                failure,
            }),
        }
    }

    /// The plugin value.
    pub fn get(&self) -> &P {
        S::get(&self.body)
    }

    /// The plugin value, mutably: the host owns it in this phase.
    pub fn get_mut(&mut self) -> &mut P {
        S::get_mut(&mut self.body)
    }

    /// Gives the plugin value back, ending its lifecycle here.
    pub fn into_inner(self) -> P {
        S::take(self.body)
    }
}

impl<P: Hooks> Plugin<P, Removed> {
    /// How this version left its slot.
    pub fn report(&self) -> &RemovalReport {
        &self.body.report
    }
}

impl<P: Hooks, S: State> Plugin<P, S> {
    /// The lifecycle phase of this version.
    pub const fn phase(&self) -> Phase {
        S::PHASE
    }
}

impl<P: Hooks, S: HoldsPlugin> fmt::Debug for Plugin<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.get().name())
            .field("version", &self.get().version())
            .field("phase", &S::PHASE)
            .finish()
    }
}

/// A lifecycle step failed; the plugin is handed back in the phase it was in.
pub struct StepError<P: Hooks, S: State> {
    plugin: Plugin<P, S>,
    failure: HookFailure,
}

/// [`Plugin::link`] failed; the plugin is still `Loaded`.
pub type LinkError<P> = StepError<P, Loaded>;
/// [`Plugin::init`] failed; the plugin is still `Linked`.
pub type InitError<P> = StepError<P, Linked>;

impl<P: Hooks, S: State> StepError<P, S> {
    pub(crate) fn new(plugin: Plugin<P, S>, failure: HookFailure) -> Self {
        StepError { plugin, failure }
    }

    /// The plugin, in the phase it had before the failed step.
    pub fn into_inner(self) -> Plugin<P, S> {
        self.plugin
    }

    /// What failed.
    pub fn failure(&self) -> &HookFailure {
        &self.failure
    }

    /// Both halves.
    pub fn into_parts(self) -> (Plugin<P, S>, HookFailure) {
        (self.plugin, self.failure)
    }
}

impl<P: Hooks, S: State> fmt::Debug for StepError<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError")
            .field("phase", &S::PHASE)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl<P: Hooks, S: State> fmt::Display for StepError<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (the plugin is still {})", self.failure, S::PHASE)
    }
}

impl<P: Hooks, S: State> std::error::Error for StepError<P, S> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

/// [`Plugin::ready`] failed at one of its two steps.
#[derive(thiserror::Error)]
pub enum ReadyError<P: Hooks> {
    /// `link` failed; the plugin is `Loaded`.
    #[error(transparent)]
    Link(#[from] LinkError<P>),
    /// `init` failed; the plugin is `Linked`.
    #[error(transparent)]
    Init(#[from] InitError<P>),
}

impl<P: Hooks> fmt::Debug for ReadyError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyError::Link(e) => f.debug_tuple("Link").field(e).finish(),
            ReadyError::Init(e) => f.debug_tuple("Init").field(e).finish(),
        }
    }
}

impl<P: Hooks> ReadyError<P> {
    /// What failed.
    pub fn failure(&self) -> &HookFailure {
        match self {
            ReadyError::Link(e) => e.failure(),
            ReadyError::Init(e) => e.failure(),
        }
    }

    /// The plugin value, whichever phase it reached.
    pub fn into_plugin(self) -> P {
        match self {
            ReadyError::Link(e) => e.into_inner().into_inner(),
            ReadyError::Init(e) => e.into_inner().into_inner(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::hooks::Cause;
    use crate::BoxError;

    #[derive(Default)]
    struct Probe {
        fail_link: bool,
        panic_init: bool,
        linked: bool,
        init_with: Option<u32>,
    }

    impl Hooks for Probe {
        type Context = u32;
        fn name(&self) -> &str {
            "probe"
        }
        fn version(&self) -> &str {
            "1.2"
        }
        fn link(&mut self) -> Result<(), BoxError> {
            if self.fail_link {
                return Err("symbol `f` not found".into());
            }
            self.linked = true;
            Ok(())
        }
        fn init(&mut self, cx: &u32) -> Result<(), BoxError> {
            assert!(!self.panic_init, "init exploded");
            self.init_with = Some(*cx);
            Ok(())
        }
    }

    #[test]
    fn happy_path_runs_each_hook_once_in_order() {
        let ready = Plugin::new(Probe::default())
            .link()
            .expect("link")
            .init(&7)
            .expect("init");
        assert_eq!(ready.phase(), Phase::Initialized);
        assert!(ready.get().linked);
        assert_eq!(ready.get().init_with, Some(7));
    }

    #[test]
    fn failed_link_hands_back_the_loaded_plugin() {
        let err = Plugin::new(Probe {
            fail_link: true,
            ..Probe::default()
        })
        .link()
        .expect_err("link must fail");
        assert_eq!(err.failure().hook, Hook::Link);
        assert_eq!(err.failure().plugin, "probe");
        assert!(matches!(err.failure().cause, Cause::Error(_)));
        assert_eq!(
            err.to_string(),
            "link of probe version 1.2 failed: symbol `f` not found (the plugin is still Loaded)"
        );
        let mut back = err.into_inner();
        assert_eq!(back.phase(), Phase::Loaded);
        // The host may fix it and retry: nothing was lost.
        back.get_mut().fail_link = false;
        assert!(back.link().is_ok());
    }

    #[test]
    fn panicking_init_is_contained_and_hands_back_the_linked_plugin() {
        let linked = Plugin::new(Probe {
            panic_init: true,
            ..Probe::default()
        })
        .link()
        .expect("link");
        let err = linked.init(&1).expect_err("init must fail");
        assert!(err.failure().is_panic());
        assert_eq!(err.failure().hook, Hook::Init);
        assert!(err.to_string().contains("panicked: init exploded"));
        let back = err.into_inner();
        assert_eq!(back.phase(), Phase::Linked);
        assert!(back.get().linked);
    }

    #[test]
    fn prepare_reports_the_phase_reached() {
        let err = Plugin::new(Probe {
            panic_init: true,
            ..Probe::default()
        })
        .ready(&3)
        .expect_err("prepare must fail");
        assert!(matches!(err, ReadyError::Init(_)));
        assert!(err.into_plugin().linked);
    }
}
