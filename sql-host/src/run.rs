//! The run: clients writing and querying, a change-data pump, and an
//! orchestrator deploying library versions by atomic rename while
//! `AutoReload`s reload them into the registry.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use parking_lot::{Mutex, RwLock};
use reload_core::dylib::{AutoReload, DylibPlugin, Loader, Outcome};
use reload_core::registry::{Handle, Registry};
use reload_core::verify::{Digest, HashPin};
use reload_core::ReloadOptions;
use rusqlite::Connection;

use crate::check::{self, Delivery};
use crate::plugins::Builds;
use crate::scope::{self, Plugins};
use crate::{db, Config, Report};

/// The version that returns wrong scores (deployed once, then reverted).
const WRONG: &str = "1.2.0";

/// How long a deploy may take to be seen, reloaded and drained.
const OUTCOME_WAIT: Duration = Duration::from_secs(60);

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "drain", "epoch", "lease", "slot",
];

/// The process's metrics recorder (installed once; later runs in the same
/// process, as in the tests, read the same one).
fn snapshotter() -> &'static Option<Snapshotter> {
    static RECORDER: OnceLock<Option<Snapshotter>> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().ok().map(|()| snapshotter)
    })
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn body(&mut self) -> String {
        let n = 4 + self.below(8);
        (0..n)
            .map(|_| WORDS[self.below(WORDS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What every thread shares.
struct Shared {
    plugins: Plugins,
    cdc: Handle<DylibPlugin>,
    stop_clients: AtomicBool,
    stop_pump: AtomicBool,
    /// Odd while a deploy is in progress (for the latency split).
    reload_epoch: AtomicU64,
    /// Writers hold it shared; an index check takes it exclusively.
    pause: RwLock<()>,
    next_t: AtomicI64,
    next_doc: AtomicI64,
    /// Set by a client that saw wrong scores from the current version.
    wrong_seen: AtomicBool,
    /// When the wrong version was reverted.
    reverted_at: Mutex<Option<Instant>>,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    queries: u64,
    query_errors: u64,
    write_errors: u64,
    writes: u64,
    udf_rows: u64,
    mixed_statements: u64,
    wrong_rows_good: u64,
    wrong_rows_bad: u64,
    after_revert: u64,
    errors: Vec<String>,
    quiet_us: Vec<u64>,
    reloading_us: Vec<u64>,
    cdc_errors: u64,
    cdc_batches: u64,
}

impl Tally {
    fn error(&mut self, what: &str, e: impl std::fmt::Display) {
        if self.errors.len() < 10 {
            self.errors.push(format!("{what}: {e}"));
        }
    }
}

fn index_request(op: u8, id: i64, text: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(9 + text.len());
    r.push(op);
    r.extend_from_slice(&id.to_le_bytes());
    r.extend_from_slice(text.as_bytes());
    r
}

/// A write to `docs`, with the index updated under the same lease and
/// inside the same write transaction, while holding the pause lock shared
/// (an index check sees both or neither). Inside the transaction because
/// SQLite serializes writers there: two updates of one document reach the
/// index in the order they commit, so the index ends where the table does.
fn write_doc(
    shared: &Shared,
    conn: &Connection,
    id: i64,
    body: &str,
    insert: bool,
) -> Result<(), String> {
    let _writing = shared.pause.read();
    let call = shared.plugins.index.enter().map_err(|e| e.to_string())?;
    let sql = if insert {
        "INSERT INTO docs(id, body) VALUES (?1, ?2)"
    } else {
        "UPDATE docs SET body = ?2 WHERE id = ?1"
    };
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    let written = (|| -> Result<(), String> {
        let changed = conn.execute(sql, (id, body)).map_err(|e| e.to_string())?;
        if changed == 1 {
            call.plugin()
                .call(&index_request(b'A', id, body))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn client(shared: &Shared, db_path: &Path, seed: u64) -> Result<(), String> {
    let conn = db::open(db_path).map_err(|e| e.to_string())?;
    scope::register(&conn, &shared.plugins).map_err(|e| e.to_string())?;
    let mut rng = Rng(seed | 1);
    while !shared.stop_clients.load(Ordering::Relaxed) {
        let roll = rng.below(100);
        if roll < 60 {
            let result = match roll {
                0..=29 => {
                    let id = shared.next_t.fetch_add(1, Ordering::Relaxed);
                    let x = rng.below(1_000_000) as i64;
                    conn.execute("INSERT INTO t(id, x) VALUES (?1, ?2)", (id, x))
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
                30..=44 => {
                    let id = 1 + rng.below(shared.next_t.load(Ordering::Relaxed) as u64 - 1);
                    let x = rng.below(1_000_000) as i64;
                    conn.execute("UPDATE t SET x = ?2 WHERE id = ?1", (id as i64, x))
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
                45..=52 => {
                    let id = shared.next_doc.fetch_add(1, Ordering::Relaxed);
                    write_doc(shared, &conn, id, &rng.body(), true)
                }
                _ => {
                    let id = 1 + rng.below(shared.next_doc.load(Ordering::Relaxed) as u64 - 1);
                    write_doc(shared, &conn, id as i64, &rng.body(), false)
                }
            };
            let mut t = shared.tally.lock();
            t.writes += 1;
            if let Err(e) = result {
                t.write_errors += 1;
                t.error("write", e);
            }
            continue;
        }
        let epoch = shared.reload_epoch.load(Ordering::SeqCst);
        let started = Instant::now();
        let (outcome, report) = if roll < 88 {
            let bucket = rng.below(16) as i64;
            let run = || -> rusqlite::Result<u64> {
                let mut stmt =
                    conn.prepare_cached("SELECT id, x, score(x) FROM t WHERE id % 16 = ?1")?;
                let mut rows = stmt.query([bucket])?;
                let mut n = 0;
                while rows.next()?.is_some() {
                    n += 1;
                }
                Ok(n)
            };
            match scope::scoped(&shared.plugins, run) {
                Ok((result, report)) => (result.map(|n| (n, true)), report),
                Err(e) => (
                    Err(rusqlite::Error::UserFunctionError(e.into())),
                    Default::default(),
                ),
            }
        } else {
            let term = WORDS[rng.below(WORDS.len() as u64) as usize];
            let run = || -> rusqlite::Result<u64> {
                conn.query_row(
                    "SELECT count(*) FROM docs WHERE matches(id, ?1)",
                    [term],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
            };
            match scope::scoped(&shared.plugins, run) {
                Ok((result, report)) => (result.map(|n| (n, false)), report),
                Err(e) => (
                    Err(rusqlite::Error::UserFunctionError(e.into())),
                    Default::default(),
                ),
            }
        };
        let took = started.elapsed().as_micros() as u64;
        let quiet = epoch.is_multiple_of(2) && shared.reload_epoch.load(Ordering::SeqCst) == epoch;
        let reverted_at = *shared.reverted_at.lock();
        let mut t = shared.tally.lock();
        t.queries += 1;
        if quiet {
            t.quiet_us.push(took);
        } else {
            t.reloading_us.push(took);
        }
        match outcome {
            Err(e) => {
                t.query_errors += 1;
                t.error("query", e);
            }
            Ok((rows, scored)) => {
                if scored && rows != report.rows {
                    t.query_errors += 1;
                    t.error("query", format!("{rows} rows but {} scored", report.rows));
                }
                t.udf_rows += report.rows;
                if !report.foreign.is_empty() {
                    t.mixed_statements += 1;
                    let msg = format!(
                        "a statement on {} had rows by {:?}",
                        report.udf_version, report.foreign
                    );
                    t.error("mixed", msg);
                }
                if report.wrong > 0 {
                    if report.udf_version == WRONG {
                        t.wrong_rows_bad += report.wrong;
                        shared.wrong_seen.store(true, Ordering::SeqCst);
                    } else {
                        t.wrong_rows_good += report.wrong;
                        let v = report.udf_version.clone();
                        t.error("wrong", format!("{} wrong rows by {v}", report.wrong));
                    }
                }
                if report.udf_version == WRONG && reverted_at.is_some_and(|at| started > at) {
                    t.after_revert += 1;
                    t.error(
                        "revert",
                        "a statement started after the revert ran on the reverted version",
                    );
                }
            }
        }
    }
    Ok(())
}

/// Feeds the change log to the sink until told to stop and caught up.
fn pump(shared: &Shared, db_path: &Path) -> Result<(), String> {
    let conn = db::open(db_path).map_err(|e| e.to_string())?;
    loop {
        let stopping = shared.stop_pump.load(Ordering::SeqCst);
        let delivered = (|| -> Result<usize, String> {
            let call = shared.cdc.enter().map_err(|e| e.to_string())?;
            let reply = call.plugin().call(b"P").map_err(|e| e.to_string())?;
            let pos = u64::from_le_bytes(reply.try_into().map_err(|_| "position is 8 bytes")?);
            let batch = db::changes_after(&conn, pos, 256).map_err(|e| e.to_string())?;
            if !batch.is_empty() {
                call.plugin()
                    .call(&db::encode_batch(&batch))
                    .map_err(|e| e.to_string())?;
            }
            Ok(batch.len())
        })();
        match delivered {
            Ok(0) if stopping => return Ok(()),
            Ok(0) => thread::sleep(Duration::from_millis(2)),
            Ok(_) => shared.tally.lock().cdc_batches += 1,
            Err(e) => {
                let mut t = shared.tally.lock();
                t.cdc_errors += 1;
                t.error("cdc", e);
                drop(t);
                thread::sleep(Duration::from_millis(10));
                if stopping {
                    return Err("the sink fails at the end".to_owned());
                }
            }
        }
    }
}

/// Compares the index with a rebuild, writers paused.
fn index_equals_rebuild(shared: &Shared, conn: &Connection) -> Result<bool, String> {
    let _paused = shared.pause.write();
    let call = shared.plugins.index.enter().map_err(|e| e.to_string())?;
    let dump = call.plugin().call(b"X").map_err(|e| e.to_string())?;
    let index = check::decode_index(&dump).ok_or("the index dump does not decode")?;
    let rebuilt = check::rebuild_index(conn).map_err(|e| e.to_string())?;
    Ok(index == rebuilt)
}

fn deploy(from: &Path, live: &Path) -> std::io::Result<()> {
    let tmp = live.with_extension("tmp");
    fs::copy(from, &tmp)?;
    fs::rename(&tmp, live)
}

/// What one deploy is expected to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Reload,
    /// Refused, with this text in the reason.
    Refuse(&'static str),
}

/// The deploys of round `r`: (kind, version, expectation).
fn round(r: usize) -> Vec<(&'static str, &'static str, Expect)> {
    let good = if r.is_multiple_of(2) {
        "1.1.0"
    } else {
        "1.0.0"
    };
    let mut steps = vec![
        ("udf", good, Expect::Reload),
        ("cdc", good, Expect::Reload),
        ("index", good, Expect::Reload),
    ];
    if r % 4 == 1 {
        steps.push(("udf", "1.3.0", Expect::Refuse("ABI mismatch")));
    }
    if r % 5 == 1 {
        steps.push(("index", "2.0.0", Expect::Refuse("schema")));
    }
    if r % 5 == 2 {
        steps.push(("index", "1.2.0", Expect::Refuse("cannot open")));
    }
    if r == 3 {
        steps.push(("udf", WRONG, Expect::Reload));
    }
    steps
}

/// Runs the SQL host (see the [crate docs](crate)).
///
/// # Errors
///
/// Setting up failed (files, the database, the watchers, the first
/// registrations).
#[allow(clippy::too_many_lines)]
pub fn run(builds: &Builds, config: &Config) -> Result<Report, String> {
    let started = Instant::now();
    let snapshotter = snapshotter();
    let stage = config
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sql-host-{}", std::process::id())));
    let _ = fs::remove_dir_all(&stage);
    let live_dir = stage.join("live");
    fs::create_dir_all(&live_dir).map_err(|e| e.to_string())?;
    let db_path = stage.join("host.db");
    let sink_path = stage.join("cdc.out");
    let live = |kind: &str| live_dir.join(format!("{kind}{}", std::env::consts::DLL_SUFFIX));

    // Every build is pinned by its SHA-256: the verifier runs on the very
    // bytes each version maps.
    let mut pins = HashPin::new();
    for (variant, path) in builds.all() {
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        pins = pins.with(variant.kind, Digest::of(&bytes));
    }
    let loader = Arc::new(Loader::in_dir(stage.join("copies")).map_err(|e| e.to_string())?);
    let copies_dir = loader.dir().to_owned();
    let registry: Arc<Registry<DylibPlugin>> = Arc::new(Registry::new(pins));
    let configs: BTreeMap<&str, Vec<u8>> = [
        ("udf", Vec::new()),
        (
            "cdc",
            format!("cdc_out={}\n", sink_path.display()).into_bytes(),
        ),
        ("index", Vec::new()),
    ]
    .into_iter()
    .collect();
    for kind in ["udf", "cdc", "index"] {
        deploy(&builds.path(kind, "1.0.0"), &live(kind)).map_err(|e| e.to_string())?;
        let package = loader.package(&live(kind)).map_err(|e| e.to_string())?;
        registry
            .register(package, &configs[kind])
            .map_err(|r| r.to_string())?;
    }
    let handle = |name: &str| registry.handle(name).map_err(|e| e.to_string());
    let shared = Arc::new(Shared {
        plugins: Plugins {
            udf: handle("udf")?,
            index: handle("index")?,
        },
        cdc: handle("cdc")?,
        stop_clients: AtomicBool::new(false),
        stop_pump: AtomicBool::new(false),
        reload_epoch: AtomicU64::new(0),
        pause: RwLock::new(()),
        next_t: AtomicI64::new(1),
        next_doc: AtomicI64::new(1),
        wrong_seen: AtomicBool::new(false),
        reverted_at: Mutex::new(None),
        tally: Mutex::new(Tally::default()),
    });

    // The initial data, the index built from it.
    let conn = db::open(&db_path).map_err(|e| e.to_string())?;
    {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
        for _ in 0..config.initial_rows {
            let id = shared.next_t.fetch_add(1, Ordering::Relaxed);
            conn.execute(
                "INSERT INTO t(id, x) VALUES (?1, ?2)",
                (id, rng.below(1_000_000) as i64),
            )
            .map_err(|e| e.to_string())?;
        }
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
        for _ in 0..config.initial_docs {
            let id = shared.next_doc.fetch_add(1, Ordering::Relaxed);
            write_doc(&shared, &conn, id, &rng.body(), true)?;
        }
    }

    let options = ReloadOptions::quiesced(Duration::from_secs(10));
    let drain = Duration::from_secs(30);
    let mut watchers = BTreeMap::new();
    for kind in ["udf", "cdc", "index"] {
        let auto = AutoReload::spawn_with_config(
            Arc::clone(&registry),
            Arc::clone(&loader),
            &live(kind),
            config.debounce,
            options.clone(),
            drain,
            configs[kind].clone(),
        )
        .map_err(|e| e.to_string())?;
        watchers.insert(kind, auto);
    }

    let mut threads = Vec::new();
    for c in 0..config.clients {
        let shared = Arc::clone(&shared);
        let db_path = db_path.clone();
        threads.push(thread::spawn(move || {
            let r = client(&shared, &db_path, 0x5eed + c as u64 * 7919);
            if let Err(e) = &r {
                let mut t = shared.tally.lock();
                t.query_errors += 1;
                t.error("client", e);
            }
        }));
    }
    let pump_thread = {
        let shared = Arc::clone(&shared);
        let db_path = db_path.clone();
        thread::spawn(move || pump(&shared, &db_path))
    };
    let (live_tx, live_rx) = mpsc::channel::<()>();
    let live_thread = config.live.then(|| {
        let shared = Arc::clone(&shared);
        let registry = Arc::clone(&registry);
        thread::spawn(move || {
            // A message or a disconnect ends it; a timeout prints a line.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                live_rx.recv_timeout(Duration::from_secs(1))
            {
                let t = shared.tally.lock();
                let stats = registry.stats();
                println!(
                    "[{:>5.1}s] queries {} (errors {}), rows scored {}, writes {}, cdc batches {}, reloads {}, refused {}",
                    started.elapsed().as_secs_f64(),
                    t.queries,
                    t.query_errors,
                    t.udf_rows,
                    t.writes,
                    t.cdc_batches,
                    stats.plugins_reloaded,
                    stats.refused
                );
            }
        })
    });

    let mut report = Report::default();
    // Let the load settle before the first deploy.
    thread::sleep(Duration::from_millis(300));
    for r in 0..config.rounds {
        for (kind, version, expect) in round(r) {
            shared.reload_epoch.fetch_add(1, Ordering::SeqCst);
            let result = deploy_one(
                &shared,
                &conn,
                &watchers,
                builds,
                kind,
                version,
                expect,
                &live(kind),
                &registry,
                &mut report,
            );
            shared.reload_epoch.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = result {
                report.unexpected.push(format!("{kind} {version}: {e}"));
            }
            thread::sleep(config.pause);
        }
    }
    // Let queries run on the last versions, then stop.
    thread::sleep(Duration::from_millis(300));
    shared.stop_clients.store(true, Ordering::SeqCst);
    for t in threads {
        if t.join().is_err() {
            report
                .unexpected
                .push("a client thread panicked".to_owned());
        }
    }
    shared.stop_pump.store(true, Ordering::SeqCst);
    match pump_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.unexpected.push(e),
        Err(_) => report.unexpected.push("the pump panicked".to_owned()),
    }
    drop(live_tx);
    if let Some(t) = live_thread {
        let _ = t.join();
    }

    // The final checks, on a quiet database.
    report.index_checks += 1;
    if !index_equals_rebuild(&shared, &conn)? {
        report.index_mismatches += 1;
    }
    report.delivery = check::delivery(&conn, &sink_path)?;
    let state = shared
        .cdc
        .enter()
        .map_err(|e| e.to_string())?
        .plugin()
        .call(b"S")
        .map_err(|e| e.to_string())?;
    report.sink_state_delivered = state
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);

    {
        let mut t = shared.tally.lock();
        report.queries = t.queries;
        report.query_errors = t.query_errors;
        report.writes = t.writes;
        report.write_errors = t.write_errors;
        report.udf_rows = t.udf_rows;
        report.mixed_statements = t.mixed_statements;
        report.wrong_rows_good = t.wrong_rows_good;
        report.wrong_rows_bad = t.wrong_rows_bad;
        report.after_revert = t.after_revert;
        report.cdc_errors = t.cdc_errors;
        report.errors = std::mem::take(&mut t.errors);
        report.quiet_p50_us = check::quantile(&mut t.quiet_us, 0.5);
        report.quiet_p99_us = check::quantile(&mut t.quiet_us, 0.99);
        report.reloading_p50_us = check::quantile(&mut t.reloading_us, 0.5);
        report.reloading_p99_us = check::quantile(&mut t.reloading_us, 0.99);
        report.quiet_queries = t.quiet_us.len() as u64;
        report.reloading_queries = t.reloading_us.len() as u64;
    }
    report.stats = Some(registry.stats());

    // Everything that holds a version goes: the watchers, the handles, the
    // registry. Then no private copy may be left, nor any library mapped.
    drop(watchers);
    drop(shared);
    drop(registry);
    report.copies_left = loader.copies();
    report.mapped_left = check::mapped_from(&copies_dir);
    report.metrics = snapshotter.as_ref().map(figures).unwrap_or_default();
    report.elapsed = started.elapsed();
    drop(loader);
    if !config.keep {
        let _ = fs::remove_dir_all(&stage);
    }
    Ok(report)
}

/// One deploy: the file renamed into place, the watcher's outcome checked
/// against `expect`, and what follows (an index check, a revert).
#[allow(clippy::too_many_arguments)]
fn deploy_one(
    shared: &Shared,
    conn: &Connection,
    watchers: &BTreeMap<&str, AutoReload>,
    builds: &Builds,
    kind: &'static str,
    version: &'static str,
    expect: Expect,
    live: &Path,
    registry: &Registry<DylibPlugin>,
    report: &mut Report,
) -> Result<(), String> {
    let from: PathBuf = builds.path(kind, version);
    deploy(&from, live).map_err(|e| e.to_string())?;
    let watcher = &watchers[kind];
    let outcome =
        watcher
            .next_outcome(OUTCOME_WAIT)
            .ok_or_else(|| match watcher.health().exit() {
                Some(exit) => format!("no outcome from the watcher: {exit}"),
                None => "no outcome from the watcher".to_owned(),
            })?;
    match (outcome, expect) {
        (Outcome::Reloaded { to, drained_in, .. }, Expect::Reload) => {
            if to.to_string() != version {
                return Err(format!("reloaded to {to}"));
            }
            *report.reloads.entry(kind.to_owned()).or_default() += 1;
            match drained_in {
                Some(d) => report.drains.push(d),
                None => return Err("the old version did not drain in time".to_owned()),
            }
        }
        (Outcome::Refused { why, .. }, Expect::Refuse(text)) => {
            let why = why.to_string();
            if !why.contains(text) {
                return Err(format!("refused, but not for `{text}`: {why}"));
            }
            report.refusals.push(format!("{kind} {version}: {why}"));
        }
        (Outcome::Reloaded { to, .. }, Expect::Refuse(_)) => {
            return Err(format!("expected a refusal, but reloaded to {to}"));
        }
        (Outcome::Refused { why, .. }, Expect::Reload) => {
            return Err(format!("expected a reload, refused: {why}"));
        }
        (other, _) => return Err(format!("an outcome this host does not know: {other:?}")),
    }
    if kind == "index" {
        report.index_checks += 1;
        if !index_equals_rebuild(shared, conn)? {
            report.index_mismatches += 1;
        }
    }
    if kind == "udf" && version == WRONG {
        // The clients notice the wrong scores; the host reverts.
        let deadline = Instant::now() + OUTCOME_WAIT;
        while !shared.wrong_seen.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                return Err("the wrong version was never noticed".to_owned());
            }
            thread::sleep(Duration::from_millis(5));
        }
        let reverted = registry
            .revert("udf", b"", ReloadOptions::quiesced(Duration::from_secs(10)))
            .map_err(|r| format!("revert refused: {r}"))?;
        *shared.reverted_at.lock() = Some(Instant::now());
        for change in reverted.changes {
            report.revert_to = Some(change.to.to_string());
            change
                .committed
                .old
                .wait_timeout(Duration::from_secs(30))
                .map_err(|_| "the reverted version did not drain")?;
        }
        report.reverts += 1;
    }
    Ok(())
}

/// The recorder's figures, one line each, sorted.
fn figures(snapshotter: &Snapshotter) -> Vec<String> {
    let mut lines: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Gauge(g) => g.into_inner().to_string(),
                DebugValue::Histogram(samples) => {
                    let mut ms: Vec<u64> = samples
                        .iter()
                        .map(|s| (s.into_inner() * 1e6) as u64)
                        .collect();
                    format!(
                        "n={} p50={}us p99={}us",
                        ms.len(),
                        check::quantile(&mut ms, 0.5),
                        check::quantile(&mut ms, 0.99)
                    )
                }
            };
            format!("{}{{{}}} {value}", key.name(), labels.join(","))
        })
        .collect();
    lines.sort();
    lines
}

/// What a [`Delivery`] must be at the end: exact, and the sink's own
/// state agreeing.
pub(crate) fn delivery_ok(d: &Delivery, sink_state: u64) -> bool {
    d.exact() && sink_state == d.committed
}
