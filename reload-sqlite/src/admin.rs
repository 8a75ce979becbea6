//! Managing plugins from SQL, where the host enables it
//! ([`Hot::admin`](crate::Hot::admin)):
//!
//! - `reload_plugins`, an eponymous virtual table: one row per plugin of
//!   the registry, read when the statement starts;
//! - `reload_deploy(name, path)`: makes a package of the file at `path`
//!   (through the host's [`Deployer`]), checks it is plugin `name`, and
//!   reloads the registry with it; returns the version now serving;
//! - `reload_revert(name)`: [`Registry::revert`](reload_core::registry::Registry::revert);
//!   returns the version now serving.
//!
//! A refusal is a SQL error whose message is the typed reason
//! ([`DeployError`]'s text: which plugin, which path, why); the registry
//! guarantees the version serving before serves on, with nothing
//! half-done.
//!
//! A deploy runs inside the SQL function's call, on the connection's
//! thread: a quiesced reload waits there for the statements holding the
//! old version, on other connections and on this one. A statement of this
//! connection left open on the old version (stepped, not reset) holds it
//! until the reload's timeout.

// Deploy errors are large (names, paths, the registry's reason) and on
// the cold path: a deploy, never a call. Boxing them would buy nothing.
#![allow(clippy::result_large_err)]
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use reload_core::registry::{Package, ReloadReport};
use reload_core::{BoxError, ReloadOptions};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;
use rusqlite::vtab::{
    self, eponymous_only_module, sqlite3_vtab, sqlite3_vtab_cursor, Filters, IndexInfo, VTab,
    VTabConfig, VTabConnection, VTabCursor,
};
use rusqlite::Connection;

use crate::column;
use crate::error::{panic_message, DeployError};
use crate::plugin::SqlPlugin;
use crate::shared::Shared;

/// How `reload_deploy` turns a path into a version, and what the reload
/// gives the new version's hooks.
pub trait Deployer<P: SqlPlugin>: Send + Sync + 'static {
    /// A package of the file at `path`, to become plugin `name`.
    ///
    /// # Errors
    ///
    /// Why not (missing file, not a plugin, a wrong ABI): the deploy is
    /// refused with it.
    fn package(&self, name: &str, path: &Path) -> Result<Package<P>, BoxError>;

    /// What `name`'s hooks get as their context on a reload or a revert.
    fn context(&self, name: &str) -> &P::Context;

    /// The options of `name`'s reloads: quiesced, 10 s, by default.
    fn options(&self, name: &str) -> ReloadOptions {
        let _ = name;
        ReloadOptions::quiesced(std::time::Duration::from_secs(10))
    }

    /// Whether SQL may manage `name`: every plugin by default.
    fn manages(&self, name: &str) -> bool {
        let _ = name;
        true
    }
}

/// Native libraries, loaded by a [`Loader`](reload_core::dylib::Loader);
/// each plugin's configuration bytes are its `init` context.
#[cfg(feature = "dylib")]
pub struct DylibDeployer {
    loader: Arc<reload_core::dylib::Loader>,
    configs: std::collections::BTreeMap<String, Vec<u8>>,
    options: ReloadOptions,
}

#[cfg(feature = "dylib")]
impl DylibDeployer {
    /// A deployer loading through `loader`, with empty configurations and
    /// quiesced reloads of 10 s.
    pub fn new(loader: Arc<reload_core::dylib::Loader>) -> Self {
        DylibDeployer {
            loader,
            configs: std::collections::BTreeMap::new(),
            options: ReloadOptions::quiesced(std::time::Duration::from_secs(10)),
        }
    }

    /// Plugin `name`'s configuration.
    #[must_use]
    pub fn config(mut self, name: &str, config: impl Into<Vec<u8>>) -> Self {
        self.configs.insert(name.to_owned(), config.into());
        self
    }

    /// The options of every reload.
    #[must_use]
    pub fn options(mut self, options: ReloadOptions) -> Self {
        self.options = options;
        self
    }
}

#[cfg(feature = "dylib")]
impl Deployer<reload_core::dylib::DylibPlugin> for DylibDeployer {
    fn package(
        &self,
        _: &str,
        path: &Path,
    ) -> Result<Package<reload_core::dylib::DylibPlugin>, BoxError> {
        Ok(self.loader.package(path)?)
    }

    fn context(&self, name: &str) -> &[u8] {
        self.configs.get(name).map_or(&[], Vec::as_slice)
    }

    fn options(&self, _: &str) -> ReloadOptions {
        self.options.clone()
    }
}

pub(crate) struct Admin<P: SqlPlugin> {
    pub shared: Arc<Shared<P>>,
    pub deployer: Arc<dyn Deployer<P>>,
    pub columns: column::Columns,
}

impl<P: SqlPlugin> Clone for Admin<P> {
    fn clone(&self) -> Self {
        Admin {
            shared: Arc::clone(&self.shared),
            deployer: Arc::clone(&self.deployer),
            columns: Arc::clone(&self.columns),
        }
    }
}

impl<P: SqlPlugin> Admin<P> {
    /// The slot's failed reloads of `name` (a refusal there is counted by
    /// the slot; the crate counts only those that never reached it).
    fn slot_failures(&self, name: &str) -> u64 {
        self.shared
            .registry
            .stats()
            .per_plugin
            .get(name)
            .map_or(0, |s| s.failed_reloads)
    }

    fn counted(
        &self,
        name: &str,
        slot_failures: u64,
        result: Result<ReloadReport<P>, DeployError>,
    ) -> Result<String, DeployError> {
        let counters = self.shared.index(name).map(|i| &self.shared.counters[i]);
        match result {
            Ok(report) => {
                if let Some(c) = counters {
                    c.deploys.fetch_add(1, Relaxed);
                }
                Ok(report
                    .changes
                    .iter()
                    .find(|c| c.plugin == name)
                    .map(|c| c.to.to_string())
                    .unwrap_or_default())
            }
            Err(e) => {
                if let Some(c) = counters {
                    if self.slot_failures(name) == slot_failures {
                        c.refusals.fetch_add(1, Relaxed);
                    }
                    *c.last_error.lock() = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    fn contained(
        &self,
        name: &str,
        f: impl FnOnce() -> Result<ReloadReport<P>, DeployError>,
    ) -> Result<String, DeployError> {
        if !self.deployer.manages(name) {
            return Err(DeployError::NotManaged {
                plugin: name.to_owned(),
            });
        }
        let slot_failures = self.slot_failures(name);
        let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
            Err(DeployError::Panicked {
                plugin: name.to_owned(),
                message: panic_message(&*payload),
            })
        });
        self.counted(name, slot_failures, result)
    }

    /// Checks a probe of the version at `path` against every column
    /// `name` encodes, on `conn`.
    fn check_columns(&self, conn: &Connection, name: &str, path: &str) -> Result<(), DeployError> {
        if column::of(&self.columns, name).next().is_none() {
            return Ok(());
        }
        let package_error = |message: String| DeployError::Package {
            plugin: name.to_owned(),
            path: path.to_owned(),
            message,
        };
        let probe = self
            .deployer
            .package(name, Path::new(path))
            .map_err(|e| package_error(e.to_string()))?;
        let version = probe.manifest().version().to_string();
        let ready = reload_core::Plugin::new(probe.into_plugin())
            .ready(self.deployer.context(name))
            .map_err(|e| package_error(format!("the probe did not start: {e}")))?;
        let checked = column::of(&self.columns, name).try_for_each(|c| {
            column::check_column(conn, ready.get(), name, &version, &c.table, &c.column).map(drop)
        });
        // The probe never served: shut it down here, contained.
        let mut plugin = ready.into_inner();
        let _ = catch_unwind(AssertUnwindSafe(|| {
            reload_core::Hooks::shutdown(&mut plugin)
        }));
        let _ = catch_unwind(AssertUnwindSafe(|| drop(plugin)));
        checked
    }

    pub(crate) fn deploy(
        &self,
        conn: &Connection,
        name: &str,
        path: &str,
    ) -> Result<String, DeployError> {
        self.contained(name, || {
            self.check_columns(conn, name, path)?;
            let package =
                self.deployer
                    .package(name, Path::new(path))
                    .map_err(|e| DeployError::Package {
                        plugin: name.to_owned(),
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?;
            let found = package.manifest().name();
            if found != name {
                return Err(DeployError::WrongName {
                    plugin: name.to_owned(),
                    path: path.to_owned(),
                    found: found.to_owned(),
                });
            }
            self.shared
                .registry
                .reload(
                    vec![package],
                    self.deployer.context(name),
                    self.deployer.options(name),
                )
                .map_err(|r| DeployError::Refused {
                    plugin: name.to_owned(),
                    source: Box::new(r.error),
                })
        })
    }

    pub(crate) fn revert(&self, name: &str) -> Result<String, DeployError> {
        self.contained(name, || {
            self.shared
                .registry
                .revert(
                    name,
                    self.deployer.context(name),
                    self.deployer.options(name),
                )
                .map_err(|r| DeployError::Refused {
                    plugin: name.to_owned(),
                    source: Box::new(r.error),
                })
        })
    }
}

pub(crate) fn register<P: SqlPlugin>(conn: &Connection, admin: &Admin<P>) -> rusqlite::Result<()> {
    // Direct only: a deploy from a trigger or a view would be a surprise.
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    let a = admin.clone();
    conn.create_scalar_function("reload_deploy", 2, flags, move |ctx| {
        let name: String = ctx.get(0)?;
        let path: String = ctx.get(1)?;
        // SAFETY: the connection is used on this thread, inside this call
        // (the column check reads the columns through it).
        let conn = unsafe { ctx.get_connection()? };
        Ok(a.deploy(&conn, &name, &path)?)
    })?;
    let a = admin.clone();
    conn.create_scalar_function("reload_revert", 1, flags, move |ctx| {
        let name: String = ctx.get(0)?;
        Ok(a.revert(&name)?)
    })?;
    conn.create_module(
        "reload_plugins",
        eponymous_only_module::<PluginsTable<P>>(),
        Some(Arc::clone(&admin.shared)),
    )
}

/// The columns of `reload_plugins`.
pub const COLUMNS: &[&str] = &[
    "name",
    "version",
    "generation",
    "digest",
    "phase",
    "in_flight",
    "draining",
    "calls",
    "errors",
    "reloads",
    "refusals",
    "last_error",
    "revert_to",
];

/// One row per plugin, read when a scan starts.
fn rows<P: SqlPlugin>(shared: &Shared<P>) -> Vec<Vec<Value>> {
    let registry = &shared.registry;
    let stats = registry.stats();
    let int = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let opt = |s: Option<String>| s.map_or(Value::Null, Value::Text);
    registry
        .list()
        .into_iter()
        .map(|info| {
            let slot = stats.per_plugin.get(&info.name);
            let counters = shared.index(&info.name).map(|i| &shared.counters[i]);
            let load = |f: fn(&crate::shared::Counters) -> u64| counters.map_or(0, f);
            vec![
                Value::Text(info.name.clone()),
                Value::Text(info.version.to_string()),
                info.generation.map_or(Value::Null, int),
                Value::Text(info.digest.to_string()),
                Value::Text(
                    if info.generation.is_some() {
                        "active"
                    } else {
                        "closed"
                    }
                    .into(),
                ),
                int(slot.map_or(0, |s| s.in_flight as u64)),
                int(slot.map_or(0, |s| s.draining_now as u64)),
                int(load(|c| c.calls.load(Relaxed))),
                int(load(|c| c.errors.load(Relaxed))),
                int(slot.map_or(0, |s| s.reloads)),
                int(slot.map_or(0, |s| s.failed_reloads) + load(|c| c.refusals.load(Relaxed))),
                opt(counters.and_then(|c| c.last_error.lock().clone())),
                opt(registry.previous_version(&info.name).map(|v| v.to_string())),
            ]
        })
        .collect()
}

#[repr(C)]
pub(crate) struct PluginsTable<P: SqlPlugin> {
    /// SQLite's part; must come first.
    base: sqlite3_vtab,
    shared: Arc<Shared<P>>,
}

// SAFETY: `repr(C)` with `sqlite3_vtab` first.
unsafe impl<'vtab, P: SqlPlugin> VTab<'vtab> for PluginsTable<P> {
    type Aux = Arc<Shared<P>>;
    type Cursor = PluginsCursor<'vtab, P>;

    fn connect(
        db: &mut VTabConnection,
        aux: Option<&Self::Aux>,
        _: &[&[u8]],
    ) -> rusqlite::Result<(String, Self)> {
        let shared = aux.cloned().ok_or_else(|| {
            rusqlite::Error::ModuleError("reload_plugins without its registry".into())
        })?;
        db.config(VTabConfig::DirectOnly)?;
        Ok((
            format!("CREATE TABLE x({})", COLUMNS.join(", ")),
            PluginsTable {
                base: sqlite3_vtab::default(),
                shared,
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<()> {
        info.set_estimated_cost(100.0);
        Ok(())
    }

    fn open(&'vtab mut self) -> rusqlite::Result<Self::Cursor> {
        Ok(PluginsCursor {
            base: sqlite3_vtab_cursor::default(),
            shared: Arc::clone(&self.shared),
            rows: Vec::new(),
            at: 0,
            phantom: PhantomData,
        })
    }
}

#[repr(C)]
pub(crate) struct PluginsCursor<'vtab, P: SqlPlugin> {
    /// SQLite's part; must come first.
    base: sqlite3_vtab_cursor,
    shared: Arc<Shared<P>>,
    rows: Vec<Vec<Value>>,
    at: usize,
    phantom: PhantomData<&'vtab PluginsTable<P>>,
}

// SAFETY: `repr(C)` with `sqlite3_vtab_cursor` first.
unsafe impl<P: SqlPlugin> VTabCursor for PluginsCursor<'_, P> {
    fn filter(&mut self, _: c_int, _: Option<&str>, _: &Filters<'_>) -> rusqlite::Result<()> {
        self.rows = rows(&self.shared);
        self.at = 0;
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.at += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.at >= self.rows.len()
    }

    fn column(&self, ctx: &mut vtab::Context, i: c_int) -> rusqlite::Result<()> {
        let value = usize::try_from(i)
            .ok()
            .and_then(|i| self.rows.get(self.at)?.get(i))
            .unwrap_or(&Value::Null);
        ctx.set_result(value)
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(i64::try_from(self.at).unwrap_or(i64::MAX))
    }
}
