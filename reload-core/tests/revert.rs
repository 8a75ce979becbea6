//! `Registry::revert`: a committed version that misbehaves is reverted to
//! the previous one by an ordinary drained reload, state and resources
//! carried back; typed refusals when there is nothing to go back to or the
//! state cannot go back; the current version serving after each refusal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reload_core::manifest::Manifest;
use reload_core::registry::{Package, Registry, RegistryError};
use reload_core::verify::Unchecked;
use reload_core::{BoxError, Hooks, ReloadOptions, Resource, Stateful};

/// A counter whose versions differ in what a call adds (`step`, where a
/// "wrong" version adds the wrong amount), with its count as state and a
/// stream resource whose position is the count.
#[derive(Debug)]
struct Counter {
    version: String,
    step: u64,
    schema: u32,
    count: AtomicU64,
    /// Resources resumed by this value: the hand-off of each reload.
    resumed: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Hooks for Counter {
    type Context = ();
    fn version(&self) -> &str {
        &self.version
    }
}

impl Stateful for Counter {
    fn schema(&self) -> u32 {
        self.schema
    }
    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(
            self.count.load(Ordering::SeqCst).to_le_bytes().to_vec(),
        ))
    }
    fn migrate(&self, from: u32, state: Vec<u8>) -> Result<(u32, Vec<u8>), BoxError> {
        Ok((from + 1, state))
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "eight bytes")?;
        *self.count.get_mut() = u64::from_le_bytes(bytes);
        Ok(())
    }
    fn resources(&self) -> Vec<Resource> {
        vec![Resource::stream("log", 1)]
    }
    fn checkpoint(&self, _: &str) -> Result<u64, BoxError> {
        Ok(self.count.load(Ordering::SeqCst))
    }
    fn resume(&mut self, name: &str, position: u64) -> Result<(), BoxError> {
        self.resumed
            .lock()
            .map_err(|_| "poisoned")?
            .push((name.to_owned(), position));
        Ok(())
    }
}

type Resumed = Arc<Mutex<Vec<(String, u64)>>>;

fn counter(version: &str, step: u64, schema: u32, resumed: &Resumed) -> Counter {
    Counter {
        version: version.to_owned(),
        step,
        schema,
        count: AtomicU64::new(0),
        resumed: Arc::clone(resumed),
    }
}

/// A package whose respawn makes the same version again (its content says
/// which step and schema).
fn package(version: &str, step: u64, schema: u32, resumed: &Resumed) -> Package<Counter> {
    let manifest = Manifest::new("counter", version)
        .and_then(|m| m.export("add"))
        .expect("manifest");
    let content = format!("{step} {schema}").into_bytes();
    let r = Arc::clone(resumed);
    Package::new(counter(version, step, schema, resumed), manifest, content).respawn(
        move |m: &Manifest, content: &[u8]| -> Result<Counter, BoxError> {
            let text = std::str::from_utf8(content)?;
            let (step, schema) = text.split_once(' ').ok_or("bad content")?;
            Ok(counter(
                &m.version().to_string(),
                step.parse()?,
                schema.parse()?,
                &r,
            ))
        },
    )
}

fn add(registry: &Registry<Counter>) -> (String, u64) {
    registry
        .call("counter", |c| {
            let p = c.plugin();
            let now = p.count.fetch_add(p.step, Ordering::SeqCst) + p.step;
            (p.version.clone(), now)
        })
        .expect("served")
}

fn quiesced() -> ReloadOptions {
    ReloadOptions::quiesced(Duration::from_secs(60))
}

#[test]
fn a_misbehaving_version_is_reverted_with_its_state_carried_back() {
    let resumed = Resumed::default();
    let registry = Registry::new(Unchecked);
    registry
        .register(package("1.0.0", 1, 1, &resumed), &())
        .expect("registered");
    assert_eq!(add(&registry), ("1.0.0".to_owned(), 1));
    assert_eq!(add(&registry), ("1.0.0".to_owned(), 2));
    assert_eq!(registry.previous_version("counter"), None);

    // 1.1.0 adds ten: wrong.
    let report = registry
        .reload(vec![package("1.1.0", 10, 1, &resumed)], &(), quiesced())
        .expect("reloaded");
    report
        .changes
        .into_iter()
        .for_each(|c| drop(c.committed.old.wait()));
    assert_eq!(add(&registry), ("1.1.0".to_owned(), 12));
    assert_eq!(
        registry.previous_version("counter").map(|v| v.to_string()),
        Some("1.0.0".to_owned())
    );

    let report = registry
        .revert("counter", &(), quiesced())
        .expect("reverted");
    assert_eq!(report.changes.len(), 1);
    assert_eq!(report.changes[0].to.to_string(), "1.0.0");
    let old = report.changes.into_iter().next().map(|c| c.committed.old);
    assert!(
        old.expect("one change").wait().is_ok(),
        "the bad version drained and shut down"
    );
    // The state came back: 12, then one more, by a fresh 1.0.0.
    assert_eq!(add(&registry), ("1.0.0".to_owned(), 13));
    // The stream was checkpointed by the bad version and resumed by the
    // reverted one, at the position it had reached.
    let resumed = resumed.lock().expect("resumed").clone();
    assert_eq!(resumed, vec![("log".to_owned(), 2), ("log".to_owned(), 12)]);
    assert_eq!(registry.stats().reverts, 1);

    // Nothing to go back to now (not the bad version).
    let refused = registry
        .revert("counter", &(), quiesced())
        .expect_err("nothing to revert");
    assert!(matches!(
        refused.error,
        RegistryError::NothingToRevert { ref name, .. } if name == "counter"
    ));
    assert!(refused.packages.is_empty());
    assert_eq!(add(&registry), ("1.0.0".to_owned(), 14));
}

#[test]
fn revert_is_refused_typed_when_there_is_nothing_to_go_back_to() {
    let resumed = Resumed::default();
    let registry = Registry::new(Unchecked);
    let refused = registry
        .revert("counter", &(), quiesced())
        .expect_err("not registered");
    assert!(matches!(refused.error, RegistryError::NotRegistered { .. }));

    registry
        .register(package("1.0.0", 1, 1, &resumed), &())
        .expect("registered");
    let refused = registry
        .revert("counter", &(), quiesced())
        .expect_err("never reloaded");
    assert!(matches!(
        refused.error,
        RegistryError::NothingToRevert { .. }
    ));

    // A version given without a respawn recipe cannot be made again.
    let manifest = Manifest::new("counter", "1.1.0").expect("manifest");
    let plain = Package::new(
        counter("1.1.0", 1, 1, &resumed),
        manifest,
        b"plain".to_vec(),
    );
    assert!(!plain.can_respawn());
    registry
        .reload(vec![plain], &(), quiesced())
        .expect("reloaded");
    registry
        .reload(vec![package("1.2.0", 1, 1, &resumed)], &(), quiesced())
        .expect("reloaded");
    let refused = registry
        .revert("counter", &(), quiesced())
        .expect_err("no recipe");
    match &refused.error {
        RegistryError::NothingToRevert { reason, .. } => {
            assert!(
                reason.contains("1.1.0") && reason.contains("respawn"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(add(&registry), ("1.2.0".to_owned(), 1));
}

#[test]
fn state_that_cannot_go_back_is_a_typed_refusal_with_the_current_version_serving() {
    let resumed = Resumed::default();
    let registry = Registry::new(Unchecked);
    registry
        .register(package("1.0.0", 1, 1, &resumed), &())
        .expect("registered");
    add(&registry);
    // 2.0.0 writes its state in schema 2; 1.0.0 reads only schema 1.
    registry
        .reload(vec![package("2.0.0", 1, 2, &resumed)], &(), quiesced())
        .expect("reloaded");
    assert_eq!(add(&registry), ("2.0.0".to_owned(), 2));
    let refused = registry
        .revert("counter", &(), quiesced())
        .expect_err("state is newer than 1.0.0 reads");
    match &refused.error {
        RegistryError::Reload { plugin, fault } => {
            assert_eq!(plugin, "counter");
            assert!(fault.to_string().contains("schema"), "{fault}");
        }
        other => panic!("{other}"),
    }
    // The current version serves on with its state; the previous one is
    // still kept (a host may fix the state and try again).
    assert_eq!(add(&registry), ("2.0.0".to_owned(), 3));
    assert_eq!(
        registry.previous_version("counter").map(|v| v.to_string()),
        Some("1.0.0".to_owned())
    );
    assert_eq!(registry.stats().reverts, 0);
}
