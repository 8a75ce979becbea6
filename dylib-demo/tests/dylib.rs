//! Native plugin libraries under CI: the demo at a smaller scale, and the
//! loader's refusals and private copies directly.

use std::fs;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dylib_demo::{build_plugins, run, Config, Libraries};
use reload_core::dylib::{DylibError, DylibPlugin, ElfError, Loader};
use reload_core::registry::{Registry, RegistryError};
use reload_core::verify::Unchecked;
use reload_core::{Plugin, ReloadOptions};

fn libs() -> &'static Libraries {
    static LIBS: OnceLock<Libraries> = OnceLock::new();
    LIBS.get_or_init(|| build_plugins().unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn file_triggered_reloads_under_calls_drop_nothing() {
    let config = Config {
        workers: 2,
        reloads: 24,
        broken_every: 6,
        slow_deploy: Some(8),
        debounce: Duration::from_millis(60),
        live: false,
    };
    let report = run(libs(), &config).unwrap_or_else(|e| panic!("{e}"));
    println!("{report:#?}");
    assert_eq!(report.dropped, 0, "no call dropped");
    assert_eq!(report.after_shutdown, 0, "no call on shut-down code");
    assert_eq!(report.wrong, 0);
    assert_eq!(report.refused_abi, 4, "each broken deploy refused");
    assert_eq!(report.reloaded, 20, "each good deploy reloaded");
    // The slow deploy may be seen settled while empty and while half
    // written (and, on a starved machine, part way through the rest): each
    // such state is refused before mapping and is not a reload.
    assert!(
        report.refused_incomplete <= 3,
        "{}",
        report.refused_incomplete
    );
    assert!(
        report.refused_other.is_empty(),
        "{:?}",
        report.refused_other
    );
    assert_eq!(report.drains.len(), 20);
    assert_eq!(report.copies_left, 0, "private copies cleaned up");
    assert_eq!(
        report.calls.len(),
        2,
        "both versions served: {:?}",
        report.calls
    );
    assert!(report.ok(&config));
}

fn call(plugin: &DylibPlugin, x: u64) -> u64 {
    let out = plugin.call(&x.to_le_bytes()).expect("a call");
    u64::from_le_bytes(out.try_into().expect("8 bytes"))
}

#[test]
fn the_same_path_reloaded_maps_a_new_library_each_time() {
    let dir = std::env::temp_dir().join(format!("reload-dylib-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let live = dir.join("libadder.so");
    let loader = Loader::in_dir(dir.join("copies")).expect("loader");
    fs::copy(&libs().v1, &live).expect("copy");
    let prepare =
        |path| match Plugin::new(loader.package(path).expect("package").into_plugin()).ready(b"") {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
    let old = prepare(&live);
    // Overwrite the same path in place: the old version keeps running its
    // own code from its private copy; the new one maps the new bytes.
    fs::copy(&libs().v2, &live).expect("copy");
    let new = prepare(&live);
    assert_eq!(call(old.get(), 20), 21);
    assert_eq!(call(new.get(), 20), 40);
    assert_ne!(old.get().path(), new.get().path());
    assert_eq!(loader.copies(), 2);
    drop((old, new));
    assert_eq!(
        loader.copies(),
        0,
        "each version deletes its copy when dropped"
    );
    drop(loader);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn broken_truncated_and_foreign_files_are_refused_typed() {
    let dir = std::env::temp_dir().join(format!("reload-dylib-refuse-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let loader = Loader::in_dir(dir.join("copies")).expect("loader");
    let registry: Registry<DylibPlugin> = Registry::new(Unchecked);
    registry
        .register(loader.package(&libs().v1).expect("v1"), b"")
        .expect("registered");

    // A future ABI: refused at link, the old version serving.
    let r = registry
        .reload(
            vec![loader.package(&libs().broken).expect("it packages")],
            b"",
            ReloadOptions::immediate(),
        )
        .expect_err("refused");
    match &r.error {
        RegistryError::Reload { fault, .. } => {
            let text = fault.to_string();
            assert!(
                text.contains("ABI mismatch: the ABI version is 0x3e7, this host expects 0x2"),
                "{text}"
            );
        }
        other => panic!("{other}"),
    }
    // The refused version comes back, with its private copy, until dropped.
    assert_eq!(r.packages.len(), 1);
    assert_eq!(loader.copies(), 2);
    drop(r);
    assert_eq!(loader.copies(), 1);
    let handle = registry.handle("adder").expect("registered");
    assert_eq!(handle.call(|c| call(c.plugin(), 1)).expect("served"), 2);
    // A plugin's own error comes back typed, with its message.
    let err = handle.call(|c| c.plugin().call(b"short")).expect("served");
    assert!(
        matches!(&err, Err(DylibError::Failed(m)) if m == "expects 8 bytes"),
        "{err:?}"
    );

    // Half a library: refused before anything is mapped.
    let bytes = fs::read(&libs().v2).expect("read");
    let half = dir.join("half.so");
    fs::write(&half, &bytes[..bytes.len() / 2]).expect("write");
    assert!(matches!(
        loader.package(&half),
        Err(DylibError::Elf {
            source: ElfError::Truncated { .. },
            ..
        })
    ));
    // Not a library at all, and a library with no manifest section.
    let text = dir.join("notes.so");
    fs::write(&text, b"not a library").expect("write");
    assert!(matches!(
        loader.package(&text),
        Err(DylibError::Elf {
            source: ElfError::NotElf,
            ..
        })
    ));
    let exe = std::env::current_exe().expect("path");
    assert!(matches!(
        loader.package(&exe),
        Err(DylibError::Elf {
            source: ElfError::NoSection(_),
            ..
        })
    ));
    assert_eq!(handle.call(|c| call(c.plugin(), 1)).expect("served"), 2);
    drop(handle);
    if let Some(last) = registry.unregister("adder").expect("unregistered") {
        last.wait().expect("shut down");
    }
    assert_eq!(loader.copies(), 0, "refused versions' copies are gone too");
    drop(loader);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn elf_fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/elf");
    let mut replayed = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = fs::read(&path).expect("read");
        let result = reload_core::dylib::manifest_section(&bytes);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name == "tiny-with-manifest" {
            let manifest =
                reload_core::manifest::Manifest::decode(result.expect("found")).expect("decodes");
            assert_eq!(manifest.name(), "x");
        } else {
            assert!(result.is_err(), "{name} accepted");
        }
        replayed += 1;
    }
    assert!(replayed >= 6);
}

#[test]
fn the_watcher_coalesces_bursts_sees_renames_and_ignores_reads() {
    use reload_core::dylib::Watcher;
    let dir = std::env::temp_dir().join(format!("reload-watch-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("libplugin.so");
    fs::write(&file, b"v0").expect("write");
    // The debounce is wide and the burst has no sleeps in it: on a starved
    // 2-core machine (CI compiling beside this test) a thread can be off the
    // CPU for tens of milliseconds, and a burst whose writes are further
    // apart than the debounce is, correctly, two changes. The coalescing
    // logic itself is tested without any timing in `watch.rs`.
    let debounce = Duration::from_millis(500);
    let watcher = Watcher::new(&file, debounce).expect("watcher");
    // Long enough for a second change to settle and be reported if there
    // were one (debounce, plus the stability look of half a debounce).
    let quiet = |what: &str| {
        assert_eq!(
            watcher.next_change(Duration::from_millis(1500)),
            None,
            "{what}"
        );
    };
    quiet("nothing happened yet");
    // A burst of writes in place: one change, if it was a burst. The
    // property is about writes closer together than the debounce; on a
    // starved machine this thread can be descheduled in the middle of the
    // loop for longer than that, and then two changes are the right answer.
    // So the test measures what it did and asserts what follows from it,
    // rather than hoping the scheduler was kind.
    let started = Instant::now();
    for i in 0..5 {
        fs::write(&file, format!("v{i}")).expect("write");
    }
    let burst = started.elapsed();
    let change = watcher
        .next_change(Duration::from_secs(20))
        .expect("a change");
    assert_eq!(change.path, file);
    if burst < debounce / 2 {
        assert!(change.events >= 2, "{change:?}");
        quiet("one change for the burst");
    } else {
        // Not a burst after all: every further change still reports the
        // file, and they end (at most one per write).
        let mut more = 0;
        while let Some(c) = watcher.next_change(Duration::from_millis(1500)) {
            assert_eq!(c.path, file);
            more += 1;
            assert!(more < 5, "more changes than writes");
        }
        eprintln!(
            "the burst took {burst:?} (debounce {debounce:?}): {} changes",
            more + 1
        );
    }
    assert_eq!(fs::read(&file).expect("read"), b"v4");
    // Reading the file (as the loader does) is not a change.
    for _ in 0..3 {
        fs::read(&file).expect("read");
    }
    quiet("reads are not changes");
    // An atomic rename over the file: one change. A write to another file
    // in the directory: none.
    fs::write(dir.join("other.so"), b"x").expect("write");
    fs::write(dir.join("libplugin.so.tmp"), b"v9").expect("write");
    fs::rename(dir.join("libplugin.so.tmp"), &file).expect("rename");
    assert!(
        watcher.next_change(Duration::from_secs(20)).is_some(),
        "the rename"
    );
    quiet("one change for the rename");
    assert_eq!(fs::read(&file).expect("read"), b"v9");
    drop(watcher);
    let _ = fs::remove_dir_all(&dir);
}

/// A library that lies in its replies gets a typed error for each lie,
/// never undefined behaviour in the host, and keeps serving honest calls.
#[test]
fn garbage_from_a_library_is_a_typed_error() {
    use reload_core::dylib::{DylibError, WireError};
    use reload_core::{Hooks, Stateful};

    let dir = std::env::temp_dir().join(format!("reload-dylib-garbage-{}", std::process::id()));
    let loader = Loader::in_dir(dir.join("copies")).expect("loader");
    let mut plugin = loader
        .package(&libs().garbage)
        .expect("packages")
        .into_plugin();
    plugin.link().expect("its description is valid");
    plugin.init(b"").expect("init");
    assert_eq!(plugin.resources().len(), 1);
    assert_eq!(plugin.schema(), 1);

    let lie = |input: &[u8]| plugin.call(input).expect_err("a lie");
    assert!(
        matches!(lie(b"len"), DylibError::Output { entry: "call", ref reason } if reason.contains("1000 bytes claimed")),
        "{}",
        lie(b"len")
    );
    assert!(matches!(
        lie(b"alloc"),
        DylibError::Output { entry: "call", .. }
    ));
    assert!(matches!(lie(b"status"), DylibError::Status(42)));
    assert_eq!(plugin.call(b"big").expect("a big reply").len(), 100_000);
    assert_eq!(plugin.call(b"honest").expect("echo"), b"honest");

    let boxed = |e: reload_core::BoxError| e.downcast::<DylibError>().expect("a DylibError");
    let save = boxed(Stateful::save(&plugin).expect_err("bad tag"));
    assert!(matches!(
        *save,
        DylibError::Garbage {
            entry: "save",
            source: WireError::BadTag { tag: 9, .. }
        }
    ));
    let checkpoint = boxed(Stateful::checkpoint(&plugin, "s").expect_err("three bytes"));
    assert!(matches!(
        *checkpoint,
        DylibError::Garbage {
            entry: "checkpoint",
            source: WireError::Truncated { .. }
        }
    ));
    let migrate = boxed(Stateful::migrate(&plugin, 0, vec![1]).expect_err("two bytes"));
    assert!(matches!(
        *migrate,
        DylibError::Garbage {
            entry: "migrate",
            ..
        }
    ));
    // Still serving.
    assert_eq!(plugin.call(b"after").expect("echo"), b"after");
    plugin.shutdown().expect("shutdown");
}
