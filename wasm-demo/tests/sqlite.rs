//! WebAssembly plugins behind SQL functions, through `reload-sqlite`: the
//! same statement scope as native libraries, and a guest's trap a SQL
//! error naming the plugin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reload_core::registry::Registry;
use reload_core::verify::Unchecked;
use reload_core::wasm::{Limits, Runtime, WasmPlugin};
use reload_core::ReloadOptions;
use reload_sqlite::{Codec, Hot, WireError};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use wasm_demo::guests::{self, Counter};

/// The `score` guest's format: `x` as 8 bytes in, the score as 8 out.
struct Score;

impl Codec for Score {
    fn encode(&self, args: &[ValueRef<'_>], out: &mut Vec<u8>) -> Result<(), WireError> {
        match args {
            [ValueRef::Integer(x)] => {
                out.extend_from_slice(&x.to_le_bytes());
                Ok(())
            }
            _ => Err(WireError::Other("score takes one integer".into())),
        }
    }

    fn decode(&self, reply: &[u8]) -> Result<Value, WireError> {
        let score = reply
            .first_chunk::<8>()
            .ok_or(WireError::Truncated { at: 0 })?;
        Ok(Value::Integer(i64::from_le_bytes(*score)))
    }
}

fn setup() -> (Runtime, Arc<Registry<WasmPlugin>>, Connection) {
    let runtime = Runtime::new(Limits {
        deadline: Duration::from_secs(30),
        memory: 1 << 20,
        ..Limits::default()
    })
    .expect("engine");
    let registry = Arc::new(Registry::new(Unchecked));
    let conn = Connection::open_in_memory().expect("db");
    conn.execute_batch(
        "CREATE TABLE t(x INTEGER);
         INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT i FROM n;",
    )
    .expect("table");
    (runtime, registry, conn)
}

#[test]
fn a_guest_reloaded_mid_statement_serves_the_statement_to_its_end() {
    let (runtime, registry, conn) = setup();
    let package = runtime.package(guests::score("1.0.0")).expect("packages");
    registry
        .register(package, b"")
        .map_err(|r| r.error)
        .expect("registered");
    Hot::new(Arc::clone(&registry))
        .scalar_with("score", 1, "score", Score)
        .attach(&conn)
        .expect("attached");
    let mut stmt = conn.prepare("SELECT x, score(x) FROM t").expect("prepares");
    let mut rows = stmt.query([]).expect("runs");
    let mut n = 0;
    let mut olds = Vec::new();
    while let Some(row) = rows.next().expect("a row") {
        if n == 100 {
            let next = runtime.package(guests::score("2.0.0")).expect("packages");
            olds.push(
                registry
                    .reload(vec![next], b"", ReloadOptions::immediate())
                    .map_err(|r| r.error)
                    .expect("reloads"),
            );
        }
        let (x, s): (i64, i64) = (row.get(0).expect("x"), row.get(1).expect("score"));
        assert_eq!(s, x * 31 + 7);
        n += 1;
    }
    assert_eq!(n, 1000);
    let old = &olds[0].changes[0].committed.old;
    drop(rows);
    assert!(old.wait_drained(Some(Instant::now() + Duration::from_secs(30))));
    let version: String = registry.list()[0].version.to_string();
    assert_eq!(version, "2.0.0");
}

#[test]
fn a_guest_that_traps_is_a_sql_error_and_the_connection_serves_on() {
    let (runtime, registry, conn) = setup();
    // The counter guest replies with a pointer past its memory.
    let bad = Counter {
        out_of_bounds: true,
        ..Counter::new("1.0.0")
    };
    let package = runtime.package(guests::counter(&bad)).expect("packages");
    registry
        .register(package, b"")
        .map_err(|r| r.error)
        .expect("registered");
    Hot::new(Arc::clone(&registry))
        .scalar_with("count", 1, "counter", Score)
        .attach(&conn)
        .expect("attached");
    let e = conn
        .query_row("SELECT count(1)", [], |r| r.get::<_, i64>(0))
        .expect_err("a reply out of bounds");
    assert!(
        e.to_string().contains("plugin `counter` 1.0.0 failed"),
        "{e}"
    );
    assert_eq!(registry.stats().per_plugin["counter"].in_flight, 0);
    let one: i64 = conn
        .query_row("SELECT 1", [], |r| r.get(0))
        .expect("usable");
    assert_eq!(one, 1);
}

/// Components in the SQL host beside a native library, in one statement:
/// `score` is a `reload:plugin` component behind `reload-sqlite`'s `Hot`
/// (reloaded mid-statement), `native_score` the SQL host's native `udf`
/// library, and `typed_score` a component of the host's own typed world
/// (`my:udf@1.1.0`), called from a scalar function the host registers.
#[test]
fn components_serve_sql_beside_a_native_library() {
    use reload_core::dylib::{DylibPlugin, Loader};
    use reload_core::wasm::component::{ComponentPlugin, ComponentRuntime, PluginWorld};
    use rusqlite::functions::FunctionFlags;
    use wasm_demo::udf::{self, UdfWorld};
    use wasm_guests::{wat, with_manifest};

    let (_, _, conn) = setup();
    let manifest = |v: &str| format!("reload-manifest 1\nname score\nversion {v}\n");
    let limits = Limits {
        deadline: Duration::from_secs(30),
        ..Limits::default()
    };
    let bytes_runtime = ComponentRuntime::plugins(limits.clone()).expect("engine");
    let components: Arc<Registry<ComponentPlugin<PluginWorld>>> =
        Arc::new(Registry::new(Unchecked));
    let package = bytes_runtime
        .package(with_manifest(&wat::score(), &manifest("1.0.0")))
        .expect("packages");
    components
        .register(package, b"")
        .map_err(|r| r.error)
        .expect("registered");
    Hot::new(Arc::clone(&components))
        .scalar_with("score", 1, "score", Score)
        .attach(&conn)
        .expect("attached");

    let builds = sql_host::plugins::build().expect("the native libraries build");
    let natives: Arc<Registry<DylibPlugin>> = Arc::new(Registry::new(Unchecked));
    let loader = Loader::new().expect("loader");
    let native = loader
        .package(&builds.path("udf", "1.0.0"))
        .expect("packages");
    natives
        .register(native, b"")
        .map_err(|r| r.error)
        .expect("registered");
    Hot::new(Arc::clone(&natives))
        .scalar_with("native_score", 1, "udf", Score)
        .attach(&conn)
        .expect("attached");

    let typed_runtime = ComponentRuntime::new(limits, UdfWorld::default()).expect("engine");
    let typed: Arc<Registry<ComponentPlugin<UdfWorld>>> = Arc::new(Registry::new(Unchecked));
    let package = typed_runtime
        .package(with_manifest(&wat::score_udf(), &manifest("1.0.0")))
        .expect("packages");
    typed
        .register(package, b"")
        .map_err(|r| r.error)
        .expect("registered");
    let calls = Arc::clone(&typed);
    conn.create_scalar_function("typed_score", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let x: i64 = ctx.get(0)?;
        calls
            .call("score", |c| udf::eval(c.plugin(), x))
            .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?
            .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
    })
    .expect("registers");

    let mut stmt = conn
        .prepare("SELECT x, score(x), native_score(x), typed_score(x) FROM t")
        .expect("prepares");
    let mut rows = stmt.query([]).expect("runs");
    let mut n = 0;
    let mut reloads = Vec::new();
    while let Some(row) = rows.next().expect("a row") {
        if n == 500 {
            let next = bytes_runtime
                .package(with_manifest(&wat::score(), &manifest("2.0.0")))
                .expect("packages");
            reloads.push(
                components
                    .reload(vec![next], b"", ReloadOptions::immediate())
                    .map_err(|r| r.error)
                    .expect("reloads mid-statement"),
            );
        }
        let x: i64 = row.get(0).expect("x");
        for column in 1..=3 {
            let s: i64 = row.get(column).expect("a score");
            assert_eq!(s, x * 31 + 7, "column {column} at x = {x}");
        }
        n += 1;
    }
    assert_eq!(n, 1000);
    drop(rows);
    let old = &reloads[0].changes[0].committed.old;
    assert!(old.wait_drained(Some(Instant::now() + Duration::from_secs(30))));
    assert_eq!(components.list()[0].version.to_string(), "2.0.0");
}
