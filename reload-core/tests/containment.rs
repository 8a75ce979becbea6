//! Every call into code the library did not write is contained: a panic in
//! a plugin's `name`, `version` or `Drop`, in a verifier or a source,
//! becomes a typed, labelled error or a recorded fault; no operation
//! unwinds after it changed what the slot serves; nothing taken off a list
//! is forgotten. One test per entry point.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reload_core::registry::{Package, Registry, RegistryError};
use reload_core::testing::{Faults, Ledger, Part, Parts, Probe, Record};
use reload_core::verify::{Unchecked, VerifyError};
use reload_core::{
    CallError, Event, Hook, Initialized, Plugin, ReloadFault, ReloadOptions, Returned, Slot,
};

fn probe(id: u64, ledger: &Arc<Ledger>, faults: Faults) -> Plugin<Probe, Initialized> {
    Plugin::new(Probe::with_faults(id, ledger, faults))
        .ready(&())
        .expect("link and init do not ask for the name")
}

fn ready(id: u64, ledger: &Arc<Ledger>) -> Plugin<Probe, Initialized> {
    Probe::ready(id, ledger)
}

fn name_panics() -> Faults {
    Faults {
        panic_name_from: Some(1),
        ..Faults::default()
    }
}

fn drop_panics() -> Faults {
    Faults {
        panic_drop: true,
        ..Faults::default()
    }
}

fn once() -> Record {
    Record::finalized_once(0)
}

#[test]
fn slot_new_with_a_panicking_name_hands_the_plugin_back() {
    let ledger = Ledger::new();
    let err = match Slot::try_new(probe(1, &ledger, name_panics())) {
        Ok(_) => panic!("a slot needs the plugin's name"),
        Err(e) => e,
    };
    assert_eq!(err.failure().hook, Hook::Name);
    assert!(err.failure().is_panic());
    assert_eq!(err.failure().version, "1");
    let plugin = err.into_inner();
    assert_eq!(plugin.get().id(), 1);
    drop(plugin);
    assert_eq!(ledger.records()[&1].drops, 1);
}

#[test]
fn replace_with_a_panicking_name_is_refused_and_the_old_version_serves_on() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let err = slot
        .replace(probe(2, &ledger, name_panics()))
        .expect_err("a version without a name is refused");
    assert!(
        matches!(err.fault(), ReloadFault::Hook(f) if f.hook == Hook::Name && f.is_panic()),
        "{err:?}"
    );
    match err.into_returned().into_initialized() {
        Ok(plugin) => assert_eq!(plugin.get().id(), 2, "the new version comes back"),
        Err(other) => panic!("handed back in the wrong phase: {other:?}"),
    }
    assert_eq!(slot.generation(), Some(1));
    assert_eq!(slot.enter().expect("open").call(), 1);
    assert_eq!(slot.stats().failed_reloads, 1);
    // And the next good version goes in.
    drop(slot.replace(ready(3, &ledger)).expect("replace"));
    assert_eq!(slot.enter().expect("open").call(), 3);
}

#[test]
fn reload_with_a_panicking_name_is_a_typed_error() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let next = Plugin::new(Probe::with_faults(2, &ledger, name_panics()));
    let err = slot.reload(next, &()).expect_err("refused");
    assert_eq!(err.hook_failure().map(|f| f.hook), Some(Hook::Name));
    assert!(matches!(err.plugin(), Returned::Initialized(p) if p.get().id() == 2));
    assert_eq!(slot.enter().expect("open").call(), 1);
}

#[test]
fn prepare_with_a_panicking_name_is_a_hook_fault() {
    let ledger = Ledger::new();
    let slot = Slot::new(ready(1, &ledger));
    let next = Plugin::new(Probe::with_faults(2, &ledger, name_panics()));
    let failed = match slot.prepare(next, &(), ReloadOptions::immediate()) {
        Ok(_) => panic!("a version without a name cannot be prepared"),
        Err(failed) => failed,
    };
    assert!(
        matches!(failed.fault(), ReloadFault::Hook(f) if f.hook == Hook::Name && f.is_panic()),
        "{:?}",
        failed.fault()
    );
    // The library's name for the plugin, not the plugin's (which panics).
    assert_eq!(failed.plugin_name(), "probe");
    assert!(matches!(failed.plugin(), Returned::Loaded(p) if p.get().id() == 2));
    assert_eq!(slot.enter().expect("open").call(), 1);
}

#[test]
fn a_call_that_panics_in_a_plugin_whose_version_panics_too_is_labelled() {
    let ledger = Ledger::new();
    let faults = Faults {
        panic_every: Some(1),
        panic_version: true,
        ..Faults::default()
    };
    let slot = Slot::new(probe(1, &ledger, faults));
    match slot.call(|p| p.call()) {
        Err(CallError::Panicked(failure)) => {
            assert_eq!(failure.hook, Hook::Call);
            assert_eq!(failure.plugin, "probe");
            assert_eq!(failure.version, "?", "the version label panicked");
            assert_eq!(failure.generation, Some(1));
        }
        other => panic!("expected a contained panic, got {other:?}"),
    }
    assert_eq!(slot.stats().call_panics, 1);
}

/// A listener that records the faults the slot reports.
fn drop_faults(slot: &Slot<Probe>) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&seen);
    slot.listen(move |event: &Event<'_>| {
        if let Event::DropPanicked { generation, .. } = event {
            into.lock().expect("lock").push(*generation);
        }
    });
    seen
}

#[test]
fn a_reap_whose_first_orphan_panics_in_drop_finalizes_the_others_too() {
    let ledger = Ledger::new();
    let slot = Slot::new(probe(1, &ledger, drop_panics()));
    let faults = drop_faults(&slot);
    // Three orphans, all busy, the oldest of which panics in `Drop`.
    let mut leases = Vec::new();
    for id in 2..=4 {
        leases.push(slot.enter().expect("open"));
        drop(slot.replace(ready(id, &ledger)).expect("replace"));
    }
    assert_eq!(slot.versions().iter().filter(|v| v.orphaned).count(), 3);
    drop(leases);
    // One reap takes all three off the list; the panic in the first drop
    // does not escape it, and does not cost the other two their shutdown.
    assert_eq!(slot.reap(), 3);
    let records = ledger.records();
    for id in 1..=3 {
        assert_eq!(records[&id], Record { calls: 0, ..once() }, "version {id}");
    }
    assert_eq!(slot.stats().drop_panics, 1);
    assert_eq!(*faults.lock().expect("lock"), vec![1]);
    assert_eq!(slot.versions().len(), 1);
    // The slot serves on, and the next replace is a plain cut-over.
    assert_eq!(slot.enter().expect("open").call(), 4);
    let old = slot.replace(ready(5, &ledger)).expect("replace");
    assert_eq!(old.generation(), 4);
}

#[test]
fn replace_never_runs_an_orphans_shutdown_or_drop() {
    let ledger = Ledger::new();
    let slot = Slot::new(probe(1, &ledger, drop_panics()));
    let lease = slot.enter().expect("open");
    drop(slot.replace(ready(2, &ledger)).expect("replace"));
    drop(lease);
    // Drained orphan, whose drop panics: the next replace does not touch it.
    let old = slot.replace(ready(3, &ledger)).expect("the cut-over only");
    assert!(
        !ledger.records().contains_key(&1),
        "not finalized by replace"
    );
    assert_eq!(slot.reap(), 1);
    assert_eq!(ledger.records()[&1], once());
    drop(old.wait().expect("ok"));
}

#[test]
fn a_dropped_handle_whose_version_panics_in_drop_is_contained() {
    let ledger = Ledger::new();
    let slot = Slot::new(probe(1, &ledger, drop_panics()));
    // Drained at once, so dropping the handle finalizes it on this thread.
    drop(slot.replace(ready(2, &ledger)).expect("replace"));
    assert_eq!(ledger.records()[&1], once());
    assert_eq!(slot.stats().drop_panics, 1);
}

#[test]
fn dropping_a_slot_whose_versions_panic_in_drop_finalizes_each_once() {
    let ledger = Ledger::new();
    let slot = Slot::new(probe(1, &ledger, drop_panics()));
    let lease = slot.enter().expect("open");
    drop(
        slot.replace(probe(2, &ledger, drop_panics()))
            .expect("replace"),
    );
    drop(lease);
    drop(
        slot.replace(probe(3, &ledger, drop_panics()))
            .expect("replace"),
    );
    drop(slot);
    let records = ledger.records();
    for id in 1..=3 {
        assert_eq!(records[&id], once(), "version {id}");
    }
}

#[test]
fn an_owned_lease_that_finalizes_a_panicking_orphan_does_not_unwind() {
    let ledger = Ledger::new();
    let slot = Slot::new(probe(1, &ledger, drop_panics()));
    let lease = slot.enter_owned().expect("open");
    drop(slot.replace(ready(2, &ledger)).expect("replace"));
    assert!(!ledger.records().contains_key(&1));
    // The last lease on the orphan finalizes it, containing the panic.
    drop(lease);
    assert_eq!(ledger.records()[&1], once());
    assert_eq!(slot.stats().drop_panics, 1);
}

fn part(name: &str, version: &str, requires: &[(&str, &str)]) -> Package<Part> {
    Part::new(name, version, &Arc::new(Parts::default()))
        .package(requires)
        .expect("a valid package")
}

#[test]
fn a_panicking_verifier_refuses_and_the_old_version_serves_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let registry = Registry::new(move |_: &reload_core::verify::Artifact<'_>| {
        if seen.fetch_add(1, Ordering::SeqCst) > 0 {
            panic!("the verifier panicked");
        }
        Ok::<(), VerifyError>(())
    });
    registry
        .register(part("a", "1.0.0", &[]), &())
        .expect("first");
    let rejected = registry
        .reload(
            vec![part("a", "1.1.0", &[])],
            &(),
            ReloadOptions::immediate(),
        )
        .expect_err("refused");
    assert!(
        matches!(&rejected.error, RegistryError::Verify(VerifyError::Panicked { plugin, message, .. })
            if plugin == "a" && message.contains("verifier panicked")),
        "{:?}",
        rejected.error
    );
    assert_eq!(rejected.packages.len(), 1, "the package comes back");
    assert_eq!(registry.list()[0].version.to_string(), "1.0.0");
}

#[test]
fn a_panicking_source_refuses_the_reload_that_needed_it() {
    let registry = Registry::new(Unchecked).with_source(
        |_: &str| -> Result<Option<Package<Part>>, reload_core::BoxError> {
            panic!("the source panicked")
        },
    );
    registry.register(part("b", "1.0.0", &[]), &()).expect("b");
    registry
        .register(part("a", "1.0.0", &[("b", "^1")]), &())
        .expect("a");
    // b 2.0.0 breaks a's range: a must follow, from the source, which panics.
    let rejected = registry
        .reload(
            vec![part("b", "2.0.0", &[])],
            &(),
            ReloadOptions::immediate(),
        )
        .expect_err("refused");
    assert!(
        matches!(&rejected.error, RegistryError::Source { name, reason } if name == "a" && reason.contains("panicked")),
        "{:?}",
        rejected.error
    );
    assert_eq!(registry.call("a", |c| c.generation()).expect("serving"), 1);
}
