//! Threads the library starts on a host's behalf (a file watch's settler,
//! an auto-reloader, the WebAssembly epoch ticker), and how their end is
//! seen.
//!
//! A background thread that dies quietly breaks a promise nobody is
//! watching: an auto-reloader that stops reloads nothing more, a ticker
//! that stops leaves WebAssembly calls unbounded. So each runs under
//! [`spawn`]: its body is run inside `catch_unwind`, and any end the host
//! did not ask for (a panic, or the body giving up with a reason) is
//! recorded in the thread's [`ThreadHealth`], which the owning type hands
//! out, and told as a `tracing` error and a `metrics` counter
//! (`reload_core_thread_exits_total`, labels `thread` and `how`). An end
//! the host asked for (dropping the owner) is not a failure and records
//! nothing.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use parking_lot::Mutex;

/// How a library thread ended without being asked to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThreadExit {
    /// Its body panicked (a bug of this library, or of code it called that
    /// escaped containment).
    #[error("library thread `{thread}` panicked: {message}")]
    Panicked {
        /// The thread's name.
        thread: &'static str,
        /// The panic's message.
        message: String,
    },
    /// Its body gave up (what it depended on went away).
    #[error("library thread `{thread}` stopped: {reason}")]
    Stopped {
        /// The thread's name.
        thread: &'static str,
        /// Why.
        reason: String,
    },
}

impl ThreadExit {
    /// The thread's name.
    pub fn thread(&self) -> &'static str {
        match self {
            ThreadExit::Panicked { thread, .. } | ThreadExit::Stopped { thread, .. } => thread,
        }
    }
}

/// Whether a library thread still runs, and how it ended if it ended on
/// its own. Cheap to clone; every clone sees the same thread.
#[derive(Clone, Debug)]
pub struct ThreadHealth {
    inner: Arc<Health>,
}

#[derive(Debug)]
struct Health {
    name: &'static str,
    running: AtomicBool,
    exit: Mutex<Option<ThreadExit>>,
}

impl ThreadHealth {
    fn new(name: &'static str) -> Self {
        ThreadHealth {
            inner: Arc::new(Health {
                name,
                running: AtomicBool::new(true),
                exit: Mutex::new(None),
            }),
        }
    }

    /// The thread's name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Whether the thread still runs. `false` after it ended, asked to or
    /// not.
    pub fn is_running(&self) -> bool {
        // Acquire: pairs with the Release in `ended`, so a reader that
        // sees `false` also sees the exit recorded before it.
        self.inner.running.load(Ordering::Acquire)
    }

    /// How the thread ended on its own (`None` while it runs, or if it
    /// ended because its owner asked it to).
    pub fn exit(&self) -> Option<ThreadExit> {
        self.inner.exit.lock().clone()
    }

    pub(crate) fn ended(&self, exit: Option<ThreadExit>) {
        if let Some(exit) = &exit {
            told(exit);
        }
        *self.inner.exit.lock() = exit;
        self.inner.running.store(false, Ordering::Release);
    }
}

/// How a body ended: asked to (`Ok`), or giving up with a reason.
pub(crate) type BodyEnd = Result<(), String>;

/// Starts `body` on a thread named `name`, supervised (see the module
/// docs). The handle joins it; the health reports it.
pub(crate) fn spawn(
    name: &'static str,
    body: impl FnOnce() -> BodyEnd + Send + 'static,
) -> std::io::Result<(JoinHandle<()>, ThreadHealth)> {
    let health = ThreadHealth::new(name);
    let seen = health.clone();
    let handle = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let exit = match panic::catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(ThreadExit::Stopped {
                    thread: name,
                    reason,
                }),
                Err(payload) => Some(ThreadExit::Panicked {
                    thread: name,
                    message: crate::hooks::panic_message(payload.as_ref()),
                }),
            };
            seen.ended(exit);
        })?;
    Ok((handle, health))
}

/// Tells `tracing` and `metrics` that a library thread ended on its own.
fn told(exit: &ThreadExit) {
    #[cfg(feature = "tracing")]
    tracing::error!(target: "reload_core", thread = exit.thread(), %exit, "library thread ended");
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "reload_core_thread_exits_total",
        "thread" => exit.thread(),
        "how" => match exit {
            ThreadExit::Panicked { .. } => "panicked",
            ThreadExit::Stopped { .. } => "stopped",
        }
    )
    .increment(1);
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = exit;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asked_for_end_records_nothing() {
        let (handle, health) = spawn("reload-test-ok", || Ok(())).expect("spawns");
        handle.join().expect("joins");
        assert!(!health.is_running());
        assert_eq!(health.exit(), None);
    }

    #[test]
    fn a_panic_and_a_reason_are_recorded() {
        let (handle, health) = spawn("reload-test-panic", || panic!("boom {}", 7)).expect("spawns");
        handle.join().expect("the panic is caught");
        assert_eq!(
            health.exit(),
            Some(ThreadExit::Panicked {
                thread: "reload-test-panic",
                message: "boom 7".to_owned()
            })
        );
        let (handle, health) =
            spawn("reload-test-stop", || Err("gone".to_owned())).expect("spawns");
        handle.join().expect("joins");
        assert!(!health.is_running());
        assert_eq!(
            health.exit().map(|e| e.to_string()),
            Some("library thread `reload-test-stop` stopped: gone".to_owned())
        );
    }

    /// The signal a host's recorder receives for an end it did not ask for.
    #[cfg(feature = "metrics")]
    #[test]
    fn an_unasked_end_reaches_the_metrics_recorder() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            told(&ThreadExit::Panicked {
                thread: "reload-test",
                message: "boom".to_owned(),
            });
            told(&ThreadExit::Stopped {
                thread: "reload-test",
                reason: "gone".to_owned(),
            });
        });
        let mut seen: Vec<(String, Vec<String>, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let labels = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let count = match value {
                    DebugValue::Counter(n) => n,
                    other => panic!("{other:?}"),
                };
                (key.key().name().to_owned(), labels, count)
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    "reload_core_thread_exits_total".to_owned(),
                    vec!["thread=reload-test".to_owned(), "how=panicked".to_owned()],
                    1
                ),
                (
                    "reload_core_thread_exits_total".to_owned(),
                    vec!["thread=reload-test".to_owned(), "how=stopped".to_owned()],
                    1
                ),
            ]
        );
    }
}
