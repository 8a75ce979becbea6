//! A registry call: lease a plugin and its declared dependencies, checked
//! against its manifest's ranges. Compared in one run, at 1 and 2 threads,
//! with a bare slot lease (the floor), with the lookup a host would
//! otherwise write (`RwLock<HashMap<String, Arc<Slot>>>` then a lease), and
//! across chain depths 0, 1 and 2 through a `Handle` (borrowed calls), an
//! owned call (`Handle::enter_owned`), plus a lookup by name
//! (`Registry::enter`, and through a `Snapshot` taken once).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use parking_lot::RwLock;
use reload_core::manifest::Manifest;
use reload_core::registry::{Package, Registry};
use reload_core::verify::Unchecked;
use reload_core::Slot;

mod common;
use common::{contended, ready, Val};

fn package(name: &str, requires: Option<&str>) -> Package<Val> {
    let manifest = Manifest::new(name, "1.0.0").and_then(|m| m.export("run"));
    let manifest = match requires {
        Some(dep) => manifest.and_then(|m| m.requires(dep, "^1", &["run"])),
        None => manifest,
    };
    match manifest {
        Ok(m) => Package::new(Val { value: 7 }, m, name.as_bytes().to_vec()),
        Err(e) => panic!("{e}"),
    }
}

fn registry_call(c: &mut Criterion) {
    let registry = Registry::new(Unchecked);
    let chain = vec![
        package("a", None),
        package("b", Some("a")),
        package("c", Some("b")),
    ];
    if let Err(r) = registry.register_all(chain, &()) {
        panic!("{r}");
    }
    let handles: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| registry.handle(n).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let slot = Slot::new(ready(7));
    let lookup: RwLock<HashMap<String, Arc<Slot<Val>>>> = RwLock::new(
        [("a".to_owned(), Arc::new(Slot::new(ready(7))))]
            .into_iter()
            .collect(),
    );

    let mut group = common::group(c, "registry_call", 2, 40);
    for threads in [1usize, 2] {
        let mut bench = |name: &str, op: &(dyn Fn() + Sync)| {
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &t| {
                b.iter_custom(|iters| contended(t, iters, &op))
            });
        };
        bench("slot_lease", &|| {
            black_box(slot.enter().map(|l| l.value).ok());
        });
        bench("rwlock_map_then_lease", &|| {
            let map = lookup.read();
            black_box(map.get("a").and_then(|s| s.enter().ok()).map(|l| l.value));
        });
        for (depth, handle) in handles.iter().enumerate() {
            bench(&format!("handle_depth_{depth}"), &|| {
                black_box(handle.enter().map(|c| c.value).ok());
            });
        }
        bench("handle_owned_depth_0", &|| {
            black_box(handles[0].enter_owned().map(|c| c.value).ok());
        });
        bench("enter_by_name_depth_0", &|| {
            black_box(registry.enter(black_box("a")).map(|c| c.value).ok());
        });
        let snapshot = registry.snapshot();
        bench("snapshot_by_name_depth_0", &|| {
            black_box(snapshot.enter(black_box("a")).map(|c| c.value).ok());
        });
    }
    group.finish();
}

criterion_group!(benches, registry_call);
criterion_main!(benches);
