//! Health figures a node publishes for the coordinator's gates. The host
//! says what they are ([`HealthSource`]): its own metrics, or a
//! [`Counters`] it records calls in.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;

use crate::records::Health;

/// Where a node's health figures come from.
pub trait HealthSource: Send + Sync + 'static {
    /// The figures for `plugin` now (cumulative counts; a recent p99).
    fn health(&self, plugin: &str) -> Health;
}

impl<F: Fn(&str) -> Health + Send + Sync + 'static> HealthSource for F {
    fn health(&self, plugin: &str) -> Health {
        self(plugin)
    }
}

/// Calls, failures and recent latencies per plugin, recorded by the host
/// around its calls. The p99 is over the last 1 024 calls.
#[derive(Debug, Default)]
pub struct Counters {
    plugins: Mutex<BTreeMap<String, Window>>,
}

#[derive(Debug, Default)]
struct Window {
    calls: u64,
    errors: u64,
    recent: VecDeque<u64>,
}

const RECENT: usize = 1024;

impl Counters {
    /// No calls yet.
    pub fn new() -> Self {
        Counters::default()
    }

    /// One call of `plugin`: whether it succeeded, and how long it took.
    pub fn record(&self, plugin: &str, ok: bool, took: Duration) {
        let mut plugins = self.plugins.lock();
        let w = plugins.entry(plugin.to_owned()).or_default();
        w.calls += 1;
        w.errors += u64::from(!ok);
        if w.recent.len() == RECENT {
            w.recent.pop_front();
        }
        w.recent
            .push_back(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }
}

impl HealthSource for Counters {
    fn health(&self, plugin: &str) -> Health {
        let plugins = self.plugins.lock();
        let Some(w) = plugins.get(plugin) else {
            return Health::default();
        };
        let mut recent: Vec<u64> = w.recent.iter().copied().collect();
        recent.sort_unstable();
        let p99 = recent
            .get((recent.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(0);
        Health {
            calls: w.calls,
            errors: w.errors,
            p99_us: p99,
        }
    }
}

impl<T: HealthSource> HealthSource for std::sync::Arc<T> {
    fn health(&self, plugin: &str) -> Health {
        (**self).health(plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_a_p99_over_recent_calls() {
        let c = Counters::new();
        assert_eq!(c.health("udf"), Health::default());
        for i in 1..=100u64 {
            c.record("udf", i % 10 != 0, Duration::from_micros(i));
        }
        assert_eq!(
            c.health("udf"),
            Health {
                calls: 100,
                errors: 10,
                p99_us: 99
            }
        );
        for _ in 0..RECENT {
            c.record("udf", true, Duration::from_micros(5));
        }
        let h = c.health("udf");
        assert_eq!((h.calls, h.errors, h.p99_us), (1124, 10, 5));
    }
}
