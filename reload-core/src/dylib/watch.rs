//! [`Watcher`]: reports when a plugin file has changed and settled.
//!
//! It watches the file's *directory*, not the file: build tools and deploy
//! scripts replace a file by writing a temporary one and renaming it over
//! the old (an atomic rename), which a watch on the old inode would never
//! see. Events naming the file are coalesced until none has come for the
//! debounce interval, and the file's length and modification time must then
//! be the same twice in a row; only then is a [`Change`] reported. A file
//! still being written, or removed mid-rename, is not reported until it
//! settles. Whatever is reported is still checked again before it is mapped
//! ([`Loader::package`](super::Loader::package) refuses a file that is not
//! a whole ELF library), so a change reported too early fails typed, never
//! loads half a file.
//!
//! Both threads here (the watch's settler and the auto-reloader) are
//! supervised ([`ThreadHealth`]): neither ends without its owner asking,
//! except when what it depends on went away, and then its health says
//! why. Every duration is taken as it is: a zero debounce reports as soon
//! as two looks at the file agree, `Duration::MAX` never reports; a zero
//! drain wait reports at once, `Duration::MAX` waits for the drain as long
//! as it takes (or until the [`AutoReload`] is dropped).

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::background::{self, BodyEnd, ThreadHealth};
use crate::state::Draining;
use crate::{Hooks, Plugin};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};

/// A settled change of the watched file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The file.
    pub path: PathBuf,
    /// How many file-system events it coalesced.
    pub events: usize,
}

/// Watches one plugin file: its directory, so atomic renames are seen;
/// events coalesced until quiet for the debounce, and the file stable
/// across a second look, before a [`Change`] is reported. Dropping it stops
/// the watch and its thread.
#[derive(Debug)]
pub struct Watcher {
    changes: Receiver<Change>,
    /// Set before the watch is dropped: the settler's end was asked for.
    stopping: Arc<AtomicBool>,
    health: ThreadHealth,
    // Dropped after `drop` sets `stopping`: closes the event channel,
    // which ends the thread.
    _watch: notify::RecommendedWatcher,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

impl Watcher {
    /// Starts watching `path`, reporting a change once events have been
    /// quiet for `debounce`.
    ///
    /// # Errors
    ///
    /// The platform watcher could not start, or the directory cannot be
    /// watched.
    pub fn new(path: &Path, debounce: Duration) -> notify::Result<Self> {
        let path = path.to_owned();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(ToOwned::to_owned);
        let (raw_tx, raw_rx) = mpsc::channel::<()>();
        let mut watch =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match event {
                    Ok(event) => {
                        let kind = match event.kind {
                            // Our own reads (the loader's) open and close
                            // the file.
                            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                            EventKind::Access(_) => false,
                            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any => true,
                            EventKind::Remove(_) | EventKind::Other => false,
                        };
                        kind && event.paths.iter().any(|p| p.file_name() == name.as_deref())
                    }
                    // The platform lost events (a queue overflow): any of
                    // them may have been ours, so look at the file.
                    Err(_) => true,
                };
                if relevant {
                    let _ = raw_tx.send(());
                }
            })?;
        watch.watch(&dir, RecursiveMode::NonRecursive)?;
        let (tx, changes) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let asked = Arc::clone(&stopping);
        let (_detached, health) = background::spawn("reload-core-watch", move || {
            settle(&path, debounce, &raw_rx, &tx);
            if asked.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("the platform's file watch closed its events".to_owned())
            }
        })
        .map_err(notify::Error::io)?;
        Ok(Watcher {
            changes,
            stopping,
            health,
            _watch: watch,
        })
    }

    /// The settler thread's health: a watch that stopped reporting on its
    /// own says why here.
    pub fn health(&self) -> &ThreadHealth {
        &self.health
    }

    /// The next settled change, waiting up to `timeout` (`None` at the
    /// timeout, or at once if the settler has ended: see
    /// [`health`](Self::health)).
    pub fn next_change(&self, timeout: Duration) -> Option<Change> {
        self.changes.recv_timeout(timeout).ok()
    }

    /// The settled changes, as they come.
    pub fn changes(&self) -> &Receiver<Change> {
        &self.changes
    }
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Coalesces raw events into settled changes until the watch is dropped
/// (or the changes are no longer read). The second look at the file waits
/// on the events too, so a dropped watch ends it at once, whatever the
/// debounce.
fn settle(path: &Path, debounce: Duration, raw: &Receiver<()>, out: &mpsc::Sender<Change>) {
    while raw.recv().is_ok() {
        let mut events = 1;
        loop {
            match raw.recv_timeout(debounce) {
                Ok(()) => events += 1,
                Err(RecvTimeoutError::Timeout) => {
                    // Quiet: is the file there, and not changing?
                    let before = stamp(path);
                    match raw.recv_timeout(debounce / 2) {
                        Ok(()) => events += 1,
                        Err(RecvTimeoutError::Timeout) => {
                            if before.is_some() && before == stamp(path) {
                                break;
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let change = Change {
            path: path.to_owned(),
            events,
        };
        if out.send(change).is_err() {
            return;
        }
    }
}

/// What an [`AutoReload`] did about one settled change.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The registry reloaded the plugin from the file.
    Reloaded {
        /// The plugin.
        plugin: String,
        /// Version cut over from.
        from: crate::manifest::Version,
        /// Version cut over to.
        to: crate::manifest::Version,
        /// Dependents that followed it (their next versions from the
        /// registry's source).
        followed: Vec<String>,
        /// How long the old versions took to drain and shut down after the
        /// cut-over (`None`: not within the drain timeout, or the
        /// [`AutoReload`] was dropped first; the slot finalizes it when it
        /// drains).
        drained_in: Option<Duration>,
    },
    /// Handling the change panicked (a bug: the loader and the registry
    /// contain what plugins do). The reloader goes on with the next
    /// change; what the registry serves is whatever it left.
    Panicked {
        /// The file.
        path: PathBuf,
        /// The panic's message.
        message: String,
    },
    /// The file was refused; the old version serves on.
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        why: Refusal,
    },
}

/// Why an [`AutoReload`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not a whole library, a bad manifest, or an I/O error (nothing was
    /// mapped).
    #[error(transparent)]
    Package(#[from] super::DylibError),
    /// The registry refused or failed the reload (verifier, requirements,
    /// ABI at link, init, ...).
    #[error(transparent)]
    Reload(#[from] crate::registry::RegistryError),
}

/// A [`Watcher`] that reloads: each settled change of the file is packaged
/// by a [`Loader`](super::Loader) and reloaded into a
/// [`Registry`](crate::registry::Registry), and the [`Outcome`] reported.
/// Dropping it stops the watch (a drain wait in progress is given up: the
/// slot finalizes that version when it drains).
///
/// Its thread survives whatever one change does (a panic handling it is
/// [`Outcome::Panicked`], and the next change is handled); it ends on its
/// own only if its watch does, and then [`health`](Self::health) says why.
#[derive(Debug)]
pub struct AutoReload {
    outcomes: Receiver<Outcome>,
    stop: Arc<AtomicBool>,
    health: ThreadHealth,
    thread: Option<thread::JoinHandle<()>>,
}

/// How often a wait of the reloader's thread looks whether it was asked to
/// stop: a bound on how long dropping an [`AutoReload`] can take.
const STOP_CHECK: Duration = Duration::from_millis(50);

impl AutoReload {
    /// Starts watching `path` (see [`Watcher::new`]) and reloading from it
    /// with `options`, waiting up to `drain` for each old version. Each new
    /// version's `init` gets no configuration (see
    /// [`AutoReload::spawn_with_config`]).
    ///
    /// # Errors
    ///
    /// The watch could not start.
    pub fn spawn(
        registry: Arc<crate::registry::Registry<super::DylibPlugin>>,
        loader: Arc<super::Loader>,
        path: &Path,
        debounce: Duration,
        options: crate::ReloadOptions,
        drain: Duration,
    ) -> notify::Result<Self> {
        Self::spawn_with_config(registry, loader, path, debounce, options, drain, Vec::new())
    }

    /// [`AutoReload::spawn`], passing `config` to each new version's
    /// `init` (the library's configuration bytes).
    ///
    /// # Errors
    ///
    /// The watch could not start.
    pub fn spawn_with_config(
        registry: Arc<crate::registry::Registry<super::DylibPlugin>>,
        loader: Arc<super::Loader>,
        path: &Path,
        debounce: Duration,
        options: crate::ReloadOptions,
        drain: Duration,
        config: Vec<u8>,
    ) -> notify::Result<Self> {
        let watcher = Watcher::new(path, debounce)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, outcomes) = mpsc::channel();
        let stopping = Arc::clone(&stop);
        let (thread, health) = background::spawn("reload-core-autoreload", move || {
            let reloader = Reloader {
                registry: &registry,
                loader: &loader,
                config: &config,
                options: &options,
                drain,
                stop: &stopping,
            };
            reloader.run(&watcher, &tx)
        })
        .map_err(notify::Error::io)?;
        Ok(AutoReload {
            outcomes,
            stop,
            health,
            thread: Some(thread),
        })
    }

    /// The next outcome, waiting up to `timeout` (`None` at the timeout,
    /// or once the thread has ended and every outcome was read: see
    /// [`health`](Self::health)).
    pub fn next_outcome(&self, timeout: Duration) -> Option<Outcome> {
        self.outcomes.recv_timeout(timeout).ok()
    }

    /// The reloader thread's health: if it stopped reloading on its own
    /// (its watch ended), this says why.
    pub fn health(&self) -> &ThreadHealth {
        &self.health
    }
}

impl Drop for AutoReload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The body's panics are caught inside the thread; a join error
            // is impossible, and there is nothing to do with one.
            let _ = thread.join();
        }
    }
}

/// What the reloader thread holds.
struct Reloader<'a> {
    registry: &'a crate::registry::Registry<super::DylibPlugin>,
    loader: &'a super::Loader,
    config: &'a [u8],
    options: &'a crate::ReloadOptions,
    drain: Duration,
    stop: &'a AtomicBool,
}

impl Reloader<'_> {
    fn run(&self, watcher: &Watcher, tx: &mpsc::Sender<Outcome>) -> BodyEnd {
        while !self.stop.load(Ordering::Relaxed) {
            let change = match watcher.changes().recv_timeout(STOP_CHECK) {
                Ok(change) => change,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    // The settler closes its channel just before its health
                    // records why: give it that moment.
                    let health = watcher.health();
                    let since = Instant::now();
                    while health.is_running() && since.elapsed() < STOP_CHECK {
                        thread::yield_now();
                    }
                    let why = health.exit().map_or_else(
                        || "its watch ended".to_owned(),
                        |exit| format!("its watch ended: {exit}"),
                    );
                    return Err(why);
                }
            };
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.reload_from(&change.path)))
                .unwrap_or_else(|payload| Outcome::Panicked {
                    path: change.path.clone(),
                    message: crate::hooks::panic_message(payload.as_ref()),
                });
            if tx.send(outcome).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn reload_from(&self, path: &Path) -> Outcome {
        let refused = |why: Refusal| Outcome::Refused {
            path: path.to_owned(),
            why,
        };
        let package = match self.loader.package(path) {
            Ok(p) => p,
            Err(e) => return refused(e.into()),
        };
        let plugin = package.manifest().name().to_owned();
        let to = package.manifest().version().clone();
        let report = match self
            .registry
            .reload(vec![package], self.config, self.options.clone())
        {
            Ok(report) => report,
            // The refused version (and its private copy) is dropped here.
            Err(rejected) => return refused(rejected.error.into()),
        };
        let cut = Instant::now();
        // A drain wait the clock cannot represent is no deadline.
        let deadline = cut.checked_add(self.drain);
        let mut from = to.clone();
        let mut followed = Vec::new();
        let mut all_drained = true;
        for change in report.changes {
            if change.plugin == plugin {
                from = change.from.clone();
            } else {
                followed.push(change.plugin.clone());
            }
            let drained = self.drain_until(change.committed.old, deadline);
            all_drained &= drained;
        }
        Outcome::Reloaded {
            plugin,
            from,
            to,
            followed,
            drained_in: all_drained.then(|| cut.elapsed()),
        }
    }

    /// Waits for `old` to drain until `deadline` (`None`: however long it
    /// takes) or until the owner stops the thread, looking at the stop
    /// flag every [`STOP_CHECK`]; finalizes it if it drained. Whether it
    /// drained and shut down cleanly.
    fn drain_until<P: Hooks>(&self, old: Plugin<P, Draining>, deadline: Option<Instant>) -> bool {
        loop {
            let slice = Instant::now() + STOP_CHECK;
            let until = deadline.map_or(slice, |d| d.min(slice));
            if old.wait_drained(Some(until)) {
                return old.wait().is_ok();
            }
            let late = deadline.is_some_and(|d| Instant::now() >= d);
            if late || self.stop.load(Ordering::Relaxed) {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coalescing, without inotify and without timing: every raw event
    /// is queued before `settle` looks, so however starved the machine, a
    /// burst is one change, and each later burst is one more.
    #[test]
    fn a_queued_burst_is_one_change_and_the_next_burst_another() {
        let dir = std::env::temp_dir().join(format!("reload-settle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("lib.so");
        std::fs::write(&file, b"v1").expect("write");
        let (raw_tx, raw_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        for _ in 0..5 {
            raw_tx.send(()).expect("queued");
        }
        let settler = {
            let file = file.clone();
            thread::spawn(move || settle(&file, Duration::from_millis(20), &raw_rx, &tx))
        };
        let first = rx.recv().expect("the burst settles");
        assert_eq!(
            first,
            Change {
                path: file.clone(),
                events: 5
            }
        );
        for _ in 0..3 {
            raw_tx.send(()).expect("queued");
        }
        let second = rx.recv().expect("the second burst settles");
        assert_eq!(second.events, 3);
        // The watch dropped: the thread ends and reports nothing more.
        drop(raw_tx);
        settler.join().expect("settle returns");
        assert!(rx.recv().is_err(), "no change without events");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file that is missing when the events go quiet (removed mid-rename)
    /// is not reported until it is back and stable.
    #[test]
    fn a_missing_file_is_not_reported_until_it_is_back() {
        let dir = std::env::temp_dir().join(format!("reload-settle-gone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("lib.so");
        let _ = std::fs::remove_file(&file);
        let (raw_tx, raw_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        raw_tx.send(()).expect("queued");
        let settler = {
            let file = file.clone();
            thread::spawn(move || settle(&file, Duration::from_millis(5), &raw_rx, &tx))
        };
        // However long we wait, nothing is reported for a missing file.
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        std::fs::write(&file, b"back").expect("write");
        let change = rx.recv().expect("reported once the file is back");
        assert_eq!(change.events, 1);
        drop(raw_tx);
        settler.join().expect("settle returns");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
