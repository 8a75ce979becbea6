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

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, SystemTime};

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
    // Dropped first: closes the event channel, which ends the thread.
    _watch: notify::RecommendedWatcher,
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
                let Ok(event) = event else { return };
                let relevant = match event.kind {
                    // Our own reads (the loader's) open and close the file.
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                    EventKind::Access(_) => false,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any => true,
                    EventKind::Remove(_) | EventKind::Other => false,
                };
                if relevant && event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                    let _ = raw_tx.send(());
                }
            })?;
        watch.watch(&dir, RecursiveMode::NonRecursive)?;
        let (tx, changes) = mpsc::channel();
        thread::Builder::new()
            .name("reload-core-watch".to_owned())
            .spawn(move || settle(&path, debounce, &raw_rx, &tx))
            .map_err(notify::Error::io)?;
        Ok(Watcher {
            changes,
            _watch: watch,
        })
    }

    /// The next settled change, waiting up to `timeout`.
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

/// Coalesces raw events into settled changes until the watch is dropped.
fn settle(path: &Path, debounce: Duration, raw: &Receiver<()>, out: &mpsc::Sender<Change>) {
    while raw.recv().is_ok() {
        let mut events = 1;
        loop {
            match raw.recv_timeout(debounce) {
                Ok(()) => events += 1,
                Err(RecvTimeoutError::Timeout) => {
                    // Quiet: is the file there, and not changing?
                    let before = stamp(path);
                    thread::sleep(debounce / 2);
                    if before.is_some() && before == stamp(path) && raw.try_recv().is_err() {
                        break;
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
