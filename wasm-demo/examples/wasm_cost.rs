//! Instructions per call, for callgrind: `N` calls of the same work
//! (`x * 31 + 7`) through a core module (`core`: `WasmPlugin::call_with`,
//! pooled), a `reload:plugin` component with bytes in and out (`bytes`),
//! and a `my:udf@1.1.0` component with a typed `s64` (`typed`) and a typed
//! record (`record`), each on a held lease, against `empty` (the loop
//! alone).
//!
//! `python3 ci/callgrind.py --wasm` runs each under callgrind, collecting
//! only inside the design's `measure_` function, and prints instructions
//! and locked instructions per call.

use std::hint::black_box;

use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::wasm::component::{ComponentPlugin, ComponentRuntime, PluginWorld};
use reload_core::wasm::{Limits, Runtime, WasmPlugin};
use wasm_demo::guests;
use wasm_demo::udf::{self, UdfWorld};
use wasm_guests::{wat, with_manifest};

const MANIFEST: &str = "reload-manifest 1\nname score\nversion 1.0.0\n";

#[inline(never)]
fn measure_empty(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(black_box(i as i64).wrapping_mul(31).wrapping_add(7) as u64);
    }
    sum
}

#[inline(never)]
fn measure_core(plugin: &WasmPlugin, n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let x = black_box(i as i64);
        sum += plugin
            .call_with(&x.to_le_bytes(), |r| r.len() as u64)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    sum
}

#[inline(never)]
fn measure_bytes(plugin: &ComponentPlugin<PluginWorld>, n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let x = black_box(i as i64);
        sum += plugin
            .call(&x.to_le_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
            .len() as u64;
    }
    sum
}

#[inline(never)]
fn measure_typed(plugin: &ComponentPlugin<UdfWorld>, n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(
            udf::eval(plugin, black_box(i as i64)).unwrap_or_else(|e| panic!("{e}")) as u64,
        );
    }
    sum
}

#[inline(never)]
fn measure_record(plugin: &ComponentPlugin<UdfWorld>, n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(
            udf::eval_with(plugin, black_box(i as i64), 1).unwrap_or_else(|e| panic!("{e}")) as u64,
        );
    }
    sum
}

fn main() {
    let mut args = std::env::args().skip(1);
    let design = args.next().unwrap_or_else(|| "core".to_owned());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let limits = Limits::default();
    let result = match design.as_str() {
        "empty" => measure_empty(n),
        "core" => {
            let runtime = Runtime::new(limits).unwrap_or_else(|e| panic!("{e}"));
            let registry: Registry<WasmPlugin> = Registry::new(Unchecked);
            let package = runtime
                .package(guests::score("1.0.0"))
                .unwrap_or_else(|e| panic!("{e}"));
            registry
                .register(package, b"")
                .unwrap_or_else(|r| panic!("{r}"));
            let held = registry.enter("score").unwrap_or_else(|e| panic!("{e}"));
            // A pooled instance made before counting.
            let _ = held.plugin().call(&0i64.to_le_bytes());
            measure_core(held.plugin(), n)
        }
        "bytes" => {
            let runtime = ComponentRuntime::plugins(limits).unwrap_or_else(|e| panic!("{e}"));
            let registry: Registry<ComponentPlugin<PluginWorld>> = Registry::new(Unchecked);
            let package = runtime
                .package(with_manifest(&wat::score(), MANIFEST))
                .unwrap_or_else(|e| panic!("{e}"));
            registry
                .register(package, b"")
                .unwrap_or_else(|r| panic!("{r}"));
            let held = registry.enter("score").unwrap_or_else(|e| panic!("{e}"));
            let _ = held.plugin().call(&0i64.to_le_bytes());
            measure_bytes(held.plugin(), n)
        }
        "typed" | "record" => {
            let runtime = ComponentRuntime::new(limits, UdfWorld::default())
                .unwrap_or_else(|e| panic!("{e}"));
            let registry: Registry<ComponentPlugin<UdfWorld>> = Registry::new(Unchecked);
            let package = runtime
                .package(with_manifest(&wat::score_udf(), MANIFEST))
                .unwrap_or_else(|e| panic!("{e}"));
            registry
                .register(package, b"")
                .unwrap_or_else(|r| panic!("{r}"));
            let held = registry.enter("score").unwrap_or_else(|e| panic!("{e}"));
            let _ = udf::eval_with(held.plugin(), 0, 1);
            if design == "typed" {
                measure_typed(held.plugin(), n)
            } else {
                measure_record(held.plugin(), n)
            }
        }
        other => panic!("no design `{other}`"),
    };
    println!("{result}");
}
