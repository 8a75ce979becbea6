//! Listeners: who is told about each step of a slot's reloads, and who may
//! veto one while it is being prepared.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ReloadFault;
use crate::hooks::{panic_message, BoxError, Cause};
use crate::options::Mode;
use crate::stats::Counters;

/// The name of the one slot the crate keeps for itself: the registry's
/// name-map snapshots (`registry/names.rs`), a new version at every
/// registration. Its events are not the host's plugins' reloads, so they
/// stay out of `tracing` and the `metrics` figures.
pub(crate) const INTERNAL: &str = "reload-core: registry names";

/// A reload being prepared, as shown to [`Listener::on_prepare`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Proposal<'a> {
    /// The slot's plugin name.
    pub plugin: &'a str,
    /// Generation of the version serving now.
    pub from_generation: u64,
    /// Its [`Hooks::version`](crate::Hooks::version) label.
    pub from_version: &'a str,
    /// The label of the version proposed.
    pub to_version: &'a str,
    /// How it would cut over.
    pub mode: Mode,
}

/// One step of a slot's life, as shown to [`Listener::on_event`] (and, with
/// the `tracing` feature, emitted as a `tracing` event).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A new version was prepared (linked, initialized, accepted by every
    /// listener and, in immediate mode, given the old version's state and
    /// resources). Callers still see the old version.
    Prepared {
        /// The slot's plugin name.
        plugin: &'a str,
        /// Generation serving now.
        from_generation: u64,
        /// Label of the prepared version.
        to_version: &'a str,
        /// How it will cut over.
        mode: Mode,
    },
    /// A listener vetoed a reload during prepare.
    Vetoed {
        /// The slot's plugin name.
        plugin: &'a str,
        /// The listener's [`Listener::name`].
        listener: &'a str,
        /// Its reason (or its panic message).
        reason: &'a str,
    },
    /// A prepared reload was aborted (explicitly or by dropping it); the old
    /// version serves on, untouched.
    Aborted {
        /// The slot's plugin name.
        plugin: &'a str,
        /// Generation still serving.
        generation: u64,
        /// Label of the version discarded.
        to_version: &'a str,
    },
    /// A reload failed before cutting over; the old version serves on.
    /// In quiesced mode this is a roll back: the gate reopened on the old
    /// version and the calls waiting at it proceeded there.
    Failed {
        /// The slot's plugin name.
        plugin: &'a str,
        /// Generation still serving, `None` if the slot is closed.
        generation: Option<u64>,
        /// Whether a quiesced commit rolled back (the gate had closed).
        rolled_back: bool,
        /// What went wrong.
        error: &'a ReloadFault,
    },
    /// The new version was cut in.
    Committed {
        /// The slot's plugin name.
        plugin: &'a str,
        /// Generation cut over from (now draining).
        from_generation: u64,
        /// Generation cut over to.
        to_generation: u64,
        /// How.
        mode: Mode,
        /// In quiesced mode, how long new calls waited at the gate.
        quiesce: Option<Duration>,
    },
    /// A version that was cut over from has no lease left (seen when it was
    /// finalized).
    Drained {
        /// The slot's plugin name.
        plugin: &'a str,
        /// Its generation.
        generation: u64,
        /// From the cut-over away from it.
        after: Duration,
    },
    /// A version was finalized: its `shutdown` ran (once).
    Removed {
        /// The slot's plugin name.
        plugin: &'a str,
        /// Its generation.
        generation: u64,
        /// Whether `shutdown` returned `Ok`.
        shutdown_ok: bool,
    },
    /// A listener panicked; the panic was contained.
    ListenerPanicked {
        /// The slot's plugin name.
        plugin: &'a str,
        /// The listener's name.
        listener: &'a str,
        /// The panic message.
        message: &'a str,
    },
    /// A plugin value the slot dropped (a finalized orphan, or a version
    /// left when the slot went) panicked in its `Drop`; contained, counted
    /// in [`SlotStats::drop_panics`](crate::SlotStats), and the slot went on
    /// with the rest.
    DropPanicked {
        /// The slot's plugin name.
        plugin: &'a str,
        /// The version's generation.
        generation: u64,
        /// The panic message.
        message: &'a str,
    },
}

/// Told about each step of a slot's reloads; registered with
/// [`Slot::listen`](crate::Slot::listen).
///
/// Listeners run on the thread doing the step, outside the slot's locks
/// (they may call the slot). A listener that panics is contained: the panic
/// is counted in [`SlotStats::listener_panics`](crate::SlotStats), reported
/// to the other listeners as [`Event::ListenerPanicked`], and, during
/// [`on_prepare`](Self::on_prepare), counts as a veto.
///
/// A closure `Fn(&Event<'_>)` is a listener that never vetoes.
pub trait Listener: Send + Sync + 'static {
    /// A name for reports.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Called during prepare, after `init`; an error vetoes the reload (the
    /// new version is handed back and the old one serves on).
    fn on_prepare(&self, proposal: &Proposal<'_>) -> Result<(), BoxError> {
        let _ = proposal;
        Ok(())
    }

    /// Called after each step.
    fn on_event(&self, event: &Event<'_>) {
        let _ = event;
    }
}

impl<F> Listener for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event);
    }
}

/// Which listener to remove with [`Slot::unlisten`](crate::Slot::unlisten).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// A veto: which listener, and why.
pub(crate) struct Veto {
    pub(crate) listener: String,
    pub(crate) cause: Cause,
}

/// A slot's listeners.
///
/// A plain `parking_lot` mutex also under loom: it guards only this list,
/// is never held while anything else is locked or any listener runs, and
/// loom tests register no listeners.
#[derive(Default)]
pub(crate) struct Listeners {
    list: parking_lot::Mutex<Vec<(ListenerId, Arc<dyn Listener>)>>,
    next_id: AtomicU64,
}

impl Listeners {
    pub(crate) fn add(&self, listener: Arc<dyn Listener>) -> ListenerId {
        let id = ListenerId(self.next_id.fetch_add(1, Relaxed));
        self.list.lock().push((id, listener));
        id
    }

    pub(crate) fn remove(&self, id: ListenerId) -> bool {
        let mut list = self.list.lock();
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        list.len() != before
    }

    fn snapshot(&self) -> Vec<Arc<dyn Listener>> {
        self.list
            .lock()
            .iter()
            .map(|(_, l)| Arc::clone(l))
            .collect()
    }

    /// Tells every listener (and `tracing`, and the `metrics` figures)
    /// about `event`; the crate's own slot ([`INTERNAL`]) only its
    /// listeners.
    pub(crate) fn emit(&self, counters: &Counters, plugin: &str, event: &Event<'_>) {
        if plugin != INTERNAL {
            #[cfg(feature = "tracing")]
            trace(event);
            #[cfg(feature = "metrics")]
            measure(event);
        }
        let listeners = self.snapshot();
        for (i, listener) in listeners.iter().enumerate() {
            // AssertUnwindSafe: a listener sees the event by reference only.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| listener.on_event(event))) {
                let message = panic_message(payload.as_ref());
                self.panicked(counters, plugin, &listeners, i, &message);
            }
        }
    }

    /// Asks every listener whether `proposal` may go ahead; the first veto
    /// (or panic) wins.
    pub(crate) fn vote(&self, counters: &Counters, proposal: &Proposal<'_>) -> Result<(), Veto> {
        let listeners = self.snapshot();
        for (i, listener) in listeners.iter().enumerate() {
            let name = || {
                catch_unwind(AssertUnwindSafe(|| listener.name().to_owned()))
                    .unwrap_or_else(|_| "?".to_owned())
            };
            match catch_unwind(AssertUnwindSafe(|| listener.on_prepare(proposal))) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(Veto {
                        listener: name(),
                        cause: Cause::Error(reason),
                    })
                }
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    self.panicked(counters, proposal.plugin, &listeners, i, &message);
                    return Err(Veto {
                        listener: name(),
                        cause: Cause::Panic(message),
                    });
                }
            }
        }
        Ok(())
    }

    fn panicked(
        &self,
        counters: &Counters,
        plugin: &str,
        listeners: &[Arc<dyn Listener>],
        culprit: usize,
        message: &str,
    ) {
        Counters::bump(&counters.listener_panics);
        let name = catch_unwind(AssertUnwindSafe(|| listeners[culprit].name().to_owned()))
            .unwrap_or_else(|_| "?".to_owned());
        let report = Event::ListenerPanicked {
            plugin,
            listener: &name,
            message,
        };
        #[cfg(feature = "tracing")]
        trace(&report);
        #[cfg(feature = "metrics")]
        measure(&report);
        for (i, other) in listeners.iter().enumerate() {
            if i != culprit {
                // A second panic here is only counted: no report of a
                // report, so this cannot recurse.
                if catch_unwind(AssertUnwindSafe(|| other.on_event(&report))).is_err() {
                    Counters::bump(&counters.listener_panics);
                }
            }
        }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.list.lock().len())
            .finish()
    }
}

/// Emits `event` as a `tracing` event in the current span (the reload's),
/// with target `reload_core`. Levels follow the ecosystem's habit: `info`
/// for what an operator wants in a normal log (commits, removals), `warn`
/// for what went wrong but was contained (vetoes, failures, roll backs,
/// panics in listeners or `Drop`), `debug` for the steps in between.
#[cfg(feature = "tracing")]
fn trace(event: &Event<'_>) {
    match event {
        Event::Prepared {
            plugin,
            from_generation,
            to_version,
            mode,
        } => tracing::debug!(
            target: "reload_core",
            plugin,
            from_generation,
            to_version,
            mode = %mode,
            "prepared"
        ),
        Event::Vetoed {
            plugin,
            listener,
            reason,
        } => tracing::warn!(target: "reload_core", plugin, listener, reason, "vetoed"),
        Event::Aborted {
            plugin,
            generation,
            to_version,
        } => tracing::info!(target: "reload_core", plugin, generation, to_version, "aborted"),
        Event::Failed {
            plugin,
            generation,
            rolled_back,
            error,
        } => tracing::warn!(
            target: "reload_core",
            plugin,
            generation = ?generation,
            rolled_back,
            error = %error,
            "reload failed; old version serving"
        ),
        Event::Committed {
            plugin,
            from_generation,
            to_generation,
            mode,
            quiesce,
        } => tracing::info!(
            target: "reload_core",
            plugin,
            from_generation,
            to_generation,
            mode = %mode,
            quiesce_us = quiesce.map(|d| d.as_micros() as u64),
            "committed"
        ),
        Event::Drained {
            plugin,
            generation,
            after,
        } => tracing::debug!(
            target: "reload_core",
            plugin,
            generation,
            after_us = after.as_micros() as u64,
            "drained"
        ),
        Event::Removed {
            plugin,
            generation,
            shutdown_ok,
        } => tracing::info!(target: "reload_core", plugin, generation, shutdown_ok, "removed"),
        Event::ListenerPanicked {
            plugin,
            listener,
            message,
        } => tracing::warn!(
            target: "reload_core",
            plugin,
            listener,
            message,
            "listener panicked (contained)"
        ),
        Event::DropPanicked {
            plugin,
            generation,
            message,
        } => tracing::warn!(
            target: "reload_core",
            plugin,
            generation,
            message,
            "plugin value panicked in drop (contained)"
        ),
    }
}

/// Records `event` in the `metrics` figures (listed in [`crate::metrics`]).
#[cfg(feature = "metrics")]
fn measure(event: &Event<'_>) {
    match *event {
        Event::Committed {
            plugin, quiesce, ..
        } => {
            metrics::counter!("reload_core_reloads_total", "plugin" => plugin.to_owned())
                .increment(1);
            if let Some(q) = quiesce {
                metrics::histogram!("reload_core_quiesce_seconds", "plugin" => plugin.to_owned())
                    .record(q.as_secs_f64());
            }
        }
        Event::Failed {
            plugin,
            rolled_back,
            ..
        } => metrics::counter!(
            "reload_core_reload_failures_total",
            "plugin" => plugin.to_owned(),
            "rolled_back" => if rolled_back { "true" } else { "false" }
        )
        .increment(1),
        Event::Vetoed { plugin, .. } => {
            metrics::counter!("reload_core_vetoes_total", "plugin" => plugin.to_owned())
                .increment(1);
        }
        Event::Aborted { plugin, .. } => {
            metrics::counter!("reload_core_aborts_total", "plugin" => plugin.to_owned())
                .increment(1);
        }
        Event::Drained { plugin, after, .. } => {
            metrics::histogram!("reload_core_drain_seconds", "plugin" => plugin.to_owned())
                .record(after.as_secs_f64());
            metrics::gauge!("reload_core_versions_draining", "plugin" => plugin.to_owned())
                .decrement(1.0);
        }
        Event::Removed {
            plugin,
            shutdown_ok: false,
            ..
        } => {
            metrics::counter!("reload_core_shutdown_failures_total", "plugin" => plugin.to_owned())
                .increment(1);
        }
        Event::ListenerPanicked { plugin, .. } => {
            metrics::counter!("reload_core_panics_total", "plugin" => plugin.to_owned(), "in" => "listener")
                .increment(1);
        }
        Event::DropPanicked { plugin, .. } => {
            metrics::counter!("reload_core_panics_total", "plugin" => plugin.to_owned(), "in" => "drop")
                .increment(1);
        }
        Event::Removed { .. } | Event::Prepared { .. } => {}
    }
}
