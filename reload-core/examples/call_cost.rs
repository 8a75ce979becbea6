//! A fixed number of calls through each design, for instruction counts under
//! callgrind (`valgrind --tool=callgrind`), which are repeatable where timings
//! are not. See docs/performance.md.
//!
//! ```text
//! cargo build --release -p reload-core --example call_cost
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='call_cost::lease_calls' \
//!     target/release/examples/call_cost lease
//! ```

use std::hint::black_box;

use arc_swap::ArcSwap;
use reload_core::manifest::Manifest;
use reload_core::registry::{Handle, Package, Registry};
use reload_core::verify::Unchecked;
use reload_core::{Hooks, Plugin, Slot};

const CALLS: u64 = 100_000;

/// How many calls: `CALLS` from the environment (for timing by hand), else
/// [`CALLS`].
fn calls() -> u64 {
    std::env::var("CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CALLS)
}

struct Val {
    value: u64,
}

impl Hooks for Val {
    type Context = ();
    fn name(&self) -> &str {
        "val"
    }
}

impl reload_core::Stateful for Val {}

#[inline(never)]
fn lease_calls(slot: &Slot<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        if let Ok(lease) = slot.enter() {
            sum += black_box(lease.value);
        }
    }
    sum
}

#[inline(never)]
fn owned_lease_calls(slot: &Slot<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        if let Ok(lease) = slot.enter_owned() {
            sum += black_box(lease.value);
        }
    }
    sum
}

#[inline(never)]
fn handle_calls(handle: &Handle<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        if let Ok(call) = handle.enter() {
            sum += black_box(call.value);
        }
    }
    sum
}

/// `handle_calls` on a plugin with one requirement (named apart for
/// callgrind's `--toggle-collect`).
#[inline(never)]
fn chain_calls(handle: &Handle<Val>) -> u64 {
    handle_calls(handle)
}

#[inline(never)]
fn handle_call_calls(handle: &Handle<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        if let Ok(value) = handle.call(|call| black_box(call.value)) {
            sum += value;
        }
    }
    sum
}

#[inline(never)]
fn handle_owned_calls(handle: &Handle<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        if let Ok(call) = handle.enter_owned() {
            sum += black_box(call.value);
        }
    }
    sum
}

#[inline(never)]
fn by_name_calls(registry: &Registry<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        if let Ok(call) = registry.enter(black_box("val")) {
            sum += black_box(call.value);
        }
    }
    sum
}

#[inline(never)]
fn snapshot_calls(registry: &Registry<Val>) -> u64 {
    let snapshot = registry.snapshot();
    let mut sum = 0;
    for _ in 0..calls() {
        if let Ok(call) = snapshot.enter(black_box("val")) {
            sum += black_box(call.value);
        }
    }
    sum
}

#[inline(never)]
fn pin_calls() -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        // crossbeam-epoch's global collector: what a pinning read path pays.
        let guard = crossbeam_epoch::pin();
        sum += black_box(&guard as *const _ as u64 & 1);
    }
    sum
}

#[inline(never)]
fn arcswap_calls(swap: &ArcSwap<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..calls() {
        sum += black_box(swap.load().value);
    }
    sum
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let Ok(ready) = Plugin::new(Val { value: 1 }).ready(&()) else {
        return;
    };
    let slot = Slot::new(ready);
    let swap = ArcSwap::from_pointee(Val { value: 1 });
    let registry = Registry::new(Unchecked);
    let Ok(manifest) = Manifest::new("val", "1.0.0") else {
        return;
    };
    if registry
        .register(Package::new(Val { value: 1 }, manifest, Vec::new()), &())
        .is_err()
    {
        return;
    }
    let Ok(handle) = registry.handle("val") else {
        return;
    };
    // A plugin that requires `val`: a call leases both.
    let Ok(manifest) = Manifest::new("user", "1.0.0").and_then(|m| m.requires("val", "^1", &[]))
    else {
        return;
    };
    if registry
        .register(Package::new(Val { value: 2 }, manifest, Vec::new()), &())
        .is_err()
    {
        return;
    }
    let Ok(chain) = registry.handle("user") else {
        return;
    };
    let _ = handle.enter();
    let _ = registry.enter("val");
    // Warm up thread-locals and registrations outside the measured function.
    let _ = slot.enter();
    let _ = swap.load();
    drop(crossbeam_epoch::pin());
    let sum = match which.as_str() {
        "lease" => lease_calls(&slot),
        "owned_lease" => owned_lease_calls(&slot),
        "arcswap" => arcswap_calls(&swap),
        "pin" => pin_calls(),
        "handle" => handle_calls(&handle),
        "chain" => chain_calls(&chain),
        "handle_owned" => handle_owned_calls(&handle),
        "handle_call" => handle_call_calls(&handle),
        "by_name" => by_name_calls(&registry),
        "snapshot" => snapshot_calls(&registry),
        "handle2" => {
            // Another thread hammering the same handle meanwhile.
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = black_box(handle.enter().map(|c| c.value));
                    }
                });
                let sum = handle_calls(&handle);
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                sum
            })
        }
        _ => {
            eprintln!(
                "usage: call_cost lease|owned_lease|handle|chain|handle_call|handle_owned|by_name|snapshot|arcswap|pin"
            );
            return;
        }
    };
    println!("{which}: {} calls, sum {sum}", calls());
}
