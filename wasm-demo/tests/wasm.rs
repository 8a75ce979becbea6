//! WebAssembly plugins: state across 100 reloads, a runaway call
//! interrupted while a reload waits for its drain, out-of-bounds replies,
//! modules that do not compile or lack an export, a failing restore, fuel
//! and memory limits, a pooled stateless guest on many threads, and the
//! `wasm` fuzz target's regressions.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reload_core::registry::{Registry, RegistryError};
use reload_core::verify::Unchecked;
use reload_core::wasm::{Limits, Runtime, SectionError, WasmError, WasmPlugin};
use reload_core::{ReloadOptions, Stateful};
use wasm_demo::guests::{self, Counter};

/// The guests' per-call deadline where a test does not mean to hit it: calls
/// take microseconds, and a starved machine must not turn one into an
/// interrupt.
const GENEROUS: Duration = Duration::from_secs(30);

fn runtime(deadline: Duration) -> Runtime {
    Runtime::new(Limits {
        deadline,
        memory: 1 << 20,
        ..Limits::default()
    })
    .expect("engine")
}

fn quiesced() -> ReloadOptions {
    ReloadOptions::quiesced(Duration::from_secs(60))
}

fn registry_with(runtime: &Runtime, first: &Counter) -> Registry<WasmPlugin> {
    let registry = Registry::new(Unchecked);
    let package = runtime.package(guests::counter(first)).expect("packages");
    registry.register(package, b"").expect("registered");
    registry
}

fn add(registry: &Registry<WasmPlugin>, input: u8) -> Result<u64, WasmError> {
    registry
        .call("counter", |c| c.plugin().call(&[input]))
        .expect("registered")
        .map(|reply| u64::from_le_bytes(reply[..8].try_into().expect("8 bytes")))
}

fn count(registry: &Registry<WasmPlugin>) -> u64 {
    let state = registry
        .call("counter", |c| Stateful::save(c.plugin()).expect("saves"))
        .expect("registered")
        .expect("has state");
    u64::from_le_bytes(state.try_into().expect("8 bytes"))
}

// The registry's errors are large (names, versions); a test takes them as
// they come.
#[allow(clippy::result_large_err)]
fn reload(
    registry: &Registry<WasmPlugin>,
    runtime: &Runtime,
    c: &Counter,
) -> Result<(), RegistryError> {
    let package = runtime.package(guests::counter(c)).expect("packages");
    let report = registry
        .reload(vec![package], b"", quiesced())
        .map_err(|r| r.error)?;
    for change in report.changes {
        change.committed.old.wait().expect("drained and shut down");
    }
    Ok(())
}

#[test]
fn state_is_carried_across_100_reloads() {
    let runtime = runtime(GENEROUS);
    let registry = registry_with(&runtime, &Counter::new("1.0.0"));
    for _ in 0..3 {
        add(&registry, 1).expect("counted");
    }
    for i in 1..=100 {
        reload(&registry, &runtime, &Counter::new(&format!("1.{i}.0"))).expect("reloaded");
        assert_eq!(add(&registry, 1).expect("counted"), 3 + i);
    }
    assert_eq!(count(&registry), 103);
    let info = &registry.list()[0];
    assert_eq!(info.version.to_string(), "1.100.0");
}

#[test]
fn a_runaway_call_is_interrupted_while_a_reload_waits_for_its_drain() {
    let deadline = Duration::from_millis(200);
    let runtime = runtime(deadline);
    let mut looping = Counter::new("1.0.0");
    looping.loops = true;
    let registry = Arc::new(registry_with(&runtime, &looping));
    add(&registry, 1).expect("counted");
    let runaway = {
        let registry = Arc::clone(&registry);
        thread::spawn(move || {
            let started = Instant::now();
            (add(&registry, 0xff), started.elapsed())
        })
    };
    // The runaway call holds its lease; the reload waits for it.
    while registry.stats().per_plugin["counter"].in_flight == 0 {
        thread::yield_now();
    }
    let waiting = Instant::now();
    reload(&registry, &runtime, &Counter::new("1.1.0")).expect("the drain completes");
    let drained_after = waiting.elapsed();
    let (result, ran) = runaway.join().expect("the caller returns");
    assert!(
        matches!(result, Err(WasmError::Interrupted { entry: "call", .. })),
        "{result:?}"
    );
    assert!(ran >= deadline, "interrupted early: {ran:?}");
    // That the reload returned at all is the bound: the guest loops forever,
    // so only the interrupt ends its call and lets the drain finish. How long
    // it took is the scheduler's business on a shared machine, not asserted.
    eprintln!("drained after {drained_after:?} (deadline {deadline:?})");
    // The interrupted call counted nothing; the state came across exact.
    assert_eq!(count(&registry), 1);
    assert_eq!(add(&registry, 1).expect("the new version serves"), 2);
}

#[test]
fn a_guest_pointer_out_of_bounds_is_a_typed_error() {
    let runtime = runtime(GENEROUS);
    let mut bad = Counter::new("1.0.0");
    bad.out_of_bounds = true;
    let registry = registry_with(&runtime, &bad);
    for _ in 0..3 {
        match add(&registry, 1) {
            Err(WasmError::OutOfBounds {
                entry: "call",
                ptr,
                len: 9,
                memory,
            }) => {
                assert_eq!(ptr, 0x7fff_0000);
                assert_eq!(memory, 65_536);
            }
            other => panic!("{other:?}"),
        }
    }
    // The version still serves what it can: its state is intact.
    assert_eq!(count(&registry), 3);
}

#[test]
fn modules_that_are_not_wasm_or_do_not_compile_are_refused_typed() {
    let runtime = runtime(GENEROUS);
    assert!(matches!(
        runtime.package(b"(module)".to_vec()).map(drop),
        Err(WasmError::Section(SectionError::NotWasm))
    ));
    // A valid header and manifest, then a code section of garbage.
    let mut broken = guests::with_manifest(
        b"\0asm\x01\0\0\0".to_vec(),
        "reload-manifest 1\nname counter\nversion 1.0.0\n",
    );
    broken.extend_from_slice(&[10, 3, 0xff, 0xff, 0xff]);
    assert!(matches!(
        runtime.package(broken).map(drop),
        Err(WasmError::Compile(_))
    ));
    // No manifest section at all.
    let bare = wat::parse_str("(module)").expect("wat");
    assert!(matches!(
        runtime.package(bare).map(drop),
        Err(WasmError::Section(SectionError::Missing(_)))
    ));
}

#[test]
fn a_module_missing_an_export_is_refused_before_instantiation() {
    let runtime = runtime(GENEROUS);
    let mut missing = Counter::new("1.1.0");
    missing.missing_export = true;
    match runtime.package(guests::counter(&missing)).map(drop) {
        Err(WasmError::MissingExport { name }) => assert_eq!(name, "count"),
        other => panic!("{other:?}"),
    }
    // And what the host requires of every version.
    let strict = Runtime::with_required(Limits::default(), &["count", "evaluate"]).expect("engine");
    match strict
        .package(guests::counter(&Counter::new("1.0.0")))
        .map(drop)
    {
        Err(WasmError::MissingExport { name }) => assert_eq!(name, "evaluate"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_restore_leaves_the_old_version_serving_with_its_state() {
    let runtime = runtime(GENEROUS);
    let registry = registry_with(&runtime, &Counter::new("1.0.0"));
    add(&registry, 1).expect("counted");
    add(&registry, 1).expect("counted");
    let mut failing = Counter::new("1.1.0");
    failing.fail_restore = true;
    let error = reload(&registry, &runtime, &failing).expect_err("refused");
    assert!(error.to_string().contains("restore refused"), "{error}");
    assert_eq!(add(&registry, 1).expect("the old version serves"), 3);
    assert_eq!(registry.list()[0].version.to_string(), "1.0.0");
}

#[test]
fn fuel_bounds_a_call_too() {
    let runtime = Runtime::new(Limits {
        fuel: Some(100_000),
        ..Limits::default()
    })
    .expect("engine");
    let mut looping = Counter::new("1.0.0");
    looping.loops = true;
    let registry = registry_with(&runtime, &looping);
    assert!(matches!(
        add(&registry, 0xff),
        Err(WasmError::OutOfFuel { entry: "call" })
    ));
    assert_eq!(add(&registry, 1).expect("serves on"), 1);
}

#[test]
fn memory_is_capped() {
    let runtime = runtime(GENEROUS);
    let text = r#"(module
      (memory (export "memory") 1)
      (data (i32.const 3072) "\01grow refused")
      (func (export "reload_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "reload_call") (param i32 i32) (result i64)
        (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1))
          (then (return (i64.or (i64.shl (i64.const 3072) (i64.const 32)) (i64.const 13)))))
        (i32.store8 (i32.const 2048) (i32.const 0))
        (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 1))))"#;
    let module = guests::with_manifest(
        wat::parse_str(text).expect("wat"),
        "reload-manifest 1\nname grower\nversion 1.0.0\n",
    );
    let mut plugin = runtime.package(module).expect("packages").into_plugin();
    reload_core::Hooks::link(&mut plugin).expect("links");
    match plugin.call(b"x") {
        Err(WasmError::Failed { message, .. }) => assert_eq!(message, "grow refused"),
        other => panic!("a 6.4 MB grow under a 1 MiB cap: {other:?}"),
    }
}

#[test]
fn a_stateless_guest_serves_many_threads_from_a_pool() {
    let runtime = runtime(GENEROUS);
    let registry: Registry<WasmPlugin> = Registry::new(Unchecked);
    let package = runtime.package(guests::score("1.0.0")).expect("packages");
    assert!(!package.plugin().is_stateful());
    registry.register(package, b"").expect("registered");
    let registry = Arc::new(registry);
    let threads: Vec<_> = (0..4i64)
        .map(|t| {
            let registry = Arc::clone(&registry);
            thread::spawn(move || {
                for x in (t * 1000)..(t * 1000 + 1000) {
                    let reply = registry
                        .call("score", |c| c.plugin().call(&x.to_le_bytes()))
                        .expect("registered")
                        .expect("scored");
                    assert_eq!(reply, (x * 31 + 7).to_le_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
}

#[test]
fn wasm_fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/wasm");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        if let Ok(section) = reload_core::wasm::manifest_section(&bytes) {
            let (start, base) = (section.as_ptr() as usize, bytes.as_ptr() as usize);
            assert!(start >= base && start + section.len() <= base + bytes.len());
        }
        replayed += 1;
    }
    assert!(replayed >= 5);
}

/// A guest built from `body` (functions after the shared memory layout),
/// with a manifest.
fn inline(body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
          (memory (export "memory") 1)
          (data (i32.const 3072) "\01init refused")
          (func (export "reload_alloc") (param i32) (result i32) (i32.const 1024))
          {body})"#
    );
    guests::with_manifest(
        wat::parse_str(&text).expect("wat"),
        "reload-manifest 1\nname inline\nversion 1.0.0\n",
    )
}

#[test]
fn garbage_replies_are_typed_errors() {
    let runtime = runtime(GENEROUS);
    // A status the ABI does not define.
    let bad_status = inline(
        r#"(func (export "reload_call") (param i32 i32) (result i64)
             (i32.store8 (i32.const 2048) (i32.const 7))
             (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 1)))"#,
    );
    let mut plugin = runtime.package(bad_status).expect("packages").into_plugin();
    reload_core::Hooks::link(&mut plugin).expect("links");
    assert!(matches!(
        plugin.call(b"x"),
        Err(WasmError::BadReply { entry: "call", .. })
    ));
    // An empty reply.
    let empty =
        inline(r#"(func (export "reload_call") (param i32 i32) (result i64) (i64.const 0))"#);
    let mut plugin = runtime.package(empty).expect("packages").into_plugin();
    reload_core::Hooks::link(&mut plugin).expect("links");
    assert!(matches!(plugin.call(b"x"), Err(WasmError::BadReply { .. })));
    // A description that does not decode: refused at link.
    let bad_describe = inline(
        r#"(func (export "reload_call") (param i32 i32) (result i64) (i64.const 0))
           (func (export "reload_describe") (result i64)
             (i32.store8 (i32.const 2048) (i32.const 0))
             (i32.store8 (i32.const 2049) (i32.const 1))
             (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 2)))"#,
    );
    let mut plugin = runtime
        .package(bad_describe)
        .expect("packages")
        .into_plugin();
    let error = reload_core::Hooks::link(&mut plugin).expect_err("garbage");
    assert!(matches!(
        error.downcast_ref::<WasmError>(),
        Some(WasmError::Garbage {
            entry: "describe",
            ..
        })
    ));
    // An export of the wrong type: refused before instantiation.
    let wrong_type =
        inline(r#"(func (export "reload_call") (param i32) (result i64) (i64.const 0))"#);
    assert!(matches!(
        runtime.package(wrong_type).map(drop),
        Err(WasmError::Signature {
            name: "reload_call",
            ..
        })
    ));
}

#[test]
fn init_gets_the_configuration_and_can_refuse() {
    let runtime = runtime(GENEROUS);
    // Accepts only a two-byte configuration; replies with its length.
    let module = inline(
        r#"(global $config (mut i32) (i32.const -1))
           (func (export "reload_init") (param $ptr i32) (param $len i32) (result i64)
             (if (i32.ne (local.get $len) (i32.const 2))
               (then (return (i64.or (i64.shl (i64.const 3072) (i64.const 32)) (i64.const 13)))))
             (global.set $config (local.get $len))
             (i32.store8 (i32.const 2048) (i32.const 0))
             (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 1)))
           (func (export "reload_call") (param i32 i32) (result i64)
             (i32.store8 (i32.const 2048) (i32.const 0))
             (i32.store (i32.const 2049) (global.get $config))
             (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 5)))"#,
    );
    let registry: Registry<WasmPlugin> = Registry::new(Unchecked);
    let refused = registry
        .register(runtime.package(module.clone()).expect("packages"), b"nope")
        .expect_err("init refuses");
    assert!(
        refused.error.to_string().contains("init refused"),
        "{}",
        refused.error
    );
    registry
        .register(runtime.package(module).expect("packages"), b"ok")
        .expect("registered");
    // Every pooled instance was initialized with the same configuration.
    let registry = Arc::new(registry);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let registry = Arc::clone(&registry);
            thread::spawn(move || {
                for _ in 0..200 {
                    let reply = registry
                        .call("inline", |c| c.plugin().call(b""))
                        .expect("registered")
                        .expect("served");
                    assert_eq!(reply, 2i32.to_le_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
}
