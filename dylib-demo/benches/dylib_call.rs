//! The cost of a call into a plugin library, against the same arithmetic
//! in process, in one run: the FFI call alone (`DylibPlugin::call`: the
//! entry point, its `catch_unwind`, copying 8 bytes in and out into a new
//! `Vec`), and a full registry call (`Handle::call`: leases, panic
//! containment, then the FFI call).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dylib_demo::build_plugins;
use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;

fn dylib_call(c: &mut Criterion) {
    let libs = build_plugins().unwrap_or_else(|e| panic!("{e}"));
    let loader = Loader::new().unwrap_or_else(|e| panic!("{e}"));
    let registry: Registry<DylibPlugin> = Registry::new(Unchecked);
    let package = loader.package(&libs.v1).unwrap_or_else(|e| panic!("{e}"));
    if let Err(r) = registry.register(package, b"") {
        panic!("{r}");
    }
    let handle = registry.handle("adder").unwrap_or_else(|e| panic!("{e}"));
    let lease = handle.enter().unwrap_or_else(|e| panic!("{e}"));

    let mut group = c.benchmark_group("dylib_call");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("in_process", |b| {
        let mut x = 0u64;
        b.iter(|| {
            x += 1;
            black_box(black_box(x).wrapping_add(1).to_le_bytes().to_vec())
        })
    });
    group.bench_function("ffi_call", |b| {
        let mut x = 0u64;
        b.iter(|| {
            x += 1;
            black_box(lease.plugin().call(&x.to_le_bytes()).ok())
        })
    });
    drop(lease);
    group.bench_function("registry_handle_call", |b| {
        let mut x = 0u64;
        b.iter(|| {
            x += 1;
            black_box(handle.call(|c| c.plugin().call(&x.to_le_bytes()).ok()).ok())
        })
    });
    group.finish();
}

criterion_group!(benches, dylib_call);
criterion_main!(benches);
