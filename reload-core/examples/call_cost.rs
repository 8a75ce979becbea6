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
use reload_core::{Hooks, Plugin, Slot};

const CALLS: u64 = 100_000;

struct Val {
    value: u64,
}

impl Hooks for Val {
    type Context = ();
}

#[inline(never)]
fn lease_calls(slot: &Slot<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..CALLS {
        if let Ok(lease) = slot.enter() {
            sum += black_box(lease.value);
        }
    }
    sum
}

#[inline(never)]
fn owned_lease_calls(slot: &Slot<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..CALLS {
        if let Ok(lease) = slot.enter_owned() {
            sum += black_box(lease.value);
        }
    }
    sum
}

#[inline(never)]
fn arcswap_calls(swap: &ArcSwap<Val>) -> u64 {
    let mut sum = 0;
    for _ in 0..CALLS {
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
    // Warm up thread-locals and registrations outside the measured function.
    let _ = slot.enter();
    let _ = swap.load();
    let sum = match which.as_str() {
        "lease" => lease_calls(&slot),
        "owned_lease" => owned_lease_calls(&slot),
        "arcswap" => arcswap_calls(&swap),
        _ => {
            eprintln!("usage: call_cost lease|owned_lease|arcswap");
            return;
        }
    };
    println!("{which}: {CALLS} calls, sum {sum}");
}
