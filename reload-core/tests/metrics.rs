//! The `metrics` feature: calls, reloads, failures, refusals, drain times
//! and versions draining reach the host's recorder, labelled by plugin.
#![cfg(feature = "metrics")]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use reload_core::manifest::Manifest;
use reload_core::registry::{Package, Registry};
use reload_core::verify::Unchecked;
use reload_core::{BoxError, Hooks, ReloadOptions, Stateful};

#[derive(Debug)]
struct Udf {
    version: &'static str,
    fail_init: bool,
}

impl Hooks for Udf {
    type Context = ();
    fn version(&self) -> &str {
        self.version
    }
    fn init(&mut self, (): &()) -> Result<(), BoxError> {
        if self.fail_init {
            return Err("init refused".into());
        }
        Ok(())
    }
}
impl Stateful for Udf {}

fn package(version: &'static str, fail_init: bool) -> Package<Udf> {
    let manifest = Manifest::new("udf", version).expect("manifest");
    Package::new(
        Udf { version, fail_init },
        manifest,
        version.as_bytes().to_vec(),
    )
}

/// One figure: its name, kind, labels and value.
type Figure = (String, MetricKind, Vec<(String, String)>, DebugValue);

/// The value of the figure `name` with (at least) `labels`.
fn find<'s>(snapshot: &'s [Figure], name: &str, labels: &[(&str, &str)]) -> Option<&'s DebugValue> {
    snapshot
        .iter()
        .find(|(n, _, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, _, v)| v)
}

#[test]
fn calls_reloads_refusals_and_drains_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let registry = Registry::new(Unchecked);
        registry
            .register(package("1.0.0", false), &())
            .expect("registered");
        for _ in 0..5 {
            registry.call("udf", |_| ()).expect("served");
        }
        let report = registry
            .reload(
                vec![package("1.1.0", false)],
                &(),
                ReloadOptions::quiesced(Duration::from_secs(60)),
            )
            .expect("reloaded");
        for change in report.changes {
            change.committed.old.wait().expect("drained");
        }
        registry
            .reload(
                vec![package("1.2.0", true)],
                &(),
                ReloadOptions::immediate(),
            )
            .expect_err("init fails");
        registry
            .revert("nothing", &(), ReloadOptions::immediate())
            .expect_err("unknown");
        registry.call("udf", |_| ()).expect("served");
    });
    let snapshot: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = (key.kind(), key.key());
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), kind, labels, value)
        })
        .collect();
    let udf = [("plugin", "udf")];
    assert_eq!(
        find(&snapshot, "reload_core_calls_total", &udf),
        Some(&DebugValue::Counter(6))
    );
    assert_eq!(
        find(&snapshot, "reload_core_reloads_total", &udf),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find(&snapshot, "reload_core_reload_failures_total", &udf),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find(
            &snapshot,
            "reload_core_refusals_total",
            &[("plugin", "udf"), ("reason", "reload")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find(
            &snapshot,
            "reload_core_refusals_total",
            &[("plugin", "nothing"), ("reason", "not_registered")]
        ),
        Some(&DebugValue::Counter(1))
    );
    // Two drains: 1.0.0 after the reload, and 1.1.0 when the registry
    // (dropped at the end of the closure) closed its slot.
    match find(&snapshot, "reload_core_drain_seconds", &udf) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 2),
        other => panic!("{other:?}"),
    }
    match find(&snapshot, "reload_core_quiesce_seconds", &udf) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 1),
        other => panic!("{other:?}"),
    }
    // Both versions cut over from drained: none draining now.
    match find(&snapshot, "reload_core_versions_draining", &udf) {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 0.0_f64),
        other => panic!("{other:?}"),
    }
    // Every figure is the host's plugin's (or the refusal's name): the
    // registry's own slot of name-map snapshots, which took a version at
    // the registration, stays out.
    let plugins: std::collections::BTreeSet<_> = snapshot
        .iter()
        .flat_map(|(_, _, labels, _)| labels.iter())
        .filter(|(k, _)| k == "plugin")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(plugins, ["nothing", "udf"].into_iter().collect());
}
