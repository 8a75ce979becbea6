//! A real database that hot-reloads its plugins: SQLite (bundled, through
//! `rusqlite`) whose scalar UDF, aggregate, storage backend, change-data
//! sink and token index are plugin libraries (`plugins/sql-udf`,
//! `sql-agg`, `sql-store`, `sql-cdc`, `sql-index`), each loaded through a
//! `Registry` and an `AutoReload`, and reloaded by atomic rename of its
//! file under live queries and writes. The SQL objects are declared
//! through the `reload-sqlite` crate ([`sql`]): this demo holds its checks,
//! the crate the machinery.
//!
//! The per-kind discipline:
//!
//! - **`score(x)`, a scalar UDF**: clean reload. A statement sees one
//!   version for its whole run (the crate's statement scope); the clients
//!   check it on every row through `score_by(x)`, the version the plugin
//!   says computed it. A version that commits but returns wrong scores is
//!   noticed by the clients and reverted
//!   ([`Registry::revert`](reload_core::registry::Registry::revert)).
//! - **`tally(x)`, an aggregate**: its accumulator carries the version
//!   that started the group; the clients compare it with SQL's own
//!   `count` and `sum` of the same rows.
//! - **`store`, a storage backend** (a virtual table): every scan, fast
//!   or slow (a scanner thread reads it over about a second), must read
//!   all 2 000 rows, right, from one version.
//! - **`job`, a background job**: a tick every 20 ms logs the version
//!   that ran it; a tick on a version shut down would fail (0 failures).
//! - **`money`, a column type** of `prices.amount`: clients store amounts
//!   through it and check every stored amount decodes to its plain value;
//!   it is deployed from SQL only, a compatible version each time and one
//!   that cannot read the stored amounts, refused on the real rows.
//! - **management from SQL**: every sixth round the orchestrator's
//!   connection deploys `udf` with `reload_deploy`, reverts it with
//!   `reload_revert`, and has two deploys refused (a missing file, a
//!   library of another plugin); the report ends with `reload_plugins`.
//! - **the change-data sink**: `reload_sqlite::feed`'s triggers write
//!   every committed change to a change log whose rowid is its position;
//!   the crate's pump feeds batches to the sink, which appends them to its
//!   output file. On reload (quiesced) the
//!   old version's stream is `checkpoint`ed and the new one `resume`s from
//!   that position, and its state (changes delivered, a hash) is carried:
//!   every change delivered exactly once, in order.
//! - **the token index** over `docs.body`, used by `matches(id, term)`,
//!   kept up to date from the same change log (its feed position is part of
//!   the index): on reload the old version `persist`s it, the new one checks the real
//!   bytes (`check_compat`) and `open`s them; an incompatible schema, or an
//!   `open` that fails, is refused with the old version serving. After
//!   every deploy the host pauses the writers, catches the index up with
//!   the log, and compares it with a rebuild from the table.
//!
//! [`run`] deploys good versions, a version with a future ABI, an index of
//! an incompatible schema, one whose `open` fails, and one with wrong
//! results (then reverted), and returns a [`Report`]; `src/main.rs` prints
//! it and exits non-zero unless [`Report::ok`].

pub mod check;
pub mod db;
pub mod fixture;
pub mod plugins;
mod run;
pub mod sql;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reload_core::registry::RegistryStats;

pub use check::Delivery;
pub use run::run;

/// How the run goes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Client threads (each writes and queries).
    pub clients: usize,
    /// Deploy rounds: each deploys a good `udf`, `cdc` and `index`, and
    /// some rounds a bad version too (round 3 the wrong `udf`).
    pub rounds: usize,
    /// Rows of `t` at the start.
    pub initial_rows: usize,
    /// Documents at the start.
    pub initial_docs: usize,
    /// The watchers' debounce.
    pub debounce: Duration,
    /// Between deploys.
    pub pause: Duration,
    /// Print a line per second.
    pub live: bool,
    /// Where the database, the sink's output and the libraries go
    /// (a directory under the system's temporary one by default).
    pub dir: Option<PathBuf>,
    /// Keep that directory after the run.
    pub keep: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clients: 3,
            rounds: 30,
            initial_rows: 5_000,
            initial_docs: 500,
            debounce: Duration::from_millis(60),
            pause: Duration::from_millis(100),
            live: true,
            dir: None,
            keep: false,
        }
    }
}

/// A deploy, a refusal or a revert, as the timeline marks it.
#[derive(Clone, Debug)]
pub struct Mark {
    /// Seconds since the start.
    pub at: f64,
    /// The plugin.
    pub plugin: String,
    /// The version deployed (or refused).
    pub version: String,
    /// `deploy`, `refused`, `revert`, `sql deploy`, `sql revert`, `sql refused`.
    pub what: &'static str,
    /// How long the version it replaced took to drain.
    pub drain: Option<Duration>,
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Deploys, refusals and reverts, in order.
    pub marks: Vec<Mark>,
    /// Each plugin's version at the start.
    pub first_versions: BTreeMap<String, String>,
    /// Statements run.
    pub queries: u64,
    /// Statements that failed (0: a refused deploy never reaches a query).
    pub query_errors: u64,
    /// Inserts and updates.
    pub writes: u64,
    /// Writes that failed.
    pub write_errors: u64,
    /// Rows `score` computed inside statement scopes.
    pub udf_rows: u64,
    /// Statements whose rows came from more than one version.
    pub mixed_statements: u64,
    /// Wrong scores from versions that are not the misbehaving one.
    pub wrong_rows_good: u64,
    /// Wrong scores from the misbehaving version before its revert.
    pub wrong_rows_bad: u64,
    /// Statements started after the revert that ran on the reverted version.
    pub after_revert: u64,
    /// Reverts done.
    pub reverts: u64,
    /// The version the revert went back to.
    pub revert_to: Option<String>,
    /// Reloads committed, by plugin.
    pub reloads: BTreeMap<String, u64>,
    /// Deploys refused, with why.
    pub refusals: Vec<String>,
    /// Deploys whose outcome was not the one expected.
    pub unexpected: Vec<String>,
    /// The sink's output against the change log.
    pub delivery: Delivery,
    /// Changes delivered by the sink's own count (its state, carried across
    /// every reload).
    pub sink_state_delivered: u64,
    /// Deliveries to the sink that failed.
    pub cdc_errors: u64,
    /// Deliveries to the index that failed.
    pub index_feed_errors: u64,
    /// `tally` statements (aggregate), each checked against `count` and
    /// `sum` of the same rows.
    pub tallies: u64,
    /// Of those, disagreeing.
    pub tally_wrong: u64,
    /// Of those, a group stepped by two versions.
    pub tally_mixed: u64,
    /// Scans of `store` (virtual table), fast and slow.
    pub scans: u64,
    /// Rows they read.
    pub scan_rows: u64,
    /// Scans whose rows came from more than one version.
    pub scan_mixed: u64,
    /// Scans missing rows or with wrong values.
    pub scan_wrong: u64,
    /// Ticks of the background job.
    pub job_ticks: u64,
    /// Of those, failed (a tick on a version shut down would fail).
    pub job_failures: u64,
    /// Versions the job's ticks ran on.
    pub job_versions: u64,
    /// Statements storing and checking amounts through the `money` column type.
    pub money_checks: u64,
    /// Amounts that decoded to another value.
    pub money_wrong: u64,
    /// Deploys and reverts from SQL that committed.
    pub sql_deploys: u64,
    /// Deploys from SQL refused (as expected), with the SQL error.
    pub sql_refusals: Vec<String>,
    /// `reload_plugins` at the end.
    pub plugins_table: Vec<String>,
    /// Every statement: seconds from the start, client kind, latency (µs),
    /// the version that served it (empty if it failed).
    pub samples: Vec<(f64, &'static str, u64, String)>,
    /// Index comparisons with a rebuild.
    pub index_checks: u64,
    /// Of those, unequal.
    pub index_mismatches: u64,
    /// Statements with no reload in progress, and their latency.
    pub quiet_queries: u64,
    /// p50, µs.
    pub quiet_p50_us: u64,
    /// p99, µs.
    pub quiet_p99_us: u64,
    /// Statements that overlapped a deploy, and their latency.
    pub reloading_queries: u64,
    /// p50, µs.
    pub reloading_p50_us: u64,
    /// p99, µs.
    pub reloading_p99_us: u64,
    /// Each committed reload's drain, from the cut-over.
    pub drains: Vec<Duration>,
    /// Private copies left after everything was dropped.
    pub copies_left: usize,
    /// Libraries still mapped from them (`None`: unknown on this platform).
    pub mapped_left: Option<usize>,
    /// The registry's counters at the end.
    pub stats: Option<RegistryStats>,
    /// The `metrics` recorder's figures.
    pub metrics: Vec<String>,
    /// The first errors seen.
    pub errors: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.queries > 0
            && self.query_errors == 0
            && self.write_errors == 0
            && self.mixed_statements == 0
            && self.wrong_rows_good == 0
            && self.after_revert == 0
            && run::delivery_ok(&self.delivery, self.sink_state_delivered)
            && self.cdc_errors == 0
            && self.index_feed_errors == 0
            && self.index_mismatches == 0
            && self.tallies > 0
            && self.tally_wrong == 0
            && self.tally_mixed == 0
            && self.scans > 0
            && self.scan_mixed == 0
            && self.scan_wrong == 0
            && self.job_ticks > 0
            && self.job_failures == 0
            && self.money_wrong == 0
            && self.unexpected.is_empty()
            && self.copies_left == 0
            && self.mapped_left.unwrap_or(0) == 0
    }

    fn drain_quantile(&self, q: f64) -> Duration {
        let mut d = self.drains.clone();
        d.sort_unstable();
        if d.is_empty() {
            return Duration::ZERO;
        }
        d[((d.len() - 1) as f64 * q).round() as usize]
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== SQL host report ({:.1} s)",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "queries: {} ({} errors); writes: {} ({} errors)",
            self.queries, self.query_errors, self.writes, self.write_errors
        )?;
        writeln!(
            f,
            "udf: {} rows scored in statement scopes; statements mixing versions: {}",
            self.udf_rows, self.mixed_statements
        )?;
        writeln!(
            f,
            "udf: wrong rows by good versions: {}; by the misbehaving 1.2.0 before its revert: {}; after its revert: {}; reverts: {} (to {})",
            self.wrong_rows_good,
            self.wrong_rows_bad,
            self.after_revert,
            self.reverts,
            self.revert_to.as_deref().unwrap_or("-")
        )?;
        let d = &self.delivery;
        writeln!(
            f,
            "cdc: committed {}, delivered {} (sink's own count {}), duplicates {}, missing {}, out of order {}, corrupt {}, across {} sink reloads; sink errors {}",
            d.committed,
            d.delivered,
            self.sink_state_delivered,
            d.duplicates,
            d.missing,
            d.out_of_order,
            d.corrupt,
            self.reloads.get("cdc").copied().unwrap_or(0),
            self.cdc_errors
        )?;
        writeln!(
            f,
            "index: {} comparisons with a rebuild, {} unequal; feed errors {}",
            self.index_checks, self.index_mismatches, self.index_feed_errors
        )?;
        writeln!(
            f,
            "agg: {} tally statements, {} disagreeing with count/sum, {} groups on two versions",
            self.tallies, self.tally_wrong, self.tally_mixed
        )?;
        writeln!(
            f,
            "store: {} scans ({} rows), {} on two versions, {} incomplete or wrong",
            self.scans, self.scan_rows, self.scan_mixed, self.scan_wrong
        )?;
        writeln!(
            f,
            "job: {} ticks on {} versions, {} failed; money: {} checks, {} amounts wrong",
            self.job_ticks,
            self.job_versions,
            self.job_failures,
            self.money_checks,
            self.money_wrong
        )?;
        writeln!(
            f,
            "from SQL: {} deploys and reverts committed, {} refused as expected",
            self.sql_deploys,
            self.sql_refusals.len()
        )?;
        if let Some(first) = self.sql_refusals.first() {
            writeln!(f, "  e.g. {first}")?;
        }
        writeln!(f, "reload_plugins:")?;
        for line in &self.plugins_table {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "reloads: {:?}", self.reloads)?;
        writeln!(f, "refused deploys: {}", self.refusals.len())?;
        // One line per build refused: how often, and the first reason.
        let mut by_build: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for r in &self.refusals {
            let (build, why) = r.split_once(": ").unwrap_or((r.as_str(), ""));
            by_build.entry(build).or_insert((0, why)).0 += 1;
        }
        for (build, (n, why)) in by_build {
            writeln!(f, "  {build} x{n}: {why}")?;
        }
        writeln!(
            f,
            "latency: quiet p50 {} us p99 {} us ({} statements); during deploys p50 {} us p99 {} us ({} statements)",
            self.quiet_p50_us,
            self.quiet_p99_us,
            self.quiet_queries,
            self.reloading_p50_us,
            self.reloading_p99_us,
            self.reloading_queries
        )?;
        writeln!(
            f,
            "drains: {} (p50 {:?}, p99 {:?}, max {:?})",
            self.drains.len(),
            self.drain_quantile(0.5),
            self.drain_quantile(0.99),
            self.drains.iter().max().copied().unwrap_or_default()
        )?;
        writeln!(
            f,
            "left at the end: private copies {}, libraries mapped {}",
            self.copies_left,
            self.mapped_left
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string())
        )?;
        if let Some(s) = &self.stats {
            writeln!(
                f,
                "registry: {} reloads, {} refused, {} reverts",
                s.reloads, s.refused, s.reverts
            )?;
        }
        if !self.metrics.is_empty() {
            writeln!(f, "metrics:")?;
            for m in &self.metrics {
                writeln!(f, "  {m}")?;
            }
        }
        for u in &self.unexpected {
            writeln!(f, "UNEXPECTED: {u}")?;
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        if self.ok() {
            write!(f, "RESULT: ok, every invariant held")
        } else {
            write!(f, "RESULT: FAILED, an invariant broke (see above)")
        }
    }
}
