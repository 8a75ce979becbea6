//! A background job provided by a plugin: a periodic task of the database
//! (expiry, compaction, statistics) whose code is reloadable.
//!
//! # The protocol
//!
//! Each tick calls the plugin with `T` and the tick's number (`u64`,
//! little-endian, from 1); the reply is SQL text (UTF-8, possibly empty,
//! possibly several statements) that the job runs on its own connection,
//! in one transaction, before the tick ends.
//!
//! # Versions
//!
//! A tick leases the plugin when it starts and gives the lease back when
//! its SQL has committed or rolled back: a tick in progress finishes on
//! its version even if a reload commits meanwhile (and that version's
//! drain waits for it), the next tick calls the version current then, and
//! no tick runs on a version that was shut down. A tick that fails (the
//! plugin's error or panic, a reply that is not UTF-8, SQL that fails) is
//! rolled back, counted and reported in [`JobStats`]; the next tick runs
//! as planned.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reload_core::registry::Registry;
use rusqlite::Connection;

use crate::error::panic_message;
use crate::plugin::SqlPlugin;
use crate::ticker::Ticker;

/// What a job did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Ticks run.
    pub ticks: u64,
    /// Of those, failed (rolled back).
    pub failures: u64,
    /// The version of the last tick.
    pub last_version: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// A running job; dropping it stops it (after the tick in progress).
pub struct Job {
    stats: Arc<Mutex<JobStats>>,
    ticker: Ticker,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("stats", &self.stats()).finish()
    }
}

impl Job {
    /// Runs `plugin` of `registry` every `period` (the first tick at
    /// once) on `conn`, on a thread of its own, until dropped. A `period`
    /// of zero runs ticks back to back; a `period` too long for the clock
    /// runs one tick.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn spawn<P: SqlPlugin>(
        registry: Arc<Registry<P>>,
        plugin: &str,
        period: Duration,
        conn: Connection,
    ) -> std::io::Result<Job> {
        let stats = Arc::new(Mutex::new(JobStats::default()));
        let s = Arc::clone(&stats);
        let plugin = plugin.to_owned();
        let mut n: u64 = 0;
        let ticker = Ticker::spawn(format!("reload-sqlite job {plugin}"), period, move || {
            n += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| tick(&registry, &plugin, n, &conn)))
                .unwrap_or_else(|p| {
                    (
                        None,
                        Err(format!("the tick panicked: {}", panic_message(&*p))),
                    )
                });
            let mut stats = s.lock();
            stats.ticks += 1;
            if outcome.0.is_some() {
                stats.last_version = outcome.0;
            }
            if let Err(e) = outcome.1 {
                stats.failures += 1;
                stats.last_error = Some(e);
            }
        })?;
        Ok(Job { stats, ticker })
    }

    /// What it did so far.
    pub fn stats(&self) -> JobStats {
        self.stats.lock().clone()
    }

    /// Stops it: the tick in progress finishes, no other starts.
    pub fn stop(mut self) -> JobStats {
        self.ticker.halt();
        self.stats()
    }
}

/// One tick: the version it ran on, and how it went.
fn tick<P: SqlPlugin>(
    registry: &Registry<P>,
    plugin: &str,
    n: u64,
    conn: &Connection,
) -> (Option<String>, Result<(), String>) {
    let call = match registry.enter(plugin) {
        Ok(call) => call,
        Err(e) => return (None, Err(e.to_string())),
    };
    let version = call.manifest().version().to_string();
    let mut request = [0u8; 9];
    request[0] = b'T';
    request[1..].copy_from_slice(&n.to_le_bytes());
    let sql = match call
        .plugin()
        .call_sql(&request, |reply| String::from_utf8(reply.to_vec()))
    {
        Ok(Ok(sql)) => sql,
        Ok(Err(_)) => {
            return (
                Some(version),
                Err(format!(
                    "{plugin} {}: the reply is not UTF-8",
                    call.manifest().version()
                )),
            )
        }
        Err(e) => {
            return (
                Some(version),
                Err(format!("{plugin} {}: {e}", call.manifest().version())),
            )
        }
    };
    // The lease is held until the tick's SQL has committed or rolled back.
    let ran = conn
        .execute_batch(&format!(
            "SAVEPOINT reload_job; {sql}\n; RELEASE reload_job;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK TO reload_job; RELEASE reload_job;");
            format!("{plugin} {version}: its SQL failed: {e}")
        });
    drop(call);
    (Some(version), ran)
}
