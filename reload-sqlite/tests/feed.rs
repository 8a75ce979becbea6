//! The change feed: the log holds exactly the committed changes of any
//! client; a consumer gets each once, in order, across reloads; a consumer
//! that breaks the protocol is a typed error that moves nothing; the pump
//! keeps consumers caught up and trims below the slowest.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Behaviour, Fixture, LONG};
use reload_core::ReloadOptions;
use reload_sqlite::feed::{decode_batch, encode_batch, Change, Op};
use reload_sqlite::{Feed, FeedError, Pump, Pumping};
use rusqlite::types::Value;
use rusqlite::Connection;

fn db(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "reload-sqlite-feed-{name}-{}.db",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn open(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(LONG).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, x INTEGER);
         CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, body TEXT);",
    )
    .unwrap();
    conn
}

fn feed() -> Feed {
    Feed::new("changes")
        .capture("t", "x")
        .capture("docs", "body")
}

/// What a consumer applied: each change with the version that applied it.
#[derive(Default)]
struct Applied {
    changes: Vec<(String, Change)>,
    /// The versions of each batch's changes (one per batch).
    batches: Vec<Vec<String>>,
}

/// A consumer whose position and output live outside the plugin (as an
/// external sink's offset does), so every version continues from it:
/// skips what is at or below its position, refuses a gap.
fn consumer(out: Arc<Mutex<Applied>>) -> Behaviour {
    Arc::new(move |version, input| {
        let mut out = out.lock().unwrap();
        let position = out.changes.last().map_or(0, |c| c.1.pos);
        match input.split_first() {
            Some((b'P', [])) => Ok(position.to_le_bytes().to_vec()),
            Some((b'D', records)) => {
                let mut at = position;
                let mut batch = Vec::new();
                for c in decode_batch(records).map_err(|e| e.to_string())? {
                    if c.pos <= at {
                        continue;
                    }
                    if c.pos != at + 1 {
                        return Err(format!("gap after {at}: {}", c.pos));
                    }
                    at = c.pos;
                    batch.push(version.to_owned());
                    out.changes.push((version.to_owned(), c));
                }
                out.batches.push(batch);
                Ok(at.to_le_bytes().to_vec())
            }
            _ => Err("unknown request".to_owned()),
        }
    })
}

/// A fixture and a fresh database file `name` with the feed installed.
fn installed(name: &str) -> (Fixture, std::path::PathBuf, Connection, Feed) {
    let path = db(name);
    let conn = open(&path);
    let feed = feed();
    feed.install(&conn).unwrap();
    (Fixture::new(), path, conn, feed)
}

/// [`installed`], with consumer `sink` 1.0.0 registered, applying to the
/// returned `Applied`.
fn with_sink(
    name: &str,
) -> (
    Fixture,
    std::path::PathBuf,
    Connection,
    Feed,
    Arc<Mutex<Applied>>,
) {
    let (f, path, conn, feed) = installed(name);
    let out = Arc::new(Mutex::new(Applied::default()));
    f.register("sink", "1.0.0", consumer(Arc::clone(&out)));
    (f, path, conn, feed, out)
}

#[test]
fn the_log_holds_exactly_the_committed_changes_of_any_client() {
    let path = db("log");
    let conn = open(&path);
    let feed = feed();
    feed.install(&conn).unwrap();
    feed.install(&conn).unwrap(); // idempotent

    // A client that knows nothing of the crate.
    let other = open(&path);
    other
        .execute_batch(
            "INSERT INTO t VALUES (1, 10);
             INSERT INTO docs VALUES (7, 'hello');
             UPDATE t SET x = 11 WHERE id = 1;
             BEGIN; INSERT INTO t VALUES (2, 20); ROLLBACK;
             DELETE FROM docs WHERE id = 7;
             INSERT INTO t VALUES (3, 30);",
        )
        .unwrap();
    let changes = feed.changes_after(&conn, 0, 100).unwrap();
    let seen: Vec<(u64, &str, Op, i64, Value)> = changes
        .iter()
        .map(|c| (c.pos, c.table.as_str(), c.op, c.rowid, c.value.clone()))
        .collect();
    // The rolled-back insert took its position back: positions are 1..=5.
    assert_eq!(
        seen,
        vec![
            (1, "t", Op::Insert, 1, Value::Integer(10)),
            (2, "docs", Op::Insert, 7, Value::Text("hello".into())),
            (3, "t", Op::Update, 1, Value::Integer(11)),
            (4, "docs", Op::Delete, 7, Value::Null),
            (5, "t", Op::Insert, 3, Value::Integer(30)),
        ]
    );
    assert_eq!(feed.bounds(&conn).unwrap(), Some((1, 5)));
    assert_eq!(feed.changes_after(&conn, 3, 1).unwrap()[0].pos, 4);

    // Trimming never gives a position back.
    assert_eq!(feed.trim(&conn, 5).unwrap(), 5);
    assert_eq!(feed.bounds(&conn).unwrap(), None);
    conn.execute("INSERT INTO t VALUES (4, 40)", []).unwrap();
    assert_eq!(feed.bounds(&conn).unwrap(), Some((6, 6)));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_capture_of_a_missing_column_or_table_installs_nothing() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER)")
        .unwrap();
    for feed in [
        Feed::new("log").capture("t", "x").capture("t", "nope"),
        Feed::new("log").capture("t", "x").capture("missing", "x"),
    ] {
        let e = feed.install(&conn).unwrap_err().to_string();
        assert!(e.contains("nope") || e.contains("missing"), "{e}");
        let objects: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'log%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(objects, 0, "the failed install left objects behind");
        conn.execute("INSERT INTO t VALUES (NULL, 1)", []).unwrap();
    }
    // A table of the log's name that is not a log, and a feed of its own
    // log, are refused before any trigger could break a write.
    conn.execute_batch("CREATE TABLE taken(a)").unwrap();
    let e = Feed::new("taken")
        .capture("t", "x")
        .install(&conn)
        .unwrap_err();
    assert!(matches!(e, FeedError::Sql(_)), "{e}");
    let e = Feed::new("log")
        .capture("LOG", "val")
        .install(&conn)
        .unwrap_err();
    assert!(matches!(e, FeedError::Install { .. }), "{e}");
    conn.execute("INSERT INTO t VALUES (NULL, 2)", []).unwrap();
    let triggers: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(triggers, 0);

    // Odd names are quoted, not spliced.
    conn.execute_batch("CREATE TABLE \"we'ird \"\"t\"(v)")
        .unwrap();
    let feed = Feed::new("a \"log\"").capture("we'ird \"t", "v");
    feed.install(&conn).unwrap();
    conn.execute("INSERT INTO \"we'ird \"\"t\" VALUES ('x')", [])
        .unwrap();
    let c = &feed.changes_after(&conn, 0, 10).unwrap()[0];
    assert_eq!((c.table.as_str(), c.op), ("we'ird \"t", Op::Insert));
}

#[test]
fn batches_round_trip_and_garbage_is_refused() {
    let changes = vec![
        Change {
            pos: 1,
            table: "t".into(),
            op: Op::Insert,
            rowid: -5,
            value: Value::Real(1.5),
        },
        Change {
            pos: u64::MAX,
            table: String::new(),
            op: Op::Delete,
            rowid: i64::MIN,
            value: Value::Blob(vec![0, 255]),
        },
    ];
    let bytes = encode_batch(&changes);
    assert_eq!(bytes[0], b'D');
    assert_eq!(decode_batch(&bytes[1..]).unwrap(), changes);
    assert_eq!(decode_batch(&[]).unwrap(), vec![]);
    // Every truncation is an error, never a short batch.
    let first_record = encode_batch(&changes[..1]).len();
    for cut in (2..bytes.len()).filter(|&c| c != first_record) {
        assert!(decode_batch(&bytes[1..cut]).is_err(), "cut at {cut}");
    }
    let mut bad_op = bytes.clone();
    bad_op[9] = b'X';
    assert!(decode_batch(&bad_op[1..]).is_err());
}

#[test]
fn every_change_reaches_the_consumer_once_in_order_across_100_reloads() {
    let (f, path, conn, feed, out) = with_sink("reloads");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (Arc::clone(&stop), path.clone());
        std::thread::spawn(move || {
            let w = open(&path);
            let mut n = 0i64;
            while !stop.load(SeqCst) {
                n += 1;
                w.execute("INSERT INTO t VALUES (?1, ?1)", [n]).unwrap();
                if n % 3 == 0 {
                    w.execute("UPDATE docs SET body = ?1 WHERE id = 1", [n.to_string()])
                        .unwrap();
                    w.execute("INSERT OR IGNORE INTO docs VALUES (1, 'first')", [])
                        .unwrap();
                }
            }
            n
        })
    };
    let pump = Pump::spawn(
        feed.clone(),
        Arc::clone(&f.registry),
        &["sink"],
        open(&path),
        Pumping {
            batch: 7,
            ..Pumping::every(Duration::ZERO)
        },
    )
    .unwrap();
    wait_for("1.0.0 to take changes", || {
        !out.lock().unwrap().changes.is_empty()
    });
    for v in 2..=101 {
        let version = format!("{v}.0.0");
        f.reload(
            "sink",
            &version,
            consumer(Arc::clone(&out)),
            ReloadOptions::immediate(),
        );
        // Each version takes some changes before the next reload.
        wait_for("the new version to take changes", || {
            out.lock()
                .unwrap()
                .changes
                .last()
                .is_some_and(|c| c.0 == version)
        });
    }
    stop.store(true, SeqCst);
    let written = writer.join().unwrap();
    let stats = pump.stop();
    let end = feed.catch_up(&conn, &f.registry, "sink").unwrap().position;

    let out = out.lock().unwrap();
    let logged = feed.changes_after(&conn, 0, usize::MAX).unwrap();
    assert_eq!(logged.len() as u64, end);
    assert!(logged.len() as i64 >= written, "every insert logged");
    let applied: Vec<&Change> = out.changes.iter().map(|(_, c)| c).collect();
    assert_eq!(
        applied,
        logged.iter().collect::<Vec<_>>(),
        "once each, in order"
    );
    assert!(out
        .batches
        .iter()
        .all(|b| b.windows(2).all(|w| w[0] == w[1])));
    let versions: std::collections::BTreeSet<&str> =
        out.changes.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(versions.len(), 101, "every version took changes");
    assert_eq!(stats.consumers["sink"].failures, 0, "{stats:?}");
    assert_eq!(f.calls_after_shutdown(), 0);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_consumer_that_breaks_the_protocol_is_a_typed_error_and_moves_nothing() {
    let f = Fixture::new();
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER)")
        .unwrap();
    let feed = Feed::new("log").capture("t", "x");
    feed.install(&conn).unwrap();
    conn.execute_batch("INSERT INTO t(x) VALUES (1), (2), (3)")
        .unwrap();

    let liar = |position: u64, reply: Vec<u8>| -> Behaviour {
        Arc::new(move |_, input| match input[0] {
            b'P' => Ok(position.to_le_bytes().to_vec()),
            _ => Ok(reply.clone()),
        })
    };
    let cases: Vec<(Behaviour, &str)> = vec![
        (liar(0, vec![1, 2, 3]), "8 bytes, got 3"),
        (liar(0, 9u64.to_le_bytes().to_vec()), "position 9"),
        (liar(2, 1u64.to_le_bytes().to_vec()), "position 1"),
        (liar(0, 0u64.to_le_bytes().to_vec()), "took none of 3"),
        (Arc::new(|_, _| Err("disk full".to_owned())), "disk full"),
        (Arc::new(|_, _| panic!("sink exploded")), "sink exploded"),
    ];
    let out = Arc::new(Mutex::new(Applied::default()));
    f.register("sink", "0.1.0", consumer(Arc::clone(&out)));
    for (i, (behaviour, cause)) in cases.into_iter().enumerate() {
        let version = format!("1.{i}.0");
        f.reload("sink", &version, behaviour, ReloadOptions::immediate());
        let e = feed.deliver(&conn, &f.registry, "sink", 10).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(cause) && text.contains(&version), "{text}");
        assert!(
            matches!(
                e,
                FeedError::Reply { .. }
                    | FeedError::Stuck { .. }
                    | FeedError::Call { .. }
                    | FeedError::Panicked { .. }
            ),
            "{e:?}"
        );
    }
    assert!(matches!(
        feed.deliver(&conn, &f.registry, "nobody", 10),
        Err(FeedError::Enter { .. })
    ));
    // A good version then gets everything, once.
    f.reload(
        "sink",
        "2.0.0",
        consumer(Arc::clone(&out)),
        ReloadOptions::immediate(),
    );
    let d = feed.catch_up(&conn, &f.registry, "sink").unwrap();
    assert_eq!((d.from, d.sent, d.position), (0, 3, 3));
    let positions: Vec<u64> = out
        .lock()
        .unwrap()
        .changes
        .iter()
        .map(|c| c.1.pos)
        .collect();
    assert_eq!(positions, [1, 2, 3]);
    assert_eq!(
        feed.deliver(&conn, &f.registry, "sink", 10).unwrap().sent,
        0
    );
}

#[test]
fn the_pump_trims_below_the_slowest_and_a_consumer_behind_the_log_is_told() {
    let (f, path, conn, feed) = installed("trim");
    let (a, b) = (
        Arc::new(Mutex::new(Applied::default())),
        Arc::new(Mutex::new(Applied::default())),
    );
    f.register("a", "1.0.0", consumer(Arc::clone(&a)));
    f.register("b", "1.0.0", consumer(Arc::clone(&b)));
    // `broken` fails every delivery: counted, and it holds back nothing
    // but the trim of a pump it belongs to.
    f.register("broken", "1.0.0", Arc::new(|_, _| Err("down".to_owned())));
    for x in 1..=50 {
        conn.execute("INSERT INTO t(x) VALUES (?1)", [x]).unwrap();
    }
    let blocked = Pump::spawn(
        feed.clone(),
        Arc::clone(&f.registry),
        &["a", "broken"],
        open(&path),
        Pumping {
            trim: true,
            ..Pumping::every(Duration::from_millis(1))
        },
    )
    .unwrap();
    wait_for("a to catch up", || a.lock().unwrap().changes.len() == 50);
    wait_for("a few rounds", || blocked.stats().rounds >= 3);
    let stats = blocked.stop();
    assert_eq!(stats.trimmed, 0, "a failing consumer holds the trim back");
    assert!(stats.consumers["broken"].failures >= 3);
    assert!(stats.consumers["broken"]
        .last_error
        .as_deref()
        .unwrap()
        .contains("down"));
    assert_eq!(stats.consumers["a"].changes, 50);

    let pump = Pump::spawn(
        feed.clone(),
        Arc::clone(&f.registry),
        &["a", "b"],
        open(&path),
        Pumping {
            trim: true,
            batch: 16,
            ..Pumping::every(Duration::from_millis(1))
        },
    )
    .unwrap();
    wait_for("the trim", || pump.stats().trimmed == 50);
    let stats = pump.stop();
    assert_eq!(b.lock().unwrap().changes.len(), 50);
    assert_eq!(stats.consumers["b"].batches, 4);
    assert_eq!(feed.bounds(&conn).unwrap(), None);

    // A consumer that starts from 0 now finds its changes gone.
    conn.execute("INSERT INTO t(x) VALUES (51)", []).unwrap();
    f.register(
        "late",
        "1.0.0",
        consumer(Arc::new(Mutex::new(Applied::default()))),
    );
    match feed.deliver(&conn, &f.registry, "late", 10) {
        Err(FeedError::Behind {
            position: 0,
            first: 51,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn clones_of_a_feed_take_turns_at_a_consumer() {
    let (f, path, conn, feed, out) = with_sink("turns");
    for x in 0..2000 {
        conn.execute("INSERT INTO t(x) VALUES (?1)", [x]).unwrap();
    }
    // Four deliverers at once, in batches of one: without turns, a reply
    // would claim a position another delivery moved it to.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (feed, registry, path) = (feed.clone(), Arc::clone(&f.registry), path.clone());
            std::thread::spawn(move || {
                let conn = open(&path);
                let mut errors = 0;
                loop {
                    match feed.deliver(&conn, &registry, "sink", 1) {
                        Ok(d) if d.sent == 0 => return errors,
                        Ok(_) => {}
                        Err(_) => errors += 1,
                    }
                }
            })
        })
        .collect();
    let errors: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(errors, 0);
    let positions: Vec<u64> = out
        .lock()
        .unwrap()
        .changes
        .iter()
        .map(|c| c.1.pos)
        .collect();
    assert_eq!(positions, (1..=2000).collect::<Vec<u64>>());
    let _ = std::fs::remove_file(&path);
}
