//! An in-process plugin for the tests: its behaviour a closure, its
//! version known, and every call after its shutdown counted (must stay 0).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use reload_core::manifest::Manifest;
use reload_core::registry::{Package, Registry, ReloadReport};
use reload_core::verify::Unchecked;
use reload_core::{BoxError, Hooks, ReloadOptions, Stateful};
use reload_sqlite::{wire, SqlPlugin};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

pub type Behaviour = Arc<dyn Fn(&str, &[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

pub struct Probe {
    pub version: String,
    behaviour: Behaviour,
    shut: AtomicBool,
    after_shutdown: Arc<AtomicU64>,
    /// Its `init` fails.
    pub broken: bool,
}

impl Hooks for Probe {
    type Context = ();
    fn init(&mut self, _: &()) -> Result<(), BoxError> {
        if self.broken {
            return Err(format!("{} refuses to start", self.version).into());
        }
        Ok(())
    }
    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.shut.store(true, SeqCst);
        Ok(())
    }
}

impl Stateful for Probe {}

impl SqlPlugin for Probe {
    type Error = String;
    fn call_sql<R>(&self, input: &[u8], reply: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        if self.shut.load(SeqCst) {
            self.after_shutdown.fetch_add(1, SeqCst);
            return Err(format!("{} called after its shutdown", self.version));
        }
        let out = (self.behaviour)(&self.version, input)?;
        Ok(reply(&out))
    }
}

/// A registry of probes, and the count of calls after a shutdown.
pub struct Fixture {
    pub registry: Arc<Registry<Probe>>,
    pub after_shutdown: Arc<AtomicU64>,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            registry: Arc::new(Registry::new(Unchecked)),
            after_shutdown: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn package(&self, name: &str, version: &str, behaviour: Behaviour) -> Package<Probe> {
        let manifest = Manifest::new(name, version).unwrap();
        let after = Arc::clone(&self.after_shutdown);
        let make = move |version: &str, behaviour: Behaviour| Probe {
            version: version.to_owned(),
            behaviour,
            shut: AtomicBool::new(false),
            after_shutdown: Arc::clone(&after),
            broken: false,
        };
        let plugin = make(version, Arc::clone(&behaviour));
        Package::new(plugin, manifest, format!("{name} {version}").into_bytes())
            .respawn(move |m, _| Ok(make(&m.version().to_string(), Arc::clone(&behaviour))))
    }

    pub fn register(&self, name: &str, version: &str, behaviour: Behaviour) {
        let package = self.package(name, version, behaviour);
        self.registry
            .register(package, &())
            .map_err(|r| r.error)
            .unwrap();
    }

    pub fn reload(
        &self,
        name: &str,
        version: &str,
        behaviour: Behaviour,
        options: ReloadOptions,
    ) -> ReloadReport<Probe> {
        let package = self.package(name, version, behaviour);
        self.registry
            .reload(vec![package], &(), options)
            .map_err(|r| r.error)
            .unwrap()
    }

    /// `inner`, which at its call number `at` (from 0) first reloads
    /// plugin `name` to `version` (immediately, from inside the call) with
    /// `next`. Holds the registry weakly: the behaviour lives in it.
    pub fn reloading_at(
        &self,
        at: u64,
        name: &str,
        version: &str,
        next: Behaviour,
        inner: Behaviour,
    ) -> Behaviour {
        let registry = Arc::downgrade(&self.registry);
        let after = Arc::clone(&self.after_shutdown);
        let calls = AtomicU64::new(0);
        let (name, version) = (name.to_owned(), version.to_owned());
        Arc::new(move |v, input| {
            if calls.fetch_add(1, SeqCst) == at {
                if let Some(registry) = registry.upgrade() {
                    let fx = Fixture {
                        registry,
                        after_shutdown: Arc::clone(&after),
                    };
                    fx.reload(
                        &name,
                        &version,
                        Arc::clone(&next),
                        ReloadOptions::immediate(),
                    );
                }
            }
            inner(v, input)
        })
    }

    pub fn calls_after_shutdown(&self) -> u64 {
        self.after_shutdown.load(SeqCst)
    }
}

/// Replies with the version's name as TEXT, whatever the arguments.
pub fn version_text() -> Behaviour {
    Arc::new(|version, _| Ok(wire::encode_one(ValueRef::Text(version.as_bytes())).unwrap()))
}

/// `f(x) = k * x` for an INTEGER x.
pub fn times(k: i64) -> Behaviour {
    Arc::new(move |_, input| {
        let args = wire::decode_all(input).map_err(|e| e.to_string())?;
        match args[..] {
            [ValueRef::Integer(x)] => Ok(wire::encode_one(ValueRef::Integer(k * x)).unwrap()),
            _ => Err("times takes one integer".to_owned()),
        }
    })
}

/// A table `t(id, x)` of `n` rows, `x = id`, in group `id % 4`.
pub fn table(n: i64) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER, g INTEGER)")
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut insert = tx.prepare("INSERT INTO t VALUES (?1, ?1, ?1 % 4)").unwrap();
        for id in 1..=n {
            insert.execute([id]).unwrap();
        }
    }
    tx.commit().unwrap();
    conn
}

pub const LONG: Duration = Duration::from_secs(30);

/// Polls `done` until it holds, failing after [`LONG`].
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LONG;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
