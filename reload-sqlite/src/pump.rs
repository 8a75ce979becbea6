//! A thread that keeps a [`Feed`]'s consumers caught up: every period it
//! delivers to each consumer until it has what was logged when the round
//! began, and, if asked, trims the log below the slowest of them.
//!
//! Each delivery leases its consumer (see [`Feed::deliver`]): a reload
//! that commits between two batches sends the next batch to the new
//! version, from the position the reload carried over; a version that was
//! shut down is never sent anything. A consumer that fails (its error,
//! its panic, a reply that breaks the protocol) is counted and reported
//! in [`PumpStats`] and tried again next round from its own position; the
//! other consumers are not held back, but the log is not trimmed past the
//! position it last reported.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reload_core::registry::Registry;
use rusqlite::Connection;

use crate::error::panic_message;
use crate::feed::{Feed, DEFAULT_BATCH};
use crate::plugin::SqlPlugin;
use crate::ticker::Ticker;

/// How a pump runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pumping {
    /// Between the starts of two rounds (zero: back to back).
    pub period: Duration,
    /// Changes per `D` call (at least 1).
    pub batch: usize,
    /// Trim the log to the slowest consumer's position after each round in
    /// which every consumer reported one. Only when the pump's consumers are
    /// all the log's readers.
    pub trim: bool,
}

impl Pumping {
    /// A round every `period`, batches of [`DEFAULT_BATCH`], no trimming.
    pub fn every(period: Duration) -> Pumping {
        Pumping {
            period,
            batch: DEFAULT_BATCH,
            trim: false,
        }
    }
}

/// What a pump did for one consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Batches it took.
    pub batches: u64,
    /// Changes it took (the sum of its position's moves).
    pub changes: u64,
    /// Deliveries that failed.
    pub failures: u64,
    /// Its last reported position.
    pub position: u64,
    /// The version that took the last delivery.
    pub last_version: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// What a pump did so far, per consumer, and the log rows it trimmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PumpStats {
    /// Rounds run.
    pub rounds: u64,
    /// Per consumer.
    pub consumers: BTreeMap<String, ConsumerStats>,
    /// Log rows deleted by trimming.
    pub trimmed: u64,
    /// The last failure to read or trim the log.
    pub last_log_error: Option<String>,
}

/// A running pump; dropping it stops it (after the round in progress).
pub struct Pump {
    stats: Arc<Mutex<PumpStats>>,
    ticker: Ticker,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Pump {
    /// Feeds `consumers` (plugins of `registry`) from `feed`'s log, read
    /// on `conn`, on a thread of its own, until dropped.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn spawn<P: SqlPlugin>(
        feed: Feed,
        registry: Arc<Registry<P>>,
        consumers: &[&str],
        conn: Connection,
        how: Pumping,
    ) -> std::io::Result<Pump> {
        let stats = Arc::new(Mutex::new(PumpStats {
            consumers: consumers
                .iter()
                .map(|c| ((*c).to_owned(), ConsumerStats::default()))
                .collect(),
            ..PumpStats::default()
        }));
        let s = Arc::clone(&stats);
        let names: Vec<String> = consumers.iter().map(|c| (*c).to_owned()).collect();
        let ticker = Ticker::spawn(
            format!("reload-sqlite pump {}", feed.log()),
            how.period,
            move || {
                round(&feed, &registry, &names, &conn, how, &s);
            },
        )?;
        Ok(Pump { stats, ticker })
    }

    /// What it did so far.
    pub fn stats(&self) -> PumpStats {
        self.stats.lock().clone()
    }

    /// Stops it: the round in progress finishes, no other starts.
    pub fn stop(mut self) -> PumpStats {
        self.ticker.halt();
        self.stats()
    }
}

fn round<P: SqlPlugin>(
    feed: &Feed,
    registry: &Registry<P>,
    consumers: &[String],
    conn: &Connection,
    how: Pumping,
    stats: &Mutex<PumpStats>,
) {
    let end = match feed.bounds(conn) {
        Ok(b) => b.map_or(0, |(_, last)| last),
        Err(e) => {
            stats.lock().last_log_error = Some(e.to_string());
            return;
        }
    };
    let mut slowest: Option<u64> = None;
    let mut all_reported = true;
    for name in consumers {
        loop {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                feed.deliver(conn, registry, name, how.batch.max(1))
            }))
            .unwrap_or_else(|p| {
                Err(crate::feed::FeedError::Panicked {
                    plugin: name.clone(),
                    version: String::new(),
                    message: panic_message(&*p),
                })
            });
            let mut s = stats.lock();
            let c = s.consumers.entry(name.clone()).or_default();
            match outcome {
                Ok(d) => {
                    c.position = d.position;
                    c.last_version = Some(d.version);
                    if d.sent > 0 {
                        c.batches += 1;
                        c.changes += d.position - d.from;
                    }
                    if d.sent == 0 || d.position >= end {
                        slowest = Some(slowest.map_or(d.position, |s| s.min(d.position)));
                        break;
                    }
                }
                Err(e) => {
                    c.failures += 1;
                    c.last_error = Some(e.to_string());
                    all_reported = false;
                    break;
                }
            }
        }
    }
    let mut s = stats.lock();
    s.rounds += 1;
    if how.trim && all_reported {
        if let Some(upto) = slowest.filter(|&p| p > 0) {
            match feed.trim(conn, upto) {
                Ok(n) => s.trimmed += n as u64,
                Err(e) => s.last_log_error = Some(e.to_string()),
            }
        }
    }
}
