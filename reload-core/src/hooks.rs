//! What a plugin author writes: the [`Hooks`] trait, and how a failing or
//! panicking hook is reported ([`HookFailure`]).

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The error a hook returns: anything that is an error and can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The lifecycle hooks of a plugin. All have defaults except the context
/// type, so the smallest plugin is `impl Hooks for T { type Context = (); }`.
///
/// Hooks run on the host's threads: `link` and `init` on the thread that
/// prepares the version, `shutdown` on the thread that finalizes it (the
/// one that waited for its drain). A hook that panics is contained: the
/// panic becomes a [`HookFailure`] naming the plugin, its version and the
/// hook, and the slot keeps serving the version it served.
///
/// ```
/// use reload_core::{BoxError, Hooks};
///
/// struct Greeter { greeting: String }
///
/// impl Hooks for Greeter {
///     type Context = str;
///     fn name(&self) -> &str { "greeter" }
///     fn init(&mut self, locale: &str) -> Result<(), BoxError> {
///         if locale.is_empty() {
///             return Err("no locale".into());
///         }
///         self.greeting = format!("hello ({locale})");
///         Ok(())
///     }
/// }
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// What the host hands to [`Hooks::init`] (configuration, handles to
    /// host services). Use `()` for none.
    type Context: ?Sized;

    /// The plugin's name. A slot only accepts versions with the name of the
    /// version it was created with.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// This version's label, for reports and errors.
    fn version(&self) -> &str {
        "0"
    }

    /// Resolve entry points and dependencies (`Loaded -> Linked`).
    fn link(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Prepare to serve (`Linked -> Initialized`).
    fn init(&mut self, cx: &Self::Context) -> Result<(), BoxError> {
        let _ = cx;
        Ok(())
    }

    /// Release what the version holds. Runs exactly once, after the version
    /// drained (`Draining -> Removed`), so no call is running in it.
    fn shutdown(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Which hook (or call) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// [`Hooks::link`].
    Link,
    /// [`Hooks::init`].
    Init,
    /// A call made through [`Slot::call`](crate::Slot::call).
    Call,
    /// [`Hooks::shutdown`].
    Shutdown,
    /// [`Stateful::save`](crate::Stateful::save).
    Save,
    /// [`Stateful::migrate`](crate::Stateful::migrate).
    Migrate,
    /// [`Stateful::restore`](crate::Stateful::restore).
    Restore,
    /// [`Stateful::persist`](crate::Stateful::persist).
    Persist,
    /// [`Stateful::checkpoint`](crate::Stateful::checkpoint).
    Checkpoint,
    /// [`Stateful::check_compat`](crate::Stateful::check_compat).
    CheckCompat,
    /// [`Stateful::open`](crate::Stateful::open).
    Open,
    /// [`Stateful::resume`](crate::Stateful::resume).
    Resume,
    /// [`Stateful::resources`](crate::Stateful::resources) or
    /// [`Stateful::schema`](crate::Stateful::schema) (they panicked).
    Describe,
    /// [`Hooks::name`] (it panicked where the library needed the name).
    Name,
    /// The plugin value's `Drop` (it panicked; the value is gone all the
    /// same, and the library carried on).
    Drop,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Link => "link",
            Hook::Init => "init",
            Hook::Call => "call",
            Hook::Shutdown => "shutdown",
            Hook::Save => "save",
            Hook::Migrate => "migrate",
            Hook::Restore => "restore",
            Hook::Persist => "persist",
            Hook::Checkpoint => "checkpoint",
            Hook::CheckCompat => "check_compat",
            Hook::Open => "open",
            Hook::Resume => "resume",
            Hook::Describe => "resources",
            Hook::Name => "name",
            Hook::Drop => "drop",
        })
    }
}

/// How a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The hook returned an error.
    #[error("failed: {0}")]
    Error(#[source] BoxError),
    /// The hook panicked; the panic was caught. The message is the panic
    /// payload if it was a string.
    #[error("panicked: {0}")]
    Panic(String),
}

/// A hook or call that failed or panicked, with which plugin, which version
/// and which hook.
#[derive(Debug, thiserror::Error)]
#[error("{hook} of {plugin} version {version}{} {cause}", generation_suffix(*.generation))]
pub struct HookFailure {
    /// Which hook.
    pub hook: Hook,
    /// The plugin's [`Hooks::name`].
    pub plugin: String,
    /// The plugin's [`Hooks::version`].
    pub version: String,
    /// The generation the version had in its slot, once it had one.
    pub generation: Option<u64>,
    /// What went wrong.
    #[source]
    pub cause: Cause,
}

fn generation_suffix(generation: Option<u64>) -> String {
    generation.map_or_else(String::new, |g| format!(" (generation {g})"))
}

impl HookFailure {
    /// Whether the hook panicked (rather than returning an error).
    pub fn is_panic(&self) -> bool {
        matches!(self.cause, Cause::Panic(_))
    }
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs `hook` on `plugin`, turning an error or a panic into a
/// [`HookFailure`] for that plugin and hook.
pub(crate) fn run_hook<P: Hooks, R>(
    plugin: &mut P,
    hook: Hook,
    generation: Option<u64>,
    f: impl FnOnce(&mut P) -> Result<R, BoxError>,
) -> Result<R, HookFailure> {
    // AssertUnwindSafe: on a panic the plugin is handed back to the host
    // inside the error (or, for shutdown, as Removed); the host is told it
    // panicked and decides whether the value is still of use.
    let outcome = catch_unwind(AssertUnwindSafe(|| f(plugin)));
    contained(plugin, hook, generation, outcome)
}

/// [`run_hook`] for hooks that only read the plugin (the old version's side
/// of a reload, which must come out of a failed reload as it went in).
pub(crate) fn run_ref_hook<P: Hooks, R>(
    plugin: &P,
    hook: Hook,
    generation: Option<u64>,
    f: impl FnOnce(&P) -> Result<R, BoxError>,
) -> Result<R, HookFailure> {
    // AssertUnwindSafe: as above; `&P` only.
    let outcome = catch_unwind(AssertUnwindSafe(|| f(plugin)));
    contained(plugin, hook, generation, outcome)
}

fn contained<P: Hooks, R>(
    plugin: &P,
    hook: Hook,
    generation: Option<u64>,
    outcome: std::thread::Result<Result<R, BoxError>>,
) -> Result<R, HookFailure> {
    let cause = match outcome {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e)) => Cause::Error(e),
        Err(payload) => Cause::Panic(panic_message(payload.as_ref())),
    };
    Err(HookFailure {
        hook,
        plugin: label(plugin, P::name),
        version: label(plugin, P::version),
        generation,
        cause,
    })
}

/// [`Hooks::name`] or [`Hooks::version`] for a report: plugin code too, so
/// a panic there becomes `"?"` rather than escaping while the library
/// reports something else.
pub(crate) fn label<P: Hooks>(plugin: &P, what: fn(&P) -> &str) -> String {
    catch_unwind(AssertUnwindSafe(|| what(plugin).to_owned())).unwrap_or_else(|_| "?".to_owned())
}

/// [`Hooks::name`] where the library decides by it (which slot a version
/// belongs to): a panic is a [`Hook::Name`] failure, never an unwind.
pub(crate) fn name_of<P: Hooks>(
    plugin: &P,
    generation: Option<u64>,
) -> Result<String, HookFailure> {
    match catch_unwind(AssertUnwindSafe(|| plugin.name().to_owned())) {
        Ok(name) => Ok(name),
        Err(payload) => Err(HookFailure {
            hook: Hook::Name,
            plugin: "?".to_owned(),
            version: label(plugin, P::version),
            generation,
            cause: Cause::Panic(panic_message(payload.as_ref())),
        }),
    }
}

/// Drops a value the library owns and no one asked back for (a finalized
/// orphan, a version whose slot was dropped), containing a panic in its
/// `Drop`: reported as a [`Hook::Drop`] failure for `plugin` so that the
/// caller can count it and carry on with whatever else it was dropping.
pub(crate) fn drop_contained<T>(
    value: T,
    plugin: &str,
    generation: Option<u64>,
) -> Option<HookFailure> {
    let payload = catch_unwind(AssertUnwindSafe(move || drop(value))).err()?;
    Some(HookFailure {
        hook: Hook::Drop,
        plugin: plugin.to_owned(),
        version: "?".to_owned(),
        generation,
        cause: Cause::Panic(panic_message(payload.as_ref())),
    })
}
