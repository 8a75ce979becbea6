//! `Plugin<P, Draining>`: a version cut over away from, whose in-flight
//! calls are finishing: what the host can ask of it, the ways to wait for
//! its drain (parked, with a deadline, as a future), and its finalization.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lifecycle::Phase;

use crate::drain::Version;
use crate::handback::{DrainError, FinalizeError};
use crate::shared::DrainingBody;
use crate::state::{Draining, Removed, RemovedBody};
use crate::waiters::TaskEntry;
use crate::{Hooks, Plugin};

/// Finalizes a version whose drain `body` has seen complete, and hands it
/// back `Removed` (inside the error if `shutdown` failed).
fn finalize<P: Hooks>(body: DrainingBody<P>) -> Result<Plugin<P, Removed>, FinalizeError<P>> {
    let (plugin, report, failure) = body.finalize();
    let removed = Plugin {
        body: RemovedBody { plugin, report },
    };
    match failure {
        None => Ok(removed),
        Some(failure) => Err(FinalizeError::new(removed, failure)),
    }
}

impl<P: Hooks> Plugin<P, Draining> {
    /// Generation this version had in its slot.
    pub fn generation(&self) -> u64 {
        self.body.version().generation()
    }

    /// Leases still out on this version.
    pub fn in_flight(&self) -> usize {
        self.body.version().in_flight()
    }

    /// Whether every lease on this version has been given back.
    pub fn is_drained(&self) -> bool {
        self.body.version().is_drained()
    }

    /// How long since the cut-over away from this version.
    pub fn elapsed(&self) -> Duration {
        self.body.since().elapsed()
    }

    /// Parks until every lease on this version has been given back (woken
    /// by the last release, not by polling) or `deadline` passes, without
    /// finalizing: returns whether it drained. The version stays `Draining`
    /// and this handle stays the host's, for example to do work that must
    /// follow the last call but precede `shutdown`. Once it returns `true`,
    /// [`wait`](Self::wait) and [`try_finalize`](Self::try_finalize) finish
    /// without parking.
    ///
    /// As for `wait`, do not call this while holding a lease on the same
    /// version on this thread.
    pub fn wait_drained(&self, deadline: Option<Instant>) -> bool {
        self.body.version().wait_drained(deadline)
    }

    /// Waits, parked, until the last lease is given back (woken by that
    /// release, not by polling), then runs `shutdown` once and hands back
    /// the plugin, `Removed`.
    ///
    /// Do not call this while holding a lease on the same version on this
    /// thread: it would wait for itself.
    ///
    /// # Errors
    ///
    /// [`FinalizeError`] if `shutdown` failed or panicked; the plugin is
    /// `Removed` all the same and comes back inside the error.
    pub fn wait(self) -> Result<Plugin<P, Removed>, FinalizeError<P>> {
        let drained = self.body.version().wait_drained(None);
        debug_assert!(drained, "a wait without deadline returns only once drained");
        finalize(self.body)
    }

    /// [`wait`](Self::wait), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// [`DrainError::TimedOut`] hands this version back, still draining, to
    /// wait on again; [`DrainError::Shutdown`] as for `wait`.
    pub fn wait_deadline(self, deadline: Instant) -> Result<Plugin<P, Removed>, DrainError<P>> {
        if self.body.version().wait_drained(Some(deadline)) {
            Ok(finalize(self.body)?)
        } else {
            Err(DrainError::TimedOut(self))
        }
    }

    /// [`wait`](Self::wait), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`wait_deadline`](Self::wait_deadline).
    pub fn wait_timeout(self, timeout: Duration) -> Result<Plugin<P, Removed>, DrainError<P>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.wait_deadline(deadline),
            None => Ok(self.wait()?),
        }
    }

    /// Finalizes now if the drain has completed, without waiting.
    ///
    /// # Errors
    ///
    /// [`DrainError::TimedOut`] (with this version) if leases are still out.
    pub fn try_finalize(self) -> Result<Plugin<P, Removed>, DrainError<P>> {
        if self.is_drained() {
            Ok(finalize(self.body)?)
        } else {
            Err(DrainError::TimedOut(self))
        }
    }

    /// The drain as a `Future`, for any executor: it resolves when the last
    /// lease is given back (that release wakes the task), then finalizes.
    /// `plugin.await` does the same.
    pub fn drained(self) -> Drain<P> {
        Drain {
            draining: Some(self),
            entry: None,
        }
    }

    /// [`wait_drained`](Self::wait_drained) as a future: resolves once every
    /// lease on this version has been given back, without finalizing. Any
    /// number of tasks (and threads) may wait on one version at once; the
    /// last release wakes every one.
    pub fn until_drained(&self) -> UntilDrained<'_, P> {
        UntilDrained {
            version: self.body.version(),
            entry: None,
        }
    }
}

impl<P: Hooks> IntoFuture for Plugin<P, Draining> {
    type Output = Result<Plugin<P, Removed>, FinalizeError<P>>;
    type IntoFuture = Drain<P>;

    fn into_future(self) -> Drain<P> {
        self.drained()
    }
}

impl<P: Hooks> fmt::Debug for Plugin<P, Draining> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("generation", &self.generation())
            .field("phase", &Phase::Draining)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// The future returned by [`Plugin::drained`]. Dropping it before it
/// resolves hands the version to its slot, which finalizes it once drained.
#[must_use = "futures do nothing unless polled"]
pub struct Drain<P: Hooks> {
    draining: Option<Plugin<P, Draining>>,
    entry: TaskEntry,
}

impl<P: Hooks> Future for Drain<P> {
    type Output = Result<Plugin<P, Removed>, FinalizeError<P>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(draining) = this.draining.as_ref() else {
            panic!("`Drain` polled after it completed");
        };
        match draining.body.version().poll_drained(&mut this.entry, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => match this.draining.take() {
                Some(draining) => Poll::Ready(finalize(draining.body)),
                None => unreachable!("checked above"),
            },
        }
    }
}

impl<P: Hooks> Drop for Drain<P> {
    fn drop(&mut self) {
        if let Some(draining) = &self.draining {
            draining.body.version().leave(&mut self.entry);
        }
    }
}

impl<P: Hooks> Unpin for Drain<P> {}

impl<P: Hooks> fmt::Debug for Drain<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.draining)
            .finish()
    }
}

/// The future returned by [`Plugin::until_drained`]: resolves once the
/// version has drained, leaving it `Draining` and its handle with the host.
#[must_use = "futures do nothing unless polled"]
pub struct UntilDrained<'a, P: Hooks> {
    version: &'a Version<P>,
    entry: TaskEntry,
}

impl<P: Hooks> Future for UntilDrained<'_, P> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.version.poll_drained(&mut this.entry, cx)
    }
}

impl<P: Hooks> Drop for UntilDrained<'_, P> {
    fn drop(&mut self) {
        self.version.leave(&mut self.entry);
    }
}

impl<P: Hooks> fmt::Debug for UntilDrained<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilDrained")
            .field("generation", &self.version.generation())
            .finish()
    }
}
