//! A thread that runs a round every period until stopped: what a
//! background [`Job`](crate::job::Job) and a change [`Pump`](crate::pump::Pump)
//! share. Stopping wakes it from its sleep and waits for the round in
//! progress; a round's panic is the round's to contain.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

struct Flags {
    stop: AtomicBool,
    wake: Condvar,
    sleeping: Mutex<()>,
}

/// The running thread; dropping it stops it.
pub(crate) struct Ticker {
    flags: Arc<Flags>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Runs `round` at once and then every `period` (back to back for
    /// zero; once for a period too long for the clock) on a thread named
    /// `name`.
    pub(crate) fn spawn(
        name: String,
        period: Duration,
        mut round: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Ticker> {
        let flags = Arc::new(Flags {
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            sleeping: Mutex::new(()),
        });
        let f = Arc::clone(&flags);
        let thread = thread::Builder::new().name(name).spawn(move || {
            let mut next = Instant::now();
            while !f.stop.load(SeqCst) {
                round();
                let Some(at) = next.checked_add(period) else {
                    return;
                };
                next = at;
                let mut guard = f.sleeping.lock();
                while !f.stop.load(SeqCst) && Instant::now() < next {
                    f.wake.wait_until(&mut guard, next);
                }
            }
        })?;
        Ok(Ticker {
            flags,
            thread: Some(thread),
        })
    }

    /// Stops it: the round in progress finishes, no other starts.
    pub(crate) fn halt(&mut self) {
        self.flags.stop.store(true, SeqCst);
        {
            let _guard = self.flags.sleeping.lock();
            self.flags.wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            // Rounds contain their panics; a join error cannot carry one.
            let _ = t.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.halt();
    }
}
