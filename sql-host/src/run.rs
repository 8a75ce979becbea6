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
use reload_sqlite::job::Job;
use reload_sqlite::{Feed, Hot, Pump, Pumping};
use rusqlite::Connection;

use crate::check::{self, Delivery};
use crate::plugins::Builds;
use crate::sql::{self, reference_score};
use crate::{db, Config, Mark, Report};

/// Every plugin kind, each watched in its own file.
const KINDS: [&str; 6] = ["udf", "cdc", "index", "agg", "store", "job"];

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
    /// The clients' SQL objects.
    hot: Hot<DylibPlugin>,
    registry: Arc<Registry<DylibPlugin>>,
    /// The change log's consumers' turns, shared with the pump.
    feed: Feed,
    /// The host's own calls of the index (its checks).
    index: Handle<DylibPlugin>,
    stop_clients: AtomicBool,
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
    /// When the run started.
    started: Instant,
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
    tallies: u64,
    tally_wrong: u64,
    tally_mixed: u64,
    scans: u64,
    scan_rows: u64,
    scan_mixed: u64,
    scan_wrong: u64,
    money_checks: u64,
    money_wrong: u64,
    /// (seconds since the start, client kind, latency µs, version served).
    samples: Vec<(f64, &'static str, u64, String)>,
}

impl Tally {
    fn error(&mut self, what: &str, e: impl std::fmt::Display) {
        if self.errors.len() < 10 {
            self.errors.push(format!("{what}: {e}"));
        }
    }
}

/// A write to `docs`, while holding the pause lock shared (an index check
/// sees it or not, never half of it). The feed's triggers log it; the pump
/// brings it to the index and the sink.
fn write_doc(
    shared: &Shared,
    conn: &Connection,
    id: i64,
    body: &str,
    insert: bool,
) -> Result<(), String> {
    let _writing = shared.pause.read();
    let sql = if insert {
        "INSERT INTO docs(id, body) VALUES (?1, ?2)"
    } else {
        "UPDATE docs SET body = ?2 WHERE id = ?1"
    };
    conn.execute(sql, (id, body))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn client(shared: &Shared, db_path: &Path, seed: u64) -> Result<(), String> {
    let conn = db::open(db_path).map_err(|e| e.to_string())?;
    shared.hot.attach(&conn).map_err(|e| e.to_string())?;
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
        let kind = match roll {
            60..=79 => "score",
            80..=87 => "tally",
            88..=94 => "matches",
            95..=96 => "money",
            _ => "scan",
        };
        let bucket = rng.below(16) as i64;
        let term = WORDS[rng.below(WORDS.len() as u64) as usize];
        let outcome = match kind {
            "score" => score_statement(&conn, bucket),
            "tally" => tally_statement(&conn, bucket),
            "money" => money_statement(&conn, rng.below(1_000_000) as i64),
            "matches" => conn
                .query_row(
                    "SELECT count(*) FROM docs WHERE matches(id, ?1)",
                    [term],
                    |r| r.get::<_, i64>(0),
                )
                .map(|_| Seen::default())
                .map_err(|e| e.to_string()),
            _ => scan_statement(&conn, None),
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
        let at = started.duration_since(shared.started).as_secs_f64();
        match outcome {
            Err(e) => {
                t.query_errors += 1;
                t.error("query", e);
                t.samples.push((at, kind, took, String::new()));
            }
            Ok(seen) => {
                t.samples.push((at, kind, took, seen.version.clone()));
                t.record(kind, &seen);
                if seen.wrong > 0 && kind == "score" {
                    if seen.version == WRONG {
                        t.wrong_rows_bad += seen.wrong;
                        shared.wrong_seen.store(true, Ordering::SeqCst);
                    } else {
                        t.wrong_rows_good += seen.wrong;
                        let v = seen.version.clone();
                        t.error("wrong", format!("{} wrong rows by {v}", seen.wrong));
                    }
                }
                if kind == "score"
                    && seen.version == WRONG
                    && reverted_at.is_some_and(|at| started > at)
                {
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

/// What one statement's rows said.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// The version that served it (the first seen).
    version: String,
    rows: u64,
    /// Rows or groups from another version than `version`.
    mixed: bool,
    /// Rows whose value is wrong.
    wrong: u64,
}

impl Tally {
    fn record(&mut self, kind: &str, seen: &Seen) {
        match kind {
            "score" => {
                self.udf_rows += seen.rows;
                if seen.mixed {
                    self.mixed_statements += 1;
                    self.error(
                        "mixed",
                        format!("a statement on {} mixed versions", seen.version),
                    );
                }
            }
            "tally" => {
                self.tallies += 1;
                if seen.mixed {
                    self.tally_mixed += 1;
                    self.error("tally", format!("a group mixed versions: {}", seen.version));
                }
                if seen.wrong > 0 {
                    self.tally_wrong += 1;
                    self.error("tally", "tally disagrees with count and sum");
                }
            }
            "money" => {
                self.money_checks += 1;
                if seen.wrong > 0 {
                    self.money_wrong += seen.wrong;
                    self.error("money", format!("{} amounts decode wrong", seen.wrong));
                }
            }
            "scan" => {
                self.scans += 1;
                self.scan_rows += seen.rows;
                if seen.mixed {
                    self.scan_mixed += 1;
                    self.error("scan", format!("a scan on {} mixed versions", seen.version));
                }
                if seen.wrong > 0 {
                    self.scan_wrong += 1;
                    self.error(
                        "scan",
                        format!("a scan had {} wrong or missing rows", seen.wrong),
                    );
                }
            }
            _ => {}
        }
    }
}

/// `score` over a sixteenth of `t`, with the version of every row.
fn score_statement(conn: &Connection, bucket: i64) -> Result<Seen, String> {
    let mut stmt = conn
        .prepare_cached("SELECT x, score(x), score_by(x) FROM t WHERE id % 16 = ?1")
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([bucket]).map_err(|e| e.to_string())?;
    let mut seen = Seen::default();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let (x, score, by): (i64, i64, String) = (
            row.get(0).map_err(|e| e.to_string())?,
            row.get(1).map_err(|e| e.to_string())?,
            row.get(2).map_err(|e| e.to_string())?,
        );
        if seen.rows == 0 {
            seen.version = by;
        } else if by != seen.version {
            seen.mixed = true;
        }
        if score != reference_score(x) {
            seen.wrong += 1;
        }
        seen.rows += 1;
    }
    Ok(seen)
}

/// `tally` next to SQL's own `count` and `sum` of the same rows.
fn tally_statement(conn: &Connection, bucket: i64) -> Result<Seen, String> {
    let (tally, count, sum): (String, i64, i64) = conn
        .prepare_cached("SELECT tally(x), count(*), coalesce(sum(x), 0) FROM t WHERE id % 16 = ?1")
        .and_then(|mut s| s.query_row([bucket], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .map_err(|e| e.to_string())?;
    let mut parts = tally.rsplitn(3, ':');
    let (s, n, version) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let right = n.and_then(|n| n.parse().ok()) == Some(count)
        && s.and_then(|s| s.parse().ok()) == Some(sum);
    Ok(Seen {
        version: version.to_owned(),
        rows: 1,
        mixed: version.starts_with("MIXED"),
        wrong: u64::from(!right),
    })
}

/// A price stored through the `money` column type, then every stored
/// amount decoded and compared with its plain value.
fn money_statement(conn: &Connection, cents: i64) -> Result<Seen, String> {
    conn.prepare_cached("INSERT INTO prices(cents, amount) VALUES (?1, money_encode(?1))")
        .and_then(|mut s| s.execute([cents]))
        .map_err(|e| e.to_string())?;
    let (rows, wrong): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(money_decode(amount) IS NOT cents), 0) FROM prices",
        )
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(|e| e.to_string())?;
    Ok(Seen {
        version: String::new(),
        rows: rows as u64,
        mixed: false,
        wrong: wrong as u64,
    })
}

/// A whole scan of `store`, with a pause every 100 rows if `slow`.
fn scan_statement(conn: &Connection, slow: Option<Duration>) -> Result<Seen, String> {
    let mut stmt = conn
        .prepare_cached("SELECT k, v, version FROM store")
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut seen = Seen::default();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let (k, v, version): (i64, i64, String) = (
            row.get(0).map_err(|e| e.to_string())?,
            row.get(1).map_err(|e| e.to_string())?,
            row.get(2).map_err(|e| e.to_string())?,
        );
        if seen.rows == 0 {
            seen.version = version;
        } else if version != seen.version {
            seen.mixed = true;
        }
        if k != seen.rows as i64 || v != k * k {
            seen.wrong += 1;
        }
        seen.rows += 1;
        if let Some(pause) = slow.filter(|_| seen.rows.is_multiple_of(100)) {
            thread::sleep(pause);
        }
    }
    if seen.rows != STORE_ROWS {
        seen.wrong += STORE_ROWS.abs_diff(seen.rows);
    }
    Ok(seen)
}

/// Rows the `store` plugin serves.
const STORE_ROWS: u64 = 2_000;

/// Scans `store` slowly (about a second each) until told to stop: the
/// drain of a `store` version waits for the scan that holds it.
fn scanner(shared: &Shared, db_path: &Path) -> Result<(), String> {
    let conn = db::open(db_path).map_err(|e| e.to_string())?;
    shared.hot.attach(&conn).map_err(|e| e.to_string())?;
    while !shared.stop_clients.load(Ordering::Relaxed) {
        let started = Instant::now();
        let outcome = scan_statement(&conn, Some(Duration::from_millis(50)));
        let took = started.elapsed().as_micros() as u64;
        let at = started.duration_since(shared.started).as_secs_f64();
        let mut t = shared.tally.lock();
        t.queries += 1;
        match outcome {
            Ok(seen) => {
                t.samples
                    .push((at, "slow scan", took, seen.version.clone()));
                t.record("scan", &seen);
            }
            Err(e) => {
                t.query_errors += 1;
                t.error("slow scan", e);
            }
        }
    }
    Ok(())
}

/// Compares the index with a rebuild, writers paused.
fn index_equals_rebuild(shared: &Shared, conn: &Connection) -> Result<bool, String> {
    let _paused = shared.pause.write();
    shared
        .feed
        .catch_up(conn, &shared.registry, "index")
        .map_err(|e| e.to_string())?;
    let call = shared.index.enter().map_err(|e| e.to_string())?;
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
        ("agg", good, Expect::Reload),
        ("store", good, Expect::Reload),
        ("job", good, Expect::Reload),
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
        ("agg", Vec::new()),
        ("store", Vec::new()),
        ("job", Vec::new()),
        ("money", Vec::new()),
    ]
    .into_iter()
    .collect();
    // `money` is deployed from SQL only (its column check runs there).
    for kind in KINDS.into_iter().chain(["money"]) {
        deploy(&builds.path(kind, "1.0.0"), &live(kind)).map_err(|e| e.to_string())?;
        let package = loader.package(&live(kind)).map_err(|e| e.to_string())?;
        registry
            .register(package, &configs[kind])
            .map_err(|r| r.to_string())?;
    }
    let handle = |name: &str| registry.handle(name).map_err(|e| e.to_string());
    let mut report = Report::default();
    for kind in KINDS.into_iter().chain(["money"]) {
        report
            .first_versions
            .insert(kind.to_owned(), "1.0.0".to_owned());
    }
    let shared = Arc::new(Shared {
        hot: sql::hot(&registry),
        registry: Arc::clone(&registry),
        feed: db::feed(),
        index: handle("index")?,
        stop_clients: AtomicBool::new(false),
        reload_epoch: AtomicU64::new(0),
        pause: RwLock::new(()),
        next_t: AtomicI64::new(1),
        next_doc: AtomicI64::new(1),
        wrong_seen: AtomicBool::new(false),
        reverted_at: Mutex::new(None),
        started,
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
    // Stored amounts for the column type's check, written through it.
    shared.hot.attach(&conn).map_err(|e| e.to_string())?;
    conn.execute_batch(
        "INSERT INTO prices(cents, amount)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
         SELECT i * 101, money_encode(i * 101) FROM n",
    )
    .map_err(|e| e.to_string())?;

    let options = ReloadOptions::quiesced(Duration::from_secs(10));
    let drain = Duration::from_secs(30);
    // The orchestrator's connection manages plugins from SQL too.
    let deployer = sql::deployer(Arc::clone(&loader), configs["cdc"].clone(), options.clone());
    shared
        .hot
        .attach_admin(&conn, deployer)
        .map_err(|e| e.to_string())?;
    let mut watchers = BTreeMap::new();
    for kind in KINDS {
        let auto = AutoReload::spawn_with_config(
            Arc::clone(&registry),
            Arc::clone(&loader),
            &live(kind),
            config.debounce,
            // The stateless kinds need no quiesce: the old version serves
            // the statements that started on it (a slow scan for up to a
            // second) while new ones go to the new version. The stateful
            // ones carry state, streams and indexes across, quiesced.
            if matches!(kind, "agg" | "store") {
                ReloadOptions::immediate()
            } else {
                options.clone()
            },
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
    let job = Job::spawn(
        Arc::clone(&registry),
        "job",
        Duration::from_millis(20),
        db::open(&db_path).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let scanner_thread = {
        let shared = Arc::clone(&shared);
        let db_path = db_path.clone();
        thread::spawn(move || {
            if let Err(e) = scanner(&shared, &db_path) {
                let mut t = shared.tally.lock();
                t.query_errors += 1;
                t.error("scanner", e);
            }
        })
    };
    // The sink and the index consume the change log.
    let pump = Arc::new(
        Pump::spawn(
            shared.feed.clone(),
            Arc::clone(&registry),
            &["cdc", "index"],
            db::open(&db_path).map_err(|e| e.to_string())?,
            Pumping::every(Duration::from_millis(2)),
        )
        .map_err(|e| e.to_string())?,
    );
    let (live_tx, live_rx) = mpsc::channel::<()>();
    let live_thread = config.live.then(|| {
        let shared = Arc::clone(&shared);
        let registry = Arc::clone(&registry);
        let pump = Arc::clone(&pump);
        thread::spawn(move || {
            // A message or a disconnect ends it; a timeout prints a line.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                live_rx.recv_timeout(Duration::from_secs(1))
            {
                let t = shared.tally.lock();
                let stats = registry.stats();
                let cdc_batches = pump.stats().consumers.get("cdc").map_or(0, |c| c.batches);
                println!(
                    "[{:>5.1}s] queries {} (errors {}), rows scored {}, writes {}, cdc batches {}, reloads {}, refused {}",
                    started.elapsed().as_secs_f64(),
                    t.queries,
                    t.query_errors,
                    t.udf_rows,
                    t.writes,
                    cdc_batches,
                    stats.plugins_reloaded,
                    stats.refused
                );
            }
        })
    });

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
        if r % 6 == 4 {
            shared.reload_epoch.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = manage_from_sql(&shared, &conn, builds, r, &stage, &mut report) {
                report.unexpected.push(format!("from SQL, round {r}: {e}"));
            }
            shared.reload_epoch.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Let queries run on the last versions, then stop.
    thread::sleep(Duration::from_millis(300));
    shared.stop_clients.store(true, Ordering::SeqCst);
    threads.push(scanner_thread);
    for t in threads {
        if t.join().is_err() {
            report
                .unexpected
                .push("a client thread panicked".to_owned());
        }
    }
    let job_stats = job.stop();
    report.job_ticks = job_stats.ticks;
    report.job_failures = job_stats.failures;
    if let Some(e) = job_stats.last_error {
        report.errors.push(format!("job: {e}"));
    }
    report.job_versions = conn
        .query_row("SELECT count(DISTINCT version) FROM job_log", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| e.to_string())? as u64;
    drop(live_tx);
    if let Some(t) = live_thread {
        let _ = t.join();
    }
    // The pump stops; the last changes are delivered from here.
    match Arc::try_unwrap(pump) {
        Ok(pump) => {
            let stats = pump.stop();
            for (name, c) in &stats.consumers {
                if let Some(e) = &c.last_error {
                    report.errors.push(format!("{name}: {e}"));
                }
            }
            report.cdc_errors = stats.consumers.get("cdc").map_or(0, |c| c.failures);
            report.index_feed_errors = stats.consumers.get("index").map_or(0, |c| c.failures);
        }
        Err(_) => report
            .unexpected
            .push("the pump is still shared".to_owned()),
    }
    for consumer in ["cdc", "index"] {
        if let Err(e) = shared.feed.catch_up(&conn, &registry, consumer) {
            report
                .unexpected
                .push(format!("catching {consumer} up: {e}"));
        }
    }

    // The final checks, on a quiet database.
    report.index_checks += 1;
    if !index_equals_rebuild(&shared, &conn)? {
        report.index_mismatches += 1;
    }
    report.delivery = check::delivery(&conn, &sink_path)?;
    let state = registry
        .enter("cdc")
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
        report.tallies = t.tallies;
        report.tally_wrong = t.tally_wrong;
        report.tally_mixed = t.tally_mixed;
        report.scans = t.scans;
        report.scan_rows = t.scan_rows;
        report.scan_mixed = t.scan_mixed;
        report.scan_wrong = t.scan_wrong;
        report.samples = std::mem::take(&mut t.samples);
        report.errors.append(&mut t.errors);
        report.money_checks = t.money_checks;
        report.money_wrong = t.money_wrong;
        report.quiet_p50_us = check::quantile(&mut t.quiet_us, 0.5);
        report.quiet_p99_us = check::quantile(&mut t.quiet_us, 0.99);
        report.reloading_p50_us = check::quantile(&mut t.reloading_us, 0.5);
        report.reloading_p99_us = check::quantile(&mut t.reloading_us, 0.99);
        report.quiet_queries = t.quiet_us.len() as u64;
        report.reloading_queries = t.reloading_us.len() as u64;
    }
    report.stats = Some(registry.stats());
    report.plugins_table = plugins_table(&conn).map_err(|e| e.to_string())?;

    // Everything that holds a version goes: the watchers, the handles, the
    // registry. Then no private copy may be left, nor any library mapped.
    drop(watchers);
    // The orchestrator's connection holds the registry through its SQL objects.
    drop(conn);
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
    let at = shared.started.elapsed().as_secs_f64();
    let mark = |what, drain| Mark {
        at,
        plugin: kind.to_owned(),
        version: version.to_owned(),
        what,
        drain,
    };
    match &outcome {
        Outcome::Reloaded { drained_in, .. } => report.marks.push(mark("deploy", *drained_in)),
        Outcome::Refused { .. } => report.marks.push(mark("refused", None)),
        _ => {}
    }
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
        let reverted_at = Instant::now();
        *shared.reverted_at.lock() = Some(reverted_at);
        for change in reverted.changes {
            report.revert_to = Some(change.to.to_string());
            change
                .committed
                .old
                .wait_timeout(Duration::from_secs(30))
                .map_err(|_| "the reverted version did not drain")?;
            report.marks.push(Mark {
                at: reverted_at.duration_since(shared.started).as_secs_f64(),
                plugin: "udf".to_owned(),
                version: change.to.to_string(),
                what: "revert",
                drain: Some(reverted_at.elapsed()),
            });
        }
        report.reverts += 1;
    }
    Ok(())
}

/// A DBA's session: `udf` deployed from SQL to the other good version
/// and reverted back, then two deploys that must be refused with the
/// version serving unchanged: a file that does not exist, and a library
/// of another plugin.
fn manage_from_sql(
    shared: &Shared,
    conn: &Connection,
    builds: &Builds,
    r: usize,
    stage: &Path,
    report: &mut Report,
) -> Result<(), String> {
    let serving = |conn: &Connection| -> Result<String, String> {
        conn.query_row(
            "SELECT version FROM reload_plugins WHERE name = 'udf'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())
    };
    let before = serving(conn)?;
    let other = if r.is_multiple_of(2) {
        "1.0.0"
    } else {
        "1.1.0"
    };
    let path = builds.path("udf", other);
    let to: String = conn
        .query_row(
            "SELECT reload_deploy('udf', ?1)",
            [path.to_string_lossy()],
            |r| r.get(0),
        )
        .map_err(|e| format!("deploy: {e}"))?;
    if to != other {
        return Err(format!("deployed {to}, not {other}"));
    }
    let back: String = conn
        .query_row("SELECT reload_revert('udf')", [], |r| r.get(0))
        .map_err(|e| format!("revert: {e}"))?;
    if back != before {
        return Err(format!("reverted to {back}, not {before}"));
    }
    // The column type: a compatible version deploys; one that cannot read
    // the stored amounts is refused on the real rows.
    let money_other = if r.is_multiple_of(4) {
        "1.1.0"
    } else {
        "1.0.0"
    };
    let to: String = conn
        .query_row(
            "SELECT reload_deploy('money', ?1)",
            [builds.path("money", money_other).to_string_lossy()],
            |r| r.get(0),
        )
        .map_err(|e| format!("money deploy: {e}"))?;
    if to != money_other {
        return Err(format!("money deployed {to}, not {money_other}"));
    }
    let e = conn
        .query_row(
            "SELECT reload_deploy('money', ?1)",
            [builds.path("money", "2.0.0").to_string_lossy()],
            |r| r.get::<_, String>(0),
        )
        .map(|v| format!("deployed {v}"))
        .unwrap_or_else(|e| e.to_string());
    if !e.contains("cannot read prices.amount") {
        return Err(format!(
            "money 2.0.0 should be refused on the stored rows: {e}"
        ));
    }
    report.sql_refusals.push(e);
    let at = shared.started.elapsed().as_secs_f64();
    for (what, version) in [("sql deploy", money_other), ("sql refused", "2.0.0")] {
        report.marks.push(Mark {
            at,
            plugin: "money".to_owned(),
            version: version.to_owned(),
            what,
            drain: None,
        });
    }
    report.sql_deploys += 3;
    let now = || shared.started.elapsed().as_secs_f64();
    let sql_mark = |what, version: &str| Mark {
        at: now(),
        plugin: "udf".to_owned(),
        version: version.to_owned(),
        what,
        drain: None,
    };
    report.marks.push(sql_mark("sql deploy", other));
    report.marks.push(sql_mark("sql revert", &before));
    let refusals = [
        (stage.join("missing.so"), "cannot deploy `udf`"),
        (builds.path("agg", "1.0.0"), "is plugin `agg`, not `udf`"),
    ];
    for (path, want) in refusals {
        let e = conn
            .query_row(
                "SELECT reload_deploy('udf', ?1)",
                [path.to_string_lossy()],
                |r| r.get::<_, String>(0),
            )
            .map(|v| format!("deployed {v}"))
            .unwrap_or_else(|e| e.to_string());
        if !e.contains(want) {
            return Err(format!("expected a refusal with `{want}`: {e}"));
        }
        if serving(conn)? != before {
            return Err("a refused deploy changed the version".to_owned());
        }
        report.sql_refusals.push(e);
        report.marks.push(sql_mark("sql refused", "?"));
    }
    Ok(())
}

/// `reload_plugins`, one line per plugin.
fn plugins_table(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name, version, generation, in_flight, draining, calls, errors, reloads, refusals, coalesce(revert_to, '-')
         FROM reload_plugins ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "{:<6} {:<6} gen {:<4} in flight {} draining {} calls {:<9} errors {} reloads {:<3} refusals {:<3} revert to {}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, i64>(7)?,
            r.get::<_, i64>(8)?,
            r.get::<_, String>(9)?,
        ))
    })?;
    rows.collect()
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
