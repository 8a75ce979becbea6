//! What a slot reports about itself: per-version state ([`VersionInfo`]) and
//! slot-wide counters ([`SlotStats`]). None of it is on the call path:
//! `enter` and release touch only the drain's own counters.

// Plain std atomics, also under loom: these counters only report, and no
// step of the protocol reads them.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use lifecycle::Phase;

/// One version of a slot, as observed at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Its generation in the slot (1 for the first version installed).
    pub generation: u64,
    /// Its phase: `Active` for the current version, `Draining` for the rest.
    pub phase: Phase,
    /// Leases out on it.
    pub in_flight: usize,
    /// Whether its [`Plugin<P, Draining>`](crate::Plugin) handle was dropped
    /// without waiting; the slot then finalizes it once it drains.
    pub orphaned: bool,
}

/// How a version left its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalReport {
    /// The generation it had in its slot.
    pub generation: u64,
    /// From the cutover away from it to the moment its drain was seen to
    /// complete.
    pub drain_time: Duration,
    /// Whether its `shutdown` hook returned `Ok` (it runs exactly once
    /// either way).
    pub shutdown_ok: bool,
}

/// A slot's counters, as observed at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotStats {
    /// Generation of the current version, `None` once closed.
    pub generation: Option<u64>,
    /// Cut-overs to a new version (`replace`, `reload` and committed
    /// prepared reloads).
    pub reloads: u64,
    /// Reloads that failed, at any step (the old version kept serving).
    pub failed_reloads: u64,
    /// Of those, quiesced commits that rolled back (drain timeout or a
    /// failed transfer; the gate reopened on the old version).
    pub rolled_back: u64,
    /// Of those, reloads a listener vetoed.
    pub vetoed: u64,
    /// Prepared reloads aborted (explicitly or by dropping them).
    pub aborted: u64,
    /// Leases out right now, over all versions.
    pub in_flight: usize,
    /// Versions that finished draining and were finalized.
    pub drains_completed: u64,
    /// Versions swapped out and not yet removed.
    pub draining_now: usize,
    /// Memory kept for reuse: shells of finalized versions, which the next
    /// reloads fill instead of allocating. The call path does not pin, so
    /// a version's memory lives as long as its slot's shared part
    /// (`docs/drain.md`, "Memory"); this is how many are idle. It never
    /// exceeds the most versions the slot had alive at once.
    pub free_shells: usize,
    /// Calls through [`Slot::call`](crate::Slot::call) that panicked.
    pub call_panics: u64,
    /// `shutdown` hooks that failed or panicked (the version was removed anyway).
    pub shutdown_failures: u64,
    /// Listener calls that panicked (contained).
    pub listener_panics: u64,
    /// Plugin values the slot dropped (finalized orphans, versions left
    /// when the slot went) whose `Drop` panicked: contained, and the slot
    /// went on finalizing the others.
    pub drop_panics: u64,
    /// How long drains took, from cut-over to drained.
    pub drain_time: DurationSummary,
    /// How long quiesced commits held new calls at the gate (committed
    /// ones; roll backs are in `rolled_back`).
    pub quiesce_time: DurationSummary,
}

/// A summary of recorded durations. Percentiles come from a log-linear
/// histogram (four sub-buckets per power of two of nanoseconds), so they are
/// upper bounds within 19% of the true value; `min`, `max` and `mean` are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurationSummary {
    /// How many durations were recorded.
    pub count: u64,
    /// The shortest.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The mean.
    pub mean: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

const SUB_BITS: u32 = 2;
const BUCKETS: usize = (64 << SUB_BITS) as usize;

/// A lock-free log-linear histogram of durations.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < (1 << SUB_BITS) {
        return ns as usize;
    }
    let log = 63 - ns.leading_zeros();
    let sub = (ns >> (log - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (((log - SUB_BITS + 1) << SUB_BITS) as u64 + sub) as usize
}

/// The largest value that falls in `bucket`.
fn bucket_upper(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < (1 << SUB_BITS) {
        return bucket;
    }
    let log = (bucket >> SUB_BITS) + u64::from(SUB_BITS) - 1;
    let sub = bucket & ((1 << SUB_BITS) - 1);
    let base = (1u64 << log) + (sub << (log - u64::from(SUB_BITS)));
    base.saturating_add((1u64 << (log - u64::from(SUB_BITS))) - 1)
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed throughout: independent counters read only for reports.
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.min_ns.fetch_min(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    pub(crate) fn summary(&self) -> DurationSummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return DurationSummary::default();
        }
        let max = self.max_ns.load(Relaxed);
        let percentile = |q: f64| {
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_nanos(bucket_upper(i).min(max));
                }
            }
            Duration::from_nanos(max)
        };
        DurationSummary {
            count,
            min: Duration::from_nanos(self.min_ns.load(Relaxed)),
            max: Duration::from_nanos(max),
            mean: Duration::from_nanos(self.sum_ns.load(Relaxed) / count.max(1)),
            p50: percentile(0.50),
            p90: percentile(0.90),
            p99: percentile(0.99),
        }
    }
}

/// The slot-wide counters behind [`SlotStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) reloads: AtomicU64,
    pub(crate) failed_reloads: AtomicU64,
    pub(crate) drains_completed: AtomicU64,
    pub(crate) call_panics: AtomicU64,
    pub(crate) shutdown_failures: AtomicU64,
    pub(crate) rolled_back: AtomicU64,
    pub(crate) vetoed: AtomicU64,
    pub(crate) aborted: AtomicU64,
    pub(crate) listener_panics: AtomicU64,
    pub(crate) drop_panics: AtomicU64,
    pub(crate) drain_time: Histogram,
    pub(crate) quiesce_time: Histogram,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        generation: Option<u64>,
        draining_now: usize,
        in_flight: usize,
    ) -> SlotStats {
        SlotStats {
            generation,
            reloads: self.reloads.load(Relaxed),
            failed_reloads: self.failed_reloads.load(Relaxed),
            rolled_back: self.rolled_back.load(Relaxed),
            vetoed: self.vetoed.load(Relaxed),
            aborted: self.aborted.load(Relaxed),
            in_flight,
            listener_panics: self.listener_panics.load(Relaxed),
            drop_panics: self.drop_panics.load(Relaxed),
            quiesce_time: self.quiesce_time.summary(),
            drains_completed: self.drains_completed.load(Relaxed),
            draining_now,
            free_shells: 0,
            call_panics: self.call_panics.load(Relaxed),
            shutdown_failures: self.shutdown_failures.load(Relaxed),
            drain_time: self.drain_time.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for ns in (0..5000u64).chain([1 << 20, 1 << 40, u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(ns);
            assert!(b >= last, "bucket of {ns} went backwards");
            assert!(b < BUCKETS);
            assert!(bucket_upper(b) >= ns, "upper of bucket {b} below {ns}");
            if ns > 8 {
                // The bucket's upper bound is within 25% above the value.
                assert!(bucket_upper(b) as f64 <= ns as f64 * 1.25 + 1.0, "{ns}");
            }
            last = b;
        }
    }

    #[test]
    fn summary_of_known_durations() {
        let h = Histogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.min, Duration::from_micros(1));
        assert_eq!(s.max, Duration::from_micros(100));
        assert_eq!(s.mean, Duration::from_nanos(50_500));
        assert!(s.p50 >= Duration::from_micros(50) && s.p50 <= Duration::from_micros(63));
        assert!(s.p99 >= Duration::from_micros(99) && s.p99 <= Duration::from_micros(100));
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Histogram::default().summary(), DurationSummary::default());
    }
}
