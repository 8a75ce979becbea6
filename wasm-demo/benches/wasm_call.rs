//! One call of the same work (`x * 31 + 7`, eight bytes in) in process,
//! through a native plugin library (the SQL host's `udf`, which also
//! returns its version), through a WebAssembly core module (a pooled
//! stateless instance; and through the registry), and through components
//! (bytes in and out through `reload:plugin`; a typed `s64` and a typed
//! record through a host's own world, `my:udf@1.1.0`), in one run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use reload_core::dylib::{DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::wasm::component::{ComponentPlugin, ComponentRuntime, PluginWorld};
use reload_core::wasm::{Limits, Runtime, WasmPlugin};
use wasm_demo::guests;
use wasm_demo::udf::{self, UdfWorld};
use wasm_guests::{wat, with_manifest};

const MANIFEST: &str = "reload-manifest 1\nname score\nversion 1.0.0\n";

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
    let components: Registry<ComponentPlugin<PluginWorld>> = Registry::new(Unchecked);
    let bytes_runtime =
        ComponentRuntime::plugins(Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let package = bytes_runtime
        .package(with_manifest(&wat::score(), MANIFEST))
        .unwrap_or_else(|e| panic!("{e}"));
    if let Err(r) = components.register(package, b"") {
        panic!("{r}");
    }
    let component = components.enter("score").unwrap_or_else(|e| panic!("{e}"));
    let typed: Registry<ComponentPlugin<UdfWorld>> = Registry::new(Unchecked);
    let typed_runtime = ComponentRuntime::new(Limits::default(), UdfWorld::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let package = typed_runtime
        .package(with_manifest(&wat::score_udf(), MANIFEST))
        .unwrap_or_else(|e| panic!("{e}"));
    if let Err(r) = typed.register(package, b"") {
        panic!("{r}");
    }
    let typed = typed.enter("score").unwrap_or_else(|e| panic!("{e}"));
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
    group.bench_function("component_bytes_held_lease", |b| {
        b.iter(|| {
            let x: i64 = black_box(12_345);
            black_box(
                component
                    .plugin()
                    .call(&x.to_le_bytes())
                    .unwrap_or_else(|e| panic!("{e}"))
                    .len(),
            )
        });
    });
    group.bench_function("component_typed_s64_held_lease", |b| {
        b.iter(|| {
            let x: i64 = black_box(12_345);
            black_box(udf::eval(typed.plugin(), x).unwrap_or_else(|e| panic!("{e}")))
        });
    });
    group.bench_function("component_typed_record_held_lease", |b| {
        b.iter(|| {
            let x: i64 = black_box(12_345);
            black_box(udf::eval_with(typed.plugin(), x, 1).unwrap_or_else(|e| panic!("{e}")))
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
