//! Background jobs: a tick in progress finishes on its version, the next
//! tick takes the new one, no tick runs on a version shut down, and a
//! failing tick is rolled back, counted and followed by the next.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_for, Behaviour, Fixture, LONG};
use reload_core::ReloadOptions;
use reload_sqlite::job::Job;
use rusqlite::Connection;

fn db(name: &str) -> (std::path::PathBuf, Connection) {
    let path = std::env::temp_dir().join(format!(
        "reload-sqlite-job-{name}-{}.db",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE log(tick INTEGER, version TEXT)")
        .unwrap();
    (path, conn)
}

/// Logs each tick with the version that ran it.
fn logger() -> Behaviour {
    Arc::new(|version, request| {
        let n = u64::from_le_bytes(request[1..9].try_into().unwrap());
        Ok(format!("INSERT INTO log VALUES ({n}, '{version}')").into_bytes())
    })
}

#[test]
fn a_tick_in_progress_finishes_on_its_version_and_the_next_takes_the_new_one() {
    let f = Fixture::new();
    let (path, reader) = db("versions");
    // Tick 2 of 1.0.0 waits inside its call until the test says go.
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (go, go_rx) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let go_rx = Mutex::new(go_rx);
    let slow: Behaviour = Arc::new(move |version, request| {
        let n = u64::from_le_bytes(request[1..9].try_into().unwrap());
        if n == 2 {
            entered_tx.lock().unwrap().send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        }
        logger()(version, request)
    });
    f.register("job", "1.0.0", slow);
    let job = Job::spawn(
        Arc::clone(&f.registry),
        "job",
        Duration::from_millis(5),
        Connection::open(&path).unwrap(),
    )
    .unwrap();
    entered.recv_timeout(LONG).unwrap();
    let report = f.reload("job", "2.0.0", logger(), ReloadOptions::immediate());
    let old = &report.changes[0].committed.old;
    // Tick 2 holds 1.0.0: not drained while it runs.
    assert!(!old.is_drained());
    go.send(()).unwrap();
    assert!(old.wait_drained(Some(Instant::now() + LONG)));
    let count = |conn: &Connection| {
        conn.query_row("SELECT count(*) FROM log", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    wait_for("tick 4", || count(&reader) >= 4);
    let stats = job.stop();
    let log: Vec<(i64, String)> = reader
        .prepare("SELECT tick, version FROM log ORDER BY tick")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        &log[..2],
        &[(1, "1.0.0".to_owned()), (2, "1.0.0".to_owned())]
    );
    assert!(log[2..].iter().all(|(_, v)| v == "2.0.0"), "{log:?}");
    assert_eq!(stats.ticks, log.len() as u64);
    assert_eq!(
        (stats.failures, stats.last_version.as_deref()),
        (0, Some("2.0.0"))
    );
    assert_eq!(f.calls_after_shutdown(), 0);
}

#[test]
fn a_failing_tick_rolls_back_and_the_job_goes_on() {
    let f = Fixture::new();
    let (path, reader) = db("failures");
    let calls = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&calls);
    let flaky: Behaviour = Arc::new(move |version, request| match c.fetch_add(1, SeqCst) {
        // Half its SQL runs, then it fails: none of it may stay.
        0 => Ok(b"INSERT INTO log VALUES (-1, 'half'); INSERT INTO nowhere VALUES (1)".to_vec()),
        1 => panic!("tick two panics"),
        2 => Err("tick three refuses".into()),
        3 => Ok(vec![0xff, 0xfe]),
        _ => logger()(version, request),
    });
    f.register("job", "1.0.0", flaky);
    let job = Job::spawn(
        Arc::clone(&f.registry),
        "job",
        Duration::ZERO,
        Connection::open(&path).unwrap(),
    )
    .unwrap();
    wait_for("a good tick", || {
        reader
            .query_row("SELECT count(*) FROM log", [], |r| r.get::<_, i64>(0))
            .unwrap()
            > 0
    });
    let stats = job.stop();
    assert!(stats.failures >= 4, "{stats:?}");
    assert!(stats.ticks > stats.failures);
    let half: i64 = reader
        .query_row("SELECT count(*) FROM log WHERE version = 'half'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(half, 0, "a failed tick's SQL stayed");
    assert_eq!(f.registry.stats().per_plugin["job"].in_flight, 0);
}

#[test]
fn a_job_with_a_long_period_stops_at_once_and_one_with_no_plugin_reports_it() {
    let f = Fixture::new();
    let (path, _reader) = db("stop");
    f.register("job", "1.0.0", logger());
    let job = Job::spawn(
        Arc::clone(&f.registry),
        "job",
        Duration::MAX,
        Connection::open(&path).unwrap(),
    )
    .unwrap();
    let job2 = Job::spawn(
        Arc::clone(&f.registry),
        "ghost",
        Duration::from_secs(3600),
        Connection::open(&path).unwrap(),
    )
    .unwrap();
    wait_for("the first ticks", || {
        job.stats().ticks == 1 && job2.stats().ticks == 1
    });
    let started = Instant::now();
    let stats = job.stop();
    let ghost = job2.stop();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!((stats.ticks, stats.failures), (1, 0));
    assert_eq!((ghost.ticks, ghost.failures), (1, 1));
    assert!(ghost.last_error.unwrap().contains("no plugin `ghost`"));
}
