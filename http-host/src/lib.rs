//! The HTTP demo (`cargo run --release -p http-host`): an axum server on
//! hyper whose request transform, response filter and streaming handler
//! are plugin libraries behind `reload-tower`, redeployed by atomic rename
//! of their files (an `AutoReload` per plugin) while keep-alive
//! connections over loopback drive it with a real HTTP client.
//!
//! It deploys good versions, a version that fails to load (a future ABI),
//! a slow-to-drain streaming version, and a bad filter that the clients'
//! checks notice and the host reverts; then it shuts the server down
//! gracefully with a deadline and drains every plugin, reporting what it
//! had to cut. It exits non-zero if an invariant broke:
//!
//! - every request answered 200 (no failure, no dropped connection);
//! - every answer from the version its `x-plugin-version` header names
//!   (the plugin writes its own version into each body and chunk), and no
//!   stream with chunks from two versions;
//! - no wrong answer from a good version, and none from the bad filter to
//!   a request sent after its revert;
//! - every deploy's outcome the expected one, every old version drained;
//! - `/metrics` serves the library's figures in Prometheus text.

pub mod load;
pub mod plugins;
pub mod run;
pub mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How the run goes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Keep-alive connections of the load generator.
    pub connections: usize,
    /// Deploy rounds (each deploys all three plugins).
    pub rounds: usize,
    /// Between deploys.
    pub pause: Duration,
    /// How long graceful shutdown waits for open requests before cutting.
    pub shutdown_deadline: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connections: 32,
            rounds: 8,
            pause: Duration::from_millis(250),
            shutdown_deadline: Duration::from_secs(1),
        }
    }
}

/// What happened.
#[derive(Debug, Default)]
pub struct Report {
    /// Seconds the load ran.
    pub seconds: f64,
    /// What the clients saw.
    pub tally: load::Tally,
    /// Reloads committed, by plugin.
    pub reloads: BTreeMap<String, u64>,
    /// Deploys refused (as expected), with why.
    pub refusals: Vec<String>,
    /// Reverts of a bad version after the health check.
    pub reverts: u64,
    /// Outcomes that were not the expected ones.
    pub unexpected: Vec<String>,
    /// Drain times of the replaced versions, by plugin.
    pub drains: BTreeMap<String, Vec<Duration>>,
    /// The most versions draining at once (sampled every 10 ms).
    pub max_draining: usize,
    /// `/metrics` had the library's figures.
    pub metrics_ok: bool,
    /// A sample of `/metrics`.
    pub metrics_sample: Vec<String>,
    /// The share of the samples with a version draining.
    pub draining_share: f64,
    /// Requests still open when the shutdown deadline passed (cut).
    pub cut: usize,
    /// Where they were.
    pub cut_on: Vec<String>,
    /// The shutdown's deadline.
    pub shutdown_deadline: Duration,
    /// How each plugin's last version drained at shutdown.
    pub shutdown: Vec<String>,
    /// Whether every plugin drained at shutdown.
    pub shutdown_ok: bool,
}

/// `q`-quantile of `samples`, 0 if none.
pub fn quantile(samples: &mut [u64], q: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i.min(samples.len() - 1)]
}

impl Report {
    /// Wrong answers from versions that are not the bad filter.
    pub fn wrong_by_good(&self) -> u64 {
        self.tally
            .wrong
            .iter()
            .filter(|(k, _)| k.as_str() != "filter 1.2.0")
            .map(|(_, n)| n)
            .sum()
    }

    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        let t = &self.tally;
        t.answered > 0
            && t.failed == 0
            && t.mixed == 0
            && t.streams > 0
            && self.wrong_by_good() == 0
            && t.wrong.get("filter 1.2.0").copied().unwrap_or(0) > 0
            && t.wrong_after_revert == 0
            && self.reverts == 1
            && self.unexpected.is_empty()
            && self.metrics_ok
            && self.shutdown_ok
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        writeln!(f, "== HTTP host report ({:.1} s of load)", self.seconds)?;
        writeln!(
            f,
            "requests: sent {}, answered {}, failed {} ({:.0} per second)",
            t.sent,
            t.answered,
            t.failed,
            t.answered as f64 / self.seconds.max(0.001)
        )?;
        for e in &t.errors {
            writeln!(f, "  failure: {e}")?;
        }
        writeln!(
            f,
            "versions: answers from another version than admitted them, or streams mixing two: {}",
            t.mixed
        )?;
        writeln!(
            f,
            "streams: {} read to the end ({} chunks), every chunk from its stream's version",
            t.streams, t.chunks
        )?;
        writeln!(
            f,
            "wrong answers: by good versions {}; by the bad filter 1.2.0 before its revert {}; after it {}; reverts {}",
            self.wrong_by_good(),
            t.wrong.get("filter 1.2.0").copied().unwrap_or(0),
            t.wrong_after_revert,
            self.reverts
        )?;
        let (mut quiet, mut deploying) = (t.quiet.clone(), t.deploying.clone());
        writeln!(
            f,
            "latency (transform, page): quiet p50 {} us p99 {} us p999 {} us ({} requests); during deploys p50 {} us p99 {} us p999 {} us ({})",
            quantile(&mut quiet, 0.5),
            quantile(&mut quiet, 0.99),
            quantile(&mut quiet, 0.999),
            quiet.len(),
            quantile(&mut deploying, 0.5),
            quantile(&mut deploying, 0.99),
            quantile(&mut deploying, 0.999),
            deploying.len()
        )?;
        writeln!(f, "reloads: {:?}", self.reloads)?;
        for (plugin, drains) in &self.drains {
            let max = drains.iter().max().copied().unwrap_or_default();
            writeln!(
                f,
                "drains of {plugin}: {} (longest {:.1} ms: the longest request or stream open on the old version)",
                drains.len(),
                max.as_secs_f64() * 1e3
            )?;
        }
        writeln!(
            f,
            "versions draining: at most {} at once; some draining {:.0}% of the time (sampled every 10 ms)",
            self.max_draining,
            self.draining_share * 100.0
        )?;
        for r in &self.refusals {
            writeln!(f, "refused: {r}")?;
        }
        writeln!(f, "answers by version: {:?}", t.by_version)?;
        writeln!(
            f,
            "metrics (/metrics, Prometheus text): {}",
            if self.metrics_ok { "ok" } else { "MISSING" }
        )?;
        for line in &self.metrics_sample {
            writeln!(f, "  {line}")?;
        }
        writeln!(
            f,
            "shutdown: graceful, with a {:.1} s deadline; {} request(s) still open then were cut ({})",
            self.shutdown_deadline.as_secs_f64(),
            self.cut,
            self.cut_on.join(", ")
        )?;
        for s in &self.shutdown {
            writeln!(f, "  {s}")?;
        }
        for u in &self.unexpected {
            writeln!(f, "UNEXPECTED: {u}")?;
        }
        if self.ok() {
            writeln!(f, "RESULT: ok, every invariant held")
        } else {
            writeln!(f, "RESULT: FAILED, an invariant broke (see above)")
        }
    }
}
