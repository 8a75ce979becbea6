//! `reload-sqlite` as a SQLite loadable extension.
//!
//! ```sql
//! .load target/release/libreload_sqlite_ext      -- or load_extension(..)
//! SELECT reload_watch('/srv/plugins');           -- every library there, watched
//! SELECT ver(x) FROM t;                          -- a plugin `ver`, hot
//! SELECT name, version FROM reload_plugins;
//! ```
//!
//! `reload_watch(dir)` registers every plugin library in `dir` (by the name
//! in its manifest), watches each file (a replacement by atomic rename
//! reloads it, quiesced, 10 s), and declares on the calling connection one
//! scalar function per plugin, of any arity, in the crate's wire encoding.
//! The registry is the process's: a connection that loads the extension
//! later gets the functions of every plugin watched so far.
//! `reload_plugins`, `reload_deploy` and `reload_revert` are on every
//! connection that loaded it. Statements run on one version of each plugin,
//! as in a Rust host (the statement scope lives in SQLite's own
//! auxiliary data: `docs/sqlite.md`).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use reload_core::dylib::{AutoReload, DylibPlugin, Loader};
use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::ReloadOptions;
use reload_sqlite::{DylibDeployer, Hot};
use rusqlite::functions::FunctionFlags;
use rusqlite::{ffi, Connection};

struct Process {
    registry: Arc<Registry<DylibPlugin>>,
    loader: Arc<Loader>,
    /// Plugin name -> the watch on its file.
    watches: Mutex<BTreeMap<String, (PathBuf, AutoReload)>>,
}

fn process() -> Result<&'static Process, String> {
    static PROCESS: OnceLock<Result<Process, String>> = OnceLock::new();
    PROCESS
        .get_or_init(|| {
            Ok(Process {
                registry: Arc::new(Registry::new(Unchecked)),
                loader: Arc::new(Loader::new().map_err(|e| e.to_string())?),
                watches: Mutex::new(BTreeMap::new()),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn options() -> ReloadOptions {
    ReloadOptions::quiesced(Duration::from_secs(10))
}

/// The functions of `names` on `conn` (a name already defined there is
/// left as it is).
fn attach(conn: &Connection, p: &Process, names: &[String]) {
    for name in names {
        // Each on its own: one already defined (SQLite refuses to redefine
        // a function while a statement runs) does not stop the others.
        let _ = Hot::new(Arc::clone(&p.registry))
            .scalar(name, -1, name)
            .attach(conn);
    }
}

fn watch(conn: &Connection, dir: &str) -> Result<i64, String> {
    let p = process()?;
    let suffix = std::env::consts::DLL_SUFFIX;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    let mut names = Vec::new();
    for path in files {
        let package = p.loader.package(&path).map_err(|e| e.to_string())?;
        let name = package.manifest().name().to_owned();
        let mut watches = p.watches.lock();
        if !watches.contains_key(&name) {
            p.registry
                .register(package, b"")
                .map_err(|r| format!("{}: {}", path.display(), r.error))?;
            let auto = AutoReload::spawn_with_config(
                Arc::clone(&p.registry),
                Arc::clone(&p.loader),
                &path,
                Duration::from_millis(50),
                options(),
                Duration::from_secs(30),
                Vec::new(),
            )
            .map_err(|e| e.to_string())?;
            watches.insert(name.clone(), (path, auto));
        }
        names.push(name);
    }
    attach(conn, p, &names);
    Ok(names.len() as i64)
}

fn init(conn: Connection) -> rusqlite::Result<bool> {
    let p = process().map_err(rusqlite::Error::ModuleError)?;
    Hot::new(Arc::clone(&p.registry))
        .attach_admin(
            &conn,
            DylibDeployer::new(Arc::clone(&p.loader)).options(options()),
        )
        .map_err(|e| rusqlite::Error::ModuleError(e.to_string()))?;
    let known: Vec<String> = p.watches.lock().keys().cloned().collect();
    attach(&conn, p, &known);
    conn.create_scalar_function(
        "reload_watch",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        |ctx| {
            let dir: String = ctx.get(0)?;
            // SAFETY: the connection is used on this thread, inside the call.
            let conn = unsafe { ctx.get_connection()? };
            watch(&conn, &dir).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
        },
    )?;
    // Loaded for good: its threads (the watches) must never see the
    // library unmapped under them.
    Ok(true)
}

/// The entry point SQLite calls when the extension is loaded.
///
/// # Safety
///
/// Called by SQLite's loader with a live connection and its API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: per the contract; `init` only registers functions and modules.
    unsafe { Connection::extension_init2(db, pz_err_msg, p_api, init) }
}
