//! [`Counter`]: a stateful plugin with an index and a change stream.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{BoxError, Hooks, Resource, Stateful};

/// Which step of a reload a [`Counter`] fails, as the old or the new version.
#[derive(Clone, Debug, Default)]
pub struct CounterFaults {
    /// `save` returns an error (old side).
    pub fail_save: bool,
    /// `persist` of the index returns an error (old side).
    pub fail_persist: bool,
    /// `restore` returns an error (new side).
    pub fail_restore: bool,
    /// `restore` panics (new side).
    pub panic_restore: bool,
    /// `open` of the index returns an error (new side).
    pub fail_open: bool,
    /// `resume` of the stream returns an error (new side).
    pub fail_resume: bool,
    /// `migrate` claims to produce this schema instead of the next one.
    pub migrate_to: Option<u32>,
}

/// Whether a version's resource is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceState {
    /// Open and serving.
    Open,
    /// Closed (by `shutdown`, or by `close` after a failed reload).
    Closed,
}

/// Shared by every version of a test's counters: which version's resources
/// are open, how often state was saved and restored, and how often each
/// [`Stateful`] hook was called at all.
#[derive(Debug, Default)]
pub struct Book {
    resources: Mutex<BTreeMap<(String, String), ResourceState>>,
    saves: AtomicU64,
    restores: AtomicU64,
    hooks: Mutex<BTreeMap<&'static str, u64>>,
}

impl Book {
    /// A new, shared book.
    pub fn new() -> Arc<Book> {
        Arc::default()
    }

    /// The state of `version`'s `resource`, `None` if it never opened it.
    pub fn resource(&self, version: &str, resource: &str) -> Option<ResourceState> {
        self.resources
            .lock()
            .get(&(version.to_owned(), resource.to_owned()))
            .copied()
    }

    /// `save` calls that returned state, over all versions.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::SeqCst)
    }

    /// `restore` calls that succeeded, over all versions.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::SeqCst)
    }

    /// How often each `Stateful` hook was called, over all versions,
    /// whatever it returned: `save`, `migrate`, `restore`, `persist`,
    /// `checkpoint`, `check_compat`, `open`, `resume`, `close` (a hook
    /// never called is absent).
    pub fn hook_calls(&self) -> BTreeMap<&'static str, u64> {
        self.hooks.lock().clone()
    }

    fn called(&self, hook: &'static str) {
        *self.hooks.lock().entry(hook).or_default() += 1;
    }

    fn set(&self, version: &str, resource: &str, state: ResourceState) {
        self.resources
            .lock()
            .insert((version.to_owned(), resource.to_owned()), state);
    }
}

/// A counter plugin: [`inc`](Counter::inc) adds one to its count (its
/// state) and appends one event to its change stream `cdc` (a resource
/// handed over by checkpoint and resume); [`put`](Counter::put) adds a
/// record to its index `idx` (handed over by persist and open).
///
/// Its state schemas: 1 writes the count in decimal ASCII, 2 as a
/// little-endian `u64`, 3 as a `u64` and a `u32` count of the migrations it
/// went through. A version of schema 3 migrates 1 -> 2 -> 3 step by step.
/// Index schema 1 is `key=value` lines; a version declaring index schema 2
/// reads them only if every value is a number, which `check_compat` finds
/// out by decoding the real persisted records (an empty index passes).
#[derive(Debug)]
pub struct Counter {
    label: String,
    schema: u32,
    index_schema: u32,
    count: AtomicU64,
    migrations: AtomicU64,
    stream: AtomicU64,
    index: Mutex<Vec<(String, String)>>,
    book: Arc<Book>,
    faults: CounterFaults,
}

impl Counter {
    /// A first version, labelled `label`, whose resources open empty.
    pub fn new(label: &str, schema: u32, book: &Arc<Book>) -> Self {
        let counter = Counter::next(label, schema, book);
        book.set(label, "idx", ResourceState::Open);
        book.set(label, "cdc", ResourceState::Open);
        counter
    }

    /// A later version, labelled `label`: it gets its count and resources
    /// from the version it replaces.
    pub fn next(label: &str, schema: u32, book: &Arc<Book>) -> Self {
        Counter {
            label: label.to_owned(),
            schema,
            index_schema: 1,
            count: AtomicU64::new(0),
            migrations: AtomicU64::new(0),
            stream: AtomicU64::new(0),
            index: Mutex::new(Vec::new()),
            book: Arc::clone(book),
            faults: CounterFaults::default(),
        }
    }

    /// With these faults.
    pub fn with_faults(mut self, faults: CounterFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Declaring index schema `schema`.
    pub fn with_index_schema(mut self, schema: u32) -> Self {
        self.index_schema = schema;
        self
    }

    /// Adds one; returns the new count.
    pub fn inc(&self) -> u64 {
        // SeqCst: simple and sufficient; this is a test plugin.
        self.stream.fetch_add(1, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The count.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// The change stream's position.
    pub fn position(&self) -> u64 {
        self.stream.load(Ordering::SeqCst)
    }

    /// Migration steps its state went through on the way in.
    pub fn migrations(&self) -> u64 {
        self.migrations.load(Ordering::SeqCst)
    }

    /// Adds an index record.
    pub fn put(&self, key: &str, value: &str) {
        self.index.lock().push((key.to_owned(), value.to_owned()));
    }

    /// The index records.
    pub fn records(&self) -> Vec<(String, String)> {
        self.index.lock().clone()
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn encode_index(records: &[(String, String)]) -> Vec<u8> {
        records
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn decode_index(bytes: &[u8], schema: u32) -> Result<Vec<(String, String)>, BoxError> {
        let text = std::str::from_utf8(bytes)?;
        let mut out = Vec::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("index record without `=`: {line:?}").into());
            };
            if schema == 2 && v.parse::<i64>().is_err() {
                return Err(format!("index schema 2 needs numeric values, found {v:?}").into());
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        Ok(out)
    }
}

impl Hooks for Counter {
    type Context = ();

    fn name(&self) -> &str {
        "counter"
    }

    fn version(&self) -> &str {
        &self.label
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        // The old version's resources are released here, after its drain,
        // never earlier.
        self.book.set(&self.label, "idx", ResourceState::Closed);
        self.book.set(&self.label, "cdc", ResourceState::Closed);
        Ok(())
    }
}

impl Stateful for Counter {
    fn schema(&self) -> u32 {
        self.schema
    }

    fn save(&self) -> Result<Option<Vec<u8>>, BoxError> {
        self.book.called("save");
        if self.faults.fail_save {
            return Err("save failed (injected)".into());
        }
        self.book.saves.fetch_add(1, Ordering::SeqCst);
        let count = self.count();
        Ok(Some(match self.schema {
            1 => count.to_string().into_bytes(),
            2 => count.to_le_bytes().to_vec(),
            _ => {
                let mut b = count.to_le_bytes().to_vec();
                b.extend_from_slice(&(self.migrations() as u32).to_le_bytes());
                b
            }
        }))
    }

    fn migrate(&self, from: u32, state: Vec<u8>) -> Result<(u32, Vec<u8>), BoxError> {
        self.book.called("migrate");
        let (to, out) = match from {
            1 => {
                let count: u64 = std::str::from_utf8(&state)?.parse()?;
                (2, count.to_le_bytes().to_vec())
            }
            2 => {
                let mut b = state;
                if b.len() != 8 {
                    return Err(format!("schema 2 state is 8 bytes, not {}", b.len()).into());
                }
                b.extend_from_slice(&0u32.to_le_bytes());
                (3, b)
            }
            other => return Err(format!("no migration from schema {other}").into()),
        };
        self.migrations.fetch_add(1, Ordering::SeqCst);
        Ok((self.faults.migrate_to.unwrap_or(to), out))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        self.book.called("restore");
        if self.faults.panic_restore {
            panic!("restore panicked (injected)");
        }
        if self.faults.fail_restore {
            return Err("restore failed (injected)".into());
        }
        let count = match self.schema {
            1 => std::str::from_utf8(state)?.parse()?,
            _ => {
                let bytes: [u8; 8] = state
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or("state too short")?;
                u64::from_le_bytes(bytes)
            }
        };
        self.count.store(count, Ordering::SeqCst);
        self.book.restores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn resources(&self) -> Vec<Resource> {
        vec![
            Resource::index("idx", self.index_schema),
            Resource::stream("cdc", 1),
        ]
    }

    fn persist(&self, resource: &str) -> Result<Vec<u8>, BoxError> {
        self.book.called("persist");
        if self.faults.fail_persist {
            return Err("persist failed (injected)".into());
        }
        match resource {
            "idx" => Ok(Counter::encode_index(&self.index.lock())),
            other => Err(format!("no index `{other}`").into()),
        }
    }

    fn checkpoint(&self, resource: &str) -> Result<u64, BoxError> {
        self.book.called("checkpoint");
        match resource {
            "cdc" => Ok(self.position()),
            other => Err(format!("no stream `{other}`").into()),
        }
    }

    fn check_compat(&self, old: &Resource, persisted: &[u8]) -> Result<(), BoxError> {
        self.book.called("check_compat");
        // A real round trip: decode every persisted record as this
        // version's schema would read it, re-encode, compare.
        let records = Counter::decode_index(persisted, self.index_schema)?;
        if Counter::encode_index(&records) != persisted {
            return Err(format!("`{}` does not round-trip", old.name).into());
        }
        Ok(())
    }

    fn open(&mut self, resource: &str, persisted: &[u8]) -> Result<(), BoxError> {
        self.book.called("open");
        if self.faults.fail_open {
            return Err("open failed (injected)".into());
        }
        *self.index.lock() = Counter::decode_index(persisted, self.index_schema)?;
        self.book.set(&self.label, resource, ResourceState::Open);
        Ok(())
    }

    fn resume(&mut self, resource: &str, position: u64) -> Result<(), BoxError> {
        self.book.called("resume");
        if self.faults.fail_resume {
            return Err("resume failed (injected)".into());
        }
        self.stream.store(position, Ordering::SeqCst);
        self.book.set(&self.label, resource, ResourceState::Open);
        Ok(())
    }

    fn close(&mut self, resource: &str) {
        self.book.called("close");
        self.book.set(&self.label, resource, ResourceState::Closed);
    }
}
