//! One call of the same work (`x * 31 + 7`, eight bytes in) in process,
//! through a native plugin library (the SQL host's `udf`, which also
//! returns its version), and through a WebAssembly guest (a pooled
//! stateless instance; and through the registry), in one run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::wasm::{Limits, Runtime, WasmPlugin};
use wasm_demo::guests;

fn wasm_call(c: &mut Criterion) {
    let runtime = Runtime::new(Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let registry: Registry<WasmPlugin> = Registry::new(Unchecked);
    let package = runtime
        .package(guests::score("1.0.0"))
        .unwrap_or_else(|e| panic!("{e}"));
    if let Err(r) = registry.register(package, b"") {
        panic!("{r}");
    }
    let handle = registry.handle("score").unwrap_or_else(|e| panic!("{e}"));
    let held = handle.enter().unwrap_or_else(|e| panic!("{e}"));
    let builds = sql_host::plugins::build().unwrap_or_else(|e| panic!("{e}"));
    let loader = Loader::new().unwrap_or_else(|e| panic!("{e}"));
    let natives: Registry<DylibPlugin> = Registry::new(Unchecked);
    let native = loader
        .package(&builds.path("udf", "1.0.0"))
        .unwrap_or_else(|e| panic!("{e}"));
    if let Err(r) = natives.register(native, b"") {
        panic!("{r}");
    }
    let native = natives.enter("udf").unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("call_x31_plus_7");
    group.bench_function("in_process", |b| {
        b.iter(|| {
            let x: i64 = black_box(12_345);
            black_box(x.wrapping_mul(31).wrapping_add(7).to_le_bytes().to_vec())
        });
    });
    group.bench_function("native_library_held_lease", |b| {
        b.iter(|| {
            let x: i64 = black_box(12_345);
            native
                .plugin()
                .call_with(&x.to_le_bytes(), |r| black_box(r.len()))
                .unwrap_or_else(|e| panic!("{e}"))
        });
    });
    group.bench_function("wasm_held_lease", |b| {
        b.iter(|| {
            let x: i64 = black_box(12_345);
            held.plugin()
                .call_with(&x.to_le_bytes(), |r| black_box(r.len()))
                .unwrap_or_else(|e| panic!("{e}"))
        });
    });
    group.bench_function("wasm_registry_call", |b| {
        b.iter(|| {
            let x: i64 = black_box(12_345);
            handle
                .call(|c| {
                    c.plugin()
                        .call_with(&x.to_le_bytes(), |r| black_box(r.len()))
                })
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"))
        });
    });
    group.finish();
}

criterion_group!(benches, wasm_call);
criterion_main!(benches);
