//! WebAssembly components: typed state carried exactly across 100 reloads
//! under concurrent calls (a C guest built from source), versions refused
//! before instantiation (a missing export, an incompatible interface),
//! two interface versions of a host's own world served side by side,
//! garbage components, traps, deadlines, fuel and lying guests each a
//! typed error, and what a failure does to a stateful instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use reload_core::registry::{Registry, RegistryError};
use reload_core::verify::Unchecked;
use reload_core::wasm::component::{ComponentPlugin, ComponentRuntime, PluginWorld, World};
use reload_core::wasm::{Limits, SectionError, WasmError};
use reload_core::{ReloadOptions, Stateful};
use wasm_demo::udf::{eval, eval_with, Logged, UdfWorld};
use wasm_guests::{plugin_wit, wat, with_manifest};

/// A deadline no call here means to reach.
const GENEROUS: Duration = Duration::from_secs(30);

fn limits(deadline: Duration) -> Limits {
    Limits {
        deadline,
        memory: 16 << 20,
        ..Limits::default()
    }
}

fn quiesced() -> ReloadOptions {
    ReloadOptions::quiesced(Duration::from_secs(60))
}

fn manifest(name: &str, version: &str, exports: &[&str]) -> String {
    let mut m = format!("reload-manifest 1\nname {name}\nversion {version}\n");
    for e in exports {
        m.push_str(&format!("export {e}\n"));
    }
    m
}

/// The C counter at `schema` (1: decimal text state, 2: 8 bytes, migrating
/// from 1), or `None` with the reason printed if clang is missing.
fn counter(schema: u32) -> Option<Vec<u8>> {
    wasm_guests::c_or_skip(
        "counter.c",
        &plugin_wit(),
        "stateful-plugin",
        &[&format!("COUNTER_SCHEMA={schema}")],
    )
}

/// A registry serving `bytes` as plugin `name` 1.0.0 (no exports listed).
fn serving<W: World>(
    runtime: &ComponentRuntime<W>,
    bytes: &[u8],
    name: &str,
) -> Registry<ComponentPlugin<W>> {
    let registry = Registry::new(Unchecked);
    let package = runtime
        .package(with_manifest(bytes, &manifest(name, "1.0.0", &[])))
        .expect("packages");
    registry.register(package, b"").expect("registered");
    registry
}

fn add(plugin: &ComponentPlugin<PluginWorld>, amount: u64) -> Result<u64, WasmError> {
    let reply = plugin.call(&amount.to_le_bytes())?;
    Ok(u64::from_le_bytes(reply[..8].try_into().expect("8 bytes")))
}

#[allow(clippy::result_large_err)]
fn reload(
    registry: &Registry<ComponentPlugin<PluginWorld>>,
    runtime: &ComponentRuntime<PluginWorld>,
    bytes: Vec<u8>,
) -> Result<(), RegistryError> {
    let package = runtime.package(bytes).expect("packages");
    let report = registry
        .reload(vec![package], b"", quiesced())
        .map_err(|r| r.error)?;
    for change in report.changes {
        change.committed.old.wait().expect("drained and shut down");
    }
    Ok(())
}

#[test]
fn typed_state_is_carried_exactly_across_100_reloads_under_concurrent_calls() {
    let (Some(v1), Some(v2)) = (counter(1), counter(2)) else {
        return;
    };
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    let registry = Arc::new(Registry::new(Unchecked));
    let first = runtime
        .package(with_manifest(&v1, &manifest("counter", "1.0.0", &["call"])))
        .expect("packages");
    assert!(first.plugin().is_stateful());
    registry.register(first, b"").expect("registered");

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (registry, stop) = (Arc::clone(&registry), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut done, mut last) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) || done < 50 {
                    let total = registry
                        .call("counter", |c| add(c.plugin(), 1))
                        .expect("registered")
                        .expect("every call is served");
                    // Totals only grow: no update is lost or undone.
                    assert!(total > last, "{total} after {last}");
                    last = total;
                    done += 1;
                }
                done
            })
        })
        .collect();
    // Schema 1 to 2 at the first reload (migrated), then 2 to 2.
    for i in 1..=100 {
        let m = manifest("counter", &format!("1.{i}.0"), &["call"]);
        reload(&registry, &runtime, with_manifest(&v2, &m)).expect("reloaded");
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = callers.into_iter().map(|t| t.join().expect("caller")).sum();
    let total = registry
        .call("counter", |c| add(c.plugin(), 0))
        .expect("registered")
        .expect("read");
    assert_eq!(total, calls, "every call counted exactly once");
    let saved = registry
        .call("counter", |c| Stateful::save(c.plugin()).expect("saves"))
        .expect("registered")
        .expect("has state");
    assert_eq!(saved, calls.to_le_bytes(), "schema 2: 8 bytes");
    assert_eq!(registry.list()[0].version.to_string(), "1.100.0");
}

#[test]
fn state_migrates_from_an_older_schema_and_never_from_a_newer_one() {
    let (Some(v1), Some(v2)) = (counter(1), counter(2)) else {
        return;
    };
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    let registry = serving(&runtime, &v1, "counter");
    registry
        .call("counter", |c| add(c.plugin(), 41))
        .expect("in")
        .expect("added");
    let saved = registry
        .call("counter", |c| Stateful::save(c.plugin()).expect("saves"))
        .expect("in");
    assert_eq!(
        saved.as_deref(),
        Some(&b"41"[..]),
        "schema 1 is decimal text"
    );
    reload(
        &registry,
        &runtime,
        with_manifest(&v2, &manifest("counter", "2.0.0", &[])),
    )
    .expect("migrated 1 -> 2");
    assert_eq!(
        registry
            .call("counter", |c| add(c.plugin(), 1))
            .expect("in")
            .expect("+1"),
        42
    );
    // Back to schema 1: newer state is refused, and 2.0.0 serves on.
    let back = reload(
        &registry,
        &runtime,
        with_manifest(&v1, &manifest("counter", "1.1.0", &[])),
    );
    assert!(back.is_err(), "{back:?}");
    assert_eq!(registry.list()[0].version.to_string(), "2.0.0");
    assert_eq!(
        registry
            .call("counter", |c| add(c.plugin(), 0))
            .expect("in")
            .expect("read"),
        42
    );
}

#[test]
fn init_gets_the_configuration_and_can_refuse() {
    let Some(v2) = counter(2) else { return };
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    let registry = Registry::new(Unchecked);
    let bytes = with_manifest(&v2, &manifest("counter", "1.0.0", &[]));
    let refused = registry.register(runtime.package(bytes.clone()).expect("packages"), b"refuse");
    let error = refused.expect_err("init refuses").error.to_string();
    assert!(error.contains("the configuration says refuse"), "{error}");
    assert!(!registry.contains("counter"));
    registry
        .register(runtime.package(bytes).expect("packages"), b"")
        .expect("registered");
}

#[test]
fn a_version_lacking_an_export_dependents_use_is_refused_before_instantiation() {
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    // The manifest promises `eval`; the component exports only `call`.
    let bytes = with_manifest(&wat::echo(), &manifest("echo", "1.0.0", &["call", "eval"]));
    match runtime.package(bytes) {
        Err(WasmError::MissingExport { name }) => assert_eq!(name, "eval"),
        other => panic!("{other:?}"),
    }
    // And through the registry: a dependent uses `call` of `echo`; a new
    // `echo` whose manifest drops it is refused with the old one serving.
    let registry = Registry::new(Unchecked);
    let echo = runtime
        .package(with_manifest(
            &wat::echo(),
            &manifest("echo", "1.0.0", &["call"]),
        ))
        .expect("packages");
    registry.register(echo, b"").expect("registered");
    let user = "reload-manifest 1\nname user\nversion 1.0.0\nrequires echo >=1.0.0 uses call\n";
    let user = runtime
        .package(with_manifest(&wat::echo(), user))
        .expect("packages");
    registry.register(user, b"").expect("registered");
    let without = runtime
        .package(with_manifest(&wat::echo(), &manifest("echo", "1.1.0", &[])))
        .expect("packages");
    let refused = registry.reload(vec![without], b"", quiesced());
    assert!(refused.is_err());
    assert_eq!(
        registry
            .list()
            .iter()
            .find(|p| p.name == "echo")
            .expect("echo")
            .version
            .to_string(),
        "1.0.0"
    );
    let reply = registry
        .call("echo", |c| c.plugin().call(b"hi"))
        .expect("in")
        .expect("served");
    assert_eq!(reply, b"hi");
}

#[test]
fn a_component_of_another_world_is_refused_before_instantiation() {
    // A `my:udf` guest offered where `reload:plugin` is wanted.
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    let bytes = with_manifest(&wat::udf("1.0.0"), &manifest("udf", "1.0.0", &[]));
    match runtime.package(bytes) {
        Err(WasmError::Incompatible { wanted, found }) => {
            assert!(wanted.contains("reload:plugin/guest@0.1.0"), "{wanted}");
            assert!(found.contains("my:udf/scalar@1.0.0"), "{found}");
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------
// A host's own world (`wasm_demo::udf`), at two interface versions.

fn udf_runtime(deadline: Duration, fuel: Option<u64>) -> (ComponentRuntime<UdfWorld>, Logged) {
    let logged = Logged::default();
    let world = UdfWorld {
        logged: logged.clone(),
        panic_in_bind: false,
    };
    let limits = Limits {
        fuel,
        ..limits(deadline)
    };
    (
        ComponentRuntime::new(limits, world).expect("engine"),
        logged,
    )
}

#[test]
fn two_interface_versions_are_served_side_by_side() {
    let (runtime, logged) = udf_runtime(GENEROUS, None);
    let registry = Registry::new(Unchecked);
    for (name, version) in [("old", "1.0.0"), ("new", "1.1.0")] {
        let package = runtime
            .package(with_manifest(
                &wat::udf(version),
                &manifest(name, "1.0.0", &["eval"]),
            ))
            .expect("packages");
        registry.register(package, b"").expect("registered");
    }
    let call = |name: &str, f: &dyn Fn(&ComponentPlugin<UdfWorld>) -> Result<i64, WasmError>| {
        registry
            .call(name, |c| f(c.plugin()))
            .expect("in")
            .expect("served")
    };
    assert_eq!(
        registry.call("old", |c| c.plugin().binding()).expect("in"),
        "1.0"
    );
    assert_eq!(
        registry.call("new", |c| c.plugin().binding()).expect("in"),
        "1.1"
    );
    assert_eq!(call("old", &|p| eval(p, 21)), 42);
    assert_eq!(call("new", &|p| eval(p, 21)), 42);
    assert_eq!(call("old", &|p| eval_with(p, 5, 3)), 30);
    assert_eq!(call("new", &|p| eval_with(p, 5, 3)), 30);
    assert_eq!(logged.count(), 4, "each guest called the host");
    // A 1.0 guest reloaded to 1.1 under the same name changes binding.
    let package = runtime
        .package(with_manifest(
            &wat::udf("1.1.0"),
            &manifest("old", "2.0.0", &["eval"]),
        ))
        .expect("packages");
    registry
        .reload(vec![package], b"", quiesced())
        .expect("reloaded");
    assert_eq!(
        registry.call("old", |c| c.plugin().binding()).expect("in"),
        "1.1"
    );
}

#[test]
fn an_incompatible_interface_version_is_refused_with_the_old_one_serving() {
    let (runtime, _) = udf_runtime(GENEROUS, None);
    let registry = Registry::new(Unchecked);
    let package = runtime
        .package(with_manifest(
            &wat::udf("1.0.0"),
            &manifest("udf", "1.0.0", &[]),
        ))
        .expect("packages");
    registry.register(package, b"").expect("registered");
    // A major version no binding was made for, and a minor older than the
    // oldest binding of its line: both refused at packaging, typed.
    for version in ["2.0.0", "0.9.0"] {
        let bytes = with_manifest(&wat::udf_at(version), &manifest("udf", "1.1.0", &[]));
        match runtime.package(bytes) {
            Err(WasmError::Incompatible { wanted, found }) => {
                assert!(wanted.contains("1.1 (my:udf/scalar@1.1.0)"), "{wanted}");
                assert!(
                    found.contains(&format!("my:udf/scalar@{version}")),
                    "{found}"
                );
            }
            other => panic!("{version}: {other:?}"),
        }
    }
    // A newer patch of a bound line is compatible (semver).
    let patch = with_manifest(&wat::udf_at("1.0.7"), &manifest("udf", "1.0.1", &[]));
    let package = runtime.package(patch).expect("1.0.7 binds as 1.0");
    assert_eq!(package.plugin().binding(), "1.0");
    assert_eq!(
        registry
            .call("udf", |c| eval(c.plugin(), 2))
            .expect("in")
            .expect("ok"),
        4
    );
}

#[test]
fn the_host_worlds_own_panics_are_contained() {
    let world = UdfWorld {
        logged: Logged::default(),
        panic_in_bind: true,
    };
    let runtime = ComponentRuntime::new(limits(GENEROUS), world).expect("engine");
    let registry = Registry::new(Unchecked);
    let package = runtime
        .package(with_manifest(
            &wat::udf("1.0.0"),
            &manifest("udf", "1.0.0", &[]),
        ))
        .expect("packages: bind runs at link");
    let refused = registry.register(package, b"").expect_err("link fails");
    let error = refused.error.to_string();
    assert!(error.contains("the host's bind panics"), "{error}");
    assert!(!registry.contains("udf"));
}

#[test]
fn a_host_function_that_panics_fails_the_call_and_the_version_serves_on() {
    let world = UdfWorld {
        logged: Logged::panicking_on(13),
        panic_in_bind: false,
    };
    let runtime = ComponentRuntime::new(limits(GENEROUS), world).expect("engine");
    let registry = Registry::new(Unchecked);
    let package = runtime
        .package(with_manifest(
            &wat::udf("1.1.0"),
            &manifest("udf", "1.0.0", &[]),
        ))
        .expect("packages");
    registry.register(package, b"").expect("registered");
    let on = |x| registry.call("udf", |c| eval(c.plugin(), x)).expect("in");
    match on(13) {
        Err(WasmError::Trap {
            entry: "call",
            message,
        }) => {
            assert!(message.contains("the host's log panics"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        registry.stats().per_plugin["udf"].in_flight,
        0,
        "the lease went back"
    );
    assert_eq!(on(4).expect("serves on"), 8);
}

#[test]
fn traps_deadlines_and_fuel_are_typed_and_a_stateless_version_serves_on() {
    let deadline = Duration::from_secs(1);
    let (runtime, _) = udf_runtime(deadline, None);
    let package = runtime
        .package(with_manifest(
            &wat::udf("1.0.0"),
            &manifest("udf", "1.0.0", &[]),
        ))
        .expect("packages");
    let registry = Registry::new(Unchecked);
    registry.register(package, b"").expect("registered");
    let on = |x| registry.call("udf", |c| eval(c.plugin(), x)).expect("in");
    match on(-1) {
        Err(WasmError::Trap {
            entry: "call",
            message,
        }) => {
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(on(4).expect("serves on after a trap"), 8);
    match on(-2) {
        Err(WasmError::Interrupted {
            entry: "call",
            deadline: d,
        }) => assert_eq!(d, deadline),
        other => panic!("{other:?}"),
    }
    assert_eq!(on(5).expect("serves on after an interrupt"), 10);

    let (fuelled, _) = udf_runtime(GENEROUS, Some(100_000));
    let package = fuelled
        .package(with_manifest(
            &wat::udf("1.0.0"),
            &manifest("udf", "1.0.0", &[]),
        ))
        .expect("packages");
    let registry = Registry::new(Unchecked);
    registry.register(package, b"").expect("registered");
    let on = |x| registry.call("udf", |c| eval(c.plugin(), x)).expect("in");
    assert!(matches!(
        on(-2),
        Err(WasmError::OutOfFuel { entry: "call" })
    ));
    assert_eq!(on(6).expect("serves on after its fuel ran out"), 12);
}

#[test]
fn a_guest_that_lies_about_its_reply_is_a_typed_error() {
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    let registry = Registry::new(Unchecked);
    let package = runtime
        .package(with_manifest(&wat::echo(), &manifest("echo", "1.0.0", &[])))
        .expect("packages");
    assert!(!package.plugin().is_stateful());
    registry.register(package, b"").expect("registered");
    let call = |input: &[u8]| {
        registry
            .call("echo", |c| c.plugin().call(input))
            .expect("in")
    };
    assert_eq!(call(b"abc").expect("echoes"), b"abc");
    match call(b"lie") {
        Err(WasmError::Trap {
            entry: "call",
            message,
        }) => {
            assert!(message.contains("out of bounds"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call(b"again").expect("a fresh instance serves"), b"again");
}

#[test]
fn a_stateful_instance_lost_to_a_trap_is_poisoned_until_a_reload_that_forgets_its_state() {
    let Some(v2) = counter(2) else { return };
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    let registry = serving(&runtime, &v2, "counter");
    registry
        .call("counter", |c| add(c.plugin(), 7))
        .expect("in")
        .expect("added");
    let trapped = registry
        .call("counter", |c| c.plugin().call(b"trap"))
        .expect("in");
    assert!(
        matches!(trapped, Err(WasmError::Trap { entry: "call", .. })),
        "{trapped:?}"
    );
    // Lost, typed, naming the trap: for calls and for `save`.
    match registry
        .call("counter", |c| add(c.plugin(), 1))
        .expect("in")
    {
        Err(WasmError::Poisoned { cause }) => assert!(cause.contains("trapped"), "{cause}"),
        other => panic!("{other:?}"),
    }
    // The guest's own error is a reply, not a failure: shown on a fresh
    // version below. A reload cannot save the lost state: refused, nothing
    // dropped silently.
    let next = with_manifest(&v2, &manifest("counter", "1.1.0", &[]));
    let refused = reload(&registry, &runtime, next.clone());
    let error = refused.expect_err("the state is lost").to_string();
    assert!(error.contains("lost to an earlier failure"), "{error}");
    assert_eq!(registry.list()[0].version.to_string(), "1.0.0");
    // The host accepts the loss: the next version starts from no state.
    registry
        .call("counter", |c| c.plugin().forget_lost_state())
        .expect("in");
    reload(&registry, &runtime, next).expect("reloaded without state");
    assert_eq!(
        registry
            .call("counter", |c| add(c.plugin(), 1))
            .expect("in")
            .expect("+1"),
        1
    );
    let failed = registry
        .call("counter", |c| c.plugin().call(b"fail"))
        .expect("in");
    assert!(
        matches!(&failed, Err(WasmError::Failed { entry: "call", message }) if message == "asked to fail"),
        "{failed:?}"
    );
    assert_eq!(
        registry
            .call("counter", |c| add(c.plugin(), 1))
            .expect("in")
            .expect("serves on"),
        2
    );
}

#[test]
fn a_stateful_call_past_its_deadline_loses_the_instance_but_not_the_drain() {
    let Some(v2) = counter(2) else { return };
    let deadline = Duration::from_secs(1);
    let runtime = ComponentRuntime::plugins(limits(deadline)).expect("engine");
    let registry = Arc::new(Registry::new(Unchecked));
    let package = runtime
        .package(with_manifest(&v2, &manifest("counter", "1.0.0", &[])))
        .expect("packages");
    registry.register(package, b"").expect("registered");
    let looping = registry
        .call("counter", |c| c.plugin().call(b"loop"))
        .expect("in");
    assert!(
        matches!(looping, Err(WasmError::Interrupted { entry: "call", deadline: d }) if d == deadline),
        "{looping:?}"
    );
    assert!(registry
        .call("counter", |c| c.plugin().lost())
        .expect("in")
        .is_some());
}

#[test]
fn garbage_and_mutated_components_are_typed_errors() {
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    assert!(matches!(
        runtime.package(b"not wasm".to_vec()),
        Err(WasmError::Section(SectionError::NotWasm))
    ));
    // A component without a manifest.
    assert!(matches!(
        runtime.package(wat::echo()),
        Err(WasmError::Section(SectionError::Missing(_)))
    ));
    // A core module offered as a component.
    let core = with_manifest(&wat_module(), &manifest("m", "1.0.0", &[]));
    assert!(matches!(runtime.package(core), Err(WasmError::Compile(_))));
    // Every byte of a real component flipped in turn: a typed error or a
    // package, never a panic.
    let good = with_manifest(&wat::echo(), &manifest("echo", "1.0.0", &[]));
    let mut refused = 0;
    for at in (8..good.len()).step_by(29) {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        if runtime.package(bad).is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0);
}

/// The smallest core module.
fn wat_module() -> Vec<u8> {
    b"\0asm\x01\0\0\0".to_vec()
}

/// The `wasm` fuzz target's seed component is the echo guest with its
/// manifest, rebuilt here from its WAT (`BLESS_SEED=1` writes it anew).
#[test]
fn the_fuzz_seed_is_the_echo_guest() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/echo.component.wasm");
    let built = with_manifest(&wat::echo(), &manifest("echo", "1.0.0", &["call"]));
    if std::env::var_os("BLESS_SEED").is_some() {
        std::fs::write(&path, &built).expect("writes the seed");
    }
    let seed = std::fs::read(&path).expect("the seed");
    assert_eq!(
        seed, built,
        "fuzz/seeds/echo.component.wasm is stale: BLESS_SEED=1"
    );
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    runtime.package(seed).expect("the seed packages");
}

/// The `wasm` fuzz target's regressions, through component loading: each
/// as it is and as mutations of the seed, a value or a typed error.
#[test]
fn wasm_fuzz_regressions_replay_through_component_loading() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let seed = std::fs::read(root.join("seeds/echo.component.wasm")).expect("the seed");
    let runtime = ComponentRuntime::plugins(Limits {
        deadline: Duration::from_millis(50),
        fuel: Some(1_000_000),
        memory: 8 << 20,
        pool: 1,
    })
    .expect("engine");
    let mut replayed = 0;
    for entry in std::fs::read_dir(root.join("regressions/wasm")).expect("regressions") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).expect("read");
        let mut mutated = seed.clone();
        for m in data.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([m[0], m[1]])) % mutated.len();
            mutated[at] ^= m[2];
        }
        for bytes in [data, mutated] {
            if let Ok(package) = runtime.package(bytes) {
                if let Ok(plugin) = reload_core::Plugin::new(package.into_plugin()).ready(&b""[..])
                {
                    let _ = plugin.get().call(b"input");
                }
            }
        }
        replayed += 1;
    }
    assert!(replayed >= 5, "{replayed}");
}

/// A core module and components of two worlds on one engine and ticker.
#[test]
fn core_modules_and_components_share_one_engine() {
    let core = reload_core::wasm::Runtime::new(limits(GENEROUS)).expect("engine");
    let plugins = ComponentRuntime::on(&core, PluginWorld).expect("plugins");
    let udfs = ComponentRuntime::on(&core, UdfWorld::default()).expect("udfs");
    let modules = Registry::new(Unchecked);
    modules
        .register(
            core.package(wasm_demo::guests::score("1.0.0"))
                .expect("a module"),
            b"",
        )
        .expect("registered");
    let echo = Registry::new(Unchecked);
    echo.register(
        plugins
            .package(with_manifest(&wat::echo(), &manifest("echo", "1.0.0", &[])))
            .expect("a component"),
        b"",
    )
    .expect("registered");
    let typed = Registry::new(Unchecked);
    typed
        .register(
            udfs.package(with_manifest(
                &wat::score_udf(),
                &manifest("udf", "1.0.0", &[]),
            ))
            .expect("a typed component"),
            b"",
        )
        .expect("registered");
    let x = 2i64;
    let module = modules
        .call("score", |c| c.plugin().call(&x.to_le_bytes()))
        .expect("in")
        .expect("ok");
    assert_eq!(module[..8], 69i64.to_le_bytes());
    assert_eq!(
        echo.call("echo", |c| c.plugin().call(b"x"))
            .expect("in")
            .expect("ok"),
        b"x"
    );
    assert_eq!(
        typed
            .call("udf", |c| eval(c.plugin(), x))
            .expect("in")
            .expect("ok"),
        69
    );
    // A core module offered to a component runtime, and the reverse.
    assert!(matches!(
        plugins.package(wasm_demo::guests::score("1.0.0")),
        Err(WasmError::Compile(_))
    ));
    assert!(core
        .package(with_manifest(&wat::echo(), &manifest("e", "1.0.0", &[])))
        .is_err());
}

/// A world with no binding, one whose `link` fails, and one whose
/// `bindings` panics: each refused when the runtime is made, typed.
#[test]
fn a_broken_world_is_refused_when_the_runtime_is_made() {
    use reload_core::wasm::component::{Binding, Host, World};
    use reload_core::wasm::wasmtime::component::{Instance, Linker};
    use reload_core::wasm::wasmtime::StoreContextMut;

    struct Broken(u8);
    impl World for Broken {
        type Bindings = ();
        type Data = ();
        fn bindings(&self) -> Vec<Binding> {
            match self.0 {
                0 => Vec::new(),
                1 => vec![Binding::new("1", &["a:b/c@1.0.0"])],
                _ => panic!("the host's bindings panic"),
            }
        }
        fn data(&self) {}
        fn link(
            &self,
            _: usize,
            _: &mut Linker<Host<()>>,
        ) -> reload_core::wasm::wasmtime::Result<()> {
            Err(reload_core::wasm::wasmtime::Error::msg(
                "no such host function",
            ))
        }
        fn bind(
            &self,
            _: usize,
            _: StoreContextMut<'_, Host<()>>,
            _: &Instance,
        ) -> reload_core::wasm::wasmtime::Result<()> {
            Ok(())
        }
    }
    for (kind, says) in [
        (0, "declares no binding"),
        (1, "no such host function"),
        (2, "the host's bindings panic"),
    ] {
        match ComponentRuntime::new(limits(GENEROUS), Broken(kind)) {
            Err(WasmError::Imports(message)) => assert!(message.contains(says), "{message}"),
            other => panic!("{kind}: {other:?}"),
        }
    }
}

/// The edges of `Limits` on components: a memory cap below what the guest
/// needs refuses the version at `link`, typed, with nothing registered; a
/// pool of 0 makes every call's instance; a zero deadline interrupts a
/// spinning call.
#[test]
fn limits_at_their_edges_hold_for_components() {
    let tiny = ComponentRuntime::plugins(Limits {
        memory: 0,
        ..limits(GENEROUS)
    })
    .expect("engine");
    let registry = Registry::new(Unchecked);
    let package = tiny
        .package(with_manifest(&wat::echo(), &manifest("echo", "1.0.0", &[])))
        .expect("packages: memory is met at instantiation");
    let refused = registry
        .register(package, b"")
        .expect_err("no instance fits");
    let error = refused.error.to_string();
    assert!(error.contains("instantiate"), "{error}");
    assert!(!registry.contains("echo"));

    let unpooled = ComponentRuntime::plugins(Limits {
        pool: 0,
        deadline: Duration::ZERO,
        ..limits(GENEROUS)
    })
    .expect("engine");
    let registry = Registry::new(Unchecked);
    let package = unpooled
        .package(with_manifest(&wat::echo(), &manifest("echo", "1.0.0", &[])))
        .expect("packages");
    match registry.register(package, b"") {
        // Instantiating may itself outlast a zero deadline: typed either way.
        Err(refused) => {
            let error = refused.error.to_string();
            assert!(error.contains("interrupted"), "{error}");
        }
        Ok(()) => {
            let spun = registry
                .call("echo", |c| c.plugin().call(b"loop"))
                .expect("in");
            assert!(
                matches!(spun, Err(WasmError::Interrupted { .. })),
                "{spun:?}"
            );
        }
    }
}

/// Resources through `reload:plugin/resources` (a C guest): an index
/// persisted by the old version and opened by the new, a stream
/// checkpointed and resumed, the state beside them; a new version that
/// refuses the handover at `check-compat` leaves the old one serving with
/// everything it had.
#[test]
fn resources_are_handed_over_typed_and_a_refused_handover_changes_nothing() {
    use reload_core::{Resource, ResourceKind};

    let Some(indexed) = wasm_guests::c_or_skip("indexed.c", &plugin_wit(), "resource-plugin", &[])
    else {
        return;
    };
    let runtime = ComponentRuntime::plugins(limits(GENEROUS)).expect("engine");
    let registry = Registry::new(Unchecked);
    let package = runtime
        .package(with_manifest(&indexed, &manifest("indexed", "1.0.0", &[])))
        .expect("packages");
    assert!(package.plugin().is_stateful());
    registry.register(package, b"").expect("registered");
    let read = |input: &[u8]| -> [u64; 3] {
        let reply = registry
            .call("indexed", |c| c.plugin().call(input))
            .expect("in")
            .expect("served");
        let word = |i: usize| u64::from_le_bytes(reply[i * 8..i * 8 + 8].try_into().expect("8"));
        [word(0), word(1), word(2)]
    };
    assert_eq!(read(&5u64.to_le_bytes()), [5, 5, 1]);
    assert_eq!(read(&7u64.to_le_bytes()), [12, 12, 2]);
    let resources = registry
        .call("indexed", |c| Stateful::resources(c.plugin()))
        .expect("in");
    assert_eq!(
        resources,
        vec![
            Resource {
                name: "idx".into(),
                kind: ResourceKind::Index,
                schema: 1
            },
            Resource {
                name: "feed".into(),
                kind: ResourceKind::Stream,
                schema: 1
            },
        ]
    );
    let next = |v: &str| {
        runtime
            .package(with_manifest(&indexed, &manifest("indexed", v, &[])))
            .expect("packages")
    };
    // Handed over: total (state), the index's sum (persisted, opened),
    // the stream's position (checkpointed, resumed).
    registry
        .reload(vec![next("1.1.0")], b"", quiesced())
        .map_err(|r| r.error)
        .expect("reloaded");
    assert_eq!(read(&[]), [12, 12, 2]);
    // A version that refuses the handover: refused, 1.1.0 serves on with
    // its state and resources.
    let refused = registry.reload(vec![next("1.2.0")], b"reject", quiesced());
    let error = refused.expect_err("check-compat refuses").error.to_string();
    assert!(error.contains("cannot read that index"), "{error}");
    assert_eq!(registry.list()[0].version.to_string(), "1.1.0");
    assert_eq!(read(&1u64.to_le_bytes()), [13, 13, 3]);
}
