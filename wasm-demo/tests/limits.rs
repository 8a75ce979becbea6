//! `Limits` at every edge, and deadlines that hold: a deadline at the top
//! of `Duration`'s range (no deadline), zero, one budget for a call that
//! must first make its instance (deterministic, on fuel; and on the clock),
//! deadlines that do not drift under load, memory below a module's
//! minimum, fuel at both ends, a pool of none.
//!
//! The timed tests hold [`CLOCK`] so they do not load each other, and
//! their bounds allow scheduling generously; what they measured is
//! printed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reload_core::wasm::{Limits, Runtime, WasmError, WasmPlugin};
use reload_core::Hooks;
use wasm_demo::guests;

/// Held by each test that measures time.
static CLOCK: Mutex<()> = Mutex::new(());

fn clock() -> std::sync::MutexGuard<'static, ()> {
    CLOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A stateless guest: `reload_init` and `reload_call` each burn the
/// iterations their input's first four bytes say (8 fuel each, see
/// `burn`); a call's count of 0 loops forever. Its memory is one page.
fn burner() -> Vec<u8> {
    let text = r#"(module
      (memory (export "memory") 1)
      (func $pack (param $ptr i32) (param $len i32) (result i64)
        (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
                (i64.extend_i32_u (local.get $len))))
      ;; 8 metered instructions an iteration: local.get, i32.eqz, br_if,
      ;; local.get, i32.const, i32.sub, local.set, br (block, loop: 0).
      (func $burn (param $n i32)
        (block $done
          (loop $l
            (br_if $done (i32.eqz (local.get $n)))
            (local.set $n (i32.sub (local.get $n) (i32.const 1)))
            (br $l))))
      (func $ok (result i64)
        (i32.store8 (i32.const 2048) (i32.const 0))
        (call $pack (i32.const 2048) (i32.const 1)))
      (func (export "reload_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "reload_init") (param $ptr i32) (param $len i32) (result i64)
        (if (i32.ge_u (local.get $len) (i32.const 4))
          (then (call $burn (i32.load (local.get $ptr)))))
        (call $ok))
      (func (export "reload_call") (param $ptr i32) (param $len i32) (result i64)
        (if (i32.eqz (i32.load (local.get $ptr)))
          (then (loop $forever (br $forever))))
        (call $burn (i32.load (local.get $ptr)))
        (call $ok)))"#;
    guests::with_manifest(
        wat::parse_str(text).expect("wat"),
        "reload-manifest 1\nname burner\nversion 1.0.0\n",
    )
}

fn limits(deadline: Duration, fuel: Option<u64>, pool: usize) -> Limits {
    Limits {
        deadline,
        fuel,
        memory: 1 << 20,
        pool,
    }
}

/// A linked and initialized burner; `init` burns `init_iterations`.
fn burner_on(limits: Limits, init_iterations: u32) -> WasmPlugin {
    let runtime = Runtime::new(limits).expect("engine");
    let mut plugin = runtime.package(burner()).expect("packages").into_plugin();
    plugin.link().expect("links");
    plugin
        .init(&init_iterations.to_le_bytes())
        .expect("initializes");
    assert!(!plugin.is_stateful());
    plugin
}

fn burn(plugin: &WasmPlugin, iterations: u32) -> Result<Vec<u8>, WasmError> {
    plugin.call(&iterations.to_le_bytes())
}

const FOREVER: u32 = 0;

/// A deadline no test means to reach.
const HOUR: Duration = Duration::from_secs(3600);

/// 100 000 iterations: 800 000 fuel.
const N: u32 = 100_000;

#[test]
fn a_deadline_the_clock_cannot_reach_is_no_deadline() {
    let _clock = clock();
    // Each would overflow the epoch arithmetic, or come back interrupted
    // at once; a finite far deadline must simply not fire. Only fuel ends
    // these runaway calls: 80 million fuel is tens of milliseconds, many
    // epoch ticks.
    for deadline in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::new(u64::MAX / 2, 999_999_999),
        Duration::from_secs(1 << 40),
        Duration::from_secs(u64::from(u32::MAX)),
    ] {
        let plugin = burner_on(limits(deadline, Some(80_000_000), 1), 1);
        let started = Instant::now();
        let result = burn(&plugin, FOREVER);
        assert!(
            matches!(result, Err(WasmError::OutOfFuel { entry: "call" })),
            "{deadline:?}: {result:?} after {:?}",
            started.elapsed()
        );
        // And a call that ends on its own is not interrupted.
        burn(&plugin, N).expect("a finite call under a far deadline");
    }
}

#[test]
fn a_zero_deadline_interrupts_at_the_first_look_at_the_clock() {
    let _clock = clock();
    // Linked, not initialized by the test: any guest code run under a zero
    // deadline may meet a tick, so only the runaway call is asserted on.
    // It makes its instance (whose `reload_init` spends the same budget),
    // and is interrupted in the one or the other.
    let runtime = Runtime::new(limits(Duration::ZERO, None, 1)).expect("engine");
    let mut plugin = runtime.package(burner()).expect("packages").into_plugin();
    plugin.link().expect("links: no guest code runs");
    let started = Instant::now();
    let result = burn(&plugin, FOREVER);
    assert!(
        matches!(
            result,
            Err(WasmError::Interrupted {
                entry: "call" | "reload_init",
                deadline: Duration::ZERO
            })
        ),
        "{result:?}"
    );
    eprintln!("zero deadline: interrupted after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Deterministic, on fuel: the budget a call spends is one, whether or not
/// it first had to make its instance. Init and call each burn 800 000 fuel
/// of a 1 200 000 budget: alone each fits, together they do not.
#[test]
fn a_call_that_makes_its_instance_spends_one_budget() {
    let budget = Some(1_200_000);
    let plugin = burner_on(limits(HOUR, budget, 1), N);
    // No spare yet: this call makes its instance and runs its init (800 000)
    // before its own 800 000: over budget.
    assert!(matches!(
        burn(&plugin, N),
        Err(WasmError::OutOfFuel { entry: "call" })
    ));
    // A small call fits beside the init; its instance is kept...
    burn(&plugin, 10).expect("init and a small call fit");
    // ...and the big call, on that spare, has the whole budget.
    burn(&plugin, N).expect("a call on a spare instance has its whole budget");
    // The spare was given back: the same call fits again.
    burn(&plugin, N).expect("and again");

    // An init over the budget on its own is refused where it runs.
    let runtime = Runtime::new(limits(HOUR, budget, 1)).expect("engine");
    let mut plugin = runtime.package(burner()).expect("packages").into_plugin();
    plugin.link().expect("links");
    let refused = plugin
        .init(&(2 * N).to_le_bytes())
        .expect_err("over budget");
    assert_eq!(refused.to_string(), "`reload_init` ran out of fuel");
}

/// With `pool: 0` no instance is kept: every call makes its own, so the
/// big call never finds a spare.
#[test]
fn a_pool_of_none_keeps_no_instance_and_the_largest_keeps_them_all() {
    let plugin = burner_on(limits(HOUR, Some(1_200_000), 0), N);
    burn(&plugin, 10).expect("fits beside the init");
    assert!(matches!(
        burn(&plugin, N),
        Err(WasmError::OutOfFuel { entry: "call" })
    ));
    let plugin = Arc::new(burner_on(limits(HOUR, Some(1_200_000), usize::MAX), N));
    // Four threads, each a small call (each may make an instance): every
    // instance is kept, so afterwards a big call finds a spare.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let plugin = Arc::clone(&plugin);
            thread::spawn(move || burn(&plugin, 10).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().expect("joins").expect("small calls fit");
    }
    burn(&plugin, N).expect("a spare was kept");
}

#[test]
fn fuel_at_its_edges() {
    // None of it: the first metered instruction runs out, in `init` as in
    // a call (the burner's link runs no guest code, so it links).
    let runtime = Runtime::new(limits(Duration::from_secs(60), Some(0), 1)).expect("engine");
    let mut plugin = runtime.package(burner()).expect("packages").into_plugin();
    plugin.link().expect("links: no guest code runs");
    let refused = plugin.init(&[]).expect_err("no fuel for init");
    assert_eq!(refused.to_string(), "`reload_init` ran out of fuel");
    assert!(matches!(
        burn(&plugin, 1),
        Err(WasmError::OutOfFuel {
            entry: "reload_init"
        })
    ));
    // All of it: only the deadline ends a runaway call.
    let _clock = clock();
    let plugin = burner_on(limits(Duration::from_secs(1), Some(u64::MAX), 1), 0);
    assert!(matches!(
        burn(&plugin, FOREVER),
        Err(WasmError::Interrupted { entry: "call", .. })
    ));
    burn(&plugin, N).expect("and a finite call runs");
}

#[test]
fn memory_below_a_modules_minimum_is_refused_at_package() {
    for (memory, fits) in [
        (0, false),
        (65_535, false),
        (65_536, true),
        (usize::MAX, true),
    ] {
        let runtime = Runtime::new(Limits {
            memory,
            ..Limits::default()
        })
        .expect("engine");
        match runtime.package(burner()) {
            Ok(package) => {
                assert!(fits, "{memory} bytes for a one-page module");
                let mut plugin = package.into_plugin();
                plugin.link().expect("links");
                plugin.init(&[]).expect("initializes");
                burn(&plugin, 1).expect("serves");
            }
            Err(WasmError::MemoryLimit { needs, limit }) => {
                assert!(!fits, "refused at {memory}");
                assert_eq!((needs, limit), (65_536, memory));
            }
            Err(other) => panic!("{memory}: {other}"),
        }
    }
}

/// On the clock: a call that must make its instance, whose init takes
/// about half the deadline, is interrupted one deadline after it started,
/// not one deadline after its init.
#[test]
fn a_call_that_makes_its_instance_is_bounded_by_one_deadline() {
    let _clock = clock();
    // Calibrate: how many iterations make an init of about 0.8 s here.
    let target = Duration::from_millis(800);
    let mut n = 1u32 << 20;
    let init_time = loop {
        let runtime = Runtime::new(limits(HOUR, None, 0)).expect("engine");
        let mut plugin = runtime.package(burner()).expect("packages").into_plugin();
        plugin.link().expect("links");
        let started = Instant::now();
        plugin.init(&n.to_le_bytes()).expect("initializes");
        let took = started.elapsed();
        if took >= target || n >= 1 << 31 {
            break took;
        }
        let scale = (target.as_secs_f64() / took.as_secs_f64().max(1e-6)).clamp(1.1, 16.0);
        n = (f64::from(n) * scale).min(f64::from(1u32 << 31)) as u32;
    };
    // A deadline of twice that: the primary's init fits, with room for a
    // slower machine; a fresh call's init and its runaway call share it.
    let deadline = init_time * 2;
    let plugin = burner_on(limits(deadline, None, 0), n);
    let started = Instant::now();
    let result = burn(&plugin, FOREVER);
    let took = started.elapsed();
    eprintln!("init {init_time:?}; deadline {deadline:?}; fresh runaway call ended after {took:?}");
    assert!(
        matches!(result, Err(WasmError::Interrupted { entry: "call", .. })),
        "{result:?}"
    );
    assert!(took >= deadline, "interrupted early: {took:?}");
    // Three budgets (the old behaviour) would be at least init + deadline.
    assert!(
        took < deadline + init_time / 2,
        "a call that made its instance ran {took:?} against a deadline of {deadline:?}"
    );
}

/// On the clock, under load: 16 threads spin on 2 cores while a runaway
/// call runs against a 4-second deadline. Counting ticks (the old design)
/// fired late by every tick overslept: 2.2 s late under this load, 0.5 s
/// with 8 threads. The clock fires within a tick of the deadline plus one
/// wake's scheduling: 1.5-35 ms late here. The bound allows a second.
#[test]
fn a_long_deadline_does_not_drift_under_load() {
    let _clock = clock();
    let deadline = Duration::from_secs(4);
    let plugin = burner_on(limits(deadline, None, 1), 0);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..16)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut x = 0u64;
                // Bounded: at most a minute even if the test panics first.
                let until = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let started = Instant::now();
    let result = burn(&plugin, FOREVER);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().expect("spinner");
    }
    eprintln!("loaded: a {deadline:?} deadline fired after {took:?}");
    assert!(
        matches!(result, Err(WasmError::Interrupted { entry: "call", .. })),
        "{result:?}"
    );
    assert!(took >= deadline, "interrupted early: {took:?}");
    assert!(
        took < deadline + Duration::from_secs(1),
        "a {deadline:?} deadline fired after {took:?}"
    );
}

#[test]
fn the_ticker_reports_that_it_runs() {
    let runtime = Runtime::new(Limits::default()).expect("engine");
    assert!(runtime.ticker().is_running());
    assert_eq!(runtime.ticker().exit(), None);
    assert_eq!(runtime.ticker().name(), "reload-core-wasm-epoch");
}
